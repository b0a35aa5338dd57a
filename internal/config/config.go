// Package config is Mote's server configuration: defaults, a YAML file,
// MOTE_* environment variables and command-line flags, in that order of
// precedence (a flag beats the environment, which beats the file), then
// Validate.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"

	"github.com/moteiot/mote/internal/bridge"
	"github.com/moteiot/mote/internal/datadir"
	"github.com/moteiot/mote/internal/ipfilter"
	"github.com/moteiot/mote/internal/oidc/rolemap"
	"github.com/moteiot/mote/internal/pgdb"
)

// Config is everything `mote serve` can be told.
type Config struct {
	DataDir   string
	LogLevel  string // debug, info, warn, error
	LogFormat string // auto (JSON unless stderr is a terminal), json, text

	// Store is where the registry, shadows, rules, sessions and telemetry
	// are kept: "" for the embedded SQLite databases in DataDir, or a
	// PostgreSQL URL (postgres://...) shared by several nodes.
	Store         string
	StoreMaxConns int // connections per PostgreSQL pool (the store and telemetry have one each)

	MQTTAddr  string // MQTT over TCP; "" disables
	MQTTSAddr string // MQTT over TLS; "" disables
	HTTPAddr  string // REST API, WebSocket MQTT at /mqtt, metrics
	HTTPSAddr string // the same over TLS, with device client certificates; "" disables

	TLSHosts []string // extra names in the generated server certificate
	TLSCert  string   // user-supplied server certificate (PEM); with TLSKey replaces the generated one
	TLSKey   string

	MaxPacketSize    int           // bytes; larger MQTT packets are refused
	MaxClients       int           // concurrent MQTT connections
	MaxSessionExpiry time.Duration // longest a disconnected persistent session is kept
	MaxOfflineQueue  int           // QoS 1/2 messages kept per client (offline or in flight)
	OutboundQueue    int           // packets queued for writing per connection
	ConnectTimeout   time.Duration // time a new connection has to send CONNECT

	MaxClientIDLength int // longest MQTT client id accepted, bytes

	MaxKeepalive time.Duration // longest MQTT keep-alive granted; longer (or 0) is capped, MQTT 5 is told (Server Keep Alive)
	CloseLinger  time.Duration // how long a connection the server closes is half-closed and drained first; 0 = close at once

	BackpressureWait time.Duration // longest a publisher is held while a subscriber's queue is full
	PresenceFlush    time.Duration // how often connection state is written to the registry
	LastSeenInterval time.Duration // how often an active thing's last-seen time is written
	WebSocketOrigins []string      // allowed Origin values for MQTT over WebSocket ("*" = any)
	DeviceRateLimit  float64       // messages per second per thing (MQTT and HTTP); 0 = no limit
	DeviceRateBurst  int           // messages a thing may send at once; 0 = the rate

	MaxRetainedPerThing      int           // retained messages one thing may hold; 0 = no limit
	MaxRetainedBytesPerThing int64         // payload bytes of the retained messages of one thing; 0 = no limit
	MaxRetainedBytes         int64         // payload bytes of all retained messages; 0 = no limit
	SlowSubscriberBudget     time.Duration // how long a subscriber may stay full while publishers wait for it; 0 = never disconnect

	ShadowMaxSize int // largest shadow state (desired + reported JSON), bytes

	// Azure IoT Hub device protocol on the MQTTS port (docs/azure.md).
	AzureQueueSize      int           // $iothub requests and desired patches queued per Azure connection
	AzureRequestTimeout time.Duration // deadline of one twin request against the shadow store

	TelemetryRetention time.Duration // telemetry older than this is deleted; 0 keeps it forever

	// Delivery of rule actions (webhooks, error actions), per rule action.
	RuleActionQueue       int           // jobs queued; more are dropped and counted
	RuleActionConcurrency int           // deliveries at once
	RuleActionBatch       int           // deliveries of a kafka, nats, postgres or mqtt action in one attempt
	RuleWebhookTimeout    time.Duration // per attempt of a webhook without timeoutMs
	RuleWebhookRetries    int           // attempts after the first of a webhook without retries
	RuleBreakerFailures   int           // consecutive failed attempts that open the breaker
	RuleBreakerCooldown   time.Duration // how long an open breaker drops before a probe
	// Windowed rules (docs/rules.md, Windowed aggregates).
	RuleWindowMaxGroups    int           // open (rule, group) windows; a message opening one more is refused and counted
	RuleWindowSaveInterval time.Duration // how often open windows are saved to the store (and at shutdown)

	// Alarms (docs/alarms.md).
	AlarmMaxOpen        int           // open alarms on the server; a new one beyond is refused and counted
	AlarmQueue          int           // raise/clear requests of rules and detectors waiting; more are dropped and counted
	AlarmBatch          int           // queued alarm changes stored in one transaction (group commit)
	AlarmNotifyThrottle time.Duration // least time between two notifications of one (thing, alarm type)
	AlarmWebhookURL     string        // POST every alarm event here ("" none)
	AlarmSMTPAddr       string        // e-mail alarm events through this SMTP server host:port ("" none)
	AlarmSMTPFrom       string
	AlarmSMTPTo         []string
	AlarmSMTPUsername   string
	AlarmSMTPPassword   string // never logged
	AlarmSMTPTimeout    time.Duration

	// Provisioning (docs/provisioning.md).
	ProvisioningRateLimit       float64       // registration and claim requests per second per source address
	ProvisioningRateBurst       int           // such requests a source may make at once
	ProvisioningMaxEnrollments  int           // enrollment groups on the server
	ProvisioningMaxPendingCerts int           // AWS CreateCertificateFromCsr certificates waiting for RegisterThing
	ProvisioningPendingTTL      time.Duration // how long such a certificate waits
	ProvisioningClaimTTL        time.Duration // validity of a claim token that asks for none
	ProvisioningMaxClaimTTL     time.Duration // longest validity of a claim token
	ProvisioningVerificationTTL time.Duration // validity of a CA verification code

	// Credential rotation and the CRL (docs/credentials.md).
	CredentialRotationWindow    time.Duration // a rotated credential's remaining validity when none is asked for
	CredentialRotationMaxWindow time.Duration // the longest rotation window
	DeviceRotationLimit         int           // certificate self-rotations a thing may make per hour
	CRLValidity                 time.Duration // thisUpdate to nextUpdate of /api/v1/crl.pem
	ProvisioningQueue           int           // MQTT provisioning requests queued per connection
	ProvisioningRequestTimeout  time.Duration // deadline of one registration
	ProvisioningEndpoint        string        // the API URL claim QR codes carry ("" the URL the request came to)

	// Analytics: the detectors on the live stream (docs/alarms.md).
	AnalyticsQueue        int           // messages waiting for the detectors; more are dropped and counted
	AnalyticsMaxStates    int           // (rule, thing) detector states kept; more are refused and counted
	AnalyticsSaveInterval time.Duration // how often changed detector states are saved

	// MapTileURL is the web console map's tile URL template ({z}, {x},
	// {y}; "" no tiles: positions and fences on a plain background).
	MapTileURL string
	// PositionKeys are the telemetry keys of a thing's latitude and
	// longitude: the fleet map's positions and the default of geofence
	// and speed analytics rules that name none (docs/map.md).
	PositionKeys []string
	// Device models on thing types (docs/device-models.md).
	TypeModelMaxSize int // bytes of one type's model; larger is refused (413)
	ModelCheckQueue  int // messages waiting for the model check; more are dropped and counted
	// Inbound MQTT bridges (package bridge): one URL each, and the
	// messages per second each one takes.
	Bridges         []string
	BridgeRateLimit float64

	PprofAddr string // serve net/http/pprof here; "" (default) disables

	// HTTP and HTTPS servers: how long a client has for its request
	// headers and for its body, how long an idle keep-alive connection is
	// kept, the largest header block, and the most connections served at
	// once (0: half the process's open-file limit).
	HTTPReadHeaderTimeout time.Duration
	HTTPBodyTimeout       time.Duration
	HTTPIdleTimeout       time.Duration
	HTTPMaxHeaderBytes    int
	HTTPMaxConns          int
	// MaxLongPollsPerDevice bounds the command long polls one thing may
	// hold open on the HTTP device API.
	MaxLongPollsPerDevice int
	// Users (internal/users, docs/users.md): failed sign-ins allowed per
	// minute per address and per user from one address; the groups a
	// user's or token's scope may name.
	LoginMaxFailures int
	ScopeMaxGroups   int
	// PasswordCost is the bcrypt cost of console user passwords.
	PasswordCost int
	// Jobs (internal/jobs): device requests queued for the job workers
	// (more are answered RequestThrottled), the workers, the rollout
	// scheduler's tick, the most things one job may target and the
	// largest job document.
	JobQueue           int
	JobWorkers         int
	JobSchedulerTick   time.Duration
	JobMaxTargets      int
	JobMaxDocumentSize int
	// Fleet queries (docs/fleet-query.md): the longest and most deeply
	// nested query accepted, the fleet index's queue of changes, the
	// number of dynamic groups, how often dynamic groups are re-evaluated
	// (queries with now()) and how often the index reloads from the store
	// (changes made on other nodes; 0: never).
	FleetQueryMaxLength int
	FleetQueryMaxDepth  int
	FleetIndexQueue     int
	MaxDynamicGroups    int
	FleetGroupRecompute time.Duration
	FleetIndexResync    time.Duration
	// Configuration profiles (internal/profiles): how many, the largest
	// profile document in bytes, the things waiting to be applied and how
	// often every profile's target is evaluated again.
	MaxProfiles      int
	ProfileMaxSize   int
	ProfileQueue     int
	ProfileReconcile time.Duration
	// IP filters (CIDR lists; deny wins, an empty allow list allows all):
	// the device listeners (MQTT, MQTTS, HTTPS, and /mqtt on the HTTP
	// port) and the HTTP API port.
	DeviceIPAllow []string
	DeviceIPDeny  []string
	APIIPAllow    []string
	APIIPDeny     []string

	// Firmware artifacts (docs/artifacts.md) and device files
	// (docs/files.md), kept in the blob store under DataDir.
	ArtifactMaxSize     int64         // largest artifact, bytes
	ArtifactSigningKeys string        // PEM file of ed25519 public keys; set: every artifact must be signed
	ArtifactURLTTL      time.Duration // life of a signed download URL
	ArtifactURLBase     string        // prefix of signed URLs ("https://host:port"); "": relative /api/v1/... paths
	FileMaxSize         int64         // largest device file, bytes
	FileQuotaPerThing   int64         // bytes of files (complete and in progress) one thing may hold
	FileMaxCount        int           // files one thing may hold
	UploadMinRate       int64         // bytes/s an artifact or file upload gets on top of --http-body-timeout; 0: the body timeout alone
	// CoAP device API (internal/coap, docs/coap.md).
	CoAPAddr         string        // CoAP over UDP; "" disables
	CoAPSAddr        string        // CoAP over DTLS (certificates, PSK); "" disables
	CoAPTokenAuth    bool          // accept ?token=thing:secret on plain UDP
	CoAPMaxPayload   int           // largest request body, whole block-wise transfer included, bytes
	CoAPMaxObservers int           // observations one thing may hold at once
	CoAPMaxSessions  int           // concurrent CoAP peers on UDP and DTLS sessions, each
	CoAPSessionIdle  time.Duration // a peer silent this long is forgotten (its observations end)
	// Block1 transfers with a new token per block one session may have
	// in flight (docs/coap.md#block-wise-transfers).
	CoAPMaxBlockwiseTransfers int
	// Dashboards (docs/dashboards.md): widgets per dashboard, the largest
	// dashboard document, dashboards on the server; and how often the
	// overview's history (GET /stats/history) records a point.
	DashboardMaxWidgets  int
	DashboardMaxSize     int
	MaxDashboards        int
	StatsHistoryInterval time.Duration

	// Audit log (docs/audit.md): entries waiting to be stored, how long a
	// change waits for room before it is refused with 503, the largest
	// before/after document kept, and how long entries are kept.
	AuditQueue       int
	AuditQueueWait   time.Duration
	AuditMaxDocument int
	AuditRetention   time.Duration
	// Bulk import of things (docs/import.md): the largest body and the
	// most rows of one POST /things:import.
	ImportMaxSize int64
	ImportMaxRows int
	// Single sign-on with OpenID Connect (internal/oidc, docs/users.md):
	// the provider ("" issuer: off), the client registered there (the
	// secret is never logged; or read from a file), the callback URL (""
	// derived from the request), scopes besides openid, the claim mapped
	// to a role and the map, the role when nothing matches ("": refuse),
	// a claim to scope users to groups, the console's button, and the
	// deadlines of a call to the provider and of a whole sign-in.
	OIDCIssuer           string
	OIDCClientID         string
	OIDCClientSecret     string // never logged
	OIDCClientSecretFile string
	OIDCRedirectURL      string
	OIDCScopes           []string
	OIDCRoleClaim        string
	OIDCRoleMap          string
	OIDCDefaultRole      string
	OIDCGroupsClaim      string
	OIDCButtonLabel      string
	OIDCDiscoveryTimeout time.Duration
	OIDCLoginTimeout     time.Duration
	OIDCMaxCallbacks     int

	// Cluster (docs/cluster.md): several nodes on NATS and one PostgreSQL
	// store. Cluster is the NATS server URLs ("" runs one node alone);
	// NodeID names this node; the TLS CA, credentials file or user and
	// password authenticate to NATS (the password is never logged);
	// ClusterRelayQueue bounds the messages from other nodes waiting to be
	// delivered to this node's subscribers.
	Cluster           string
	NodeID            string
	ClusterTLSCA      string
	ClusterCreds      string
	ClusterUser       string
	ClusterPassword   string // never logged
	ClusterRelayQueue int

	// Durable ingest on JetStream in a cluster (docs/cluster.md): the
	// MOTE_INGEST stream's replicas and size limit, how long a durable
	// publish waits for JetStream's acknowledgement before it is refused,
	// and how many publishes may wait at once.
	ClusterReplicas       int
	ClusterIngestMaxBytes int64
	ClusterIngestTimeout  time.Duration
	ClusterIngestPending  int
	// ClusterIngestAdopt: a survivor adopts the ingest subject of a node
	// lost to the lease (stores its acknowledged backlog under that
	// node's replay point; docs/cluster.md).
	ClusterIngestAdopt bool
	// The JetStream relay of QoS 1/2 messages between nodes
	// (docs/cluster.md): the MOTE_RELAY stream's size and age limits
	// (discard old: beyond them a node that fell behind loses the oldest,
	// counted) and how many messages a node's consumer fetches at once.
	ClusterRelayMaxBytes int64
	ClusterRelayMaxAge   time.Duration
	ClusterRelayBatch    int
	// Last wills across nodes (docs/cluster.md, "Last wills"): the
	// MOTE_WILLS bucket's size (the wills of live connections, for a
	// survivor to send if their node dies) and how many writes to it may
	// wait at once (beyond: the will is not recorded, counted).
	ClusterWillsMaxBytes int64
	ClusterWillQueue     int
	// ClusterMethodCalls bounds the direct method calls other nodes route
	// to this node that run at once; beyond it they are refused (429).
	ClusterMethodCalls int
	// ClusterLeaseInterval is how often a node tells the others it is
	// alive; a node not heard for ClusterLeaseTimeout is lost and its
	// things are marked disconnected. ClusterHandoverTimeout bounds a
	// persistent session's handover from the node that holds it, and
	// ClusterHandoverMaxMessages the queued messages it carries.
	ClusterLeaseInterval       time.Duration
	ClusterLeaseTimeout        time.Duration
	ClusterHandoverTimeout     time.Duration
	ClusterHandoverMaxMessages int
	// ClusterSessionReplayMax bounds the relay stream messages a replay
	// queues to one persistent session loaded from the store,
	// ClusterSessionReplayTimeout how long a replay reads
	// (broker/replay.go).
	ClusterSessionReplayMax     int
	ClusterSessionReplayTimeout time.Duration
	// ClusterClientIDLookups bounds the client id lookups a node makes at
	// once (is the id held by another thing's connection on another
	// node?); beyond it connections are refused (0x89 server busy).
	ClusterClientIDLookups int
}

// MaxClientIDLength is the largest --max-client-id-length: the presence
// topic $mote/events/presence/disconnected/{clientid} must stay within
// MQTT's 65,535-byte topic limit, or the event cannot be published. MQTT
// requires servers to accept at least 23 bytes.
const MaxClientIDLength = 65000

// MaxTelemetryRetention is the longest --telemetry-retention (100 years).
const MaxTelemetryRetention = 100 * 365 * 24 * time.Hour

// Default returns the configuration that `mote serve` runs with when given
// nothing.
func Default() Config {
	return Config{
		DataDir:          datadir.Default,
		StoreMaxConns:    10,
		LogLevel:         "info",
		LogFormat:        "auto",
		MQTTAddr:         ":1883",
		MQTTSAddr:        ":8883",
		HTTPAddr:         ":8080",
		HTTPSAddr:        ":8443",
		DeviceRateLimit:  100,
		DeviceRateBurst:  200,
		MaxPacketSize:    256 * 1024,
		MaxClients:       1_000_000,
		MaxSessionExpiry: 24 * time.Hour,
		MaxOfflineQueue:  1000,
		OutboundQueue:    128,
		ConnectTimeout:   10 * time.Second,

		MaxClientIDLength: 128,

		MaxKeepalive: 1200 * time.Second,
		CloseLinger:  250 * time.Millisecond,

		BackpressureWait: 250 * time.Millisecond,
		PresenceFlush:    200 * time.Millisecond,
		LastSeenInterval: 30 * time.Second,
		ShadowMaxSize:    8 * 1024,

		TelemetryRetention: 30 * 24 * time.Hour,

		MaxRetainedPerThing:      100,
		MaxRetainedBytesPerThing: 1 << 20,
		MaxRetainedBytes:         256 << 20,
		SlowSubscriberBudget:     5 * time.Second,
		RuleActionQueue:          1000,
		RuleActionConcurrency:    4,
		RuleActionBatch:          100,
		RuleWebhookTimeout:       5 * time.Second,
		RuleWebhookRetries:       2,
		RuleBreakerFailures:      5,
		RuleBreakerCooldown:      30 * time.Second,
		RuleWindowMaxGroups:      100_000,
		RuleWindowSaveInterval:   30 * time.Second,
		AlarmMaxOpen:             10_000,
		AlarmQueue:               10_000,
		AlarmBatch:               256,
		AlarmNotifyThrottle:      time.Minute,
		AlarmSMTPTimeout:         10 * time.Second,
		AnalyticsQueue:           10_000,
		AnalyticsMaxStates:       100_000,
		AnalyticsSaveInterval:    30 * time.Second,
		MapTileURL:               "https://tile.openstreetmap.org/{z}/{x}/{y}.png",
		PositionKeys:             []string{"lat", "lon"},
		TypeModelMaxSize:         64 * 1024,
		ModelCheckQueue:          10_000,
		BridgeRateLimit:          1000,
		HTTPReadHeaderTimeout:    10 * time.Second,
		HTTPBodyTimeout:          30 * time.Second,
		HTTPIdleTimeout:          2 * time.Minute,
		HTTPMaxHeaderBytes:       64 * 1024,
		MaxLongPollsPerDevice:    4,
		LoginMaxFailures:         5,
		ScopeMaxGroups:           32,
		PasswordCost:             10,

		AzureQueueSize:      16,
		AzureRequestTimeout: 5 * time.Second,
		ArtifactMaxSize:     256 << 20,
		ArtifactURLTTL:      time.Hour,
		FileMaxSize:         64 << 20,
		FileQuotaPerThing:   256 << 20,
		FileMaxCount:        100,
		UploadMinRate:       16 << 10,
		JobQueue:            10_000,
		JobWorkers:          4,
		JobSchedulerTick:    time.Second,
		JobMaxTargets:       100_000,
		JobMaxDocumentSize:  32 * 1024,
		CoAPAddr:            ":5683",
		CoAPSAddr:           ":5684",
		CoAPMaxPayload:      64 * 1024,
		CoAPMaxObservers:    8,
		CoAPMaxSessions:     10_000,
		CoAPSessionIdle:     5 * time.Minute,
		FleetQueryMaxLength: 4096,
		FleetQueryMaxDepth:  32,
		FleetIndexQueue:     10_000,
		MaxDynamicGroups:    100,
		FleetGroupRecompute: time.Minute,
		FleetIndexResync:    10 * time.Minute,
		MaxProfiles:         100,
		ProfileMaxSize:      16 << 10,
		ProfileQueue:        10_000,
		ProfileReconcile:    time.Minute,

		CoAPMaxBlockwiseTransfers: 8,

		DashboardMaxWidgets:         50,
		DashboardMaxSize:            64 * 1024,
		MaxDashboards:               1000,
		StatsHistoryInterval:        time.Minute,
		ProvisioningRateLimit:       5,
		ProvisioningRateBurst:       10,
		ProvisioningMaxEnrollments:  1000,
		ProvisioningMaxPendingCerts: 1000,
		ProvisioningPendingTTL:      5 * time.Minute,
		ProvisioningClaimTTL:        24 * time.Hour,
		ProvisioningMaxClaimTTL:     365 * 24 * time.Hour,
		ProvisioningVerificationTTL: time.Hour,

		CredentialRotationWindow:    24 * time.Hour,
		CredentialRotationMaxWindow: 30 * 24 * time.Hour,
		DeviceRotationLimit:         6,
		CRLValidity:                 24 * time.Hour,
		ProvisioningQueue:           4,
		ProvisioningRequestTimeout:  10 * time.Second,
		AuditQueue:                  10_000,
		AuditQueueWait:              2 * time.Second,
		AuditMaxDocument:            8 << 10,
		AuditRetention:              90 * 24 * time.Hour,
		ImportMaxSize:               64 << 20,
		ImportMaxRows:               200_000,
		OIDCScopes:                  []string{"profile"},
		OIDCRoleClaim:               "groups",
		OIDCButtonLabel:             "Sign in with SSO",
		OIDCDiscoveryTimeout:        10 * time.Second,
		OIDCLoginTimeout:            10 * time.Minute,
		OIDCMaxCallbacks:            10_000,

		ClusterRelayQueue: 65536,

		ClusterReplicas:            3,
		ClusterIngestMaxBytes:      1 << 30,
		ClusterIngestTimeout:       5 * time.Second,
		ClusterIngestPending:       4096,
		ClusterIngestAdopt:         true,
		ClusterRelayMaxBytes:       1 << 30,
		ClusterRelayMaxAge:         24 * time.Hour,
		ClusterRelayBatch:          256,
		ClusterWillsMaxBytes:       64 << 20,
		ClusterWillQueue:           4096,
		ClusterMethodCalls:         1024,
		ClusterLeaseInterval:       5 * time.Second,
		ClusterLeaseTimeout:        15 * time.Second,
		ClusterHandoverTimeout:     2 * time.Second,
		ClusterHandoverMaxMessages: 10_000,
		ClusterClientIDLookups:     256,

		ClusterSessionReplayMax:     10_000,
		ClusterSessionReplayTimeout: 5 * time.Second,
	}
}

// field binds one setting to its flag name (also its YAML key; the env
// name is MOTE_ + upper snake case).
type field struct {
	name  string
	usage string
	bind  func(fs *pflag.FlagSet, name, usage string)
}

func fields(c *Config) []field {
	str := func(p *string) func(*pflag.FlagSet, string, string) {
		return func(fs *pflag.FlagSet, n, u string) { fs.StringVar(p, n, *p, u) }
	}
	num := func(p *int) func(*pflag.FlagSet, string, string) {
		return func(fs *pflag.FlagSet, n, u string) { fs.IntVar(p, n, *p, u) }
	}
	dur := func(p *time.Duration) func(*pflag.FlagSet, string, string) {
		return func(fs *pflag.FlagSet, n, u string) { fs.DurationVar(p, n, *p, u) }
	}
	float := func(p *float64) func(*pflag.FlagSet, string, string) {
		return func(fs *pflag.FlagSet, n, u string) { fs.Float64Var(p, n, *p, u) }
	}
	num64 := func(p *int64) func(*pflag.FlagSet, string, string) {
		return func(fs *pflag.FlagSet, n, u string) { fs.Int64Var(p, n, *p, u) }
	}
	boolean := func(p *bool) func(*pflag.FlagSet, string, string) {
		return func(fs *pflag.FlagSet, n, u string) { fs.BoolVar(p, n, *p, u) }
	}
	list := func(p *[]string) func(*pflag.FlagSet, string, string) {
		return func(fs *pflag.FlagSet, n, u string) { fs.StringSliceVar(p, n, *p, u) }
	}
	return []field{
		{"data-dir", "directory for the database, keys and certificates", str(&c.DataDir)},
		{"store", `where state and telemetry are kept: "" for SQLite in --data-dir, or a PostgreSQL URL postgres://user:pass@host:5432/db (keys, certificates and the journal stay in --data-dir)`, str(&c.Store)},
		{"cluster", "NATS server URLs of a cluster, comma-separated (nats://h1:4222,nats://h2:4222); needs --store postgres://... and --node-id (docs/cluster.md)", str(&c.Cluster)},
		{"node-id", "this node's name in a cluster: letters, digits, '-' and '_', unique per node", str(&c.NodeID)},
		{"cluster-tls-ca", "PEM file of the CA that signed the NATS servers' certificates (connect with TLS)", str(&c.ClusterTLSCA)},
		{"cluster-creds", "NATS credentials file (user JWT and nkey seed)", str(&c.ClusterCreds)},
		{"cluster-user", "NATS user name", str(&c.ClusterUser)},
		{"cluster-password", "NATS password (prefer the environment variable)", str(&c.ClusterPassword)},
		{"cluster-relay-queue", "messages from other nodes waiting for this node's subscribers; beyond it they are dropped and counted", num(&c.ClusterRelayQueue)},
		{"cluster-replicas", "replicas of the JetStream stream that makes durable publishes durable before their acknowledgement (1 to 5; at most the NATS servers)", num(&c.ClusterReplicas)},
		{"cluster-ingest-max-bytes", "size limit of the JetStream ingest stream (messages acknowledged, not yet stored by their node); full, durable publishes are refused", num64(&c.ClusterIngestMaxBytes)},
		{"cluster-ingest-timeout", "longest wait for JetStream to store a durable publish; then it is refused (MQTT 5 PUBACK 0x80, 3.1.1 closed, HTTP 503)", dur(&c.ClusterIngestTimeout)},
		{"cluster-ingest-pending", "durable publishes waiting for JetStream's acknowledgement at once, all clients together; beyond it publishers wait (up to --cluster-ingest-timeout)", num(&c.ClusterIngestPending)},
		{"cluster-ingest-adopt", "a surviving node adopts the ingest subject of a node lost to the lease: it stores the lost node's acknowledged messages, exactly once, until that node is heard again", boolean(&c.ClusterIngestAdopt)},
		{"cluster-relay-max-bytes", "size limit of the JetStream relay stream of QoS 1/2 messages between nodes; beyond it the oldest are removed, and a node that had not read them counts them lost (mote_cluster_relay_dropped_total{reason=\"expired\"})", num64(&c.ClusterRelayMaxBytes)},
		{"cluster-relay-max-age", "age limit of the JetStream relay stream: a node away longer loses the older messages (and its consumer after that long idle)", dur(&c.ClusterRelayMaxAge)},
		{"cluster-relay-batch", "QoS 1/2 messages from other nodes a node's relay consumer fetches from JetStream at once", num(&c.ClusterRelayBatch)},
		{"cluster-wills-max-bytes", "size limit of the JetStream bucket of the last wills of live connections, which a surviving node publishes when their node is lost; full, a connection's will is not recorded (mote_cluster_wills_total{result=\"record_failed\"})", num64(&c.ClusterWillsMaxBytes)},
		{"cluster-will-queue", "last wills waiting to be recorded in JetStream at once; beyond it a connection's will is not recorded (mote_cluster_wills_total{result=\"record_dropped\"}) and is not sent if its node dies", num(&c.ClusterWillQueue)},
		{"cluster-method-calls", "direct method calls routed here by other nodes that run at once; beyond it they are refused with 429", num(&c.ClusterMethodCalls)},
		{"cluster-lease-interval", "how often a cluster node tells the others it is alive (a heartbeat on NATS)", dur(&c.ClusterLeaseInterval)},
		{"cluster-lease-timeout", "a cluster node not heard for this long is lost: a surviving node marks the things connected on it disconnected", dur(&c.ClusterLeaseTimeout)},
		{"cluster-handover-timeout", "longest a node waits for the node that holds a persistent session to hand it over when its device connects here; then it resumes what the store has", dur(&c.ClusterHandoverTimeout)},
		{"cluster-handover-max-messages", "most queued messages a persistent session carries from one cluster node to another (the oldest beyond it are dropped and counted)", num(&c.ClusterHandoverMaxMessages)},
		{"cluster-session-replay-max", "most relay stream messages a replay queues to one persistent session that a node loads from the store (left by a dead node, handed over, or restored at start); beyond it the rest are not queued, counted", num(&c.ClusterSessionReplayMax)},
		{"cluster-session-replay-timeout", "longest a replay of the relay stream into persistent sessions loaded from the store reads; a resuming device's CONNACK waits for it", dur(&c.ClusterSessionReplayTimeout)},
		{"cluster-client-id-lookups", "client id lookups (which thing holds the id on another node?) a cluster node makes at once for connecting devices; beyond it connections are refused with 0x89 server busy", num(&c.ClusterClientIDLookups)},
		{"store-max-conns", "connections of each PostgreSQL pool (registry and telemetry have one each); callers wait for a free one", num(&c.StoreMaxConns)},
		{"log-level", "debug, info, warn or error", str(&c.LogLevel)},
		{"log-format", "auto (JSON unless on a terminal), json or text", str(&c.LogFormat)},
		{"mqtt-addr", `MQTT over TCP listen address ("" disables)`, str(&c.MQTTAddr)},
		{"mqtts-addr", `MQTT over TLS listen address ("" disables)`, str(&c.MQTTSAddr)},
		{"http-addr", "HTTP listen address: REST API, MQTT over WebSocket at /mqtt, /metrics", str(&c.HTTPAddr)},
		{"https-addr", `HTTPS listen address: the same as --http-addr over TLS, where devices may authenticate with their client certificate ("" disables)`, str(&c.HTTPSAddr)},
		{"device-rate-limit", "messages per second each thing may send over MQTT and HTTP together; more are refused (MQTT 5: 0x96, HTTP: 429) and counted; 0 turns the limit off", float(&c.DeviceRateLimit)},
		{"device-rate-burst", "bucket size of --device-rate-limit: messages a thing may send at once after a quiet spell (0: the rate)", num(&c.DeviceRateBurst)},
		{"max-retained-per-thing", "retained messages each thing may hold; a retained publish beyond it is refused (MQTT 5: 0x97, HTTP: 507) and counted; clearing one always works; 0 turns the limit off", num(&c.MaxRetainedPerThing)},
		{"max-retained-bytes-per-thing", "payload bytes of the retained messages each thing may hold; beyond it retained publishes are refused like --max-retained-per-thing; 0 turns the limit off", num64(&c.MaxRetainedBytesPerThing)},
		{"max-retained-bytes", "payload bytes of all retained messages on the server; beyond it retained publishes of devices are refused like --max-retained-per-thing; 0 turns the limit off", num64(&c.MaxRetainedBytes)},
		{"slow-subscriber-budget", "how long a subscriber may keep its queue full while publishers are held for it (--backpressure-wait each) before it is disconnected (MQTT 5: DISCONNECT 0x97); 0 never disconnects", dur(&c.SlowSubscriberBudget)},
		{"tls-hosts", "extra DNS names or IPs for the generated server certificate (comma-separated)", list(&c.TLSHosts)},
		{"tls-cert", "server certificate file (PEM) to use instead of the generated one", str(&c.TLSCert)},
		{"tls-key", "private key file (PEM) of --tls-cert", str(&c.TLSKey)},
		{"max-packet-size", "largest MQTT packet accepted, in bytes", num(&c.MaxPacketSize)},
		{"max-clients", "most concurrent MQTT connections", num(&c.MaxClients)},
		{"max-session-expiry", "longest a disconnected persistent session is kept", dur(&c.MaxSessionExpiry)},
		{"max-offline-queue", "QoS 1/2 messages kept per client while it is offline or slow; more are dropped, counted and logged", num(&c.MaxOfflineQueue)},
		{"outbound-queue", "packets queued for writing per connection", num(&c.OutboundQueue)},
		{"connect-timeout", "time a new connection has to send CONNECT", dur(&c.ConnectTimeout)},
		{"max-client-id-length", "longest MQTT client id accepted, in bytes; longer ones are refused (MQTT 5: 0x85, 3.1.1: return code 2) and counted", num(&c.MaxClientIDLength)},
		{"max-keepalive", "longest MQTT keep-alive granted (whole seconds, 1s to 65535s); a client asking for more, or for 0 (none), gets this one (MQTT 5 is told in CONNACK's Server Keep Alive) and is disconnected after 1.5 times it without a packet", dur(&c.MaxKeepalive)},
		{"close-linger", "how long an MQTT connection the server closes (after a DISCONNECT such as 0x93 or 0x95) is half-closed and drained first, so the client reads the reason instead of a reset; 0 closes at once", dur(&c.CloseLinger)},
		{"backpressure-wait", "longest a publisher is held while a subscriber's queue is full", dur(&c.BackpressureWait)},
		{"presence-flush", "how often connection state is written to the registry", dur(&c.PresenceFlush)},
		{"last-seen-interval", "how often a connected thing's last-seen time (its latest packet) is written to the registry while it is active", dur(&c.LastSeenInterval)},
		{"pprof-addr", `serve Go's profiler (/debug/pprof/) on this address, e.g. 127.0.0.1:6060; unauthenticated, keep it on loopback ("" disables)`, str(&c.PprofAddr)},
		{"azure-queue-size", "Azure IoT Hub devices: $iothub twin requests and desired patches queued per connection; a request beyond it is answered 429, a patch dropped (counted in mote_azure_dropped_total)", num(&c.AzureQueueSize)},
		{"azure-request-timeout", "Azure IoT Hub devices: deadline of one twin request ($iothub/twin/GET, reported patch) against the shadow; past it the device is answered 504", dur(&c.AzureRequestTimeout)},
		{"shadow-max-size", "largest device shadow state (desired + reported JSON), in bytes; larger updates are rejected with 413", num(&c.ShadowMaxSize)},
		{"telemetry-retention", "how long telemetry is kept (e.g. 720h); older points are deleted every hour; 0 keeps it forever", dur(&c.TelemetryRetention)},
		{"rule-action-queue", "deliveries queued per rule action (webhooks, error actions); more are dropped and counted", num(&c.RuleActionQueue)},
		{"rule-action-concurrency", "deliveries at once per rule action (webhooks, error actions)", num(&c.RuleActionConcurrency)},
		{"rule-action-batch", "queued deliveries of a kafka, nats, postgres or mqtt rule action sent in one attempt (acks awaited together; a failed batch is retried whole)", num(&c.RuleActionBatch)},
		{"rule-webhook-timeout", "time of one attempt of a rule webhook that sets no timeoutMs", dur(&c.RuleWebhookTimeout)},
		{"rule-webhook-retries", "attempts after the first of a rule webhook that sets no retries", num(&c.RuleWebhookRetries)},
		{"rule-breaker-failures", "consecutive failed attempts that open a rule action's circuit breaker (it then drops deliveries)", num(&c.RuleBreakerFailures)},
		{"rule-breaker-cooldown", "how long an open rule action breaker drops deliveries before it lets one probe through", dur(&c.RuleBreakerCooldown)},
		{"rule-window-max-groups", "open windows of windowed rules, one per (rule, group); a message that would open one more is refused and counted in mote_rule_window_refused_total", num(&c.RuleWindowMaxGroups)},
		{"rule-window-save-interval", "how often the open windows of windowed rules are saved to the store (also at shutdown), so that a restart resumes them", dur(&c.RuleWindowSaveInterval)},
		{"provisioning-rate-limit", "registration and claim-redeem requests per second per source address (POST /api/v1/provisioning/..., MQTT provisioning connects); more are refused (HTTP 429, CONNACK 0x9F) and counted", float(&c.ProvisioningRateLimit)},
		{"provisioning-rate-burst", "registration and claim-redeem requests a source address may make at once", num(&c.ProvisioningRateBurst)},
		{"provisioning-max-enrollments", "enrollment groups on the server; one more is refused (507)", num(&c.ProvisioningMaxEnrollments)},
		{"provisioning-max-pending-certificates", "certificates made by AWS CreateCertificateFromCsr that wait for RegisterThing; more are refused (429) until some are claimed or expire", num(&c.ProvisioningMaxPendingCerts)},
		{"provisioning-pending-ttl", "how long a certificate made by AWS CreateCertificateFromCsr waits for RegisterThing (its ownership token's validity)", dur(&c.ProvisioningPendingTTL)},
		{"provisioning-claim-ttl", "validity of a claim token created without a ttl", dur(&c.ProvisioningClaimTTL)},
		{"provisioning-max-claim-ttl", "longest validity of a claim token", dur(&c.ProvisioningMaxClaimTTL)},
		{"provisioning-verification-ttl", "validity of an X.509 enrollment group's CA verification code", dur(&c.ProvisioningVerificationTTL)},
		{"credential-rotation-window", "how long a rotated credential stays valid beside its replacement when the rotation names no window; connections using it are closed when it ends", dur(&c.CredentialRotationWindow)},
		{"credential-rotation-max-window", "the longest rotation window a rotation may ask for (a longer one is refused with 400)", dur(&c.CredentialRotationMaxWindow)},
		{"device-rotation-limit", "certificate self-rotations a thing may make per hour (MQTT $mote/things/{name}/certificate/rotate, POST /api/v1/devices/{thing}/certificate); more are refused (rejected 429, HTTP 429) and counted", num(&c.DeviceRotationLimit)},
		{"crl-validity", "time from thisUpdate to nextUpdate of the CRL at /api/v1/crl.pem; it is signed again at half of it and on every revocation", dur(&c.CRLValidity)},
		{"provisioning-queue", "MQTT provisioning requests queued per connection; more are refused (PUBACK 0x97) and counted in mote_provisioning_mqtt_dropped_total", num(&c.ProvisioningQueue)},
		{"provisioning-request-timeout", "deadline of one registration (store work, signing)", dur(&c.ProvisioningRequestTimeout)},
		{"provisioning-endpoint", `the API URL a claim token's QR code carries, e.g. https://iot.example.com:8443 ("" the URL the request was made to)`, str(&c.ProvisioningEndpoint)},
		{"alarm-max-open", "open (active or acknowledged) alarms on the server; a new alarm beyond it is refused and counted in mote_alarms_refused_total (a repeat of an open alarm is not new)", num(&c.AlarmMaxOpen)},
		{"alarm-queue", "raise and clear requests of rules and detectors waiting to be stored; more are dropped and counted in mote_alarm_requests_dropped_total", num(&c.AlarmQueue)},
		{"alarm-batch", "queued alarm raises and clears stored together in one transaction (group commit; their events go out after it commits); 1 stores each alone", num(&c.AlarmBatch)},
		{"alarm-notify-throttle", "least time between two notifications (webhook, e-mail) of the same alarm type of the same thing; the others are counted; 0 notifies every event", dur(&c.AlarmNotifyThrottle)},
		{"alarm-webhook-url", `POST every alarm event (JSON) to this http(s) URL, through the rules' webhook path (--rule-action-queue, retries, breaker) ("" none)`, str(&c.AlarmWebhookURL)},
		{"alarm-smtp-addr", `e-mail every alarm event through this SMTP server, host:port (STARTTLS when offered) ("" none)`, str(&c.AlarmSMTPAddr)},
		{"alarm-smtp-from", "sender address of alarm e-mails", str(&c.AlarmSMTPFrom)},
		{"alarm-smtp-to", "recipients of alarm e-mails (comma-separated)", list(&c.AlarmSMTPTo)},
		{"alarm-smtp-username", "SMTP user name (PLAIN authentication, only over TLS or to localhost); empty: none", str(&c.AlarmSMTPUsername)},
		{"alarm-smtp-password", "SMTP password (prefer the environment variable)", str(&c.AlarmSMTPPassword)},
		{"alarm-smtp-timeout", "time one alarm e-mail may take, connection to QUIT", dur(&c.AlarmSMTPTimeout)},
		{"position-keys", "the two top-level telemetry keys holding a thing's latitude and longitude, comma-separated: the fleet map's positions, and geofence and speed analytics rules that name no latKey/lonKey", list(&c.PositionKeys)},
		{"analytics-queue", "messages (telemetry, presence) waiting for the analytics detectors; more are dropped and counted in mote_analytics_dropped_total", num(&c.AnalyticsQueue)},
		{"analytics-max-states", "detector states kept, one per (analytics rule, thing); a new one beyond it is not created and is counted in mote_analytics_states_refused_total", num(&c.AnalyticsMaxStates)},
		{"analytics-save-interval", "how often changed detector states are saved (and so survive a restart)", dur(&c.AnalyticsSaveInterval)},
		{"map-tile-url", `tile URL template of the web console's maps, with {z}, {x} and {y} (and optionally {s}); the browser fetches the tiles, so it must reach it ("" none: positions and geofences on a plain background)`, str(&c.MapTileURL)},
		{"type-model-max-size", "bytes of one thing type's device model; a larger one is refused with 413", num(&c.TypeModelMaxSize)},
		{"model-check-queue", "messages (telemetry, reported shadow state) waiting for the device-model check; more are dropped and counted in mote_model_check_dropped_total", num(&c.ModelCheckQueue)},
		{"bridge", "inbound MQTT bridge, repeatable: mqtt(s)://[user:pass@]host:port/?name=N&from=remote/filter&to=local/prefix/&qos=0|1 (URL-encode # as %23, + as %2B, a comma as %2C); see docs/bridge.md", list(&c.Bridges)},
		{"bridge-rate-limit", "messages per second each inbound MQTT bridge takes (burst the same); more are dropped and counted", float(&c.BridgeRateLimit)},
		{"ws-origins", `allowed Origin headers for MQTT over WebSocket ("*" allows any; empty allows same host and clients that send none)`, list(&c.WebSocketOrigins)},
		{"http-read-header-timeout", "time an HTTP(S) client has to send its request headers", dur(&c.HTTPReadHeaderTimeout)},
		{"http-body-timeout", "time an HTTP(S) client has to send a request body, from the start of the request; slower uploads are cut off (streams and long polls are not affected)", dur(&c.HTTPBodyTimeout)},
		{"http-idle-timeout", "how long an idle HTTP(S) keep-alive connection is kept open", dur(&c.HTTPIdleTimeout)},
		{"http-max-header-bytes", "largest HTTP(S) request header block, in bytes; larger ones are answered 431", num(&c.HTTPMaxHeaderBytes)},
		{"http-max-conns", "most connections each of the HTTP and HTTPS servers serves at once; more wait in the listen backlog (0: half the open-file limit, so that MQTT keeps file descriptors)", num(&c.HTTPMaxConns)},
		{"max-long-polls-per-device", "command long polls (GET /devices/{thing}/commands?wait=) one thing may hold open at once; more are answered 429", num(&c.MaxLongPollsPerDevice)},
		{"login-max-failures", "failed console sign-ins (and wrong old passwords) allowed a minute per client address, and per user name from one address; more are answered 429", num(&c.LoginMaxFailures)},
		{"scope-max-groups", "groups a user's or an API token's group scope may name; more are answered 400", num(&c.ScopeMaxGroups)},
		{"password-cost", "bcrypt cost of console user passwords (each step doubles the work of a sign-in and of setting a password)", num(&c.PasswordCost)},
		{"job-queue", "job requests of devices (MQTT and HTTP) queued for the job workers; more are answered RequestThrottled (MQTT) or 429 and counted", num(&c.JobQueue)},
		{"job-workers", "workers answering the job requests of devices", num(&c.JobWorkers)},
		{"job-scheduler-tick", "how often the job scheduler releases executions at their rollout rate, checks abort criteria and times executions out", dur(&c.JobSchedulerTick)},
		{"job-max-targets", "most things one job may target; larger jobs are refused with 413", num(&c.JobMaxTargets)},
		{"job-max-document-size", "largest job document, in bytes; larger ones are refused with 413", num(&c.JobMaxDocumentSize)},
		{"fleet-query-max-length", "longest fleet query (?q=, dynamic groups), in bytes; longer ones are answered 400", num(&c.FleetQueryMaxLength)},
		{"fleet-query-max-depth", "deepest nesting of parentheses and NOT in a fleet query; deeper ones are answered 400", num(&c.FleetQueryMaxDepth)},
		{"fleet-index-queue", "changes (shadow, presence, telemetry) waiting for the fleet index; when full, the thing is reloaded from the store instead", num(&c.FleetIndexQueue)},
		{"max-dynamic-groups", "most dynamic groups (groups defined by a query); more are refused", num(&c.MaxDynamicGroups)},
		{"fleet-group-recompute", "how often every dynamic group is evaluated again (queries with now() change with time alone)", dur(&c.FleetGroupRecompute)},
		{"fleet-index-resync", "how often the fleet index reloads every thing from the store (picks up changes made on other cluster nodes); 0: never", dur(&c.FleetIndexResync)},
		{"max-profiles", "most configuration profiles; more are refused with 409", num(&c.MaxProfiles)},
		{"profile-max-size", "largest configuration profile document (its desired state), in bytes; larger ones are refused with 413", num(&c.ProfileMaxSize)},
		{"profile-queue", "things waiting for their configuration profiles to be applied; when full, a full reconcile runs instead", num(&c.ProfileQueue)},
		{"profile-reconcile", "how often every configuration profile's target is evaluated again and applied", dur(&c.ProfileReconcile)},
		{"device-ip-allow", "CIDR prefixes or addresses that may connect to the device listeners (MQTT, MQTTS, HTTPS, WebSocket /mqtt); empty allows all (comma-separated)", list(&c.DeviceIPAllow)},
		{"device-ip-deny", "CIDR prefixes or addresses refused on the device listeners; deny wins over allow (comma-separated)", list(&c.DeviceIPDeny)},
		{"api-ip-allow", "CIDR prefixes or addresses that may connect to the HTTP port (--http-addr); empty allows all (comma-separated)", list(&c.APIIPAllow)},
		{"api-ip-deny", "CIDR prefixes or addresses refused on the HTTP port; deny wins over allow (comma-separated)", list(&c.APIIPDeny)},
		{"artifact-max-size", "largest firmware artifact accepted by POST /api/v1/artifacts, in bytes; larger uploads are answered 413", num64(&c.ArtifactMaxSize)},
		{"artifact-signing-keys", `PEM file of ed25519 public keys ("PUBLIC KEY" blocks) that sign artifacts; when set, unsigned artifacts are refused ("" accepts unsigned ones)`, str(&c.ArtifactSigningKeys)},
		{"artifact-url-ttl", "how long a signed artifact download URL (as put in job documents) stays valid", dur(&c.ArtifactURLTTL)},
		{"artifact-url-base", `scheme and host that prefix signed artifact URLs, e.g. https://mote.example.com:8443 ("" gives paths relative to the server)`, str(&c.ArtifactURLBase)},
		{"file-max-size", "largest file a device may upload (PUT /devices/{thing}/files/{name}), in bytes; larger ones are answered 413", num64(&c.FileMaxSize)},
		{"file-quota-per-thing", "bytes of uploaded files (complete and in progress) one thing may hold; uploads past it are answered 413", num64(&c.FileQuotaPerThing)},
		{"file-max-count", "files one thing may hold; a new one past it is answered 413", num(&c.FileMaxCount)},
		{"upload-min-rate", "bytes per second an artifact or file upload with a Content-Length is given on top of --http-body-timeout (0: the body timeout alone)", num64(&c.UploadMinRate)},
		{"coap-addr", `CoAP over UDP listen address for devices ("" disables); requests need --coap-token-auth to authenticate`, str(&c.CoAPAddr)},
		{"coaps-addr", `CoAP over DTLS listen address for devices, authenticated by client certificate or PSK ("" disables)`, str(&c.CoAPSAddr)},
		{"coap-token-auth", "accept device credentials in a ?token=thing:secret query parameter on plain UDP CoAP (sent in clear: off by default)", boolean(&c.CoAPTokenAuth)},
		{"coap-max-payload", "largest CoAP request body in bytes, a whole block-wise transfer included; larger ones are answered 4.13 and counted", num(&c.CoAPMaxPayload)},
		{"coap-max-observers", "CoAP observations (shadow, commands) one thing may hold at once; more get a plain response without Observe (RFC 7641) and are counted", num(&c.CoAPMaxObservers)},
		{"coap-max-sessions", "concurrent CoAP sessions, each of UDP (one per peer address) and DTLS; a new one beyond it is closed at once and counted", num(&c.CoAPMaxSessions)},
		{"coap-session-idle", "how long a CoAP peer may stay silent before it is forgotten and its observations end", dur(&c.CoAPSessionIdle)},
		{"coap-max-blockwise-transfers", "block-wise CoAP request transfers one session may have in flight whose blocks carry new tokens (RFC 7959 §2.3); a new one beyond it evicts the oldest, counted", num(&c.CoAPMaxBlockwiseTransfers)},
		{"dashboard-max-widgets", "most widgets one dashboard may hold; more are answered 400", num(&c.DashboardMaxWidgets)},
		{"dashboard-max-size", "largest dashboard document (POST/PUT /api/v1/dashboards), in bytes; larger ones are answered 413", num(&c.DashboardMaxSize)},
		{"max-dashboards", "most dashboards on the server; a new one beyond it is answered 409 and counted in mote_dashboards_refused_total", num(&c.MaxDashboards)},
		{"stats-history-interval", "how often the overview's history (GET /api/v1/stats/history) records a point of message rate, connected things and active alarms", dur(&c.StatsHistoryInterval)},
		{"audit-queue", "audit entries waiting to be stored; when full, a change waits --audit-queue-wait for room and is then refused with 503 (never recorded-less), counted", num(&c.AuditQueue)},
		{"audit-queue-wait", "how long a change waits for room in a full audit queue before it is refused with 503", dur(&c.AuditQueueWait)},
		{"audit-max-document", "largest before or after document kept in an audit entry, in bytes after redaction; larger ones are left out and the entry flagged documentsOmitted", num(&c.AuditMaxDocument)},
		{"audit-retention", "how long audit entries are kept; older ones are deleted by a background pruner (hourly)", dur(&c.AuditRetention)},
		{"import-max-size", "largest body of POST /api/v1/things:import, in bytes; larger ones are answered 413", num64(&c.ImportMaxSize)},
		{"import-max-rows", "most rows one POST /api/v1/things:import may hold; more are answered 413", num(&c.ImportMaxRows)},
		{"oidc-issuer", `issuer URL of the OpenID Connect provider for single sign-on to the console ("" turns single sign-on off)`, str(&c.OIDCIssuer)},
		{"oidc-client-id", "client id of Mote registered at the OpenID Connect provider", str(&c.OIDCClientID)},
		{"oidc-client-secret", "client secret of Mote at the OpenID Connect provider (prefer --oidc-client-secret-file or the environment variable)", str(&c.OIDCClientSecret)},
		{"oidc-client-secret-file", "file holding the client secret at the OpenID Connect provider (instead of --oidc-client-secret)", str(&c.OIDCClientSecretFile)},
		{"oidc-redirect-url", `callback URL registered at the provider, ending in /api/v1/auth/oidc/callback ("": derived from each request's scheme and Host; set it behind a proxy)`, str(&c.OIDCRedirectURL)},
		{"oidc-scopes", "scopes requested from the OpenID Connect provider besides openid (comma-separated)", list(&c.OIDCScopes)},
		{"oidc-role-claim", "claim of the ID token whose values --oidc-role-map maps to a role", str(&c.OIDCRoleClaim)},
		{"oidc-role-map", `claim values to roles, e.g. "mote-admins=admin,ops=operator,*=viewer" ("*" matches everyone; the highest match wins)`, str(&c.OIDCRoleMap)},
		{"oidc-default-role", `role of a single sign-on user whom --oidc-role-map does not match: admin, operator or viewer ("": such a sign-in is refused with 403)`, str(&c.OIDCDefaultRole)},
		{"oidc-groups-claim", `claim of the ID token whose values become the user's group scope ("": single sign-on users are not scoped; set: a sign-in without the claim is refused)`, str(&c.OIDCGroupsClaim)},
		{"oidc-button-label", "text of the console's single sign-on button", str(&c.OIDCButtonLabel)},
		{"oidc-discovery-timeout", "deadline of each call to the OpenID Connect provider (discovery, keys, token exchange); past it the sign-in is answered 503", dur(&c.OIDCDiscoveryTimeout)},
		{"oidc-login-timeout", "time a browser has from starting a single sign-on to coming back with it; later callbacks are refused with 401", dur(&c.OIDCLoginTimeout)},
		{"oidc-max-callbacks", "single sign-on callbacks remembered for --oidc-login-timeout so that each is used once (a replay is refused with 401); with that many, further ones are answered 429", num(&c.OIDCMaxCallbacks)},
	}
}

// EnvName returns the environment variable for a flag name: data-dir →
// MOTE_DATA_DIR.
func EnvName(flag string) string {
	return "MOTE_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// Flags registers every setting on fs, with c's current values as
// defaults, plus --config. Call Load after fs.Parse.
func (c *Config) Flags(fs *pflag.FlagSet) {
	for _, f := range fields(c) {
		f.bind(fs, f.name, f.usage+" (env "+EnvName(f.name)+")")
	}
	fs.String("config", "", "YAML config file; keys are the flag names (env MOTE_CONFIG)")
}

// Load applies the config file (from --config or MOTE_CONFIG) and the
// environment to every setting whose flag was not given, then validates.
// lookupEnv is os.LookupEnv in production. A variable set to "" counts as
// set: MOTE_MQTTS_ADDR= disables the TLS listener.
func (c *Config) Load(fs *pflag.FlagSet, lookupEnv func(string) (string, bool)) error {
	path, _ := fs.GetString("config")
	if !fs.Changed("config") {
		path, _ = lookupEnv("MOTE_CONFIG")
	}
	file := map[string]string{}
	if path != "" {
		var err error
		if file, err = readFile(path); err != nil {
			return err
		}
		known := map[string]bool{}
		for _, f := range fields(c) {
			known[f.name] = true
		}
		for k := range file {
			if !known[k] {
				return fmt.Errorf("config file %s: unknown setting %q (settings are the flag names of `mote serve --help`)", path, k)
			}
		}
	}
	for _, f := range fields(c) {
		if fs.Changed(f.name) {
			continue
		}
		src, val, ok := "", "", false
		if v, set := lookupEnv(EnvName(f.name)); set {
			src, val, ok = "environment variable "+EnvName(f.name), v, true
		} else if v, set := file[f.name]; set {
			src, val, ok = "config file "+path+" key "+f.name, v, true
		}
		if !ok {
			continue
		}
		if sv, isSlice := fs.Lookup(f.name).Value.(pflag.SliceValue); isSlice {
			var items []string
			for _, it := range strings.Split(val, ",") {
				if it = strings.TrimSpace(it); it != "" {
					items = append(items, it)
				}
			}
			if err := sv.Replace(items); err != nil {
				return fmt.Errorf("%s: %w", src, err)
			}
			continue
		}
		if err := fs.Set(f.name, val); err != nil {
			return fmt.Errorf("%s: invalid value %q: %w", src, val, err)
		}
	}
	return c.Validate()
}

func readFile(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config file: %w", err)
	}
	var raw map[string]any
	dec := yaml.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&raw); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("config file %s: %w", path, err)
	}
	out := make(map[string]string, len(raw))
	for k, v := range raw {
		switch x := v.(type) {
		case nil:
			out[k] = ""
		case []any:
			parts := make([]string, len(x))
			for i, e := range x {
				parts[i] = fmt.Sprint(e)
			}
			out[k] = strings.Join(parts, ",")
		case map[string]any:
			return nil, fmt.Errorf("config file %s: %s must be a single value or a list", path, k)
		default:
			out[k] = fmt.Sprint(x)
		}
	}
	return out, nil
}

// Validate checks every setting and names the first one that is wrong.
func (c *Config) Validate() error {
	if c.DataDir == "" {
		return errors.New("data-dir: must not be empty")
	}
	if c.Store != "" {
		if err := pgdb.CheckURL(c.Store); err != nil {
			return fmt.Errorf("store: %w", err)
		}
	}
	if err := c.validateCluster(); err != nil {
		return err
	}
	if c.StoreMaxConns < 1 || c.StoreMaxConns > 1000 {
		return fmt.Errorf("store-max-conns: %d is outside 1 to 1000", c.StoreMaxConns)
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("log-level: %q is not one of debug, info, warn, error", c.LogLevel)
	}
	switch c.LogFormat {
	case "auto", "json", "text":
	default:
		return fmt.Errorf("log-format: %q is not one of auto, json, text", c.LogFormat)
	}
	for _, a := range []struct{ name, v string }{{"mqtt-addr", c.MQTTAddr}, {"mqtts-addr", c.MQTTSAddr}, {"http-addr", c.HTTPAddr}, {"https-addr", c.HTTPSAddr}, {"pprof-addr", c.PprofAddr}, {"coap-addr", c.CoAPAddr}, {"coaps-addr", c.CoAPSAddr}} {
		if a.v == "" && a.name != "http-addr" {
			continue
		}
		if _, port, err := net.SplitHostPort(a.v); err != nil {
			return fmt.Errorf("%s: %q is not host:port: %v", a.name, a.v, err)
		} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
			return fmt.Errorf("%s: %q has an invalid port", a.name, a.v)
		}
	}
	c.TLSHosts = trimAll(c.TLSHosts) // flags are not trimmed by pflag
	c.WebSocketOrigins = trimAll(c.WebSocketOrigins)
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return errors.New("tls-cert and tls-key must be given together")
	}
	switch {
	case c.MaxPacketSize < 1024 || c.MaxPacketSize > 256*1024*1024:
		return fmt.Errorf("max-packet-size: %d is outside 1024 to 268435456", c.MaxPacketSize)
	case c.MaxClients < 1:
		return fmt.Errorf("max-clients: must be at least 1")
	case c.MaxSessionExpiry < 0:
		return fmt.Errorf("max-session-expiry: must not be negative")
	case c.MaxOfflineQueue < 1 || c.MaxOfflineQueue > 65535:
		return fmt.Errorf("max-offline-queue: %d is outside 1 to 65535", c.MaxOfflineQueue)
	case c.OutboundQueue < 8 || c.OutboundQueue > 65536:
		return fmt.Errorf("outbound-queue: %d is outside 8 to 65536", c.OutboundQueue)
	case c.ConnectTimeout <= 0:
		return fmt.Errorf("connect-timeout: must be positive")
	case c.MaxClientIDLength < 23 || c.MaxClientIDLength > MaxClientIDLength:
		return fmt.Errorf("max-client-id-length: %d is outside 23 to %d", c.MaxClientIDLength, MaxClientIDLength)
	case c.MaxKeepalive < time.Second || c.MaxKeepalive > 65535*time.Second || c.MaxKeepalive%time.Second != 0:
		return fmt.Errorf("max-keepalive: %v is not a whole number of seconds from 1s to 65535s (MQTT's largest keep-alive)", c.MaxKeepalive)
	case c.CloseLinger < 0 || c.CloseLinger > 10*time.Second:
		return fmt.Errorf("close-linger: %v is outside 0 to 10s", c.CloseLinger)
	case c.BackpressureWait < 0 || c.BackpressureWait > 10*time.Second:
		return fmt.Errorf("backpressure-wait: must be between 0 and 10s")
	case c.ShadowMaxSize < 1024 || c.ShadowMaxSize > 1<<20:
		return fmt.Errorf("shadow-max-size: %d is outside 1024 to 1048576", c.ShadowMaxSize)
	case c.DeviceRateLimit < 0 || c.DeviceRateLimit > 1e6 || c.DeviceRateLimit != c.DeviceRateLimit:
		return fmt.Errorf("device-rate-limit: %v is outside 0 to 1000000", c.DeviceRateLimit)
	case c.DeviceRateBurst < 0 || c.DeviceRateBurst > 1_000_000:
		return fmt.Errorf("device-rate-burst: %d is outside 0 to 1000000", c.DeviceRateBurst)
	case c.MaxRetainedPerThing < 0 || c.MaxRetainedPerThing > 10_000_000:
		return fmt.Errorf("max-retained-per-thing: %d is outside 0 to 10000000", c.MaxRetainedPerThing)
	case c.MaxRetainedBytesPerThing < 0 || c.MaxRetainedBytesPerThing > 1<<40:
		return fmt.Errorf("max-retained-bytes-per-thing: %d is outside 0 to 1099511627776", c.MaxRetainedBytesPerThing)
	case c.MaxRetainedBytes < 0 || c.MaxRetainedBytes > 1<<40:
		return fmt.Errorf("max-retained-bytes: %d is outside 0 to 1099511627776", c.MaxRetainedBytes)
	case c.SlowSubscriberBudget < 0 || c.SlowSubscriberBudget > time.Hour:
		return fmt.Errorf("slow-subscriber-budget: must be between 0 and 1h")
	case c.PresenceFlush <= 0 || c.PresenceFlush > time.Minute:
		return fmt.Errorf("presence-flush: must be between 1ns and 1m")
	case c.LastSeenInterval <= 0 || c.LastSeenInterval > time.Hour:
		return fmt.Errorf("last-seen-interval: must be between 1ns and 1h")
	case c.AzureQueueSize < 1 || c.AzureQueueSize > 10_000:
		return fmt.Errorf("azure-queue-size: %d is outside 1 to 10000", c.AzureQueueSize)
	case c.AzureRequestTimeout < time.Millisecond || c.AzureRequestTimeout > time.Minute:
		return fmt.Errorf("azure-request-timeout: must be between 1ms and 1m")
	case c.TelemetryRetention != 0 && (c.TelemetryRetention < time.Hour || c.TelemetryRetention > MaxTelemetryRetention):
		return fmt.Errorf("telemetry-retention: %s is outside 1h to %s (or 0 to keep telemetry forever)", c.TelemetryRetention, MaxTelemetryRetention)
	case c.RuleActionQueue < 1 || c.RuleActionQueue > 1_000_000:
		return fmt.Errorf("rule-action-queue: %d is outside 1 to 1000000", c.RuleActionQueue)
	case c.RuleActionConcurrency < 1 || c.RuleActionConcurrency > 1000:
		return fmt.Errorf("rule-action-concurrency: %d is outside 1 to 1000", c.RuleActionConcurrency)
	case c.RuleActionBatch < 1 || c.RuleActionBatch > 10_000:
		return fmt.Errorf("rule-action-batch: %d is outside 1 to 10000", c.RuleActionBatch)
	case c.RuleWebhookTimeout < time.Millisecond || c.RuleWebhookTimeout > time.Minute:
		return fmt.Errorf("rule-webhook-timeout: %s is outside 1ms to 1m", c.RuleWebhookTimeout)
	case c.RuleWebhookRetries < 0 || c.RuleWebhookRetries > 10:
		return fmt.Errorf("rule-webhook-retries: %d is outside 0 to 10", c.RuleWebhookRetries)
	case c.RuleBreakerFailures < 1 || c.RuleBreakerFailures > 1_000_000:
		return fmt.Errorf("rule-breaker-failures: %d is outside 1 to 1000000", c.RuleBreakerFailures)
	case c.RuleBreakerCooldown < time.Millisecond || c.RuleBreakerCooldown > time.Hour:
		return fmt.Errorf("rule-breaker-cooldown: %s is outside 1ms to 1h", c.RuleBreakerCooldown)
	case c.RuleWindowMaxGroups < 1 || c.RuleWindowMaxGroups > 100_000_000:
		return fmt.Errorf("rule-window-max-groups: %d is outside 1 to 100000000", c.RuleWindowMaxGroups)
	case c.RuleWindowSaveInterval < time.Second || c.RuleWindowSaveInterval > time.Hour:
		return fmt.Errorf("rule-window-save-interval: %s is outside 1s to 1h", c.RuleWindowSaveInterval)
	case c.BridgeRateLimit < 1 || c.BridgeRateLimit > 1_000_000:
		return fmt.Errorf("bridge-rate-limit: %v is outside 1 to 1000000", c.BridgeRateLimit)
	case len(c.Bridges) > bridge.MaxBridges:
		return fmt.Errorf("bridge: at most %d bridges", bridge.MaxBridges)
	}
	names := map[string]bool{}
	for i, spec := range c.Bridges {
		b, err := bridge.Parse(spec)
		if err != nil {
			return fmt.Errorf("bridge #%d: %v", i+1, err)
		}
		if names[b.Name] {
			return fmt.Errorf("bridge #%d: another bridge is named %q", i+1, b.Name)
		}
		names[b.Name] = true
	}
	if err := c.validateUploads(); err != nil {
		return err
	}
	if err := c.validateAlarms(); err != nil {
		return err
	}
	if err := c.validateCredentials(); err != nil {
		return err
	}
	if err := c.validateProvisioning(); err != nil {
		return err
	}
	if err := c.validateOIDC(); err != nil {
		return err
	}
	if err := c.validateCoAP(); err != nil {
		return err
	}
	if err := c.validateDashboards(); err != nil {
		return err
	}
	return c.validateHTTP()
}

// validateUploads checks the artifact and file settings.
func (c *Config) validateUploads() error {
	switch {
	case c.ArtifactMaxSize < 1 || c.ArtifactMaxSize > 64<<30:
		return fmt.Errorf("artifact-max-size: %d is outside 1 to 68719476736 (64 GiB)", c.ArtifactMaxSize)
	case c.ArtifactURLTTL < time.Minute || c.ArtifactURLTTL > 7*24*time.Hour:
		return fmt.Errorf("artifact-url-ttl: %s is outside 1m to 168h", c.ArtifactURLTTL)
	case c.ArtifactURLBase != "" && !strings.HasPrefix(c.ArtifactURLBase, "http://") && !strings.HasPrefix(c.ArtifactURLBase, "https://"):
		return fmt.Errorf("artifact-url-base: %q must start with http:// or https://", c.ArtifactURLBase)
	case c.FileMaxSize < 1 || c.FileMaxSize > 16<<30:
		return fmt.Errorf("file-max-size: %d is outside 1 to 17179869184 (16 GiB)", c.FileMaxSize)
	case c.FileQuotaPerThing < 1 || c.FileQuotaPerThing > 1<<40:
		return fmt.Errorf("file-quota-per-thing: %d is outside 1 to 1099511627776 (1 TiB)", c.FileQuotaPerThing)
	case c.FileMaxCount < 1 || c.FileMaxCount > 100_000:
		return fmt.Errorf("file-max-count: %d is outside 1 to 100000", c.FileMaxCount)
	case c.UploadMinRate < 0 || c.UploadMinRate > 1<<30:
		return fmt.Errorf("upload-min-rate: %d is outside 0 to 1073741824", c.UploadMinRate)
	}
	return nil
}

// validateCoAP checks the CoAP limits.
func (c *Config) validateCoAP() error {
	switch {
	case c.CoAPMaxPayload < 64 || c.CoAPMaxPayload > 16<<20:
		return fmt.Errorf("coap-max-payload: %d is outside 64 to 16777216", c.CoAPMaxPayload)
	case c.CoAPMaxObservers < 1 || c.CoAPMaxObservers > 1000:
		return fmt.Errorf("coap-max-observers: %d is outside 1 to 1000", c.CoAPMaxObservers)
	case c.CoAPMaxSessions < 1 || c.CoAPMaxSessions > 10_000_000:
		return fmt.Errorf("coap-max-sessions: %d is outside 1 to 10000000", c.CoAPMaxSessions)
	case c.CoAPSessionIdle < time.Second || c.CoAPSessionIdle > 24*time.Hour:
		return fmt.Errorf("coap-session-idle: %s is outside 1s to 24h", c.CoAPSessionIdle)
	case c.CoAPMaxBlockwiseTransfers < 1 || c.CoAPMaxBlockwiseTransfers > 1000:
		return fmt.Errorf("coap-max-blockwise-transfers: %d is outside 1 to 1000", c.CoAPMaxBlockwiseTransfers)
	case c.AuditQueue < 1 || c.AuditQueue > 10_000_000:
		return fmt.Errorf("audit-queue: %d is outside 1 to 10000000", c.AuditQueue)
	case c.AuditQueueWait < time.Millisecond || c.AuditQueueWait > time.Minute:
		return fmt.Errorf("audit-queue-wait: %s is outside 1ms to 1m", c.AuditQueueWait)
	case c.AuditMaxDocument < 1 || c.AuditMaxDocument > 1<<20:
		return fmt.Errorf("audit-max-document: %d is outside 1 to 1048576 (1 MiB)", c.AuditMaxDocument)
	case c.AuditRetention < time.Hour || c.AuditRetention > 100*365*24*time.Hour:
		return fmt.Errorf("audit-retention: %s is outside 1h to 100 years", c.AuditRetention)
	case c.ImportMaxSize < 1 || c.ImportMaxSize > 16<<30:
		return fmt.Errorf("import-max-size: %d is outside 1 to 17179869184 (16 GiB)", c.ImportMaxSize)
	case c.ImportMaxRows < 1 || c.ImportMaxRows > 10_000_000:
		return fmt.Errorf("import-max-rows: %d is outside 1 to 10000000", c.ImportMaxRows)
	}
	return nil
}

// validateHTTP checks the HTTP server limits, the long-poll cap and the
// IP filter lists.
func (c *Config) validateHTTP() error {
	switch {
	case c.HTTPReadHeaderTimeout < 100*time.Millisecond || c.HTTPReadHeaderTimeout > 10*time.Minute:
		return fmt.Errorf("http-read-header-timeout: %s is outside 100ms to 10m", c.HTTPReadHeaderTimeout)
	case c.HTTPBodyTimeout < 100*time.Millisecond || c.HTTPBodyTimeout > time.Hour:
		return fmt.Errorf("http-body-timeout: %s is outside 100ms to 1h", c.HTTPBodyTimeout)
	case c.HTTPIdleTimeout < time.Second || c.HTTPIdleTimeout > time.Hour:
		return fmt.Errorf("http-idle-timeout: %s is outside 1s to 1h", c.HTTPIdleTimeout)
	case c.HTTPMaxHeaderBytes < 4096 || c.HTTPMaxHeaderBytes > 16<<20:
		return fmt.Errorf("http-max-header-bytes: %d is outside 4096 to 16777216", c.HTTPMaxHeaderBytes)
	case c.HTTPMaxConns < 0 || c.HTTPMaxConns > 10_000_000:
		return fmt.Errorf("http-max-conns: %d is outside 0 to 10000000 (0: half the open-file limit)", c.HTTPMaxConns)
	case c.MaxLongPollsPerDevice < 1 || c.MaxLongPollsPerDevice > 1000:
		return fmt.Errorf("max-long-polls-per-device: %d is outside 1 to 1000", c.MaxLongPollsPerDevice)
	case c.LoginMaxFailures < 1 || c.LoginMaxFailures > 1000:
		return fmt.Errorf("login-max-failures: %d is outside 1 to 1000", c.LoginMaxFailures)
	case c.ScopeMaxGroups < 1 || c.ScopeMaxGroups > 1000:
		return fmt.Errorf("scope-max-groups: %d is outside 1 to 1000", c.ScopeMaxGroups)
	case c.PasswordCost < 4 || c.PasswordCost > 31:
		return fmt.Errorf("password-cost: %d is outside 4 to 31", c.PasswordCost)
	case c.JobQueue < 1 || c.JobQueue > 10_000_000:
		return fmt.Errorf("job-queue: %d is outside 1 to 10000000", c.JobQueue)
	case c.JobWorkers < 1 || c.JobWorkers > 1024:
		return fmt.Errorf("job-workers: %d is outside 1 to 1024", c.JobWorkers)
	case c.JobSchedulerTick < 10*time.Millisecond || c.JobSchedulerTick > time.Minute:
		return fmt.Errorf("job-scheduler-tick: %s is outside 10ms to 1m", c.JobSchedulerTick)
	case c.JobMaxTargets < 1 || c.JobMaxTargets > 10_000_000:
		return fmt.Errorf("job-max-targets: %d is outside 1 to 10000000", c.JobMaxTargets)
	case c.JobMaxDocumentSize < 1024 || c.JobMaxDocumentSize > 1<<20:
		return fmt.Errorf("job-max-document-size: %d is outside 1024 to 1048576", c.JobMaxDocumentSize)
	case c.FleetQueryMaxLength < 16 || c.FleetQueryMaxLength > 1<<20:
		return fmt.Errorf("fleet-query-max-length: %d is outside 16 to 1048576", c.FleetQueryMaxLength)
	case c.FleetQueryMaxDepth < 1 || c.FleetQueryMaxDepth > 1000:
		return fmt.Errorf("fleet-query-max-depth: %d is outside 1 to 1000", c.FleetQueryMaxDepth)
	case c.FleetIndexQueue < 1 || c.FleetIndexQueue > 10_000_000:
		return fmt.Errorf("fleet-index-queue: %d is outside 1 to 10000000", c.FleetIndexQueue)
	case c.MaxDynamicGroups < 1 || c.MaxDynamicGroups > 10_000:
		return fmt.Errorf("max-dynamic-groups: %d is outside 1 to 10000", c.MaxDynamicGroups)
	case c.FleetGroupRecompute < time.Second || c.FleetGroupRecompute > 24*time.Hour:
		return fmt.Errorf("fleet-group-recompute: %s is outside 1s to 24h", c.FleetGroupRecompute)
	case c.FleetIndexResync < 0 || c.FleetIndexResync > 0 && c.FleetIndexResync < time.Minute || c.FleetIndexResync > 7*24*time.Hour:
		return fmt.Errorf("fleet-index-resync: %s is outside 1m to 168h (0: never)", c.FleetIndexResync)
	case c.MaxProfiles < 1 || c.MaxProfiles > 10_000:
		return fmt.Errorf("max-profiles: %d is outside 1 to 10000", c.MaxProfiles)
	case c.ProfileMaxSize < 64 || c.ProfileMaxSize > 1<<20:
		return fmt.Errorf("profile-max-size: %d is outside 64 to 1048576", c.ProfileMaxSize)
	case c.ProfileQueue < 1 || c.ProfileQueue > 10_000_000:
		return fmt.Errorf("profile-queue: %d is outside 1 to 10000000", c.ProfileQueue)
	case c.ProfileReconcile < time.Second || c.ProfileReconcile > 24*time.Hour:
		return fmt.Errorf("profile-reconcile: %s is outside 1s to 24h", c.ProfileReconcile)
	}
	for _, l := range []struct {
		name  string
		items *[]string
	}{{"device-ip-allow", &c.DeviceIPAllow}, {"device-ip-deny", &c.DeviceIPDeny}, {"api-ip-allow", &c.APIIPAllow}, {"api-ip-deny", &c.APIIPDeny}} {
		*l.items = trimAll(*l.items)
		if err := ipfilter.ParseList(*l.items); err != nil {
			return fmt.Errorf("%s: %w", l.name, err)
		}
	}
	return nil
}

// trimAll trims white space around each item and drops empty ones.
func trimAll(items []string) []string {
	out := items[:0:0]
	for _, it := range items {
		if it = strings.TrimSpace(it); it != "" {
			out = append(out, it)
		}
	}
	return out
}

// validateDashboards checks the dashboard and stats history settings.
func (c *Config) validateDashboards() error {
	switch {
	case c.DashboardMaxWidgets < 1 || c.DashboardMaxWidgets > 1000:
		return fmt.Errorf("dashboard-max-widgets: %d is outside 1 to 1000", c.DashboardMaxWidgets)
	case c.DashboardMaxSize < 1024 || c.DashboardMaxSize > 1<<20:
		return fmt.Errorf("dashboard-max-size: %d is outside 1024 to 1048576", c.DashboardMaxSize)
	case c.MaxDashboards < 1 || c.MaxDashboards > 1_000_000:
		return fmt.Errorf("max-dashboards: %d is outside 1 to 1000000", c.MaxDashboards)
	case c.StatsHistoryInterval < 100*time.Millisecond || c.StatsHistoryInterval > time.Hour:
		return fmt.Errorf("stats-history-interval: %s is outside 100ms to 1h", c.StatsHistoryInterval)
	}
	return nil
}

// validateAlarms checks the alarm settings.
func (c *Config) validateAlarms() error {
	c.AlarmSMTPTo = trimAll(c.AlarmSMTPTo)
	c.PositionKeys = trimAll(c.PositionKeys)
	if len(c.PositionKeys) != 2 || c.PositionKeys[0] == c.PositionKeys[1] {
		return fmt.Errorf("position-keys: %q must be two different keys, latitude first (e.g. lat,lon)", strings.Join(c.PositionKeys, ","))
	}
	for _, k := range c.PositionKeys {
		if k == "" || len(k) > 64 || strings.ContainsAny(k, "\"\\\x00") {
			return fmt.Errorf("position-keys: %q is not a key (1 to 64 characters, no quotes or backslashes)", k)
		}
	}
	switch {
	case c.AlarmMaxOpen < 1 || c.AlarmMaxOpen > 10_000_000:
		return fmt.Errorf("alarm-max-open: %d is outside 1 to 10000000", c.AlarmMaxOpen)
	case c.AlarmQueue < 1 || c.AlarmQueue > 1_000_000:
		return fmt.Errorf("alarm-queue: %d is outside 1 to 1000000", c.AlarmQueue)
	case c.AlarmBatch < 1 || c.AlarmBatch > 10_000:
		return fmt.Errorf("alarm-batch: %d is outside 1 to 10000", c.AlarmBatch)
	case c.AlarmNotifyThrottle < 0 || c.AlarmNotifyThrottle > 24*time.Hour:
		return fmt.Errorf("alarm-notify-throttle: %s is outside 0 to 24h", c.AlarmNotifyThrottle)
	case c.AlarmSMTPTimeout < 100*time.Millisecond || c.AlarmSMTPTimeout > 5*time.Minute:
		return fmt.Errorf("alarm-smtp-timeout: %s is outside 100ms to 5m", c.AlarmSMTPTimeout)
	case c.AnalyticsQueue < 1 || c.AnalyticsQueue > 1_000_000:
		return fmt.Errorf("analytics-queue: %d is outside 1 to 1000000", c.AnalyticsQueue)
	case c.AnalyticsMaxStates < 1 || c.AnalyticsMaxStates > 100_000_000:
		return fmt.Errorf("analytics-max-states: %d is outside 1 to 100000000", c.AnalyticsMaxStates)
	case c.AnalyticsSaveInterval < 100*time.Millisecond || c.AnalyticsSaveInterval > time.Hour:
		return fmt.Errorf("analytics-save-interval: %s is outside 100ms to 1h", c.AnalyticsSaveInterval)
	case c.TypeModelMaxSize < 1024 || c.TypeModelMaxSize > 16<<20:
		return fmt.Errorf("type-model-max-size: %d is outside 1024 to 16777216", c.TypeModelMaxSize)
	case c.ModelCheckQueue < 1 || c.ModelCheckQueue > 1_000_000:
		return fmt.Errorf("model-check-queue: %d is outside 1 to 1000000", c.ModelCheckQueue)
	}
	if c.MapTileURL != "" {
		u, err := url.Parse(c.MapTileURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("map-tile-url: want an http or https URL template, or empty")
		}
		for _, p := range []string{"{z}", "{x}", "{y}"} {
			if !strings.Contains(c.MapTileURL, p) {
				return fmt.Errorf("map-tile-url: %s is missing", p)
			}
		}
	}
	if c.AlarmWebhookURL != "" {
		u, err := url.Parse(c.AlarmWebhookURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("alarm-webhook-url: want an http or https URL")
		}
	}
	if c.AlarmSMTPAddr != "" {
		if _, _, err := net.SplitHostPort(c.AlarmSMTPAddr); err != nil {
			return fmt.Errorf("alarm-smtp-addr: %q is not host:port", c.AlarmSMTPAddr)
		}
		if c.AlarmSMTPFrom == "" || len(c.AlarmSMTPTo) == 0 {
			return fmt.Errorf("alarm-smtp-addr: needs alarm-smtp-from and alarm-smtp-to")
		}
	}
	return nil
}

// validateOIDC checks the single sign-on settings.
func (c *Config) validateOIDC() error {
	switch {
	case c.OIDCDiscoveryTimeout < 100*time.Millisecond || c.OIDCDiscoveryTimeout > 5*time.Minute:
		return fmt.Errorf("oidc-discovery-timeout: %s is outside 100ms to 5m", c.OIDCDiscoveryTimeout)
	case c.OIDCLoginTimeout < 10*time.Second || c.OIDCLoginTimeout > time.Hour:
		return fmt.Errorf("oidc-login-timeout: %s is outside 10s to 1h", c.OIDCLoginTimeout)
	case c.OIDCMaxCallbacks < 1 || c.OIDCMaxCallbacks > 10_000_000:
		return fmt.Errorf("oidc-max-callbacks: %d is outside 1 to 10000000", c.OIDCMaxCallbacks)
	case len(c.OIDCButtonLabel) > 100:
		return fmt.Errorf("oidc-button-label: longer than 100 bytes")
	}
	c.OIDCScopes = trimAll(c.OIDCScopes)
	m, err := rolemap.Parse(c.OIDCRoleMap)
	if err != nil {
		return fmt.Errorf("oidc-role-map: %v", err)
	}
	switch c.OIDCDefaultRole {
	case "", "admin", "operator", "viewer":
	default:
		return fmt.Errorf("oidc-default-role: %q is not admin, operator, viewer or empty", c.OIDCDefaultRole)
	}
	if c.OIDCIssuer == "" {
		return nil
	}
	u, err := url.Parse(c.OIDCIssuer)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("oidc-issuer: want an http or https URL without query, or empty")
	}
	switch {
	case c.OIDCClientID == "":
		return fmt.Errorf("oidc-client-id: required with --oidc-issuer")
	case c.OIDCClientSecret != "" && c.OIDCClientSecretFile != "":
		return fmt.Errorf("oidc-client-secret-file: give it or --oidc-client-secret, not both")
	case m.Len() == 0 && c.OIDCDefaultRole == "":
		return fmt.Errorf("oidc-role-map: with --oidc-issuer, set it or --oidc-default-role, or nobody can sign in")
	case m.Len() > 0 && c.OIDCRoleClaim == "" && !onlyWildcard(c.OIDCRoleMap):
		return fmt.Errorf("oidc-role-claim: required by --oidc-role-map")
	}
	if c.OIDCRedirectURL != "" {
		r, err := url.Parse(c.OIDCRedirectURL)
		if err != nil || (r.Scheme != "http" && r.Scheme != "https") || r.Host == "" || !strings.HasSuffix(r.Path, "/api/v1/auth/oidc/callback") {
			return fmt.Errorf("oidc-redirect-url: want an http or https URL ending in /api/v1/auth/oidc/callback")
		}
	}
	return nil
}

// validateCredentials checks the credential rotation and CRL settings.
func (c *Config) validateCredentials() error {
	switch {
	case c.CredentialRotationMaxWindow < time.Minute || c.CredentialRotationMaxWindow > 365*24*time.Hour:
		return fmt.Errorf("credential-rotation-max-window: %s is outside 1m to 8760h", c.CredentialRotationMaxWindow)
	case c.CredentialRotationWindow < 0 || c.CredentialRotationWindow > c.CredentialRotationMaxWindow:
		return fmt.Errorf("credential-rotation-window: %s is outside 0s to --credential-rotation-max-window (%s)", c.CredentialRotationWindow, c.CredentialRotationMaxWindow)
	case c.DeviceRotationLimit < 1 || c.DeviceRotationLimit > 3600:
		return fmt.Errorf("device-rotation-limit: %d is outside 1 to 3600", c.DeviceRotationLimit)
	case c.CRLValidity < time.Hour || c.CRLValidity > 365*24*time.Hour:
		return fmt.Errorf("crl-validity: %s is outside 1h to 8760h", c.CRLValidity)
	}
	return nil
}

// onlyWildcard reports whether a role map has the "*" entry alone.
func onlyWildcard(s string) bool {
	k, _, _ := strings.Cut(strings.TrimSpace(s), "=")
	return strings.TrimSpace(k) == rolemap.Wildcard && !strings.Contains(s, ",")
}

// validateProvisioning checks the provisioning settings.
func (c *Config) validateProvisioning() error {
	switch {
	case c.ProvisioningRateLimit <= 0 || c.ProvisioningRateLimit > 100_000:
		return fmt.Errorf("provisioning-rate-limit: %g is outside (0, 100000]", c.ProvisioningRateLimit)
	case c.ProvisioningRateBurst < 1 || c.ProvisioningRateBurst > 100_000:
		return fmt.Errorf("provisioning-rate-burst: %d is outside 1 to 100000", c.ProvisioningRateBurst)
	case c.ProvisioningMaxEnrollments < 1 || c.ProvisioningMaxEnrollments > 1000:
		return fmt.Errorf("provisioning-max-enrollments: %d is outside 1 to 1000", c.ProvisioningMaxEnrollments)
	case c.ProvisioningMaxPendingCerts < 1 || c.ProvisioningMaxPendingCerts > 1_000_000:
		return fmt.Errorf("provisioning-max-pending-certificates: %d is outside 1 to 1000000", c.ProvisioningMaxPendingCerts)
	case c.ProvisioningPendingTTL < time.Second || c.ProvisioningPendingTTL > 24*time.Hour:
		return fmt.Errorf("provisioning-pending-ttl: %s is outside 1s to 24h", c.ProvisioningPendingTTL)
	case c.ProvisioningMaxClaimTTL < time.Minute || c.ProvisioningMaxClaimTTL > 10*365*24*time.Hour:
		return fmt.Errorf("provisioning-max-claim-ttl: %s is outside 1m to 87600h", c.ProvisioningMaxClaimTTL)
	case c.ProvisioningClaimTTL < time.Minute || c.ProvisioningClaimTTL > c.ProvisioningMaxClaimTTL:
		return fmt.Errorf("provisioning-claim-ttl: %s is outside 1m to --provisioning-max-claim-ttl (%s)", c.ProvisioningClaimTTL, c.ProvisioningMaxClaimTTL)
	case c.ProvisioningVerificationTTL < time.Minute || c.ProvisioningVerificationTTL > 7*24*time.Hour:
		return fmt.Errorf("provisioning-verification-ttl: %s is outside 1m to 168h", c.ProvisioningVerificationTTL)
	case c.ProvisioningQueue < 1 || c.ProvisioningQueue > 1000:
		return fmt.Errorf("provisioning-queue: %d is outside 1 to 1000", c.ProvisioningQueue)
	case c.ProvisioningRequestTimeout < 100*time.Millisecond || c.ProvisioningRequestTimeout > 5*time.Minute:
		return fmt.Errorf("provisioning-request-timeout: %s is outside 100ms to 5m", c.ProvisioningRequestTimeout)
	}
	if c.ProvisioningEndpoint != "" {
		u, err := url.Parse(c.ProvisioningEndpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("provisioning-endpoint: want an http or https URL")
		}
	}
	return nil
}

// validateCluster checks the cluster settings: a cluster needs the shared
// PostgreSQL store and a node id.
func (c *Config) validateCluster() error {
	if c.ClusterRelayQueue < 1 || c.ClusterRelayQueue > 10_000_000 {
		return fmt.Errorf("cluster-relay-queue: %d is outside 1 to 10000000", c.ClusterRelayQueue)
	}
	switch {
	case c.ClusterReplicas < 1 || c.ClusterReplicas > 5:
		return fmt.Errorf("cluster-replicas: %d is outside 1 to 5", c.ClusterReplicas)
	case c.ClusterIngestMaxBytes < 1<<20 || c.ClusterIngestMaxBytes > 1<<40:
		return fmt.Errorf("cluster-ingest-max-bytes: %d is outside 1048576 (1 MiB) to 1099511627776 (1 TiB)", c.ClusterIngestMaxBytes)
	case c.ClusterIngestTimeout < 100*time.Millisecond || c.ClusterIngestTimeout > time.Minute:
		return fmt.Errorf("cluster-ingest-timeout: %s is outside 100ms to 1m", c.ClusterIngestTimeout)
	case c.ClusterIngestPending < 1 || c.ClusterIngestPending > 1_000_000:
		return fmt.Errorf("cluster-ingest-pending: %d is outside 1 to 1000000", c.ClusterIngestPending)
	case c.ClusterRelayMaxBytes < 1<<20 || c.ClusterRelayMaxBytes > 1<<40:
		return fmt.Errorf("cluster-relay-max-bytes: %d is outside 1048576 (1 MiB) to 1099511627776 (1 TiB)", c.ClusterRelayMaxBytes)
	case c.ClusterRelayMaxAge < time.Second || c.ClusterRelayMaxAge > 365*24*time.Hour:
		return fmt.Errorf("cluster-relay-max-age: %s is outside 1s to 8760h", c.ClusterRelayMaxAge)
	case c.ClusterRelayBatch < 1 || c.ClusterRelayBatch > 10_000:
		return fmt.Errorf("cluster-relay-batch: %d is outside 1 to 10000", c.ClusterRelayBatch)
	case c.ClusterWillsMaxBytes < 1<<20 || c.ClusterWillsMaxBytes > 1<<40:
		return fmt.Errorf("cluster-wills-max-bytes: %d is outside 1048576 (1 MiB) to 1099511627776 (1 TiB)", c.ClusterWillsMaxBytes)
	case c.ClusterWillQueue < 1 || c.ClusterWillQueue > 1_000_000:
		return fmt.Errorf("cluster-will-queue: %d is outside 1 to 1000000", c.ClusterWillQueue)
	case c.ClusterMethodCalls < 1 || c.ClusterMethodCalls > 1_000_000:
		return fmt.Errorf("cluster-method-calls: %d is outside 1 to 1000000", c.ClusterMethodCalls)
	case c.ClusterLeaseInterval < 100*time.Millisecond || c.ClusterLeaseInterval > time.Minute:
		return fmt.Errorf("cluster-lease-interval: %s is outside 100ms to 1m", c.ClusterLeaseInterval)
	case c.ClusterLeaseTimeout < 2*c.ClusterLeaseInterval || c.ClusterLeaseTimeout > 10*time.Minute:
		return fmt.Errorf("cluster-lease-timeout: %s must be at least twice --cluster-lease-interval (%s) and at most 10m", c.ClusterLeaseTimeout, c.ClusterLeaseInterval)
	case c.ClusterHandoverTimeout < 100*time.Millisecond || c.ClusterHandoverTimeout > time.Minute:
		return fmt.Errorf("cluster-handover-timeout: %s is outside 100ms to 1m", c.ClusterHandoverTimeout)
	case c.ClusterHandoverMaxMessages < 1 || c.ClusterHandoverMaxMessages > 1_000_000:
		return fmt.Errorf("cluster-handover-max-messages: %d is outside 1 to 1000000", c.ClusterHandoverMaxMessages)
	case c.ClusterSessionReplayMax < 1 || c.ClusterSessionReplayMax > 1_000_000:
		return fmt.Errorf("cluster-session-replay-max: %d is outside 1 to 1000000", c.ClusterSessionReplayMax)
	case c.ClusterSessionReplayTimeout < 100*time.Millisecond || c.ClusterSessionReplayTimeout > time.Minute:
		return fmt.Errorf("cluster-session-replay-timeout: %s is outside 100ms to 1m", c.ClusterSessionReplayTimeout)
	case c.ClusterClientIDLookups < 1 || c.ClusterClientIDLookups > 1_000_000:
		return fmt.Errorf("cluster-client-id-lookups: %d is outside 1 to 1000000", c.ClusterClientIDLookups)
	}
	if c.Cluster == "" {
		if c.NodeID != "" || c.ClusterTLSCA != "" || c.ClusterCreds != "" || c.ClusterUser != "" || c.ClusterPassword != "" {
			return errors.New("cluster: node-id and the cluster-* settings need --cluster")
		}
		return nil
	}
	for u := range strings.SplitSeq(c.Cluster, ",") {
		p, err := url.Parse(strings.TrimSpace(u))
		if err != nil || (p.Scheme != "nats" && p.Scheme != "tls") || p.Host == "" {
			return fmt.Errorf("cluster: want nats://host:port URLs, comma-separated")
		}
	}
	if c.Store == "" {
		return errors.New("cluster: a cluster needs the shared PostgreSQL store: set --store postgres://...")
	}
	if c.NodeID == "" {
		return errors.New("node-id: a cluster node needs a --node-id")
	}
	if len(c.NodeID) > 64 || strings.IndexFunc(c.NodeID, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_')
	}) >= 0 {
		return fmt.Errorf("node-id: %q: want 1 to 64 letters, digits, '-' or '_'", c.NodeID)
	}
	if c.ClusterCreds != "" && (c.ClusterUser != "" || c.ClusterPassword != "") {
		return errors.New("cluster-creds: use either a credentials file or cluster-user and cluster-password")
	}
	if (c.ClusterUser == "") != (c.ClusterPassword == "") {
		return errors.New("cluster-user: needs cluster-password (and the other way round)")
	}
	return nil
}
