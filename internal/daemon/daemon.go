// Package daemon assembles a Mote server from its parts — store, registry,
// authentication, broker, REST API — and runs it. It is the embeddable
// core behind `mote serve`: New(cfg), Start(ctx), Addrs(), Close(), usable
// from a test with ports 0 and a temporary data directory.
package daemon

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/moteiot/mote/internal/alarms"
	"github.com/moteiot/mote/internal/analytics"
	"github.com/moteiot/mote/internal/artifacts"
	"github.com/moteiot/mote/internal/audit"
	"github.com/moteiot/mote/internal/auth"
	"github.com/moteiot/mote/internal/blob"
	"github.com/moteiot/mote/internal/bridge"
	"github.com/moteiot/mote/internal/broker"
	"github.com/moteiot/mote/internal/bus"
	"github.com/moteiot/mote/internal/certrotate"
	"github.com/moteiot/mote/internal/cluster"
	"github.com/moteiot/mote/internal/coap"
	"github.com/moteiot/mote/internal/commands"
	"github.com/moteiot/mote/internal/config"
	"github.com/moteiot/mote/internal/console"
	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/dashboards"
	"github.com/moteiot/mote/internal/datadir"
	"github.com/moteiot/mote/internal/devicemodel"
	"github.com/moteiot/mote/internal/files"
	"github.com/moteiot/mote/internal/fleetindex"
	"github.com/moteiot/mote/internal/fleetquery"
	"github.com/moteiot/mote/internal/httpapi"
	"github.com/moteiot/mote/internal/ingest"
	"github.com/moteiot/mote/internal/ipfilter"
	"github.com/moteiot/mote/internal/jobs"
	"github.com/moteiot/mote/internal/live"
	"github.com/moteiot/mote/internal/methods"
	"github.com/moteiot/mote/internal/oidc"
	"github.com/moteiot/mote/internal/oidc/rolemap"
	"github.com/moteiot/mote/internal/pki"
	"github.com/moteiot/mote/internal/profiles"
	"github.com/moteiot/mote/internal/provisioning"
	"github.com/moteiot/mote/internal/registry"
	"github.com/moteiot/mote/internal/ruleengine"
	"github.com/moteiot/mote/internal/seal"
	"github.com/moteiot/mote/internal/shadow"
	"github.com/moteiot/mote/internal/store"
	"github.com/moteiot/mote/internal/telemetry"
	"github.com/moteiot/mote/internal/thingimport"
	"github.com/moteiot/mote/internal/users"
)

// Addrs are the addresses the server listens on ("" when disabled).
type Addrs struct {
	MQTT  string // host:port
	MQTTS string
	HTTP  string
	HTTPS string // the API over TLS (device client certificates)
	CoAP  string // CoAP over UDP (host:port)
	CoAPS string // CoAP over DTLS
	Pprof string // only with --pprof-addr
}

// Daemon is one Mote server.
type Daemon struct {
	cfg config.Config
	log *slog.Logger

	store    store.Store
	ca       *pki.CA
	registry *registry.Registry
	devices  *auth.Devices
	broker   *broker.Broker
	bus      bus.Bus
	cluster  *cluster.Node // nil: one node alone (cluster.go)
	shadows  *shadow.Service
	rules    *ruleengine.Engine
	fleet    *fleetindex.Index
	bridges  *bridge.Manager
	methods  *methods.Service
	commands *commands.Service
	alarms   *alarms.Service
	notifier *alarms.Notifier
	analytic *analytics.Engine
	models   *devicemodel.Models
	modelMon *devicemodel.Monitor
	jobs     *jobs.Service
	profiles *profiles.Service
	audit    *audit.Recorder
	coap     *coap.Server
	journal  *ingest.Journal
	ingest   ingest.Durable   // journal, or in a cluster the JetStream journal (journal.go)
	relay    *cluster.JSRelay // in a cluster: the JetStream relay of QoS 1/2 messages (relay.go)
	wills    *cluster.Wills   // in a cluster: the last wills of live connections (wills.go)
	tstore   telemetry.Store
	twriter  *telemetry.Writer
	http     *http.Server
	httpLn   net.Listener
	https    *http.Server
	httpsLn  net.Listener
	pprofLn  net.Listener
	// serverTLS is the server side of MQTTS and HTTPS: Mote's server
	// certificate, client certificates verified against Mote's CA when
	// given.
	serverTLS *tls.Config
	metrics   *prometheus.Registry

	routes *cluster.MethodRouter // nil: one node alone (clusterwork.go)

	// Provisioning (provisioning.go): the service, the per-source limit of
	// its device requests, and the TLS trust in enrollment CAs.
	prov      *provisioning.Service
	provLimit *provisioning.Limiter
	trust     *provisioning.Trust

	initialToken string
	// Console: users and sessions, the live feed of GET /api/v1/events
	// (liveDone ends its streams at shutdown), and the admin password
	// created on first start.
	users           *users.Service
	oidc            *oidc.RP // nil: single sign-on is off
	live            *live.Hub
	liveDone        chan struct{}
	initialPassword string

	// IP filters: devFilter for MQTT, MQTTS, HTTPS and /mqtt; apiFilter
	// for the HTTP port.
	devFilter  *ipfilter.Filter
	apiFilter  *ipfilter.Filter
	ipRefusals ipfilter.Refusals

	// Blob store, firmware artifacts and device files (blobs.go).
	blobs     blob.Store
	artifacts *artifacts.Service
	files     *files.Service

	// Dashboards and the overview's history sampler (dashboards.go).
	dashboards   *dashboards.Service
	statsSampler *dashboards.Sampler

	pprofAddr string
	ready     bool
	mu        sync.Mutex
	closers   []func() error // in start order; run in reverse
	httpDone  chan struct{}

	certRotate *certrotate.Service // devices' certificate self-rotation (MQTT, HTTP device API)
}

// New returns a Daemon for cfg (which should have passed Validate). log may
// be nil.
func New(cfg config.Config, log *slog.Logger) *Daemon {
	if log == nil {
		log = slog.Default()
	}
	return &Daemon{cfg: cfg, log: log}
}

// Start opens the store, creates the CA and keys on first start, and starts
// the broker and the HTTP server. On failure everything already started is
// stopped again.
func (d *Daemon) Start(ctx context.Context) (err error) {
	defer func() {
		if err != nil {
			_ = d.Close()
		}
	}()
	cfg := d.cfg
	if err := datadir.Ensure(cfg.DataDir); err != nil {
		return err
	}
	// Every listener is bound before anything is created that is shown
	// only once (the first admin token and console password): a busy port
	// must not lose them. The broker binds MQTT and MQTTS in broker.New.
	if err := d.bindHTTP(); err != nil {
		return err
	}
	st, err := openStore(ctx, cfg)
	if err != nil {
		return fmt.Errorf("open store: %w", err)
	}
	d.store = st
	d.onClose(st.Close)

	hasher, err := auth.LoadOrCreateHasher(datadir.HashKey(cfg.DataDir))
	if err != nil {
		return err
	}
	sealer, err := seal.LoadOrCreate(datadir.SealKey(cfg.DataDir))
	if err != nil {
		return fmt.Errorf("seal key: %w", err)
	}
	d.ca, err = pki.LoadOrCreateCA(datadir.PKI(cfg.DataDir))
	if err != nil {
		return fmt.Errorf("certificate authority: %w", err)
	}
	var serverCert tls.Certificate
	if cfg.TLSCert != "" {
		serverCert, err = pki.LoadKeyPair(cfg.TLSCert, cfg.TLSKey)
	} else {
		serverCert, err = pki.LoadOrCreateServerCert(datadir.PKI(cfg.DataDir), d.ca, cfg.TLSHosts)
	}
	if err != nil {
		return fmt.Errorf("server certificate: %w", err)
	}

	d.registry = registry.New(registry.Options{Store: st, Hasher: hasher, CA: d.ca, Logger: d.log.With("component", "registry"), Sealer: sealer,
		QueryLimits: fleetquery.Limits{MaxLength: cfg.FleetQueryMaxLength, MaxDepth: cfg.FleetQueryMaxDepth}, MaxDynamicGroups: cfg.MaxDynamicGroups,
		RotationWindow: cfg.CredentialRotationWindow, MaxRotationWindow: cfg.CredentialRotationMaxWindow, CRLValidity: cfg.CRLValidity})
	if err := d.registry.Bootstrap(ctx); err != nil {
		return fmt.Errorf("bootstrap registry: %w", err)
	}
	if err := d.startUsers(ctx); err != nil {
		return err
	}
	if err := d.resetPresence(ctx); err != nil { // cluster.go: a cluster node resets only its own
		return fmt.Errorf("reset presence: %w", err)
	}
	d.devices = auth.NewDevices(st, hasher, d.ca)
	d.devices.SetSealer(sealer) // symmetricKey credentials: Azure IoT Hub SAS tokens (auth/sas.go)

	// Telemetry: the store, its batching writer and the retention loop,
	// closed in reverse (retention, writer flush, store) after the rules
	// engine that feeds the writer.
	d.tstore, err = openTelemetry(ctx, cfg)
	if err != nil {
		return fmt.Errorf("open telemetry store: %w", err)
	}
	d.onClose(d.tstore.Close)
	tlog := d.log.With("component", "telemetry")
	d.twriter, err = telemetry.NewWriter(ctx, d.tstore, telemetry.WriterOptions{
		OnError:     func(err error) { tlog.Warn("telemetry write failed; retrying", "error", err) },
		FlushPoints: 20_000,
		MaxBacklog:  100_000,
	})
	if err != nil {
		return err
	}
	d.metrics = prometheus.NewRegistry()
	d.metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	registerStoreMetrics(d.metrics, d.store, d.tstore)
	// The audit log: every change through the API is recorded; closed
	// after the HTTP server (closers run last first), so that what it
	// accepted is stored.
	d.audit = audit.New(audit.Options{
		Store:       st.Audit(),
		Queue:       cfg.AuditQueue,
		QueueWait:   cfg.AuditQueueWait,
		MaxDocument: cfg.AuditMaxDocument,
		Retention:   cfg.AuditRetention,
		Logger:      d.log.With("component", "audit"),
		Metrics:     d.metrics,
	})
	if err := d.audit.Start(ctx); err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	d.onClose(d.audit.Close)

	// Certificate self-rotation by devices (MQTT and the HTTP device API).
	d.certRotate = certrotate.New(certrotate.Options{
		Registry: d.registry,
		Audit:    d.audit,
		PerHour:  cfg.DeviceRotationLimit,
		Logger:   d.log.With("component", "certrotate"),
		Metrics:  d.metrics,
	})

	// Closed if what follows fails; registered again after the journal's
	// Close (each Close is idempotent).
	d.onClose(d.twriter.Close)
	if err := d.startBus(); err != nil { // in-process, or on NATS in a cluster (cluster.go)
		return err
	}
	if err := d.openJournal(ctx); err != nil { // journal.go: the write-ahead log, or JetStream in a cluster
		return err
	}
	if err := d.openRelay(ctx); err != nil { // relay.go: QoS 1/2 between cluster nodes on JetStream
		return err
	}
	if err := d.openWills(ctx); err != nil { // wills.go: a lost node's wills sent by a survivor
		return err
	}
	retCtx, retCancel := context.WithCancel(context.Background())
	retDone := make(chan struct{})
	go func() {
		defer close(retDone)
		telemetry.RunRetention(retCtx, d.tstore, cfg.TelemetryRetention, time.Hour, tlog)
	}()
	d.onClose(func() error { retCancel(); <-retDone; return nil })

	if d.devFilter, d.apiFilter, d.ipRefusals, err = d.filters(); err != nil {
		return fmt.Errorf("ip filter: %w", err)
	}
	d.serverTLS = &tls.Config{
		Certificates: []tls.Certificate{serverCert},
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    d.ca.Pool(),
		MinVersion:   tls.VersionTLS12,
	}
	// Client certificates of verified enrollment CAs too; every certificate
	// is verified by the authenticators (provisioning.Trust).
	d.trust = provisioning.NewTrust(d.serverTLS)
	d.serverTLS = d.trust.Config()
	// Queued commands: the broker tells the service when a device
	// subscribes or acknowledges; the service delivers through the broker.
	var peers commands.Peers // in a cluster, the other nodes hear of each command at once
	if d.cluster != nil {
		peers = d.cluster
	}
	d.commands = commands.New(commands.Options{
		Store:   st.Commands(),
		Logger:  d.log.With("component", "commands"),
		Metrics: d.metrics,
		Peers:   peers,
	})
	d.broker, err = broker.New(broker.Options{
		MQTTAddr:         cfg.MQTTAddr,
		MQTTSAddr:        cfg.MQTTSAddr,
		TLSConfig:        d.serverTLS,
		Auth:             d.devices,
		Policies:         d.registry,
		Presence:         st.Things(),
		Retained:         st.Retained(),
		Sessions:         st.Sessions(),
		OnMessage:        d.bus.Publish,
		Deliveries:       d.commands,
		Journal:          d.brokerJournal(), // relay.go
		MaxPacketSize:    cfg.MaxPacketSize,
		MaxClients:       cfg.MaxClients,
		MaxSessionExpiry: cfg.MaxSessionExpiry,
		MaxOfflineQueue:  cfg.MaxOfflineQueue,
		OutboundQueue:    cfg.OutboundQueue,
		ConnectTimeout:   cfg.ConnectTimeout,

		MaxClientIDLength: cfg.MaxClientIDLength,

		MaxKeepalive: cfg.MaxKeepalive,
		CloseLinger:  cmp.Or(cfg.CloseLinger, -1), // 0: close at once

		BackpressureWait: cfg.BackpressureWait,
		PresenceFlush:    cfg.PresenceFlush,
		LastSeenInterval: cfg.LastSeenInterval,
		WebSocketOrigins: cfg.WebSocketOrigins,
		DeviceRateLimit:  cfg.DeviceRateLimit,
		DeviceRateBurst:  cfg.DeviceRateBurst,
		WrapListener:     d.wrapDeviceListener,
		Logger:           d.log.With("component", "broker"),
		Metrics:          d.metrics,

		MaxRetainedPerThing:      cfg.MaxRetainedPerThing,
		MaxRetainedBytesPerThing: cfg.MaxRetainedBytesPerThing,
		MaxRetainedBytes:         cfg.MaxRetainedBytes,
		SlowSubscriberBudget:     cfg.SlowSubscriberBudget,

		Azure: broker.AzureOptions{Enabled: true, QueueSize: cfg.AzureQueueSize, RequestTimeout: cfg.AzureRequestTimeout},

		Cluster: d.clusterLink(), // nil alone (cluster.go)
		// Certificate self-rotation by devices over MQTT.
		CertRotation: broker.CertRotationOptions{Rotator: d.certRotate},
		NodeID:       cfg.NodeID,

		HandoverTimeout:     cfg.ClusterHandoverTimeout,
		HandoverMaxMessages: cfg.ClusterHandoverMaxMessages,
		Replay:              d.sessionReplayer(), // relay.go: nil alone
		ReplayMax:           cfg.ClusterSessionReplayMax,
		ReplayTimeout:       cfg.ClusterSessionReplayTimeout,
	})
	if err != nil {
		return listenFlag(err)
	}
	d.onClose(d.broker.Close)

	// The fleet index (fleet queries, dynamic groups): fed by registry
	// events, shadow commits, presence and telemetry; announces group
	// membership through the broker, so it is closed before it.
	resync := cfg.FleetIndexResync
	if resync == 0 {
		resync = -1 // never
	}
	d.fleet = fleetindex.New(fleetindex.Options{
		Store:            st,
		Telemetry:        d.tstore,
		Bus:              d.bus,
		Publisher:        d.broker,
		Limits:           fleetquery.Limits{MaxLength: cfg.FleetQueryMaxLength, MaxDepth: cfg.FleetQueryMaxDepth},
		QueueSize:        cfg.FleetIndexQueue,
		MaxDynamicGroups: cfg.MaxDynamicGroups,
		Recompute:        cfg.FleetGroupRecompute,
		Resync:           resync,
		Logger:           d.log.With("component", "fleet"),
		Metrics:          d.metrics,
	})
	d.registry.Listen(d.fleet.OnRegistry)
	d.fleet.Start()
	d.onClose(d.fleet.Close)

	// Shadows answer through the broker; closed before it (closers run in
	// reverse), so pending commits are answered while clients are still
	// connected. With CoAP on, their answers pass through the CoAP shadow
	// feed, which tells CoAP observers which shadows changed.
	var shadowPub shadow.Publisher = d.broker
	var coapFeed *coap.ShadowFeed
	if cfg.CoAPAddr != "" || cfg.CoAPSAddr != "" {
		coapFeed = coap.NewShadowFeed(d.broker, 0)
		shadowPub = coapFeed
	}
	d.shadows = shadow.New(shadow.Options{
		Store:     st.Shadows(),
		Publisher: shadowPub,
		MaxSize:   d.cfg.ShadowMaxSize,
		Logger:    d.log.With("component", "shadow"),
		OnChange:  d.fleet.OnShadowChange,
		Shared:    d.cfg.Cluster != "", // other nodes write the same shadows
	})
	d.shadows.Attach(d.bus)
	d.onClose(d.shadows.Close)
	if err := d.registerShadowMetrics(); err != nil { // clusterwork.go
		return err
	}
	d.broker.SetAzureTwin(azureTwins{shadows: d.shadows}) // Azure IoT Hub twins (azure.go)
	// Provisioning (provisioning.go): registers devices, serves the
	// broker's provisioning connections.
	if err := d.startProvisioning(ctx, hasher, sealer); err != nil {
		return err
	}

	d.commands.Attach(d.bus)
	d.commands.Start(d.broker)
	d.onClose(d.commands.Close)

	// Alarms: events go out through the broker; rules and detectors queue
	// raises and clears to the service (closed after them).
	d.alarms = alarms.New(alarms.Options{
		Store:     st.Alarms(),
		Publisher: d.broker,
		MaxOpen:   cfg.AlarmMaxOpen,
		Queue:     cfg.AlarmQueue,
		Batch:     cfg.AlarmBatch,
		Logger:    d.log.With("component", "alarms"),
		Metrics:   d.metrics,
	})
	if err := d.alarms.Start(ctx); err != nil {
		return fmt.Errorf("alarms: %w", err)
	}
	d.onClose(d.alarms.Close)
	d.startDashboards()
	// The blob store, artifacts and device files, before the jobs whose
	// documents name artifacts.
	if err := d.startBlobs(ctx); err != nil {
		return err
	}
	// Jobs: device requests come on the bus, answers and notifications go
	// out through the broker; closed before it. Artifact placeholders in
	// documents become signed URLs per execution; query targets are
	// resolved by the fleet index.
	d.jobs = jobs.New(jobs.Options{
		Store:           st.Jobs(),
		Things:          d.registry,
		Publisher:       d.broker,
		Artifacts:       jobArtifacts{d.artifacts},
		Selector:        d.fleet,
		QueueSize:       cfg.JobQueue,
		Workers:         cfg.JobWorkers,
		Interval:        cfg.JobSchedulerTick,
		MaxTargets:      cfg.JobMaxTargets,
		MaxDocumentSize: cfg.JobMaxDocumentSize,
		Logger:          d.log.With("component", "jobs"),
		Metrics:         d.metrics,
	})
	if err := d.jobs.Start(ctx); err != nil {
		return fmt.Errorf("jobs: %w", err)
	}
	d.jobs.Attach(d.bus)
	d.onClose(d.jobs.Close)
	// Continuous jobs with a query target follow the fleet index.
	d.onClose(stopFunc(d.fleet.Watch(d.jobs.ThingsChanged)))

	// Configuration profiles write desired state through the shadow
	// service, following the fleet index's change feed; closed before
	// both (closers run in reverse).
	d.profiles = profiles.New(profiles.Options{
		Store:       st,
		Fleet:       d.fleet,
		Shadows:     d.shadows,
		MaxProfiles: cfg.MaxProfiles,
		MaxSize:     cfg.ProfileMaxSize,
		QueueSize:   cfg.ProfileQueue,
		Reconcile:   cfg.ProfileReconcile,
		Logger:      d.log.With("component", "profiles"),
		Metrics:     d.metrics,
	})
	if err := d.profiles.Start(); err != nil {
		return fmt.Errorf("profiles: %w", err)
	}
	d.onClose(d.profiles.Close)
	d.onClose(stopFunc(d.fleet.Watch(d.profiles.ThingsChanged)))

	// Direct methods: requests go out through the broker, answers come
	// back on the bus.
	remote, err := d.newMethodRouter() // clusterwork.go: nil alone
	if err != nil {
		return err
	}
	d.methods = methods.New(methods.Options{
		Publisher: d.broker,
		Presence:  d.broker,
		Remote:    remote,
		Metrics:   d.metrics,
		Logger:    d.log.With("component", "methods"),
	})
	d.methods.Attach(d.bus)

	// The rules engine publishes through the broker and writes telemetry:
	// closed first, before the broker and the telemetry writer.
	d.rules = ruleengine.New(ruleengine.Options{
		Store:     st.Rules(),
		Publisher: d.broker,
		Telemetry: d.twriter,
		Alarms:    d.alarms,
		Metrics:   d.metrics,
		Logger:    d.log.With("component", "rules"),

		// Delivery of webhooks and error actions.
		ActionQueue:       cfg.RuleActionQueue,
		ActionConcurrency: cfg.RuleActionConcurrency,
		ActionBatch:       cfg.RuleActionBatch,
		WebhookTimeout:    cfg.RuleWebhookTimeout,
		WebhookRetries:    ruleWebhookRetries(cfg.RuleWebhookRetries),
		BreakerFailures:   cfg.RuleBreakerFailures,
		BreakerCooldown:   cfg.RuleBreakerCooldown,

		// Windowed rules: their open windows are saved in the store.
		WindowMaxGroups:    cfg.RuleWindowMaxGroups,
		WindowSaveInterval: cfg.RuleWindowSaveInterval,
		WindowStore:        st.RuleWindows(),

		// Webhook secrets are sealed at rest with the data dir's seal.key.
		Sealer: sealer,
	})
	if err := d.rules.Start(ctx); err != nil {
		return fmt.Errorf("rules engine: %w", err)
	}
	d.onClose(d.rules.Close)
	d.rules.Attach(d.bus)
	if err := d.startNotifier(ctx); err != nil {
		return err
	}
	// Device models: the cache the API and analytics read, and the
	// monitor that flags telemetry and reported state outside them.
	d.models = devicemodel.NewModels(st.Types(), 0)
	d.modelMon = devicemodel.NewMonitor(devicemodel.MonitorOptions{
		Models:  d.models,
		Things:  st.Things(),
		Queue:   cfg.ModelCheckQueue,
		Logger:  d.log.With("component", "devicemodel"),
		Metrics: d.metrics,
	})
	if err := d.modelMon.Start(ctx); err != nil {
		return fmt.Errorf("device model monitor: %w", err)
	}
	d.onClose(d.modelMon.Close)
	d.modelMon.Attach(d.bus)
	// The analytics detectors consume the bus and raise through the alarm
	// service (closed before it).
	d.analytic = analytics.New(analytics.Options{
		Store:        st.Analytics(),
		Things:       st.Things(),
		Alarms:       d.alarms,
		Intervals:    d.models,
		Queue:        cfg.AnalyticsQueue,
		MaxStates:    cfg.AnalyticsMaxStates,
		SaveInterval: cfg.AnalyticsSaveInterval,
		PositionKeys: positionKeys(cfg),
		Logger:       d.log.With("component", "analytics"),
		Metrics:      d.metrics,
	})
	if err := d.analytic.Start(ctx); err != nil {
		return fmt.Errorf("analytics: %w", err)
	}
	d.onClose(d.analytic.Close)
	d.analytic.Attach(d.bus)
	if n, err := d.ingest.Start(d.rules); err != nil {
		return err
	} else if n > 0 {
		// What devices were told is stored is queryable before we serve.
		if err := d.twriter.Flush(ctx); err != nil {
			return fmt.Errorf("store replayed telemetry: %w", err)
		}
	}
	// Shutdown order for the message path: shadows answer what is queued
	// while clients are connected, the broker stops (no more appends), the
	// journal hands its last messages to the rules engine, which then
	// finishes its queue; the writer flushes and the journal checkpoints
	// later (closers registered earlier). Each Close is idempotent.
	d.onClose(func() error {
		return errors.Join(d.shadows.Close(), d.broker.Close(), func() error { d.ingest.Drain(); return nil }(), d.rules.Close())
	})
	if err := d.startCoAP(&serverCert, coapFeed); err != nil {
		return err
	}
	d.registry.Listen(d.onRegistryEvent)
	d.registry.OnThingCreated(d.jobs.ThingChanged)

	d.live = live.New(live.Options{Bus: d.bus, Remote: d.relayedBus() /* clusterwork.go */, PositionKeys: positionKeys(cfg), Totals: func() live.Totals {
		st := d.broker.Stats()
		return live.Totals{MessagesIn: st.MessagesReceived, MessagesOut: st.MessagesSent, Connected: st.Connections}
	}})
	d.onClose(d.live.Close)
	if err := d.startOIDC(ctx); err != nil {
		return err
	}
	if err := d.startHTTP(); err != nil {
		return err
	}
	// First at shutdown: end the console's event streams, which would
	// otherwise hold the HTTP servers' graceful shutdown.
	d.onClose(func() error { close(d.liveDone); return nil })
	if err := d.startPprof(); err != nil {
		return err
	}
	if err := d.broker.Start(); err != nil {
		return err
	}
	// Messages from the other nodes of a cluster, once the broker serves.
	if err := d.startCluster(); err != nil {
		return err
	}
	// Inbound MQTT bridges publish through the broker, so they start
	// after it and stop before it (closers run in reverse).
	if err := d.startBridges(); err != nil {
		return err
	}
	// First start: the secrets shown once, now that nothing can fail.
	if err := d.firstToken(ctx); err != nil {
		return err
	}
	if err := d.firstPassword(ctx); err != nil {
		return err
	}
	d.mu.Lock()
	d.ready = true
	d.mu.Unlock()
	a := d.Addrs()
	d.log.Info("mote started", "data_dir", cfg.DataDir, "store", storeName(cfg.Store), "mqtt", a.MQTT, "mqtts", a.MQTTS, "http", a.HTTP, "coap", a.CoAP, "coaps", a.CoAPS)
	return nil
}

// onRegistryEvent applies registry changes to live connections, and to
// what follows them on this node alone (files, continuous jobs).
func (d *Daemon) onRegistryEvent(e registry.Event) {
	d.applyToConnections(e)
	switch e.Kind {
	case registry.ThingDeleted:
		if d.files != nil {
			d.files.ForgetThing(e.Thing)
		}
	case registry.ThingChanged:
		// Continuous jobs follow group membership.
		d.jobs.ThingChanged(e.Thing)
	}
}

// applyToConnections applies a registry change, made on this node or
// another (onRemoteRegistry), to this node's connections and caches.
func (d *Daemon) applyToConnections(e registry.Event) {
	switch e.Kind {
	case registry.ThingChanged:
		d.devices.Invalidate(e.Thing)
		if !e.Enabled {
			d.broker.DisconnectThing(e.Thing, "thing disabled")
			if d.coap != nil {
				d.coap.DisconnectThing(e.Thing)
			}
		} else {
			d.broker.RefreshPolicies(e.Thing)
		}
	case registry.ThingDeleted:
		d.devices.Invalidate(e.Thing)
		d.broker.DisconnectThing(e.Thing, "thing deleted")
		if d.coap != nil {
			d.coap.DisconnectThing(e.Thing)
		}
		d.shadows.ForgetThing(e.Thing)
	case registry.CredentialRevoked:
		d.devices.Invalidate(e.Thing)
		d.broker.DisconnectCredential(e.Thing, e.Credential, "credential revoked")
		if d.coap != nil {
			d.coap.DisconnectCredential(e.Thing, e.Credential)
		}
	case registry.CredentialRotated:
		// The old credential is valid until the window ends: connections
		// using it are closed then (docs/credentials.md).
		d.devices.Invalidate(e.Thing)
		d.broker.ExpireCredential(e.Thing, e.Credential, e.Expires)
		if d.coap != nil {
			d.coap.ExpireCredential(e.Thing, e.Credential, e.Expires)
		}
	case registry.PoliciesChanged:
		d.broker.RefreshPolicies("")
	}
}

// firstToken creates an admin API token when there is none (first start).
func (d *Daemon) firstToken(ctx context.Context) error {
	toks, err := d.store.Tokens().List(ctx)
	if err != nil {
		return err
	}
	if len(toks) > 0 {
		return nil
	}
	_, raw, err := d.registry.CreateToken(ctx, "initial-admin", registry.RoleAdmin, nil)
	if err != nil {
		return fmt.Errorf("create initial admin token: %w", err)
	}
	d.initialToken = raw
	return nil
}

func (d *Daemon) startHTTP() error {
	importer := thingimport.New(thingimport.Options{
		Registry: d.registry,
		MaxRows:  d.cfg.ImportMaxRows,
		MaxSize:  d.cfg.ImportMaxSize,
		Logger:   d.log.With("component", "import"),
		Metrics:  d.metrics,
	})
	mux := http.NewServeMux()
	mux.Handle(httpapi.BasePath+"/", httpapi.New(httpapi.Options{
		Registry:  d.registry,
		Shadows:   d.shadows,
		Rules:     d.rules,
		Telemetry: d.tstore,
		Methods:   d.methods,
		Commands:  d.commands,
		C2D:       d.broker, // Azure IoT Hub cloud-to-device messages
		Alarms:    d.alarms,
		Analytics: d.analytic,
		Jobs:      d.jobs,
		Profiles:  d.profiles,
		Fleet:     d.fleet,
		Devices:   provisioning.Devices{Devices: d.devices, Provisioning: d.prov}, // JITR on HTTPS
		Audit:     d.audit,
		Importer:  importer,
		Gateway:   d.broker,

		// Certificate self-rotation by devices over HTTPS.
		CertRotation: d.certRotate,

		// Device models: desired updates and commands are checked.
		Models:           d.models,
		TypeModelMaxSize: d.cfg.TypeModelMaxSize,
		PositionKeys:     positionKeys(d.cfg),

		// A device message over HTTP is held to the MQTT packet limit.
		MaxMessageSize: d.cfg.MaxPacketSize,
		Server: func() httpapi.ServerInfo {
			a := d.Addrs()
			return httpapi.ServerInfo{Version: core.Version, MQTT: a.MQTT, MQTTS: a.MQTTS, WebSocket: "/mqtt",
				MapTileURL: d.cfg.MapTileURL}
		},
		Logger:   d.log.With("component", "api"),
		Metrics:  d.metrics,
		Users:    d.users,
		Live:     d.live,
		LiveDone: d.liveDone,

		MaxLongPollsPerDevice: d.cfg.MaxLongPollsPerDevice,

		Artifacts:     d.artifacts,
		Files:         d.files,
		BodyTimeout:   d.cfg.HTTPBodyTimeout,
		UploadMinRate: d.cfg.UploadMinRate,

		Dashboards:           d.dashboards,
		StatsHistory:         d.store.StatsHistory(),
		Provisioning:         d.prov,
		ProvisioningLimiter:  d.provLimit,
		ProvisioningEndpoint: d.cfg.ProvisioningEndpoint,
		OIDC:                 d.oidc,
	}))
	// MQTT over WebSocket is a device listener on the API port: the API
	// list applies to the connection, the device list to the upgrade.
	mux.Handle("GET /mqtt", d.devFilter.Handler(d.broker.WebSocketHandler(), "ws", d.ipRefusals))
	mux.Handle("GET /metrics", promhttp.HandlerFor(d.metrics, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", d.readyz)
	mux.Handle("/", console.Handler()) // the web console; its client routes too

	ln := d.httpLn
	d.http = d.httpServer(mux, "http")
	ln = d.httpListener(ln, "http", d.apiFilter, d.ipRefusals)
	d.httpDone = make(chan struct{})
	go func() {
		defer close(d.httpDone)
		if err := d.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			d.log.Error("http server stopped", "error", err)
		}
	}()
	d.onClose(func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err := d.http.Shutdown(ctx)
		if err != nil {
			err = d.http.Close()
		}
		<-d.httpDone
		return err
	})
	return d.startHTTPS(mux)
}

// startHTTPS serves the same mux over TLS on --https-addr, where devices
// may authenticate with their client certificate.
func (d *Daemon) startHTTPS(h http.Handler) error {
	if d.cfg.HTTPSAddr == "" {
		return nil
	}
	ln := d.httpsLn
	d.https = d.httpServer(h, "https")
	d.https.TLSConfig = d.serverTLS.Clone()
	ln = d.httpListener(ln, "https", d.devFilter, d.ipRefusals)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := d.https.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			d.log.Error("https server stopped", "error", err)
		}
	}()
	d.onClose(func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err := d.https.Shutdown(ctx)
		if err != nil {
			err = d.https.Close()
		}
		<-done
		return err
	})
	return nil
}

// startPprof serves Go's profiler on its own listener when --pprof-addr is
// set: CPU and heap profiles of a running server, for the performance work
// in docs/benchmarks.md.
func (d *Daemon) startPprof() error {
	if d.cfg.PprofAddr == "" {
		return nil
	}
	ln := d.pprofLn
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	d.pprofAddr = ln.Addr().String()
	d.log.Warn("profiler enabled; it is unauthenticated", "addr", d.pprofAddr)
	d.onClose(srv.Close)
	return nil
}

func (d *Daemon) readyz(w http.ResponseWriter, r *http.Request) {
	d.mu.Lock()
	ready := d.ready
	d.mu.Unlock()
	if ready {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if _, _, err := d.store.Things().Count(ctx); err != nil {
			ready = false
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if !ready {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte("not ready\n"))
		return
	}
	// While the ingest journal cannot write (a full disk; in a cluster,
	// JetStream not answering), durable publishes are refused: send
	// traffic elsewhere until it recovers.
	if d.ingest != nil && d.ingest.Err() != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		msg := "not ready: the ingest journal cannot write to its disk\n"
		if d.cluster != nil {
			msg = "not ready: JetStream does not take durable publishes\n"
		}
		_, _ = w.Write([]byte(msg))
		return
	}
	_, _ = w.Write([]byte("ready\n"))
}

func (d *Daemon) onClose(fn func() error) {
	d.mu.Lock()
	d.closers = append(d.closers, fn)
	d.mu.Unlock()
}

// Close stops the HTTP server, answers and commits the queued shadow
// requests, disconnects every client, flushes presence and closes the
// store. It is safe to call more than once.
func (d *Daemon) Close() error {
	d.mu.Lock()
	closers := d.closers
	d.closers = nil
	d.ready = false
	d.mu.Unlock()
	var errs []error
	for i := len(closers) - 1; i >= 0; i-- {
		if err := closers[i](); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Addrs returns the bound addresses.
func (d *Daemon) Addrs() Addrs {
	var a Addrs
	if d.broker != nil {
		a.MQTT, a.MQTTS = d.broker.Addrs()
	}
	if d.httpLn != nil {
		a.HTTP = d.httpLn.Addr().String()
	}
	if d.httpsLn != nil {
		a.HTTPS = d.httpsLn.Addr().String()
	}
	a.Pprof = d.pprofAddr
	if d.coap != nil {
		a.CoAP, a.CoAPS = d.coap.Addrs()
	}
	return a
}

// startCoAP binds and starts the CoAP device API (docs/coap.md) when a
// CoAP address is set. It is stopped before the broker, the shadows and
// the commands it calls (closers run in reverse).
func (d *Daemon) startCoAP(cert *tls.Certificate, feed *coap.ShadowFeed) error {
	cfg := d.cfg
	if cfg.CoAPAddr == "" && cfg.CoAPSAddr == "" {
		return nil
	}
	srv, err := coap.New(coap.Options{
		Addr:         cfg.CoAPAddr,
		DTLSAddr:     cfg.CoAPSAddr,
		TokenAuth:    cfg.CoAPTokenAuth,
		Certificate:  cert,
		ClientCAs:    d.ca.Pool(),
		Auth:         d.devices,
		Gateway:      d.broker,
		Shadows:      d.shadows,
		Commands:     d.commands,
		Feed:         feed,
		MaxPayload:   cfg.CoAPMaxPayload,
		MaxObservers: cfg.CoAPMaxObservers,
		MaxSessions:  cfg.CoAPMaxSessions,
		SessionIdle:  cfg.CoAPSessionIdle,
		Logger:       d.log.With("component", "coap"),
		Metrics:      d.metrics,

		MaxBlockwiseTransfers: cfg.CoAPMaxBlockwiseTransfers,
	})
	if err != nil {
		return err // names --coap-addr or --coaps-addr
	}
	if err := srv.Start(); err != nil {
		_ = srv.Close()
		return err
	}
	d.coap = srv
	d.onClose(srv.Close)
	return nil
}

// startUsers opens the console's user service; firstPassword creates the
// admin user once everything else has started.
func (d *Daemon) startUsers(ctx context.Context) error {
	d.users = users.New(users.Options{Store: d.store.Users(), Logger: d.log.With("component", "console"),
		MaxFailures: d.cfg.LoginMaxFailures, MaxScopeGroups: d.cfg.ScopeMaxGroups,
		Cost: d.cfg.PasswordCost})
	d.liveDone = make(chan struct{})
	expCtx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); d.users.RunExpiry(expCtx, time.Hour) }()
	d.onClose(func() error { cancel(); <-done; return nil })
	return nil
}

// startOIDC starts single sign-on through the OpenID Connect provider of
// --oidc-issuer (none: off). A provider that cannot be reached now is not
// an error: discovery is retried at sign-in, and passwords still work.
func (d *Daemon) startOIDC(ctx context.Context) error {
	if d.cfg.OIDCIssuer == "" {
		return nil
	}
	secret := d.cfg.OIDCClientSecret
	if d.cfg.OIDCClientSecretFile != "" {
		b, err := os.ReadFile(d.cfg.OIDCClientSecretFile)
		if err != nil {
			return fmt.Errorf("oidc-client-secret-file: %w", err)
		}
		secret = strings.TrimSpace(string(b))
	}
	roles, err := rolemap.Parse(d.cfg.OIDCRoleMap)
	if err != nil {
		return fmt.Errorf("oidc-role-map: %w", err)
	}
	rp, err := oidc.New(oidc.Options{
		Issuer:           d.cfg.OIDCIssuer,
		ClientID:         d.cfg.OIDCClientID,
		ClientSecret:     secret,
		RedirectURL:      d.cfg.OIDCRedirectURL,
		Scopes:           d.cfg.OIDCScopes,
		RoleClaim:        d.cfg.OIDCRoleClaim,
		RoleMap:          roles,
		DefaultRole:      d.cfg.OIDCDefaultRole,
		GroupsClaim:      d.cfg.OIDCGroupsClaim,
		ButtonLabel:      d.cfg.OIDCButtonLabel,
		DiscoveryTimeout: d.cfg.OIDCDiscoveryTimeout,
		LoginTimeout:     d.cfg.OIDCLoginTimeout,
		MaxSpent:         d.cfg.OIDCMaxCallbacks,
		Users:            d.users,
		Logger:           d.log.With("component", "oidc"),
		Metrics:          d.metrics,
	})
	if err != nil {
		return err
	}
	if err := rp.Start(ctx); err != nil {
		return err
	}
	d.oidc = rp
	d.onClose(rp.Close)
	return nil
}

// firstPassword creates the console's admin user with a random password
// (InitialPassword) on first start.
func (d *Daemon) firstPassword(ctx context.Context) error {
	pw, err := d.users.EnsureAdmin(ctx)
	if err != nil {
		return fmt.Errorf("create the console admin user: %w", err)
	}
	d.initialPassword = pw
	return nil
}

// InitialPassword is the password of the console's admin user created on
// first start ("" otherwise).
func (d *Daemon) InitialPassword() string { return d.initialPassword }

// DataDir is the data directory the server was started with.
func (d *Daemon) DataDir() string { return d.cfg.DataDir }

// InitialToken is the admin token created on first start ("" otherwise).
func (d *Daemon) InitialToken() string { return d.initialToken }

// Registry returns the device registry.
func (d *Daemon) Registry() *registry.Registry { return d.registry }

// Store is the daemon's store (tests seed it).
func (d *Daemon) Store() store.Store { return d.store }

// Bus returns the message bus that carries accepted device messages and
// presence events to platform services.
func (d *Daemon) Bus() bus.Bus { return d.bus }

// Shadows returns the device shadow service.
func (d *Daemon) Shadows() *shadow.Service { return d.shadows }

// Rules returns the rules engine.
func (d *Daemon) Rules() *ruleengine.Engine { return d.rules }

// startBridges connects the inbound MQTT bridges of --bridge.
func (d *Daemon) startBridges() error {
	var list []bridge.Config
	for _, spec := range d.cfg.Bridges {
		c, err := bridge.Parse(spec)
		if err != nil {
			return fmt.Errorf("bridge: %w", err)
		}
		list = append(list, c)
	}
	m, err := bridge.New(bridge.Options{
		Bridges:    list,
		Injector:   d.broker,
		RateLimit:  d.cfg.BridgeRateLimit,
		MaxPayload: d.cfg.MaxPacketSize,
		Metrics:    d.metrics,
		Logger:     d.log.With("component", "bridge"),
	})
	if err != nil {
		return err
	}
	if err := m.Start(); err != nil {
		return err
	}
	d.bridges = m
	d.onClose(m.Close)
	return nil
}

// Telemetry returns the telemetry store.
func (d *Daemon) Telemetry() telemetry.Store { return d.tstore }

// TelemetryWriter returns the batching writer of the telemetry store.
func (d *Daemon) TelemetryWriter() *telemetry.Writer { return d.twriter }

// Methods returns the direct method service.
func (d *Daemon) Methods() *methods.Service { return d.methods }

// Commands returns the command service.
func (d *Daemon) Commands() *commands.Service { return d.commands }

// positionKeys returns --position-keys (validated: two keys).
func positionKeys(cfg config.Config) [2]string {
	if len(cfg.PositionKeys) != 2 {
		return [2]string{"lat", "lon"}
	}
	return [2]string{cfg.PositionKeys[0], cfg.PositionKeys[1]}
}

// Alarms returns the alarm service.
func (d *Daemon) Alarms() *alarms.Service { return d.alarms }

// Analytics returns the analytics engine.
func (d *Daemon) Analytics() *analytics.Engine { return d.analytic }

// Jobs returns the job service.
func (d *Daemon) Jobs() *jobs.Service { return d.jobs }

// Audit returns the audit log recorder.
func (d *Daemon) Audit() *audit.Recorder { return d.audit }

// Users returns the console's user accounts (tests sign in other roles).
func (d *Daemon) Users() *users.Service { return d.users }

// Journal returns the ingest journal.
func (d *Daemon) Journal() *ingest.Journal { return d.journal }

// Broker returns the MQTT broker.
func (d *Daemon) Broker() *broker.Broker { return d.broker }

// CACertPEM returns the CA certificate devices trust.
func (d *Daemon) CACertPEM() []byte { return d.ca.CertPEM() }

// ruleWebhookRetries maps --rule-webhook-retries to the rules engine's
// option, where 0 means the default and a negative number none.
func ruleWebhookRetries(n int) int {
	if n == 0 {
		return -1
	}
	return n
}

// startNotifier sends alarm events to --alarm-webhook-url (through the
// rules engine's webhook path) and by e-mail (--alarm-smtp-*), if set.
func (d *Daemon) startNotifier(ctx context.Context) error {
	cfg := d.cfg
	o := alarms.NotifierOptions{
		Source:   d.alarms,
		Throttle: cmp.Or(cfg.AlarmNotifyThrottle, -1), // 0: every event
		Queue:    cfg.AlarmQueue,
		Logger:   d.log.With("component", "alarm-notify"),
		Metrics:  d.metrics,
	}
	if cfg.AlarmWebhookURL != "" {
		sink, err := d.rules.Sink("$alarms", ruleengine.Action{URL: cfg.AlarmWebhookURL})
		if err != nil {
			return fmt.Errorf("alarm-webhook-url: %w", err)
		}
		o.Webhook = sink
	}
	if cfg.AlarmSMTPAddr != "" {
		o.SMTP = &alarms.SMTPOptions{Addr: cfg.AlarmSMTPAddr, From: cfg.AlarmSMTPFrom, To: cfg.AlarmSMTPTo,
			Username: cfg.AlarmSMTPUsername, Password: cfg.AlarmSMTPPassword, Timeout: cfg.AlarmSMTPTimeout}
	}
	if o.Webhook == nil && o.SMTP == nil {
		return nil
	}
	d.notifier = alarms.NewNotifier(o)
	if err := d.notifier.Start(ctx); err != nil {
		return fmt.Errorf("alarm notifications: %w", err)
	}
	d.onClose(d.notifier.Close)
	return nil
}

// stopFunc adapts a stop function (a watcher's) to a closer.
func stopFunc(stop func()) func() error { return func() error { stop(); return nil } }
