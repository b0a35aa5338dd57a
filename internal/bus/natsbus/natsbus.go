// Package natsbus is a bus.Bus on core NATS, so that a message accepted on
// one Mote node reaches the platform services of every node.
//
// Each message is published on the NATS subject mapped from its MQTT topic
// (see Subject: '/' → '.', '+' → '*', '#' → '>', with a reversible escape
// for '.', spaces and empty levels) under a prefix, and carries the whole
// core.Message in a small versioned binary encoding (see AppendMessage)
// together with the publishing node's id, which a receiver finds in
// core.Message.Node.
//
// Delivery is core NATS: at most once, in order per publisher and subject.
// Each subscription has bounded pending limits (SetPendingLimits); a
// subscriber that falls behind loses messages, counted in
// mote_bus_nats_dropped_total{reason="slow_consumer"}. Durability (QoS 1 kept
// end to end, durable consumers for rules and telemetry) is the next step, on
// JetStream; nothing here is stored.
//
// Publish never waits for the network: nats.go buffers the message on the
// connection (bounded by its reconnect buffer while disconnected) and a
// publish that cannot be buffered is dropped and counted.
package natsbus

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/moteiot/mote/internal/bus"
	"github.com/moteiot/mote/internal/core"
)

// Defaults for Options.
const (
	DefaultPrefix         = "mote"
	DefaultConnectTimeout = 5 * time.Second
	DefaultFlushTimeout   = 2 * time.Second
	DefaultPendingMsgs    = 65536
	DefaultPendingBytes   = 64 << 20
)

// Options configures a Bus. Only URL and NodeID are required.
type Options struct {
	// URL is one or more NATS server URLs, comma-separated
	// ("nats://a:4222,nats://b:4222").
	URL string
	// NodeID names this node; it travels with every message published here.
	NodeID string
	// Prefix is the subject prefix (DefaultPrefix when empty).
	Prefix string
	// ConnectTimeout bounds the whole connect, over every URL
	// (DefaultConnectTimeout when zero).
	ConnectTimeout time.Duration
	// FlushTimeout bounds the round trip that makes a new subscription
	// known to the server, and the flush on Close (DefaultFlushTimeout).
	FlushTimeout time.Duration
	// PendingMsgs and PendingBytes bound each subscription's queue of
	// received messages not yet handled; beyond them messages are dropped
	// (DefaultPendingMsgs, DefaultPendingBytes when zero).
	PendingMsgs  int
	PendingBytes int
	// NATSOptions are passed to nats.Connect after Mote's own (TLS, user
	// credentials, ...).
	NATSOptions []nats.Option
	// Logger receives connection events; slog.Default() when nil.
	Logger *slog.Logger
	// Registerer receives the bus's metrics; none are registered when nil.
	Registerer prometheus.Registerer
}

// Bus is a bus.Bus on a NATS connection.
type Bus struct {
	nc     *nats.Conn
	opts   Options
	log    *slog.Logger
	closed atomic.Bool

	mu   sync.Mutex
	subs map[*nats.Subscription]struct{}
	// retiredDrops counts slow-consumer drops of subscriptions already
	// removed; live ones are read from nats.go at scrape time.
	retiredDrops uint64

	published     atomic.Uint64
	received      atomic.Uint64
	publishErrors atomic.Uint64
	decodeErrors  atomic.Uint64

	bufs sync.Pool
}

var _ bus.Bus = (*Bus)(nil)

// Connect connects to NATS and returns a Bus. It gives up after
// ConnectTimeout.
func Connect(opts Options) (*Bus, error) {
	if opts.URL == "" {
		return nil, errors.New("natsbus: no NATS URL")
	}
	if opts.NodeID == "" {
		return nil, errors.New("natsbus: no node id")
	}
	if opts.Prefix == "" {
		opts.Prefix = DefaultPrefix
	}
	if opts.ConnectTimeout <= 0 {
		opts.ConnectTimeout = DefaultConnectTimeout
	}
	if opts.FlushTimeout <= 0 {
		opts.FlushTimeout = DefaultFlushTimeout
	}
	if opts.PendingMsgs <= 0 {
		opts.PendingMsgs = DefaultPendingMsgs
	}
	if opts.PendingBytes <= 0 {
		opts.PendingBytes = DefaultPendingBytes
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	b := &Bus{opts: opts, log: log.With("component", "natsbus", "node", opts.NodeID), subs: map[*nats.Subscription]struct{}{}}
	b.bufs.New = func() any { s := make([]byte, 0, 512); return &s }

	nopts := []nats.Option{
		nats.Name("mote-" + opts.NodeID),
		nats.Timeout(opts.ConnectTimeout),
		nats.FlusherTimeout(opts.FlushTimeout),
		nats.MaxReconnects(-1),
		nats.ErrorHandler(b.asyncError),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil { // nil: Close
				b.log.Warn("disconnected from NATS", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			b.log.Info("reconnected to NATS", "server", nc.ConnectedUrlRedacted())
		}),
	}
	nopts = append(nopts, opts.NATSOptions...)

	// nats.Timeout bounds each server's dial and handshake; the deadline
	// here bounds the whole attempt over every URL.
	type result struct {
		nc  *nats.Conn
		err error
	}
	done := make(chan result, 1)
	go func() {
		nc, err := nats.Connect(opts.URL, nopts...)
		done <- result{nc, err}
	}()
	timer := time.NewTimer(opts.ConnectTimeout)
	defer timer.Stop()
	select {
	case r := <-done:
		if r.err != nil {
			return nil, fmt.Errorf("natsbus: connect: %w", r.err)
		}
		b.nc = r.nc
	case <-timer.C:
		go func() { // close the connection if it comes late
			if r := <-done; r.nc != nil {
				r.nc.Close()
			}
		}()
		return nil, fmt.Errorf("natsbus: connect: no NATS server answered within %s", opts.ConnectTimeout)
	}
	if opts.Registerer != nil {
		if err := b.register(opts.Registerer); err != nil {
			b.nc.Close()
			return nil, fmt.Errorf("natsbus: register metrics: %w", err)
		}
	}
	return b, nil
}

// NodeID returns the node id this bus stamps on its messages.
func (b *Bus) NodeID() string { return b.opts.NodeID }

// Conn returns the underlying NATS connection.
func (b *Bus) Conn() *nats.Conn { return b.nc }

// Publish sends m to every matching subscription on every node. m.Node is
// replaced by this bus's node id unless already set (a message relayed
// from another node keeps its origin).
func (b *Bus) Publish(m core.Message) {
	if b.closed.Load() {
		b.publishErrors.Add(1)
		return
	}
	subject, err := Subject(b.opts.Prefix, m.Topic)
	if err != nil {
		b.publishErrors.Add(1)
		return
	}
	node := m.Node
	if node == "" {
		node = b.opts.NodeID
	}
	bp := b.bufs.Get().(*[]byte)
	buf := AppendMessage((*bp)[:0], node, m)
	err = b.nc.Publish(subject, buf) // copies buf into the connection's buffer
	if cap(buf) <= 64<<10 {
		*bp = buf
		b.bufs.Put(bp)
	}
	if err != nil {
		b.publishErrors.Add(1)
		return
	}
	b.published.Add(1)
}

// Subscribe calls h for every message, from any node, whose topic matches
// filter. It waits (at most FlushTimeout) until the server knows the
// subscription, so a message published after Subscribe returns is seen.
// An invalid filter, or a connection that is closed, subscribes to nothing
// and is logged.
func (b *Bus) Subscribe(filter string, h bus.Handler) (unsubscribe func()) {
	subjects, err := FilterSubjects(b.opts.Prefix, filter)
	if err != nil {
		b.log.Error("bus subscribe refused", "filter", filter, "err", err)
		return func() {}
	}
	cb := func(msg *nats.Msg) {
		m, err := DecodeMessage(msg.Data)
		if err != nil {
			b.decodeErrors.Add(1)
			return
		}
		// NATS matched the subject; MQTT's own rules decide (a filter
		// starting with a wildcard does not match $ topics).
		if !core.MatchFilter(filter, m.Topic) {
			return
		}
		b.received.Add(1)
		h(m)
	}
	var subs []*nats.Subscription
	for _, subj := range subjects {
		s, err := b.nc.Subscribe(subj, cb)
		if err == nil {
			err = s.SetPendingLimits(b.opts.PendingMsgs, b.opts.PendingBytes)
		}
		if err != nil {
			b.log.Error("bus subscribe failed", "filter", filter, "subject", subj, "err", err)
			b.unsubscribe(subs)
			return func() {}
		}
		subs = append(subs, s)
	}
	b.mu.Lock()
	for _, s := range subs {
		b.subs[s] = struct{}{}
	}
	b.mu.Unlock()
	if err := b.nc.FlushTimeout(b.opts.FlushTimeout); err != nil {
		b.log.Warn("bus subscribe not confirmed by the server", "filter", filter, "err", err)
	}
	var once sync.Once
	return func() { once.Do(func() { b.unsubscribe(subs) }) }
}

func (b *Bus) unsubscribe(subs []*nats.Subscription) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, s := range subs {
		if n, err := s.Dropped(); err == nil && n > 0 {
			b.retiredDrops += uint64(n)
		}
		delete(b.subs, s)
		_ = s.Unsubscribe() // only fails on a closed connection or subscription
	}
}

// Dropped returns how many received messages were dropped because a
// subscriber was slower than its pending limits.
func (b *Bus) Dropped() uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := b.retiredDrops
	for s := range b.subs {
		if d, err := s.Dropped(); err == nil && d > 0 {
			n += uint64(d)
		}
	}
	return n
}

// asyncError logs NATS's asynchronous errors. A slow consumer is reported
// once per episode (nats.go calls back on the transition only), so the
// log cannot flood; the drops themselves are counted by Dropped.
func (b *Bus) asyncError(_ *nats.Conn, s *nats.Subscription, err error) {
	subject := ""
	if s != nil {
		subject = s.Subject
	}
	if errors.Is(err, nats.ErrSlowConsumer) {
		b.log.Warn("bus subscriber too slow, dropping messages", "subject", subject,
			"pending_msgs_limit", b.opts.PendingMsgs, "pending_bytes_limit", b.opts.PendingBytes)
		return
	}
	b.log.Warn("NATS error", "subject", subject, "err", err)
}

// Close flushes what was published (at most FlushTimeout) and closes the
// connection; subscriptions end.
func (b *Bus) Close() error {
	if b.closed.Swap(true) {
		return nil
	}
	err := b.nc.FlushTimeout(b.opts.FlushTimeout)
	b.mu.Lock()
	for s := range b.subs {
		if n, e := s.Dropped(); e == nil && n > 0 {
			b.retiredDrops += uint64(n)
		}
		delete(b.subs, s)
	}
	b.mu.Unlock()
	b.nc.Close()
	if err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
		return fmt.Errorf("natsbus: close: flush: %w", err)
	}
	return nil
}
