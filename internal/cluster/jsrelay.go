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
	DefaultRelayAckDelay   = 20 * time.Millisecond
	DefaultRelayAckWait    = 30 * time.Second
	DefaultRelayPullExpiry = 10 * time.Second
	DefaultRelayStallCheck = 5 * time.Second
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

	AckDelay   time.Duration // longest a handed-over message waits for its (batched) acknowledgement
	AckWait    time.Duration // the consumer's ack wait: JetStream sends again what was not acknowledged by then
	PullExpiry time.Duration // life of one pull request; idle heartbeats every fifth of it
	StallCheck time.Duration // idle this long, the consumer asks JetStream whether messages wait for it
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

	mu       sync.Mutex // guards cons, it, stopping (Close against resync)
	cons     jetstream.Consumer
	it       jetstream.MessagesContext
	stopping bool
	stop     chan struct{} // closed by Close
	done     chan struct{}

	// The consumer goroutine's own.
	last         uint64              // the highest stream sequence seen
	handed       map[uint64]struct{} // sequences handed over in this run, recent ones
	floor        uint64              // acknowledged up to this stream sequence
	lastDelivery uint64              // the last consumer (delivery) sequence
	lost         bool                // deliveries were lost: resync before acknowledging
	toAck        jetstream.Msg       // the highest message handed over and not acknowledged
	toAckSeq     uint64              // its stream sequence
	unacked      int                 // messages handled since the last acknowledgement
	unackedSince time.Time           // when the first of them was
	current      uint64              // the stream sequence of the message handle took last

	// For session replay (replay.go), set by the consumer goroutine:
	// handedMax is the highest stream sequence handed over (what the
	// consumer hands from now on comes after it, or is a redelivery not
	// handed yet); handedSafe the highest such that every message up to
	// it was handed over (it stays behind lost deliveries until they
	// came again). started is set once the consumer runs.
	handedMax, handedSafe atomic.Uint64
	started               atomic.Bool

	closeOnce sync.Once

	acked, delivered, skipped, expired, failed, decode, acks, resyncs atomic.Uint64
	refused                                                           *prometheus.CounterVec
	logSometimes                                                      rate.Sometimes
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
	if o.AckDelay <= 0 {
		o.AckDelay = DefaultRelayAckDelay
	}
	if o.AckWait <= 0 {
		o.AckWait = DefaultRelayAckWait
	}
	if o.PullExpiry <= 0 {
		o.PullExpiry = DefaultRelayPullExpiry
	}
	if o.StallCheck <= 0 {
		o.StallCheck = DefaultRelayStallCheck
	}
	js, err := jetstream.New(n.Conn(), jetstream.WithPublishAsyncMaxPending(o.MaxPending),
		jetstream.WithPublishAsyncTimeout(o.AckTimeout))
	if err != nil {
		return nil, fmt.Errorf("cluster relay: %w", err)
	}
	r := &JSRelay{n: n, o: o, js: js, prefix: n.opts.Prefix + ".relay",
		durable: "relay-" + consumerName(n.opts.NodeID), stop: make(chan struct{}), done: make(chan struct{}),
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
	r.stream, err = jsasync.CreateStream(ctx, js, cfg, n.log)
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
	r.handed = make(map[uint64]struct{})
	cons, err := r.open(ctx, false)
	if err != nil {
		return err
	}
	it, err := r.iterate(cons)
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.cons, r.it = cons, it
	r.mu.Unlock()
	r.handedMax.Store(r.last)
	r.handedSafe.Store(r.floor)
	r.started.Store(true)
	go r.consume()
	return nil
}

// open finds this node's consumer, or creates it (again). A consumer
// with messages fetched and not acknowledged (by a previous run, or
// deliveries this run lost), or one of an older version acknowledging
// each message (AckExplicit), is created again at its acknowledgement
// floor: what it had fetched comes again at once, in order, instead of
// after the ack wait — and an acknowledgement of a later message, which
// acknowledges all before it, cannot cover one this node never got.
// again forces that. It sets the sequences handle compares with.
func (r *JSRelay) open(ctx context.Context, again bool) (jetstream.Consumer, error) {
	cons, err := r.js.Consumer(ctx, r.o.Stream, r.durable)
	var start uint64 // 0: new messages only
	switch {
	case errors.Is(err, jetstream.ErrConsumerNotFound):
		if again {
			// Deleted under us: resume after what was acknowledged (a
			// floor of 0: the stream was empty when it was created).
			start = r.floor + 1
		}
	case err != nil:
		return nil, fmt.Errorf("cluster relay: consumer %s: %w", r.durable, err)
	default:
		info := cons.CachedInfo()
		if !again && info.Config.AckPolicy == jetstream.AckAllPolicy && info.NumAckPending == 0 {
			// Gaps are counted from what was acknowledged: a message
			// delivered to a pull request of a run that stopped, and
			// removed by the stream's limits since, was not read here.
			r.last = max(r.last, info.AckFloor.Stream)
			r.floor, r.lastDelivery = info.AckFloor.Stream, info.Delivered.Consumer
			return cons, nil
		}
		start = info.AckFloor.Stream + 1
		// What was delivered after the floor (perhaps to a pull request
		// of a run that stopped) comes again — or was removed by the
		// stream's limits meanwhile: gaps are counted from the floor.
		r.last = max(r.last, info.AckFloor.Stream)
		if err := r.js.DeleteConsumer(ctx, r.o.Stream, r.durable); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return nil, fmt.Errorf("cluster relay: consumer %s: delete to start again at %d: %w", r.durable, start, err)
		}
	}
	cfg := jetstream.ConsumerConfig{
		Durable:     r.durable,
		Description: "Mote node " + r.n.opts.NodeID + ": the other nodes' QoS 1/2 messages",
		// One acknowledgement of the highest message handed over
		// acknowledges all before it.
		AckPolicy:         jetstream.AckAllPolicy,
		AckWait:           r.o.AckWait,
		MaxAckPending:     4 * r.o.Batch,
		InactiveThreshold: r.o.MaxAge,
	}
	if start > 0 {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, start
	} else {
		cfg.DeliverPolicy = jetstream.DeliverNewPolicy
	}
	cons, err = r.js.CreateConsumer(ctx, r.o.Stream, cfg)
	if err != nil {
		return nil, fmt.Errorf("cluster relay: consumer %s: %w", r.durable, err)
	}
	info := cons.CachedInfo()
	if start == 0 {
		// Gaps are counted after what the consumer delivered already.
		r.last = max(r.last, info.Delivered.Stream)
	}
	r.floor, r.lastDelivery = info.AckFloor.Stream, 0
	return cons, nil
}

// iterate starts pulling from cons: a pull request lives PullExpiry and
// is answered by idle heartbeats; two missed heartbeats make the
// iterator pull again (a request the old consumer leader held is gone).
func (r *JSRelay) iterate(cons jetstream.Consumer) (jetstream.MessagesContext, error) {
	it, err := cons.Messages(jetstream.PullMaxMessages(r.o.Batch),
		jetstream.PullExpiry(r.o.PullExpiry), jetstream.PullHeartbeat(r.o.PullExpiry/5))
	if err != nil {
		return nil, fmt.Errorf("cluster relay: consume: %w", err)
	}
	return it, nil
}

// Consumer returns this node's durable consumer name.
func (r *JSRelay) Consumer() string { return r.durable }

// consume hands the messages over one at a time, in order, and
// acknowledges the highest one handed over (AckAll: all before it too)
// after Batch messages or AckDelay, whichever comes first. When idle
// for StallCheck it asks JetStream whether messages wait for it; if so
// (or deliveries were lost, or the iterator ended) it starts again at
// the acknowledgement floor (resync).
func (r *JSRelay) consume() {
	defer close(r.done)
	idleSince, suspect := time.Now(), false
	for {
		r.mu.Lock()
		it, stopping := r.it, r.stopping
		r.mu.Unlock()
		if stopping {
			r.flush()
			return
		}
		wait := r.o.StallCheck - time.Since(idleSince)
		if r.toAck != nil {
			wait = min(wait, time.Until(r.unackedSince.Add(r.o.AckDelay)))
		}
		if wait <= 0 {
			wait = time.Millisecond
		}
		msg, err := it.Next(jetstream.NextMaxWait(wait))
		switch {
		case err == nil:
			r.handle(msg)
			r.handedMax.Store(r.last)
			if !r.lost && r.current > r.handedSafe.Load() {
				r.handedSafe.Store(r.current)
			}
			idleSince, suspect = time.Now(), false
			if r.lost {
				r.resync("deliveries lost")
			} else if r.unacked >= r.o.Batch || !time.Now().Before(r.unackedSince.Add(r.o.AckDelay)) {
				r.flush()
			}
		case errors.Is(err, nats.ErrTimeout):
			if r.toAck != nil && !time.Now().Before(r.unackedSince.Add(r.o.AckDelay)) {
				r.flush()
			}
			if time.Since(idleSince) >= r.o.StallCheck {
				// Asked twice (the second time a fifth of StallCheck
				// later, still idle): a message published just as
				// the first answer was made is not a stall.
				idleSince = time.Now()
				if !r.stalled() {
					suspect = false
				} else if suspect {
					suspect = false
					r.resync("stalled")
				} else {
					suspect = true
					idleSince = idleSince.Add(-r.o.StallCheck + r.o.StallCheck/5)
				}
			}
		case errors.Is(err, jetstream.ErrMsgIteratorClosed):
			r.mu.Lock()
			stopping = r.stopping
			r.mu.Unlock()
			if stopping {
				r.flush()
				return
			}
			r.pause(time.Second) // not a hot loop while NATS is away
			r.resync("iterator ended")
		default:
			r.logSometimes.Do(func() { r.n.log.Warn("relay consumer", "error", err) })
			r.pause(100 * time.Millisecond)
		}
	}
}

// pause waits d or until Close.
func (r *JSRelay) pause(d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-r.stop:
	}
}

// stalled reports whether JetStream holds messages for this idle node
// that it did not get: pending ones, or more unacknowledged than those
// this node handed over and not acknowledged yet.
func (r *JSRelay) stalled() bool {
	ctx, cancel := context.WithTimeout(context.Background(), r.o.StallCheck)
	defer cancel()
	r.mu.Lock()
	cons := r.cons
	r.mu.Unlock()
	info, err := cons.Info(ctx)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return true
	}
	if err != nil {
		return false // JetStream away: the iterator deals with it
	}
	return info.NumPending > 0 || info.NumAckPending > r.unacked
}

// resyncTimeout bounds one attempt of resync to open the consumer again.
const resyncTimeout = 5 * time.Second

// resync stops the iterator and opens the consumer again at its
// acknowledgement floor; what this run handed over already is skipped
// when it comes again (handed).
func (r *JSRelay) resync(reason string) {
	r.resyncs.Add(1)
	r.logSometimes.Do(func() { r.n.log.Warn("relay consumer: starting again at its acknowledgement floor", "reason", reason) })
	r.mu.Lock()
	old := r.it
	r.mu.Unlock()
	old.Stop()
	// Not acknowledged: an acknowledgement covers all before it, and one
	// of those may be what was lost.
	r.toAck, r.toAckSeq, r.unacked, r.lost = nil, 0, 0, false
	// A short deadline per attempt: a JetStream API request lost in a
	// leader election (a NATS server killed) is not answered at all, and
	// the next attempt (the stopped iterator brings us back here, a second
	// later) is sent afresh. TestKill9 once saw one wait 27 s.
	ctx, cancel := context.WithTimeout(context.Background(), resyncTimeout)
	defer cancel()
	go func() { // Close does not wait for JetStream
		select {
		case <-r.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	cons, err := r.open(ctx, true)
	var it jetstream.MessagesContext
	if err == nil {
		it, err = r.iterate(cons)
	}
	if err != nil {
		r.logSometimes.Do(func() { r.n.log.Warn("relay consumer: start again", "error", err) })
		return // the stopped iterator brings us back here
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopping {
		it.Stop()
		return
	}
	r.cons, r.it = cons, it
}

func (r *JSRelay) handle(msg jetstream.Msg) {
	md, err := msg.Metadata()
	if err != nil {
		r.decode.Add(1)
		_ = msg.Term()
		return
	}
	if d := md.Sequence.Consumer; r.lastDelivery != 0 && d > r.lastDelivery+1 {
		// Deliveries between were lost on the way (a reconnect): an
		// acknowledgement from now on could cover them.
		r.lost = true
	}
	r.lastDelivery = md.Sequence.Consumer
	seq := md.Sequence.Stream
	r.current = seq
	r.handled(msg, seq)
	if _, ok := r.handed[seq]; ok {
		r.skipped.Add(1) // a redelivery of what was handed over already
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

// handled notes msg (stream sequence seq) for the next acknowledgement:
// the highest sequence is acknowledged, which acknowledges all before it.
func (r *JSRelay) handled(msg jetstream.Msg, seq uint64) {
	if r.unacked == 0 {
		r.unackedSince = time.Now()
	}
	r.unacked++
	if seq > r.toAckSeq {
		r.toAck, r.toAckSeq = msg, seq
	}
}

// flush acknowledges what was handed over since the last
// acknowledgement: one message (AckAll).
func (r *JSRelay) flush() {
	if r.toAck != nil && r.toAckSeq > r.floor {
		r.acks.Add(1)
		_ = r.toAck.Ack()
		r.floor = r.toAckSeq
	}
	r.toAck, r.toAckSeq, r.unacked = nil, 0, 0
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
		return
	}
	if m.Node == r.n.opts.NodeID {
		return // published here
	}
	if err := r.n.deliver(m, true); err != nil {
		r.failed.Add(1)
	} else {
		r.delivered.Add(1)
	}
}

// Close stops the consumer (its position stays in JetStream for the
// next start) and waits for the answers to the outstanding publishes.
// Close is idempotent; Start may not follow it.
func (r *JSRelay) Close() error {
	r.closeOnce.Do(func() {
		r.n.js.CompareAndSwap(r, nil) // back to core NATS for what is still published
		r.mu.Lock()
		r.stopping = true
		it := r.it
		r.mu.Unlock()
		close(r.stop)
		if it != nil {
			it.Stop()
			<-r.done // acknowledges what was handed over
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
		counter("mote_cluster_relay_jetstream_acks_total", "Acknowledgements this node's relay consumer sent (one covers every message handed over before it).", nil, &r.acks),
		counter("mote_cluster_relay_jetstream_resyncs_total", "Times this node's relay consumer started again at its acknowledgement floor (deliveries lost, stalled, iterator ended).", nil, &r.resyncs),
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
