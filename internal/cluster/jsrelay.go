package cluster

// The JetStream relay: QoS 1/2 messages between nodes, at least once.
//
//	origin node: broker persist ─ RelayJournal.AppendAsync
//	   ├─ ingest journal AppendAsync (if a rule stores it)     ┐ both in
//	   └─ PublishMsgAsync(mote.relay.<topic as subject>)       ┘ flight
//	         └─ jsasync ack loop: JetStream's ack, then the journal's ─▶ PUBACK
//
//	stream MOTE_RELAY (limits: --cluster-relay-max-bytes, --cluster-relay-max-age,
//	                   discard old, file storage, --cluster-replicas)
//	   └─ durable pull consumer "relay-<node>" per node (DeliverNew when
//	      created, InactiveThreshold = max age), fetched in batches of
//	      --cluster-relay-batch
//	        └─ skip own messages; broker.RelayHeld (the broker's
//	           backpressure); ack
//
// QoS 0 stays on the core NATS relay (cluster.go): each message takes
// exactly one of the two relays, by its QoS. A node that falls behind
// slows only its own consumer; JetStream buffers up to the stream's
// limits. What the limits discard before a node read it shows as a gap in
// the stream sequence and is counted
// (mote_cluster_relay_dropped_total{reason="expired"}).

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/moteiot/mote/internal/bus/natsbus"
	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/jsasync"
	"golang.org/x/time/rate"
)

// Defaults of RelayOptions.
const (
	DefaultRelayStream     = "MOTE_RELAY"
	DefaultRelayMaxBytes   = 1 << 30
	DefaultRelayMaxAge     = 24 * time.Hour
	DefaultRelayBatch      = 256
	DefaultRelayAckTimeout = 5 * time.Second
	DefaultRelayMaxPending = 4096
)

// RelayOptions configure the JetStream relay (Node.OpenRelay).
type RelayOptions struct {
	Stream     string        // DefaultRelayStream when empty
	Replicas   int           // the stream's replicas; 1 when zero
	MaxBytes   int64         // the stream's size limit (discard old)
	MaxAge     time.Duration // the stream's age limit; also the consumers' inactive threshold
	Batch      int           // messages fetched at once by this node's consumer
	AckTimeout time.Duration // longest wait for JetStream to store a publish
	MaxPending int           // publishes waiting for JetStream at once
}

// Durable is the ingest journal the relay wraps (broker.Journal).
type Durable interface {
	Wants(topic string) bool
	AppendAsync(m core.Message) (seq uint64, durable <-chan error, err error)
}

// JSRelay relays this node's QoS 1/2 messages through JetStream and
// delivers the other nodes' ones here.
type JSRelay struct {
	n       *Node
	o       RelayOptions
	js      jetstream.JetStream
	stream  jetstream.Stream
	pub     *jsasync.Publisher
	prefix  string
	durable string

	cons   jetstream.Consumer
	it     jetstream.MessagesContext
	done   chan struct{}
	last   uint64              // the highest stream sequence seen (consumer goroutine)
	handed map[uint64]struct{} // sequences handed over in this run, recent ones (consumer goroutine)
	// handedSeq is last once the message was handed over, started set
	// once the consumer runs (replay.go).
	handedSeq atomic.Uint64
	started   atomic.Bool

	closeOnce sync.Once

	acked, delivered, skipped, expired, failed, decode atomic.Uint64
	refused                                            *prometheus.CounterVec
	logSometimes                                       rate.Sometimes
}

// OpenRelay creates or updates the relay stream and its publisher. From
// now on the node's QoS 1/2 messages go through it instead of core NATS.
func (n *Node) OpenRelay(ctx context.Context, o RelayOptions, reg prometheus.Registerer) (*JSRelay, error) {
	if o.Stream == "" {
		o.Stream = DefaultRelayStream
	}
	if o.Replicas <= 0 {
		o.Replicas = 1
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = DefaultRelayMaxBytes
	}
	if o.MaxAge <= 0 {
		o.MaxAge = DefaultRelayMaxAge
	}
	if o.Batch <= 0 {
		o.Batch = DefaultRelayBatch
	}
	if o.AckTimeout <= 0 {
		o.AckTimeout = DefaultRelayAckTimeout
	}
	if o.MaxPending <= 0 {
		o.MaxPending = DefaultRelayMaxPending
	}
	js, err := jetstream.New(n.Conn(), jetstream.WithPublishAsyncMaxPending(o.MaxPending),
		jetstream.WithPublishAsyncTimeout(o.AckTimeout))
	if err != nil {
		return nil, fmt.Errorf("cluster relay: %w", err)
	}
	r := &JSRelay{n: n, o: o, js: js, prefix: n.opts.Prefix + ".relay",
		durable: "relay-" + consumerName(n.opts.NodeID), done: make(chan struct{}),
		logSometimes: rate.Sometimes{Interval: 10 * time.Second}}
	cfg := jetstream.StreamConfig{
		Name:        o.Stream,
		Description: "Mote: QoS 1/2 messages relayed between the nodes",
		Subjects:    []string{r.prefix + ".>"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    o.Replicas,
		MaxBytes:    o.MaxBytes,
		MaxAge:      o.MaxAge,
		Discard:     jetstream.DiscardOld, // a node too far behind loses the oldest, counted
	}
	r.stream, err = createStream(ctx, js, cfg, n.log)
	if err != nil {
		return nil, fmt.Errorf("cluster relay: stream %s (replicas %d): %w", o.Stream, o.Replicas, err)
	}
	r.refused = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mote_cluster_relay_jetstream_refused_total",
		Help: "QoS 1/2 publishes refused because JetStream did not store them in the relay stream: reason timeout (--cluster-ingest-timeout), error, closed."}, []string{"reason"})
	for _, reason := range []string{"timeout", "full", "error", "closed"} {
		r.refused.WithLabelValues(reason)
	}
	r.pub = jsasync.New(js, jsasync.Options{AckTimeout: o.AckTimeout, MaxPending: o.MaxPending, Refuse: r.refuse,
		Acked: func() { r.acked.Add(1) }})
	if reg != nil {
		if err := r.register(reg); err != nil {
			r.pub.Close()
			return nil, fmt.Errorf("cluster relay: metrics: %w", err)
		}
	}
	n.js.Store(r)
	return r, nil
}

// createStream creates or updates a stream, trying again while the
// JetStream cluster is not ready (30 s at most, or ctx's deadline).
func createStream(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig, log interface{ Info(string, ...any) }) (jetstream.Stream, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for try := 0; ; try++ {
		actx, acancel := context.WithTimeout(ctx, 5*time.Second)
		st, err := js.CreateOrUpdateStream(actx, cfg)
		acancel()
		if err == nil {
			return st, nil
		}
		if try == 0 {
			log.Info("waiting for JetStream to take the relay stream", "error", err)
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// consumerName makes a node id a valid consumer name (no '.', '*', '>',
// or white space).
func consumerName(node string) string {
	return strings.Map(func(r rune) rune {
		switch r {
		case '.', '*', '>', ' ', '\t', '\n', '\r', '/', '\\':
			return '_'
		}
		return r
	}, node)
}

func (r *JSRelay) refuse(reason string, err error) error {
	r.refused.WithLabelValues(reason).Inc()
	r.logSometimes.Do(func() {
		r.n.log.Error("QoS 1 publish refused: JetStream did not take it for the other nodes", "reason", reason, "error", err)
	})
	return &core.Error{Kind: core.KindUnavailable, Msg: "JetStream did not store the message for the other nodes; send it again", Err: err}
}

// publish puts m on the relay stream; done receives nil once JetStream
// stored it and also delivered nil.
func (r *JSRelay) publish(m core.Message, also <-chan error) (<-chan error, error) {
	subject, err := natsbus.Subject(r.prefix, m.Topic)
	if err != nil {
		return nil, r.refuse("error", err)
	}
	node := m.Node
	if node == "" {
		node = r.n.opts.NodeID
	}
	return r.pub.Publish(&nats.Msg{Subject: subject, Data: natsbus.AppendMessage(nil, node, m)}, also)
}

// Journal wraps the broker's ingest journal (nil: none): every QoS 1/2
// message of a device is published on the relay stream and, if inner
// wants it, appended to inner, both at once; its PUBACK waits for both.
func (r *JSRelay) Journal(inner Durable) *RelayJournal { return &RelayJournal{r: r, inner: inner} }

// RelayJournal is the broker's journal in a cluster with the JetStream
// relay (broker.Journal).
type RelayJournal struct {
	r     *JSRelay
	inner Durable
}

// Wants reports true: every QoS 1/2 message waits for the relay.
func (j *RelayJournal) Wants(string) bool { return true }

// AppendAsync publishes m on the relay stream and appends it to the
// ingest journal if that wants it. seq is the journal's number (0 when
// only relayed).
func (j *RelayJournal) AppendAsync(m core.Message) (uint64, <-chan error, error) {
	var (
		seq  uint64
		also <-chan error
	)
	if j.inner != nil && j.inner.Wants(m.Topic) {
		var err error
		if seq, also, err = j.inner.AppendAsync(m); err != nil {
			return 0, nil, err
		}
	}
	done, err := j.r.publish(m, also)
	if err != nil {
		return 0, nil, err
	}
	return seq, done, nil
}

// Append is AppendAsync waiting for the result.
func (j *RelayJournal) Append(m core.Message) (uint64, error) {
	seq, done, err := j.AppendAsync(m)
	if err != nil {
		return 0, err
	}
	return seq, <-done
}

// relayedByJournal reports whether m (a message this node accepted) went
// to the relay stream through the broker's journal (RelayJournal): a
// device's publish at QoS 1/2 over MQTT, HTTP or CoAP (broker persist and
// PublishVia), whose acknowledgement waited for it.
func relayedByJournal(m core.Message) bool {
	switch m.Protocol {
	case "mqtt", "http", "coap":
		return m.QoS > 0
	}
	return false
}

// publishNoWait relays a QoS 1/2 message that no acknowledgement waits
// for (bridged messages, platform messages).
func (r *JSRelay) publishNoWait(m core.Message) {
	_, _ = r.publish(m, nil) // refusals are counted
}

// Start creates (or finds again) this node's durable consumer and starts
// handing the other nodes' messages to the broker. Call it after
// Node.Start.
func (r *JSRelay) Start(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cons, err := r.js.Consumer(ctx, r.o.Stream, r.durable)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		cons, err = r.js.CreateConsumer(ctx, r.o.Stream, jetstream.ConsumerConfig{
			Durable:           r.durable,
			Description:       "Mote node " + r.n.opts.NodeID + ": the other nodes' QoS 1/2 messages",
			DeliverPolicy:     jetstream.DeliverNewPolicy,
			AckPolicy:         jetstream.AckExplicitPolicy,
			AckWait:           30 * time.Second,
			MaxAckPending:     4 * r.o.Batch,
			InactiveThreshold: r.o.MaxAge,
		})
	}
	if err != nil {
		return fmt.Errorf("cluster relay: consumer %s: %w", r.durable, err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return fmt.Errorf("cluster relay: consumer %s: %w", r.durable, err)
	}
	// Gaps are counted after what the consumer delivered already; what a
	// previous run fetched and did not acknowledge comes again (after the
	// ack wait) and is delivered then.
	r.last = info.Delivered.Stream
	r.handedSeq.Store(r.last)
	r.started.Store(true)
	r.handed = make(map[uint64]struct{})
	it, err := cons.Messages(jetstream.PullMaxMessages(r.o.Batch))
	if err != nil {
		return fmt.Errorf("cluster relay: consume: %w", err)
	}
	r.cons, r.it = cons, it
	go r.consume()
	return nil
}

// Consumer returns this node's durable consumer name.
func (r *JSRelay) Consumer() string { return r.durable }

func (r *JSRelay) consume() {
	defer close(r.done)
	for {
		msg, err := r.it.Next()
		if err != nil {
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return
			}
			r.logSometimes.Do(func() { r.n.log.Warn("relay consumer", "error", err) })
			time.Sleep(100 * time.Millisecond) // not a hot loop while NATS is away
			continue
		}
		r.handle(msg)
		r.handedSeq.Store(r.last)
	}
}

func (r *JSRelay) handle(msg jetstream.Msg) {
	md, err := msg.Metadata()
	if err != nil {
		r.decode.Add(1)
		_ = msg.Term()
		return
	}
	seq := md.Sequence.Stream
	if _, ok := r.handed[seq]; ok {
		r.skipped.Add(1) // a redelivery of what was handed over already
		_ = msg.Ack()
		return
	}
	r.remember(seq)
	if seq <= r.last {
		// Redelivered, not handed over yet in this run (fetched by a
		// previous run that stopped before acknowledging it).
		r.deliver(msg)
		return
	}
	if r.last != 0 && seq > r.last+1 {
		// Removed by the stream's limits before this node read it.
		r.expired.Add(seq - r.last - 1)
		r.logSometimes.Do(func() {
			r.n.log.Warn("relay: messages expired before this node read them (--cluster-relay-max-bytes, --cluster-relay-max-age)", "lost", seq-r.last-1)
		})
	}
	r.last = seq
	r.deliver(msg)
}

// remember notes seq as handed over; it keeps the sequences a redelivery
// can still concern (the unacknowledged window, 4 batches, with room).
func (r *JSRelay) remember(seq uint64) {
	r.handed[seq] = struct{}{}
	keep := uint64(16 * r.o.Batch)
	if len(r.handed) > 2*int(keep) && r.last > keep {
		for s := range r.handed {
			if s < r.last-keep {
				delete(r.handed, s)
			}
		}
	}
}

func (r *JSRelay) deliver(msg jetstream.Msg) {
	m, err := natsbus.DecodeMessage(msg.Data())
	if err != nil {
		r.decode.Add(1)
		_ = msg.Ack()
		return
	}
	if m.Node == r.n.opts.NodeID {
		_ = msg.Ack() // published here
		return
	}
	if err := r.n.deliver(m, true); err != nil {
		r.failed.Add(1)
	} else {
		r.delivered.Add(1)
	}
	_ = msg.Ack()
}

// Close stops the consumer (its position stays in JetStream for the
// next start) and waits for the answers to the outstanding publishes.
// Close is idempotent; Start may not follow it.
func (r *JSRelay) Close() error {
	r.closeOnce.Do(func() {
		r.n.js.CompareAndSwap(r, nil) // back to core NATS for what is still published
		if r.it != nil {
			r.it.Stop()
			<-r.done
		}
		r.pub.Close()
	})
	return nil
}

func (r *JSRelay) register(reg prometheus.Registerer) error {
	counter := func(name, help string, labels prometheus.Labels, v *atomic.Uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: labels},
			func() float64 { return float64(v.Load()) })
	}
	for _, c := range []prometheus.Collector{
		r.refused,
		counter("mote_cluster_relay_jetstream_acked_total", "QoS 1/2 messages JetStream stored in the relay stream before their acknowledgement.", nil, &r.acked),
		counter("mote_cluster_relay_jetstream_delivered_total", "QoS 1/2 messages from other nodes read from the relay stream and handed to this node's broker.", nil, &r.delivered),
		counter("mote_cluster_relay_jetstream_redelivered_total", "Relay stream messages this node read again (handed over before; acknowledged, not delivered twice).", nil, &r.skipped),
		counter("mote_cluster_relay_dropped_total", droppedHelp, prometheus.Labels{"reason": "expired"}, &r.expired),
		counter("mote_cluster_relay_dropped_total", droppedHelp, prometheus.Labels{"reason": "jetstream_broker"}, &r.failed),
		counter("mote_cluster_relay_dropped_total", droppedHelp, prometheus.Labels{"reason": "jetstream_decode"}, &r.decode),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "mote_cluster_relay_jetstream_pending",
			Help: "QoS 1/2 publishes waiting for JetStream's acknowledgement on the relay stream."}, func() float64 { return float64(r.pub.Pending()) }),
	} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}
