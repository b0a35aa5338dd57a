// Package cluster joins several Mote nodes into one service over NATS:
// the MQTT messages accepted on one node reach the subscribers of every
// node, and a client id connecting on one node closes its connection on
// the others. State (things, shadows, commands, retained messages,
// sessions) is in the shared PostgreSQL store; see docs/cluster.md.
//
// # Relay
//
// Every node publishes each message it accepted — from a device (MQTT,
// HTTP, CoAP) or from the platform (shadow answers and deltas, method
// requests, job notifications, events) — once on NATS, on the subject of
// its topic under "<prefix>.msg" (natsbus: the topic mapped to a subject,
// the whole message with the origin's node id, topic, QoS, retain flag and
// user properties). Every node subscribes to the whole prefix
// ("<prefix>.msg.>") rather than to what its own clients subscribe to: a
// node then needs no subscription bookkeeping on NATS and a subscriber
// never misses what was published just after it subscribed on another
// node; the cost is that each node receives every message (measured in
// docs/cluster.md). A node skips what it published itself (no loop) and
// hands the rest to its broker's Relay, which delivers to local
// subscribers without the publish hooks, the platform services or the
// cluster seeing it again.
//
// The platform services (shadows, rules, telemetry, commands, ...) consume
// only what their own node accepted, on the in-process bus: each message is
// processed once in the cluster, by the node its device is connected to.
//
// QoS 0 messages cross on core NATS: at most once, in order per origin
// node. QoS 1/2 messages cross through JetStream when the relay stream is
// open (jsrelay.go): the PUBACK waits for it, and each node consumes it
// with flow control. What follows describes the core relay.
//
// Delivery between nodes on core NATS is at most once. A QoS 1 message is acknowledged to its publisher by the node that
// accepted it (after the ingest journal where a rule stores it); a
// subscriber on another node receives it while the NATS connections are up
// and its node keeps up (RelayQueue), and otherwise it is lost and counted
// in mote_cluster_relay_dropped_total. docs/cluster.md says what that
// means for QoS 1.
//
// # Takeover
//
// When a connection is established, its node publishes the client id on
// "<prefix>.ctl.takeover"; every other node closes its connection with that
// id (MQTT 5 reason 0x8E, session taken over).
//
// # Sessions, shared groups, leases
//
// A persistent session moves to the node its device reconnects to
// (sessions.go, broker/handover.go); a shared subscription group gets each
// message once in the cluster through a NATS queue group (shared.go,
// broker/shared.go); heartbeats tell the nodes which of them are alive,
// and a survivor marks a lost node's things disconnected (lease.go).
package cluster

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/moteiot/mote/internal/bus"
	"github.com/moteiot/mote/internal/bus/natsbus"
	"github.com/moteiot/mote/internal/core"
)

// DefaultPrefix is the NATS subject prefix of a cluster.
const DefaultPrefix = "mote"

// ProtocolPlatform marks a message the platform published (not a device).
const ProtocolPlatform = "platform"

// Broker is this node's MQTT broker (*broker.Broker).
type Broker interface {
	// Relay delivers a message accepted on another node to the local
	// subscribers.
	Relay(m core.Message) error
	// TakeOver closes the local connection of clientID, if any.
	TakeOver(clientID string) bool
	// SessionReleaser hands a persistent session to another node
	// (sessions.go).
	SessionReleaser
}

// Options configure a Node. URL and NodeID are required.
type Options struct {
	URL    string // NATS server URLs, comma-separated
	NodeID string
	Prefix string // DefaultPrefix when empty

	// NATS authentication: a CA for TLS, a credentials file, or a user
	// and password (all optional).
	TLSCA    string
	Creds    string
	User     string
	Password string

	// RelayQueue bounds the messages received from other nodes and not yet
	// handed to the broker (natsbus.DefaultPendingMsgs when zero); beyond
	// it they are dropped and counted.
	RelayQueue int
	// ConnectTimeout bounds the connection to NATS (natsbus default).
	ConnectTimeout time.Duration
	// HandoverTimeout bounds serving another node's request to release a
	// persistent session (2s when zero; sessions.go).
	HandoverTimeout time.Duration
	// OwnerLookups bounds the client id lookups this node makes at once
	// (DefaultOwnerLookups when zero; owners.go).
	OwnerLookups int
	// Local is the bus of this node's platform services (a *bus.Local
	// when nil).
	Local bus.Bus

	Logger  *slog.Logger
	Metrics prometheus.Registerer // may be nil
}

// Node is this Mote node's membership in a cluster. It is the daemon's
// bus.Bus: Subscribe and Publish serve this node's platform services, and
// Publish also relays the message to the other nodes.
type Node struct {
	opts  Options
	log   *slog.Logger
	nb    *natsbus.Bus
	local bus.Bus

	mu     sync.Mutex
	subs   []*nats.Subscription
	retire uint64 // drops of subscriptions already removed

	broker Broker
	remote func(core.Message)
	// relayedBus hears every message relayed from another node (Relayed).
	relayedBus bus.Local

	relayed        atomic.Uint64
	relayFailed    atomic.Uint64
	decodeFailed   atomic.Uint64
	takeovers      atomic.Uint64
	announced      atomic.Uint64
	announceFailed atomic.Uint64
	closed         atomic.Bool

	sessions sessionStats                    // sessions.go
	shared   sharedStats                     // shared.go
	shares   map[string][]*nats.Subscription // share → queue subscriptions (under mu; shared.go)
	owners   ownerState                      // owners.go
	js       atomic.Pointer[JSRelay]         // the JetStream relay of QoS 1/2 messages, if open (jsrelay.go)
	wills    atomic.Pointer[Wills]           // the wills of live connections, if open (wills.go)
}

var _ bus.Bus = (*Node)(nil)

// Connect connects to NATS. Start begins relaying once the broker runs.
func Connect(o Options) (*Node, error) {
	if o.NodeID == "" {
		return nil, errors.New("cluster: no node id")
	}
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if o.RelayQueue <= 0 {
		o.RelayQueue = natsbus.DefaultPendingMsgs
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.HandoverTimeout <= 0 {
		o.HandoverTimeout = 2 * time.Second
	}
	if o.Local == nil {
		o.Local = &bus.Local{}
	}
	if o.OwnerLookups <= 0 {
		o.OwnerLookups = DefaultOwnerLookups
	}
	var nopts []nats.Option
	if o.TLSCA != "" {
		pem, err := os.ReadFile(o.TLSCA)
		if err != nil {
			return nil, fmt.Errorf("cluster-tls-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("cluster-tls-ca: %s holds no PEM certificate", o.TLSCA)
		}
		nopts = append(nopts, nats.Secure(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}))
	}
	if o.Creds != "" {
		if _, err := os.Stat(o.Creds); err != nil {
			return nil, fmt.Errorf("cluster-creds: %w", err)
		}
		nopts = append(nopts, nats.UserCredentials(o.Creds))
	}
	if o.User != "" {
		nopts = append(nopts, nats.UserInfo(o.User, o.Password))
	}
	nb, err := natsbus.Connect(natsbus.Options{
		URL:            o.URL,
		NodeID:         o.NodeID,
		Prefix:         o.Prefix + ".msg",
		ConnectTimeout: o.ConnectTimeout,
		NATSOptions:    nopts,
		Logger:         o.Logger,
		Registerer:     o.Metrics,
	})
	if err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	n := &Node{opts: o, log: o.Logger.With("component", "cluster", "node", o.NodeID), nb: nb, local: o.Local}
	n.initOwners() // owners.go
	if o.Metrics != nil {
		if err := errors.Join(n.register(o.Metrics), n.registerSessions(o.Metrics), n.registerShared(o.Metrics), n.registerOwners(o.Metrics)); err != nil {
			_ = nb.Close()
			return nil, fmt.Errorf("cluster: metrics: %w", err)
		}
	}
	return n, nil
}

// NodeID returns this node's id.
func (n *Node) NodeID() string { return n.opts.NodeID }

// Subscribe subscribes a platform service of this node to the messages
// this node accepted.
func (n *Node) Subscribe(filter string, h bus.Handler) (unsubscribe func()) {
	return n.local.Subscribe(filter, h)
}

// Publish hands a message accepted here to this node's platform services
// and relays it to the other nodes. It never waits for the network. A
// platform message (presence events) is only handed to the services: the
// broker relayed it when it published it (PlatformPublished).
func (n *Node) Publish(m core.Message) {
	n.local.Publish(m)
	if m.Protocol != ProtocolPlatform {
		n.relay(m)
	}
	if m.Protocol == ProtocolWill {
		n.willRelayed() // wills.go
	}
}

// relay sends m to the other nodes: QoS 0 on core NATS; QoS 1/2 on the
// JetStream relay when it is open (jsrelay.go), where an MQTT publish
// already is (its PUBACK waited for it).
func (n *Node) relay(m core.Message) {
	if m.QoS > 0 {
		if js := n.js.Load(); js != nil {
			if !relayedByJournal(m) {
				js.publishNoWait(m)
			}
			return
		}
	}
	n.nb.Publish(m)
}

// PlatformPublished relays a platform message published here
// (broker.ClusterLink).
func (n *Node) PlatformPublished(m core.Message) {
	m.Protocol = ProtocolPlatform
	n.relay(m)
}

// ClientConnected tells the other nodes to close their connection of
// clientID (broker.ClusterLink).
func (n *Node) ClientConnected(clientID, _ string) {
	if n.closed.Load() {
		return
	}
	if err := n.nb.Conn().Publish(n.takeoverSubject(), appendTakeover(nil, n.opts.NodeID, clientID)); err != nil {
		n.announceFailed.Add(1)
		return
	}
	n.announced.Add(1)
	n.holdClientID(clientID) // owners.go: answer lookups of it
}

// Announce publishes a control event (a registry change) for the other
// nodes: OnControl's handler receives data there. It never waits for the
// network.
func (n *Node) Announce(data []byte) {
	if n.closed.Load() {
		return
	}
	if err := n.nb.Conn().Publish(n.controlSubject(), append([]byte(n.opts.NodeID+"\x00"), data...)); err != nil {
		n.announceFailed.Add(1)
	}
}

// OnControl calls h with the data of every control event another node
// announced, on the NATS delivery goroutine (h must only enqueue or act
// quickly). The queue is bounded by RelayQueue.
func (n *Node) OnControl(h func(data []byte)) error {
	sub, err := n.nb.Conn().Subscribe(n.controlSubject(), func(msg *nats.Msg) {
		node, data, ok := bytes.Cut(msg.Data, []byte{0})
		if !ok {
			n.decodeFailed.Add(1)
			return
		}
		if string(node) == n.opts.NodeID {
			return
		}
		h(data)
	})
	if err != nil {
		return fmt.Errorf("cluster: subscribe: %w", err)
	}
	if err := sub.SetPendingLimits(n.opts.RelayQueue, natsbus.DefaultPendingBytes); err != nil {
		return fmt.Errorf("cluster: pending limits: %w", err)
	}
	n.mu.Lock()
	n.subs = append(n.subs, sub)
	n.mu.Unlock()
	return n.nb.Conn().FlushTimeout(natsbus.DefaultFlushTimeout)
}

func (n *Node) controlSubject() string  { return n.opts.Prefix + ".ctl.registry" }
func (n *Node) relaySubject() string    { return n.opts.Prefix + ".msg.>" }
func (n *Node) takeoverSubject() string { return n.opts.Prefix + ".ctl.takeover" }

// Start subscribes to the other nodes' messages and takeovers, and hands
// them to b. remote, if set, also hears every platform message relayed from
// another node (after b), on the NATS delivery goroutine: it must only
// enqueue. It waits (bounded by the connection's flush timeout) until NATS
// knows the subscriptions.
func (n *Node) Start(b Broker, remote func(core.Message)) error {
	n.mu.Lock() // shared.go reads broker from the NATS goroutines
	n.broker, n.remote = b, remote
	n.mu.Unlock()
	nc := n.nb.Conn()
	relay, err := nc.Subscribe(n.relaySubject(), n.onRelay)
	if err != nil {
		return fmt.Errorf("cluster: subscribe: %w", err)
	}
	take, err := nc.Subscribe(n.takeoverSubject(), n.onTakeover)
	if err != nil {
		_ = relay.Unsubscribe()
		return fmt.Errorf("cluster: subscribe: %w", err)
	}
	for _, s := range []*nats.Subscription{relay, take} {
		if err := s.SetPendingLimits(n.opts.RelayQueue, natsbus.DefaultPendingBytes); err != nil {
			return fmt.Errorf("cluster: pending limits: %w", err)
		}
	}
	rel, err := n.serveReleases(b) // sessions.go
	if err != nil {
		_, _ = relay.Unsubscribe(), take.Unsubscribe()
		return fmt.Errorf("cluster: subscribe: %w", err)
	}
	n.mu.Lock()
	n.subs = append(n.subs, relay, take, rel)
	n.mu.Unlock()
	if err := nc.FlushTimeout(natsbus.DefaultFlushTimeout); err != nil {
		return fmt.Errorf("cluster: subscriptions not confirmed by NATS: %w", err)
	}
	go n.serveOwners(b) // owners.go
	n.log.Info("joined the cluster", "server", nc.ConnectedUrlRedacted())
	return nil
}

func (n *Node) onRelay(msg *nats.Msg) {
	m, err := natsbus.DecodeMessage(msg.Data)
	if err != nil {
		n.decodeFailed.Add(1)
		return
	}
	if m.Node == n.opts.NodeID {
		return // published here
	}
	if err := n.deliver(m, false); err != nil {
		n.relayFailed.Add(1)
	}
}

// deliver hands a message from another node to the broker (held: with the
// broker's backpressure, when the broker has it) and to the listeners of
// relayed messages.
func (n *Node) deliver(m core.Message, held bool) error {
	var err error
	if h, ok := n.broker.(interface{ RelayHeld(core.Message) error }); ok && held {
		err = h.RelayHeld(m)
	} else {
		err = n.broker.Relay(m)
	}
	if err != nil {
		return err
	}
	n.relayed.Add(1)
	n.relayedBus.Publish(m)
	if m.Protocol == ProtocolPlatform && n.remote != nil {
		n.remote(m)
	}
	return nil
}

func (n *Node) onTakeover(msg *nats.Msg) {
	node, clientID, err := parseTakeover(msg.Data)
	if err != nil {
		n.decodeFailed.Add(1)
		return
	}
	if node == n.opts.NodeID {
		return
	}
	if n.broker.TakeOver(clientID) {
		n.takeovers.Add(1)
	}
}

// The takeover announcement: "1", the node id, a NUL, the client id.
func appendTakeover(dst []byte, node, clientID string) []byte {
	dst = append(dst, '1')
	dst = append(dst, node...)
	dst = append(dst, 0)
	return append(dst, clientID...)
}

func parseTakeover(data []byte) (node, clientID string, err error) {
	if len(data) < 1 || data[0] != '1' {
		return "", "", errors.New("cluster: takeover: unknown version")
	}
	nb, cb, ok := bytes.Cut(data[1:], []byte{0})
	if !ok || len(nb) == 0 || len(cb) == 0 || bytes.IndexByte(cb, 0) >= 0 {
		return "", "", errors.New("cluster: takeover: malformed")
	}
	return string(nb), string(cb), nil
}

// Dropped returns how many messages from other nodes were dropped because
// this node fell behind (RelayQueue).
func (n *Node) Dropped() uint64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	d := n.retire
	for _, s := range n.subs {
		if k, err := s.Dropped(); err == nil && k > 0 {
			d += uint64(k)
		}
	}
	return d
}

// Close stops relaying and closes the NATS connection (after flushing
// what was published, bounded).
func (n *Node) Close() error {
	if n.closed.Swap(true) {
		return nil
	}
	n.mu.Lock()
	for _, s := range n.subs {
		if k, err := s.Dropped(); err == nil && k > 0 {
			n.retire += uint64(k)
		}
		_ = s.Unsubscribe()
	}
	n.subs = nil
	for _, subs := range n.shares {
		for _, s := range subs {
			_ = s.Unsubscribe()
		}
	}
	n.shares = nil
	n.mu.Unlock()
	n.closeOwners() // owners.go
	return errors.Join(n.nb.Close(), n.local.Close(), n.relayedBus.Close())
}

// Relayed is a bus of the messages accepted on the other nodes, as they
// are relayed here (device messages and platform events, presence
// included): what this node's console shows of the rest of the cluster
// (live events). Its handlers run on the NATS delivery goroutine: they
// must only enqueue.
func (n *Node) Relayed() bus.Bus { return &n.relayedBus }

func (n *Node) register(reg prometheus.Registerer) error {
	counter := func(name, help string, labels prometheus.Labels, f func() float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: labels}, f)
	}
	for _, c := range []prometheus.Collector{
		counter("mote_cluster_relayed_total", "Messages from other nodes delivered to this node's subscribers.", nil,
			func() float64 { return float64(n.relayed.Load()) }),
		counter("mote_cluster_relay_dropped_total", droppedHelp, prometheus.Labels{"reason": "slow_consumer"},
			func() float64 { return float64(n.Dropped()) }),
		counter("mote_cluster_relay_dropped_total", droppedHelp, prometheus.Labels{"reason": "broker"},
			func() float64 { return float64(n.relayFailed.Load()) }),
		counter("mote_cluster_relay_dropped_total", droppedHelp, prometheus.Labels{"reason": "decode"},
			func() float64 { return float64(n.decodeFailed.Load()) }),
		counter("mote_cluster_takeover_announcements_total", "Client ids announced to the other nodes when a connection was established here, by result (sent, failed: not buffered by NATS).", prometheus.Labels{"result": "sent"},
			func() float64 { return float64(n.announced.Load()) }),
		counter("mote_cluster_takeover_announcements_total", "Client ids announced to the other nodes when a connection was established here, by result (sent, failed: not buffered by NATS).", prometheus.Labels{"result": "failed"},
			func() float64 { return float64(n.announceFailed.Load()) }),
		counter("mote_cluster_takeovers_total", "Connections closed here because their client id connected to another node.", nil,
			func() float64 { return float64(n.takeovers.Load()) }),
	} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

const droppedHelp = "Messages from other nodes not delivered here, by reason: slow_consumer (beyond --cluster-relay-queue), broker (refused by this node's broker, e.g. shutting down), decode (not a Mote message); on the JetStream relay of QoS 1/2 messages: expired (removed by --cluster-relay-max-bytes or --cluster-relay-max-age before this node read it), jetstream_broker, jetstream_decode."

// Conn returns the node's NATS connection (the JetStream ingest journal
// publishes on it); Close closes it.
func (n *Node) Conn() *nats.Conn { return n.nb.Conn() }
