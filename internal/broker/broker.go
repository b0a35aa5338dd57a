// Package broker is Mote's MQTT broker: mochi-mqtt (the only place that
// imports it) wrapped with device authentication, per-device policies,
// presence, backpressure, limits and metrics. MQTT 3.1.1 and 5.0 over TCP,
// TLS and WebSocket.
//
// The publish path only enqueues: authorization uses a policy evaluator
// compiled when the client connected (and recompiled off the hot path when
// policies change), and messages are handed to Options.OnMessage, which
// must not block.
package broker

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/moteiot/mote/internal/auth"
	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/policy"
	"github.com/moteiot/mote/internal/store"
)

// Authenticator decides who a connecting device is.
type Authenticator interface {
	Secret(ctx context.Context, username, secret string) (auth.Identity, error)
	Certificate(ctx context.Context, cert *x509.Certificate) (auth.Identity, error)
}

// PolicySource returns the policy documents that apply to a thing.
type PolicySource interface {
	PoliciesFor(ctx context.Context, thing string) ([]policy.Document, error)
}

// Journal is the durable queue of acknowledged messages; *ingest.Journal
// satisfies it.
type Journal interface {
	Wants(topic string) bool
	// Append makes m durable and returns its sequence number (it waits
	// for the fsync).
	Append(m core.Message) (seq uint64, err error)
	// AppendAsync queues m and returns its sequence number at once, and a
	// channel that receives nil once it is on disk (or the error).
	AppendAsync(m core.Message) (seq uint64, durable <-chan error, err error)
}

// PresenceRecorder keeps connection state in the registry.
type PresenceRecorder interface {
	RecordPresence(ctx context.Context, changes []store.Presence) error
}

// Options configure a Broker. Zero durations and sizes take the defaults
// of config.Default.
type Options struct {
	MQTTAddr  string      // TCP listen address; "" disables
	MQTTSAddr string      // TLS listen address; "" disables
	TLSConfig *tls.Config // for MQTTSAddr; client certificates are verified by the Authenticator

	Auth     Authenticator
	Policies PolicySource
	Presence PresenceRecorder // may be nil
	// OnMessage receives every message a device published that was
	// accepted. It runs on the publisher's goroutine and must not block.
	OnMessage func(core.Message)
	// Deliveries, if set, hears about messages sent with Deliver
	// (commands): subscriptions of devices and their acknowledgements.
	Deliveries DeliveryTracker
	// Journal, if set, makes QoS 1/2 messages it wants durable before
	// they are acknowledged (package ingest; see durable.go).
	Journal Journal
	// Retained, if set, keeps retained messages across restarts
	// (retained.go); nil keeps them in memory only.
	Retained store.RetainedStore
	// Sessions, if set, keeps persistent sessions (subscriptions and the
	// messages queued for them) across restarts (sessions.go); nil keeps
	// them in memory only.
	Sessions store.SessionStore

	MaxPacketSize    int
	MaxClients       int
	MaxSessionExpiry time.Duration
	MaxOfflineQueue  int
	OutboundQueue    int
	ConnectTimeout   time.Duration
	BackpressureWait time.Duration
	PresenceFlush    time.Duration
	WebSocketOrigins []string
	// DeviceRateLimit is the messages per second each thing may publish
	// (MQTT and HTTP together); 0 turns the limit off. DeviceRateBurst is
	// how many it may send at once (0: the rate, at least 1).
	DeviceRateLimit float64
	DeviceRateBurst int
	// MaxClientIDLength is the longest client id accepted, in bytes;
	// longer ones are refused with 0x85 (MQTT 3.1.1: return code 2).
	MaxClientIDLength int
	// MaxKeepalive is the longest keep-alive granted: a client asking for
	// more, or for none (0), gets this one — MQTT 5 clients are told in
	// CONNACK (Server Keep Alive) — and is disconnected after 1.5 times it
	// without a packet (protocol.go).
	MaxKeepalive time.Duration
	// CloseLinger is how long a connection the server closes is
	// half-closed and drained first, so that the client reads the
	// DISCONNECT sent before the close instead of a reset (listener.go);
	// 0 takes the default (250 ms), a negative value closes at once.
	CloseLinger time.Duration
	// Retained messages are limited per thing (count and payload bytes)
	// and for the whole server (payload bytes); 0 turns a limit off
	// (retainquota.go).
	MaxRetainedPerThing      int
	MaxRetainedBytesPerThing int64
	MaxRetainedBytes         int64
	// SlowSubscriberBudget is how long a subscriber may stay full while
	// publishers wait for it before it is disconnected; 0 never
	// disconnects (slowsub.go).
	SlowSubscriberBudget time.Duration
	// WrapListener, if set, wraps the TCP listener of "tcp" and "tls"
	// before TLS (the IP filter): whatever it refuses is closed before a
	// handshake or CONNECT.
	WrapListener func(listener string, ln net.Listener) net.Listener
	// LastSeenInterval is how often an active connection's last packet
	// time is written to the registry (activity.go; default 30s).
	LastSeenInterval time.Duration
	// Azure is the Azure IoT Hub device protocol (azure.go).
	Azure AzureOptions
	// Provisioning is for provisioning-only connections (provisioning.go).
	Provisioning ProvisioningOptions
	// Cluster, if set, hears what the other nodes of a cluster must know:
	// platform publishes and established connections (cluster.go).
	Cluster ClusterLink
	// CertRotation is certificate self-rotation over MQTT (certrotate.go).
	CertRotation CertRotationOptions
	// NodeID names this node in a cluster ("" alone); presence records it.
	NodeID string
	// HandoverTimeout bounds a persistent session's handover from the
	// cluster node that holds it (default 2s), HandoverMaxMessages the
	// queued messages it carries (default 10,000; handover.go).
	HandoverTimeout     time.Duration
	HandoverMaxMessages int
	// Replay replays the cluster's relay stream into persistent sessions
	// loaded from the store (nil: none), ReplayMax messages per session at
	// most (default 10,000), within ReplayTimeout (default 5s; replay.go).
	Replay        SessionReplayer
	ReplayMax     int
	ReplayTimeout time.Duration

	Logger  *slog.Logger
	Metrics prometheus.Registerer // may be nil
}

func (o *Options) defaults() {
	if o.HandoverTimeout <= 0 {
		o.HandoverTimeout = 2 * time.Second
	}
	if o.HandoverMaxMessages <= 0 {
		o.HandoverMaxMessages = 10_000
	}
	if o.ReplayMax <= 0 {
		o.ReplayMax = 10_000
	}
	if o.ReplayTimeout <= 0 {
		o.ReplayTimeout = 5 * time.Second
	}
	if o.MaxPacketSize == 0 {
		o.MaxPacketSize = 256 * 1024
	}
	if o.MaxClients == 0 {
		o.MaxClients = 1_000_000
	}
	if o.MaxSessionExpiry == 0 {
		o.MaxSessionExpiry = 24 * time.Hour
	}
	if o.MaxOfflineQueue == 0 {
		o.MaxOfflineQueue = 1000
	}
	if o.OutboundQueue == 0 {
		o.OutboundQueue = 128
	}
	if o.ConnectTimeout == 0 {
		o.ConnectTimeout = 10 * time.Second
	}
	if o.PresenceFlush == 0 {
		o.PresenceFlush = 200 * time.Millisecond
	}
	if o.MaxClientIDLength == 0 {
		o.MaxClientIDLength = 128
	}
	if o.MaxKeepalive == 0 {
		o.MaxKeepalive = 1200 * time.Second
	}
	if o.CloseLinger == 0 {
		o.CloseLinger = 250 * time.Millisecond
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	// Nothing the broker or mochi logs carries packet contents (loghygiene.go).
	o.Logger = slog.New(newSafeHandler(o.Logger.Handler()))
	if o.LastSeenInterval == 0 {
		o.LastSeenInterval = 30 * time.Second
	}
}

// Broker is a running MQTT broker.
type Broker struct {
	opts     Options
	log      *slog.Logger
	server   *mqtt.Server
	hook     *hook
	tcp      *netListener
	tls      *netListener
	ws       *wsListener
	metrics  *metrics
	presence *presence
	activity *activity
	delivery *delivery    // tracked deliveries (Deliver)
	azure    *azure       // the Azure IoT Hub device protocol (azure.go)
	retained *retainedLog // nil: retained messages are not stored
	// sessionLog records persistent sessions for the store (nil: not
	// stored); restoring holds the stored ones between loading and
	// restoring them at start.
	sessionLog *sessionLog
	restoring  map[string]*restoredSession
	// handover moves persistent sessions between cluster nodes (nil
	// alone; handover.go).
	handover HandoverLink
	owner    OwnerLink     // client ids of live connections on other nodes (owners_cluster.go)
	shared   *sharedGroups // nil alone (shared.go)
	// replay: the replay point and replays (replay.go).
	replay replayState
	// ready is closed once stored state is back; listeners accept only
	// then.
	ready chan struct{}
	// notReceived counts what mochi counts as a received PUBLISH but is
	// not one from a device: platform publishes (inline client) and durable
	// publishes handed back to it after their fsync (a second count).
	notReceived atomic.Int64
	limits      *rateLimits  // nil: no per-thing rate limit
	authLog     *slog.Logger // refusals and denials, at most a few per second
	dropLog     *slog.Logger
	connLog     *slog.Logger

	clients   sync.Map // *mqtt.Client → *session
	sessions  sync.Map // client id → *session of its newest connection
	offline   sync.Map // client id → *session of a disconnected persistent session
	mu        sync.Mutex
	byThing   map[string]map[*session]struct{}
	docsCache map[string][]policy.Document // thing → its policy documents
	evCache   map[string]*policy.Evaluator // thing → its evaluator, shared when no policy uses ${clientid}
	docsGen   uint64

	owners clientOwners // client id → the thing whose session it is (ownership.go)

	highWater    int32 // pending PUBLISH packets at which publishers wait
	inflightHigh int   // unacknowledged QoS 1/2 deliveries at which publishers wait
	closed       atomic.Bool
	stop         chan struct{}
	wg           sync.WaitGroup

	retainQuota *retainedQuota // retained messages by owner (retainquota.go)

	prov     *provisioning // provisioning-only connections and JITR (provisioning.go)
	rotation *certRotation // certificate self-rotation over MQTT (certrotate.go)

	relay *mqtt.Client // inline client of messages from other nodes (cluster.go)
}

// New builds a Broker and opens its listeners (so the addresses are known,
// which matters for port 0). Start begins serving.
func New(o Options) (*Broker, error) {
	o.defaults()
	if o.Auth == nil || o.Policies == nil {
		return nil, errors.New("broker: Auth and Policies are required")
	}
	b := &Broker{
		opts:      o,
		log:       o.Logger,
		byThing:   make(map[string]map[*session]struct{}),
		owners:    clientOwners{m: make(map[string]ownerClaim)},
		docsCache: make(map[string][]policy.Document),
		evCache:   make(map[string]*policy.Evaluator),
		stop:      make(chan struct{}),
		ready:     make(chan struct{}),
	}
	q := min(o.OutboundQueue, o.MaxOfflineQueue)
	b.highWater = int32(max(q*3/4, 1))
	// mochi drops a QoS 1/2 delivery when the client already has
	// MaxOfflineQueue unacknowledged; wait well before that. The margin
	// covers publishers passing the check at the same moment.
	b.inflightHigh = max(o.MaxOfflineQueue*3/4, 1)

	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumClients = int64(o.MaxClients)
	caps.MaximumPacketSize = uint32(o.MaxPacketSize)
	caps.MaximumSessionExpiryInterval = uint32(o.MaxSessionExpiry / time.Second)
	caps.MaximumInflight = uint16(o.MaxOfflineQueue)
	caps.ReceiveMaximum = uint16(min(o.MaxOfflineQueue, 1024))
	caps.MaximumClientWritesPending = int32(o.OutboundQueue)
	caps.MaximumMessageExpiryInterval = int64(o.MaxSessionExpiry / time.Second)
	caps.TopicAliasMaximum = 1024
	// Acknowledgements carry no properties of the packet they answer (mochi
	// copies them by default: a PUBACK echoed the PUBLISH's user
	// properties, which MQTT.js v5 rejects). See protocol.go.
	caps.Compatibilities.NoInheritedPropertiesOnAck = true

	b.server = mqtt.New(&mqtt.Options{
		Capabilities:             caps,
		ClientNetReadBufferSize:  1024,
		ClientNetWriteBufferSize: 2048,
		Logger:                   slog.New(newThrottledHandler(o.Logger.Handler(), 5, time.Second)).With("source", "mochi"),
		SysTopicResendInterval:   60,
		InlineClient:             true,
	})
	b.metrics = newMetrics(b, o.Metrics)
	b.authLog = throttled(o.Logger, "auth")
	b.dropLog = throttled(o.Logger, "delivery")
	b.connLog = throttled(o.Logger, "connections")
	b.initRateLimits()
	b.retainQuota = newRetainedQuota(o.MaxRetainedPerThing, o.MaxRetainedBytesPerThing, o.MaxRetainedBytes)
	if o.Retained != nil {
		b.retained = &retainedLog{st: o.Retained}
	}
	if o.Sessions != nil {
		b.sessionLog = newSessionLog(o.Sessions)
		b.sessionLog.track = o.Replay != nil // replay.go
	}
	if h, ok := o.Cluster.(HandoverLink); ok && o.Cluster != nil {
		b.handover = h // persistent sessions move between nodes (handover.go)
	}
	if l, ok := o.Cluster.(OwnerLink); ok && o.Cluster != nil {
		b.owner = l // a client id belongs to its thing across nodes (owners_cluster.go)
	}
	if l, ok := o.Cluster.(SharedLink); ok && o.Cluster != nil {
		// Shared groups balanced across nodes (shared.go).
		b.shared = &sharedGroups{link: l, members: map[string]map[string]struct{}{}}
	}
	b.azure = newAzure(b, o.Metrics)
	b.prov = newProvisioning(b, o.Metrics)
	b.relay = b.server.NewClient(nil, "local", "mote-cluster-relay", true) // cluster.go
	if b.shared != nil {
		b.shared.cl = b.server.NewClient(nil, "local", sharedClientID, true) // shared.go
	}
	b.rotation = newCertRotation(b, o.Metrics)
	if err := b.registerReplay(o.Metrics); err != nil { // replay.go
		return nil, fmt.Errorf("broker: metrics: %w", err)
	}
	b.hook = &hook{b: b}
	if err := b.server.AddHook(b.hook, nil); err != nil {
		return nil, fmt.Errorf("broker: add hook: %w", err)
	}
	b.delivery = newDelivery(b)
	if err := b.server.AddHook(b.delivery, nil); err != nil {
		return nil, fmt.Errorf("broker: add delivery hook: %w", err)
	}
	b.presence = newPresence(b, o.Presence, o.PresenceFlush)
	b.activity = newActivity(b, o.Metrics)
	if err := b.server.AddHook(b.activity, nil); err != nil {
		return nil, fmt.Errorf("broker: add activity hook: %w", err)
	}

	if o.MQTTAddr != "" {
		b.tcp = newNetListener("tcp", o.MQTTAddr, nil, b)
		if err := b.server.AddListener(b.tcp); err != nil {
			return nil, &ListenError{Listener: "tcp", Addr: o.MQTTAddr, Err: err}
		}
	}
	if o.MQTTSAddr != "" {
		if o.TLSConfig == nil {
			b.closeListeners()
			return nil, errors.New("broker: MQTTSAddr needs a TLSConfig")
		}
		b.tls = newNetListener("tls", o.MQTTSAddr, o.TLSConfig, b)
		if err := b.server.AddListener(b.tls); err != nil {
			b.closeListeners()
			return nil, &ListenError{Listener: "tls", Addr: o.MQTTSAddr, Err: err}
		}
	}
	b.ws = newWSListener("ws", b)
	if err := b.server.AddListener(b.ws); err != nil {
		b.closeListeners()
		return nil, fmt.Errorf("broker: websocket listener: %w", err)
	}
	return b, nil
}

func (b *Broker) closeListeners() {
	for _, l := range []*netListener{b.tcp, b.tls} {
		if l != nil && l.ln != nil {
			_ = l.ln.Close()
		}
	}
}

// Start serves connections on every listener.
func (b *Broker) Start() error {
	if err := b.loadRetained(context.Background()); err != nil {
		return fmt.Errorf("broker: load retained messages: %w", err)
	}
	if err := b.loadSessions(context.Background()); err != nil {
		return fmt.Errorf("broker: load persistent sessions: %w", err)
	}
	if err := b.server.Serve(); err != nil { // puts the stored sessions back (StoredClients)
		return fmt.Errorf("broker: %w", err)
	}
	b.restoreSessions(context.Background())
	close(b.ready)
	if b.retained != nil || b.sessionLog != nil {
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			b.runStateWriter()
		}()
	}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		b.presence.run(b.stop)
	}()
	b.startRateLimits()
	b.rotation.start()
	return nil
}

// Close disconnects every client (with reason "server shutting down"),
// closes the listeners and flushes presence.
func (b *Broker) Close() error {
	if !b.closed.CompareAndSwap(false, true) {
		return nil
	}
	err := b.server.Close()
	close(b.stop)
	b.wg.Wait()
	return err
}

// Addrs returns the bound TCP and TLS addresses ("" when disabled).
func (b *Broker) Addrs() (mqttAddr, mqttsAddr string) {
	if b.tcp != nil {
		mqttAddr = b.tcp.Address()
	}
	if b.tls != nil {
		mqttsAddr = b.tls.Address()
	}
	return
}

// WebSocketHandler serves MQTT over WebSocket; mount it at /mqtt.
func (b *Broker) WebSocketHandler() http.Handler { return b.ws }

// Publish sends a platform message to subscribers. Platform messages bypass
// device policies.
func (b *Broker) Publish(topic string, payload []byte, retain bool, qos byte) error {
	if b.closed.Load() {
		return core.Errorf(core.KindUnavailable, "broker is shutting down")
	}
	return b.platformPublish(topic, payload, retain, qos)
}

// platformPublish publishes through mochi's inline client.
func (b *Broker) platformPublish(topic string, payload []byte, retain bool, qos byte) error {
	err := b.server.Publish(topic, payload, retain, qos)
	if err == nil {
		b.notReceived.Add(1)
		b.platformPublished(topic, payload, retain, qos) // cluster.go
	}
	return err
}

// Connected reports whether a thing has at least one live connection.
func (b *Broker) Connected(thing string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.byThing[thing]) > 0
}

// ClientConnected reports whether a client with this id is connected.
func (b *Broker) ClientConnected(clientID string) bool {
	_, ok := b.sessions.Load(clientID)
	return ok
}

// ClientSubscribed reports whether the connected client with this id has
// a subscription to exactly filter (as it subscribed, shares included).
func (b *Broker) ClientSubscribed(clientID, filter string) bool {
	v, ok := b.sessions.Load(clientID)
	if !ok {
		return false
	}
	_, ok = v.(*session).cl.State.Subscriptions.Get(filter)
	return ok
}

// Inflight returns how many QoS 1/2 messages are sent or queued to
// clients and not yet acknowledged.
func (b *Broker) Inflight() int {
	return int(atomic.LoadInt64(&b.server.Info.Inflight))
}

// ConnectedClients returns the number of live device connections.
func (b *Broker) ConnectedClients() int {
	return int(atomic.LoadInt64(&b.server.Info.ClientsConnected))
}

// DisconnectThing closes every connection of a thing (it was disabled or
// deleted).
func (b *Broker) DisconnectThing(thing, why string) {
	b.forget(thing)
	b.offline.Range(func(k, v any) bool {
		if v.(*session).id.Thing == thing {
			b.offline.Delete(k) // stop queueing for its persistent sessions
		}
		return true
	})
	for _, s := range b.sessionsOf(thing) {
		b.kick(s, why)
	}
}

// DisconnectCredential closes every connection that authenticated with a
// credential (it was revoked or deleted).
func (b *Broker) DisconnectCredential(thing, credential, why string) {
	for _, s := range b.sessionsOf(thing) {
		if s.id.Credential == credential {
			b.kick(s, why)
		}
	}
}

// RefreshPolicies recompiles the permissions of every connected client of
// thing ("" for all), off the publish path.
//
// Refreshes may overlap (policy A changes, then B while A's refresh is
// still reading) and may race a connect that compiled its evaluator just
// before the change. Every evaluator is labelled with the policy generation
// (docsGen) it was compiled at, and a session only ever swaps in an
// evaluator at least as new as the one it has (session.setEvaluator); a
// session established after a change it did not see is recompiled by
// addSession. So the newest policies win whatever the order.
func (b *Broker) RefreshPolicies(thing string) {
	b.forget(thing)
	var targets []*session
	if thing == "" {
		b.clients.Range(func(_, v any) bool { targets = append(targets, v.(*session)); return true })
	} else {
		targets = b.sessionsOf(thing)
	}
	b.offline.Range(func(_, v any) bool {
		if s := v.(*session); thing == "" || s.id.Thing == thing {
			targets = append(targets, s)
		}
		return true
	})
	b.recompile(targets)
}

// recompile compiles the permissions of sessions again in the background.
func (b *Broker) recompile(targets []*session) {
	if len(targets) == 0 || b.closed.Load() {
		return
	}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for _, s := range targets {
			if s.evaluatorGen() >= b.policyGen() {
				continue // a later refresh already got here
			}
			ev, gen, err := b.compile(ctx, s.id.Thing, s.cl.ID)
			if err != nil {
				b.log.Error("recompile policies; disconnecting client to be safe", "thing", s.id.Thing, "client", s.cl.ID, "error", err)
				b.kick(s, "policy error")
				continue
			}
			s.setEvaluator(ev, gen)
			b.willRecheck(s, ev) // wills.go
		}
	}()
}

// policyGen returns the current policy generation.
func (b *Broker) policyGen() uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.docsGen
}

// setEvaluator swaps in ev, compiled at policy generation gen, unless the
// session already has one compiled at a later generation.
func (s *session) setEvaluator(ev *policy.Evaluator, gen uint64) bool {
	s.evMu.Lock()
	defer s.evMu.Unlock()
	if s.ev.Load() != nil && gen < s.evGen {
		return false
	}
	s.ev.Store(ev)
	s.evGen = gen
	return true
}

// evaluatorGen returns the policy generation of the session's evaluator.
func (s *session) evaluatorGen() uint64 {
	s.evMu.Lock()
	defer s.evMu.Unlock()
	return s.evGen
}

func (b *Broker) kick(s *session, why string) {
	s.kicked.Store(true)
	b.log.Info("disconnecting client", "client", s.cl.ID, "thing", s.id.Thing, "reason", why)
	b.closeClient(s.cl, packets.ErrNotAuthorized) // 3.1.1: closed, no DISCONNECT
}

func (b *Broker) sessionsOf(thing string) []*session {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]*session, 0, len(b.byThing[thing]))
	for s := range b.byThing[thing] {
		out = append(out, s)
	}
	return out
}

// forget drops cached policy documents of a thing ("" for all).
func (b *Broker) forget(thing string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.docsGen++
	if thing == "" {
		clear(b.docsCache)
		clear(b.evCache)
	} else {
		delete(b.docsCache, thing)
		delete(b.evCache, thing)
	}
}

// evaluator compiles the permissions of one client. Policy documents are
// cached per thing, so a reconnect storm does not read the store.
func (b *Broker) evaluator(ctx context.Context, thing, clientID string) (*policy.Evaluator, error) {
	ev, _, err := b.compile(ctx, thing, clientID)
	return ev, err
}

// compile is evaluator that also returns the policy generation the
// documents are current for: the generation before they were read, or the
// present one for cached documents (forget drops those on a change).
//
// When no policy of the thing uses ${clientid}, every client of the thing
// gets the same evaluator: it is compiled once per thing and policy
// generation and cached beside the documents (Evaluators are immutable),
// so a reconnect storm does not compile at all.
func (b *Broker) compile(ctx context.Context, thing, clientID string) (*policy.Evaluator, uint64, error) {
	b.mu.Lock()
	docs, ok := b.docsCache[thing]
	ev := b.evCache[thing]
	gen := b.docsGen
	b.mu.Unlock()
	if ev != nil {
		return ev, gen, nil
	}
	if !ok {
		var err error
		docs, err = b.opts.Policies.PoliciesFor(ctx, thing)
		if err != nil {
			return nil, 0, err
		}
		b.mu.Lock()
		if b.docsGen == gen && len(b.docsCache) < 200_000 {
			b.docsCache[thing] = docs
		}
		b.mu.Unlock()
	}
	if policy.UsesClientID(docs) {
		return policy.Compile(docs, policy.Vars{Thing: thing, ClientID: clientID}), gen, nil
	}
	ev = policy.Compile(docs, policy.Vars{Thing: thing})
	b.mu.Lock()
	if b.docsGen == gen && len(b.evCache) < 200_000 {
		b.evCache[thing] = ev
	}
	b.mu.Unlock()
	return ev, gen, nil
}

// throttled returns a logger for one kind of per-client event (refusals,
// drops) that passes at most 5 records a second.
func throttled(l *slog.Logger, kind string) *slog.Logger {
	return slog.New(newThrottledHandler(l.Handler(), 5, time.Second)).With("events", kind)
}
