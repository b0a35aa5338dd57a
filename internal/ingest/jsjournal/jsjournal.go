// Package jsjournal is the ingest journal of a cluster node on NATS
// JetStream: a QoS 1/2 message that a rule stores is acknowledged to its
// device only once JetStream has stored it (with the stream's replicas),
// and this node's consumer hands it, exactly once and in order, to
// the rules' durable pass and the telemetry writer — after a SIGKILL too.
//
//	broker OnPublish ── AppendAsync: PublishMsgAsync(mote.ingest.<node>, Nats-Msg-Id)
//	                        │ at most MaxPending publishes outstanding
//	                        ▼
//	                    ack loop (FIFO, one deadline each) ──▶ PUBACK, or refused
//
//	stream MOTE_INGEST (limits, file storage, Replicas, MaxBytes, discard new)
//	   └─ ordered consumer on mote.ingest.<node>, from the replay point + 1
//	         └─▶ Apply(m, m.Seq = stream sequence) on one goroutine
//	checkpoint loop: purge mote.ingest.<node> up to Applied() (the
//	telemetry writer's committed point)
//
// Exactly once. The telemetry store records, in the same transaction as the
// points, the largest stream sequence it stored for this node (its replay
// point, telemetry_journals keyed by the node id). At start the node reads
// its subject from the replay point + 1 with an ordered consumer, which
// notices a missed delivery (a NATS server lost mid-delivery) and starts
// again after the last message it handed over, so nothing is skipped or
// handed twice within a run. The purge is only the clean-up: losing one (a
// crash between the commit and the purge) leaves messages the next start
// does not read. Stream sequence numbers increase across the whole stream,
// so each node's subject sees increasing numbers, with gaps.
//
// Why not a durable consumer with acknowledgements: a work-queue stream
// with explicit acks loses nothing either, but a delivery lost with a NATS
// server comes back only after the ack wait, behind later messages already
// applied — out of order for a writer that must see increasing numbers.
// The replay point in PostgreSQL is the consumer's position instead.
//
// A message whose publish is not acknowledged by JetStream within
// AckTimeout is refused to the device (which sends it again); JetStream
// may still have stored it, so it can be stored twice — what QoS 1 allows
// for a message without a PUBACK, never a loss.
package jsjournal

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/ingest"
	"github.com/moteiot/mote/internal/jsasync"
)

// Defaults of Options.
const (
	DefaultStream     = "MOTE_INGEST"
	DefaultPrefix     = "mote.ingest"
	DefaultAckTimeout = 5 * time.Second
	DefaultMaxPending = 4096
	DefaultMaxBytes   = 1 << 30
	DefaultStallCheck = 5 * time.Second
)

// Options configure a Journal.
type Options struct {
	Conn *nats.Conn // required; the caller closes it after Close
	Node string     // this node's id: its subject and consumer (required)

	Stream   string // default DefaultStream
	Prefix   string // subjects Prefix.<node>; default DefaultPrefix
	Replicas int    // the stream's replicas (1–5); default 1
	MaxBytes int64  // the stream's size limit; beyond it publishes are refused; default 1 GiB

	// AckTimeout bounds the wait for JetStream's acknowledgement of one
	// publish; then the message is refused. Default 5 s.
	AckTimeout time.Duration
	// MaxPending bounds the publishes waiting for their acknowledgement
	// (all clients together); an append beyond it waits, at most
	// AckTimeout. Default 4096.
	MaxPending int

	// Applied as in ingest.Options: the telemetry writer's Committed on a
	// store opened for this journal's name (telemetry postgres
	// Options.Journal = Node). The consumer is given to Start.
	Applied func() uint64

	CheckpointEvery time.Duration // purge interval; default 1 s

	// StallCheck: when the consumer has been given nothing this long
	// while the stream holds messages of this node's subject after the
	// last one applied, it starts again after that one (resync).
	// Default DefaultStallCheck.
	StallCheck time.Duration
	Logger     *slog.Logger
	Metrics    prometheus.Registerer // nil: not registered
}

// Journal is the JetStream ingest journal of one node.
type Journal struct {
	opts     Options
	consumer atomic.Pointer[ingest.Consumer] // set by Start
	js       jetstream.JetStream
	stream   jetstream.Stream
	subject  string
	idBase   string // Nats-Msg-Id prefix: node and a random id of this run

	pub *jsasync.Publisher // bounded async publishes, one deadline each
	n   atomic.Uint64      // local numbers for AppendAsync, and message ids

	lastErr atomic.Pointer[refusal]

	mu           sync.Mutex // guards it, halted and kicked (Drain and the watchdog against resync)
	it           jetstream.MessagesContext
	halted       bool
	kicked       string        // why the watchdog stopped the iterator
	halt         chan struct{} // closed by Drain: the consumer's pauses and the watchdog end
	progress     atomic.Uint64 // messages the iterator gave, and resyncs: the watchdog's clock
	watchDone    chan struct{}
	started      bool
	skipTo       uint64        // Applied() at Start: what is at or below is stored
	lastApplied  atomic.Uint64 // written by the consumer goroutine
	purged       uint64        // owned by the checkpoint loop, then by Close
	consumerDone chan struct{}
	stop         chan struct{}
	loopDone     chan struct{}
	drainOnce    sync.Once
	closeOnce    sync.Once

	logSometimes rate.Sometimes
	m            metrics
}

type metrics struct {
	acked, skipped, applied, corrupt prometheus.Counter
	resyncs                          prometheus.Counter
	refused                          *prometheus.CounterVec
}

var _ ingest.Durable = (*Journal)(nil)

// Open creates or updates the stream, and this node's durable consumer.
func Open(ctx context.Context, o Options) (*Journal, error) {
	if o.Conn == nil || o.Node == "" || o.Applied == nil {
		return nil, errors.New("jsjournal: Conn, Node and Applied are required")
	}
	o.Stream = cmpOr(o.Stream, DefaultStream)
	o.Prefix = cmpOr(o.Prefix, DefaultPrefix)
	if o.Replicas <= 0 {
		o.Replicas = 1
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	if o.AckTimeout <= 0 {
		o.AckTimeout = DefaultAckTimeout
	}
	if o.MaxPending <= 0 {
		o.MaxPending = DefaultMaxPending
	}
	if o.CheckpointEvery <= 0 {
		o.CheckpointEvery = time.Second
	}
	if o.StallCheck <= 0 {
		o.StallCheck = DefaultStallCheck
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	js, err := jetstream.New(o.Conn, jetstream.WithPublishAsyncMaxPending(o.MaxPending),
		jetstream.WithPublishAsyncTimeout(o.AckTimeout))
	if err != nil {
		return nil, fmt.Errorf("jsjournal: %w", err)
	}
	cfg := jetstream.StreamConfig{
		Name:        o.Stream,
		Description: "Mote: acknowledged messages not yet stored by their node's telemetry writer",
		Subjects:    []string{o.Prefix + ".>"},
		Retention:   jetstream.LimitsPolicy, // a node purges its subject up to its replay point
		Storage:     jetstream.FileStorage,
		Replicas:    o.Replicas,
		MaxBytes:    o.MaxBytes,
		Discard:     jetstream.DiscardNew, // full: refuse new messages, never drop acknowledged ones
		Duplicates:  2 * time.Minute,
	}
	st, err := jsasync.CreateStream(ctx, js, cfg, o.Logger)
	if err != nil {
		return nil, fmt.Errorf("jsjournal: stream %s (replicas %d): %w", o.Stream, o.Replicas, err)
	}
	subject := o.Prefix + "." + o.Node
	j := &Journal{
		opts: o, js: js, stream: st, subject: subject,
		idBase:       o.Node + "." + nuid.Next() + ".",
		consumerDone: make(chan struct{}),
		halt:         make(chan struct{}),
		watchDone:    make(chan struct{}),
		stop:         make(chan struct{}),
		loopDone:     make(chan struct{}),
		logSometimes: rate.Sometimes{Interval: 10 * time.Second},
	}
	j.m = metrics{
		acked: prometheus.NewCounter(prometheus.CounterOpts{Name: "mote_ingest_jetstream_acked_total",
			Help: "Messages JetStream stored before their acknowledgement to the device."}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mote_ingest_jetstream_refused_total",
			Help: "Publishes refused because JetStream did not store them: reason timeout (no answer within --cluster-ingest-timeout), full (--cluster-ingest-max-bytes), error, closed."}, []string{"reason"}),
		applied: prometheus.NewCounter(prometheus.CounterOpts{Name: "mote_ingest_jetstream_applied_total",
			Help: "Messages of this node's subject handed to the telemetry writer."}),
		skipped: prometheus.NewCounter(prometheus.CounterOpts{Name: "mote_ingest_jetstream_skipped_total",
			Help: "Redelivered messages skipped because the telemetry store already had them (after a restart)."}),
		corrupt: prometheus.NewCounter(prometheus.CounterOpts{Name: "mote_ingest_jetstream_corrupt_total",
			Help: "Messages on this node's subject that did not decode (skipped)."}),
		resyncs: prometheus.NewCounter(prometheus.CounterOpts{Name: "mote_ingest_jetstream_resyncs_total",
			Help: "Times this node's ingest consumer started again after the last message it applied (stalled with messages waiting, repeated errors, iterator ended)."}),
	}
	for _, r := range []string{"timeout", "full", "error", "closed"} {
		j.m.refused.WithLabelValues(r)
	}
	if o.Metrics != nil {
		pending := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "mote_ingest_jetstream_pending",
			Help: "Publishes waiting for JetStream's acknowledgement."}, func() float64 { return float64(j.pub.Pending()) })
		uncommitted := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "mote_ingest_jetstream_uncommitted",
			Help: "Stream sequence numbers between the last message applied and the telemetry store's committed point (0: everything applied is stored)."}, func() float64 {
			last, c := j.lastApplied.Load(), o.Applied()
			if last <= c {
				return 0
			}
			return float64(last - c)
		})
		o.Metrics.MustRegister(j.m.acked, j.m.refused, j.m.applied, j.m.skipped, j.m.corrupt, j.m.resyncs, pending, uncommitted)
	}
	j.pub = jsasync.New(js, jsasync.Options{AckTimeout: o.AckTimeout, MaxPending: o.MaxPending, Refuse: j.refuse,
		Acked: func() { j.m.acked.Inc(); j.lastErr.Store(nil) }})
	return j, nil
}

// startWait bounds how long Open waits for a JetStream cluster that is not
// ready yet (electing its leaders after the servers started together).
const startWait = 30 * time.Second

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// Wants reports whether a message on topic must be stored before it is
// acknowledged.
func (j *Journal) Wants(topic string) bool {
	c := j.consumer.Load()
	return c != nil && (*c).Durable(topic)
}

// Err returns why durable publishes are refused at the moment: the NATS
// connection is down, or the last publish was refused less than
// errHold ago and none was stored since; nil otherwise.
func (j *Journal) Err() error {
	if !j.opts.Conn.IsConnected() {
		return &core.Error{Kind: core.KindUnavailable, Msg: "the ingest journal is not connected to NATS"}
	}
	if p := j.lastErr.Load(); p != nil && time.Since(p.at) < errHold {
		return p.err
	}
	return nil
}

// errHold is how long a refusal counts as the journal's state (Err).
const errHold = 10 * time.Second

type refusal struct {
	err error
	at  time.Time
}

// Append stores m in JetStream and returns a local number (the stream
// sequence is assigned when the consumer delivers it).
func (j *Journal) Append(m core.Message) (uint64, error) {
	n, done, err := j.AppendAsync(m)
	if err != nil {
		return 0, err
	}
	return n, <-done
}

// AppendAsync publishes m and returns at once a local, non-zero number and
// a channel that receives nil when JetStream has stored it, or the error
// (after AckTimeout at the latest).
func (j *Journal) AppendAsync(m core.Message) (uint64, <-chan error, error) {
	n := j.n.Add(1)
	msg := &nats.Msg{Subject: j.subject, Data: ingest.EncodeRecord(m), Header: nats.Header{}}
	done, err := j.pub.Publish(msg, nil, jetstream.WithMsgID(j.idBase+strconv.FormatUint(n, 36)))
	if err != nil {
		return 0, nil, err
	}
	return n, done, nil
}

// refuse counts and logs (rate-limited) a refusal and returns the error the
// edges answer with: insufficient storage (HTTP 507) when the stream is
// full, unavailable otherwise (MQTT 5 PUBACK 0x80; 3.1.1 closed).
func (j *Journal) refuse(reason string, err error) error {
	j.m.refused.WithLabelValues(reason).Inc()
	j.logSometimes.Do(func() {
		j.opts.Logger.Error("durable publish refused: JetStream did not store it", "reason", reason, "error", err)
	})
	kind := core.KindUnavailable
	if reason == "full" {
		kind = core.KindInsufficientStorage
	}
	e := error(&core.Error{Kind: kind, Msg: "JetStream did not store the message; send it again", Err: err})
	if reason != "closed" {
		j.lastErr.Store(&refusal{e, time.Now()})
	}
	return e
}

// Start starts reading this node's subject after its replay point:
// first what a previous run left (the stream keeps it until purged), then
// new messages, handed to c. It returns at once.
func (j *Journal) Start(c ingest.Consumer) (int, error) {
	if c == nil {
		return 0, errors.New("jsjournal: Start needs a consumer")
	}
	j.consumer.Store(&c)
	j.skipTo = j.opts.Applied()
	j.purged = j.skipTo
	ctx, cancel := context.WithTimeout(context.Background(), startWait)
	defer cancel()
	it, err := j.iterate(ctx, j.skipTo+1)
	if err != nil {
		return 0, err
	}
	j.it = it
	j.started = true
	go j.consume()
	go j.watchdog()
	go j.checkpointLoop()
	return 0, nil
}

// iterate opens an ordered consumer on this node's subject from seq.
func (j *Journal) iterate(ctx context.Context, seq uint64) (jetstream.MessagesContext, error) {
	cons, err := j.js.OrderedConsumer(ctx, j.opts.Stream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{j.subject},
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    seq,
	})
	if err != nil {
		return nil, fmt.Errorf("jsjournal: consumer on %s: %w", j.subject, err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(512))
	if err != nil {
		return nil, fmt.Errorf("jsjournal: consume %s: %w", j.subject, err)
	}
	return it, nil
}

// maxErrors is how many errors in a row (no message between them) make
// the consumer start again.
const maxErrors = 5

// consume hands the messages over one at a time, in order. The ordered
// consumer of nats.go recreates itself when a delivery or its heartbeat
// is lost — inside Next, retrying with a backoff up to 10 s — but a NATS
// server killed under load could leave it giving nothing for good
// (TestKill9, TestServerKilledUnderLoad). So the watchdog stops the
// iterator when it gave nothing for StallCheck while JetStream holds a
// message of this subject after the last one applied; then, or after
// maxErrors errors in a row, or when the iterator ended by itself, the
// consumer starts again after the last message applied (resync). The
// skip of what is at or below it keeps that exactly once.
func (j *Journal) consume() {
	defer close(j.consumerDone)
	errs := 0
	for {
		j.mu.Lock()
		it, halted := j.it, j.halted
		j.mu.Unlock()
		if halted {
			return
		}
		msg, err := it.Next()
		switch {
		case err == nil:
			errs = 0
			j.progress.Add(1)
			j.handle(msg)
		case errors.Is(err, jetstream.ErrMsgIteratorClosed):
			j.mu.Lock()
			halted, current, kicked := j.halted, j.it, j.kicked
			j.kicked = ""
			j.mu.Unlock()
			switch {
			case halted:
				return
			case current != it:
				continue // replaced meanwhile (a test's wedge)
			case kicked != "":
				j.resync(kicked)
			default:
				j.pause(time.Second) // not a hot loop while NATS is away
				j.resync("iterator ended")
			}
			errs = 0
		default:
			j.logSometimes.Do(func() { j.opts.Logger.Warn("ingest consumer", "error", err) })
			if errs++; errs >= maxErrors {
				j.resync("errors")
				errs = 0
				continue
			}
			j.pause(100 * time.Millisecond) // not a hot loop while NATS is away
		}
	}
}

// watchdog stops the iterator when it gave nothing for StallCheck while
// the stream holds a message of this subject after the last one applied
// — asked twice, the second time a fifth of StallCheck later, so that a
// message stored just as JetStream answered is not a stall.
func (j *Journal) watchdog() {
	defer close(j.watchDone)
	tick := max(j.opts.StallCheck/5, time.Millisecond)
	t := time.NewTicker(tick)
	defer t.Stop()
	last, idleSince, suspect := j.progress.Load(), time.Now(), false
	for {
		select {
		case <-t.C:
		case <-j.halt:
			return
		}
		if p := j.progress.Load(); p != last {
			last, idleSince, suspect = p, time.Now(), false
			continue
		}
		if time.Since(idleSince) < j.opts.StallCheck {
			continue
		}
		switch {
		case !j.stalled():
			idleSince, suspect = time.Now(), false
		case !suspect:
			suspect = true
			idleSince = time.Now().Add(-j.opts.StallCheck + tick)
		default:
			idleSince, suspect = time.Now(), false
			j.mu.Lock()
			it := j.it
			if j.halted {
				it = nil
			} else {
				j.kicked = "stalled"
			}
			j.mu.Unlock()
			if it != nil {
				// Outside mu: Stop waits while nats.go recreates its
				// consumer (until its next attempt, 10 s at most).
				it.Stop()
			}
		}
	}
}

func (j *Journal) handle(msg jetstream.Msg) {
	md, err := msg.Metadata()
	if err != nil {
		j.m.corrupt.Inc()
		return
	}
	seq := md.Sequence.Stream
	if seq <= j.skipTo || seq <= j.lastApplied.Load() {
		// Stored before (the ordered consumer starts after the replay
		// point, and after the last one applied when it starts again, so
		// this is a safety net): not again.
		j.m.skipped.Inc()
		return
	}
	j.lastApplied.Store(seq)
	m, err := ingest.DecodeRecord(msg.Data())
	if err != nil {
		j.m.corrupt.Inc()
		j.opts.Logger.Error("ingest message skipped: it does not decode", "seq", seq, "error", err)
		return
	}
	m.Seq = seq
	(*j.consumer.Load()).ApplyDurable(m)
	j.m.applied.Inc()
}

// after is the last stream sequence of this node's subject handled:
// applied, skipped as corrupt, or stored before Start.
func (j *Journal) after() uint64 { return max(j.skipTo, j.lastApplied.Load()) }

// stalled reports whether the stream holds a message of this node's
// subject after the last one handled (one JetStream call); false when
// JetStream does not answer (the iterator's errors deal with that).
func (j *Journal) stalled() bool {
	ctx, cancel := context.WithTimeout(context.Background(), j.opts.StallCheck)
	defer cancel()
	m, err := j.stream.GetLastMsgForSubject(ctx, j.subject)
	if err != nil {
		return false // ErrMsgNotFound: nothing there (purged); or JetStream away
	}
	return m.Sequence > j.after()
}

// pause waits d or until Drain.
func (j *Journal) pause(d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-j.halt:
	}
}

// resync stops the iterator and opens an ordered consumer again after
// the last message handled. When JetStream does not answer the stopped
// iterator brings the consumer back here (iterator ended).
func (j *Journal) resync(reason string) {
	j.m.resyncs.Inc()
	j.progress.Add(1)
	from := j.after() + 1
	j.logSometimes.Do(func() {
		j.opts.Logger.Warn("ingest consumer: starting again after the last message applied", "reason", reason, "seq", from)
	})
	j.mu.Lock()
	old := j.it
	j.mu.Unlock()
	old.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), startWait)
	defer cancel()
	go func() { // Drain does not wait startWait for JetStream
		select {
		case <-j.halt:
			cancel()
		case <-ctx.Done():
		}
	}()
	it, err := j.iterate(ctx, from)
	if err != nil {
		j.logSometimes.Do(func() { j.opts.Logger.Warn("ingest consumer: start again", "error", err) })
		return
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.halted {
		it.Stop()
		return
	}
	j.it = it
}

func (j *Journal) checkpointLoop() {
	defer close(j.loopDone)
	t := time.NewTicker(j.opts.CheckpointEvery)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			j.checkpoint()
		case <-j.stop:
			return
		}
	}
}

// checkpoint purges this node's subject up to what the telemetry store
// has committed: JetStream keeps only what the node may still need.
func (j *Journal) checkpoint() {
	c := j.opts.Applied()
	if c <= j.purged {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), j.opts.AckTimeout)
	defer cancel()
	if err := j.stream.Purge(ctx, jetstream.WithPurgeSubject(j.subject), jetstream.WithPurgeSequence(c+1)); err != nil {
		// Harmless: the next start reads after the replay point anyway;
		// retried next tick.
		j.logSometimes.Do(func() { j.opts.Logger.Warn("ingest checkpoint: purge failed", "error", err) })
		return
	}
	j.purged = c
}

// Drain refuses appends from now on, waits for the answers to the
// outstanding publishes (AckTimeout at most), then stops the consumer once
// what it was handed is applied. What JetStream holds beyond it stays in
// the stream for the next start.
func (j *Journal) Drain() {
	j.drainOnce.Do(func() {
		j.pub.Close()
		if j.started {
			j.mu.Lock()
			j.halted = true
			it := j.it
			j.mu.Unlock()
			it.Stop()
			close(j.halt)
			<-j.consumerDone
			<-j.watchDone
		}
	})
}

// Close drains the journal, stops the checkpoint loop and purges what the
// telemetry store committed. It does not close the NATS connection.
func (j *Journal) Close() error {
	j.Drain()
	j.closeOnce.Do(func() {
		close(j.stop)
		if j.started {
			<-j.loopDone
			j.checkpoint()
		}
	})
	return nil
}

// Pending returns how many messages of this node's subject the stream
// holds (applied and committed ones until the next purge included).
func (j *Journal) Pending(ctx context.Context) (uint64, error) {
	info, err := j.stream.Info(ctx, jetstream.WithSubjectFilter(j.subject))
	if err != nil {
		return 0, err
	}
	return info.State.Subjects[j.subject], nil
}
