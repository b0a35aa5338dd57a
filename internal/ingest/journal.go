// Package ingest keeps Mote's promise that a message a device had
// acknowledged is not lost: a QoS 1 or 2 publish that an enabled rule
// stores as telemetry is appended to a write-ahead log (package wal) and
// acknowledged only when the append is on disk; the journal then hands
// such messages, in log order, to one consumer — the rules engine's
// durable pass, which writes their telemetry with the message's sequence
// number — and checkpoints the log up to what the telemetry store has
// committed. On start, what was durable but not yet applied is replayed,
// and the store's last sequence number makes the replay skip what it has
// (nothing is stored twice).
//
//	broker OnPublish ── Append (group commit, fsync) ──▶ PUBACK
//	                         │ in sequence order, after the fsync
//	                         ▼
//	                    feed (bounded) ──▶ Apply (one goroutine)
//	                                          └─▶ telemetry.Writer.Add(points, seq)
//	checkpoint loop: wal.SetCheckpoint(Applied()) every second
package ingest

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/wal"
)

// Options configure a Journal.
type Options struct {
	Dir    string // the log's directory (required)
	NoSync bool   // skip fsync: tests and benchmarks of other parts only

	// Applied returns the largest sequence number the consumer has made
	// durable itself (the telemetry writer's Committed): the log is
	// checkpointed up to it and replayed after it.
	Applied func() uint64

	CheckpointEvery time.Duration // default 1s
	FeedSize        int           // messages between the log and the consumer; default 16,384
	Logger          *slog.Logger
	Metrics         prometheus.Registerer // nil: not registered
}

type entry struct {
	seq uint64
	rec []byte
}

// Journal is the durable queue of acknowledged messages. Open it, Start
// it (replay, then the consumer), Append from the broker, and at shutdown
// Drain it once nothing appends any more, then Close it once the consumer's
// writes are flushed.
type Journal struct {
	opts     Options
	log      *wal.Log
	consumer atomic.Pointer[Consumer] // set by Start
	feed     chan entry

	consumerDone chan struct{}
	stop         chan struct{}
	loopDone     chan struct{}
	started      bool // Start ran: the consumer and the checkpoint loop exist
	drainOnce    sync.Once
	closeOnce    sync.Once
	checkpointed uint64 // owned by the checkpoint loop, then by Close
	// checkpointFailing: the last checkpoint failed (logged once); owned
	// like checkpointed.
	checkpointFailing bool

	m journalMetrics
}

type journalMetrics struct {
	appended    prometheus.Counter
	failed      prometheus.Counter
	replayed    prometheus.Counter
	corrupt     prometheus.Counter
	torn        prometheus.Counter
	writeErrors prometheus.Counter
	recovered   prometheus.Counter
}

// Open opens the log in o.Dir. Numbering continues after o.Applied(),
// so a lost log never reuses a number the store has seen.
func Open(o Options) (*Journal, error) {
	if o.Dir == "" || o.Applied == nil {
		return nil, errors.New("ingest: Dir and Applied are required")
	}
	if o.CheckpointEvery <= 0 {
		o.CheckpointEvery = time.Second
	}
	if o.FeedSize <= 0 {
		o.FeedSize = 16384
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	j := &Journal{
		opts:         o,
		feed:         make(chan entry, o.FeedSize),
		consumerDone: make(chan struct{}),
		stop:         make(chan struct{}),
		loopDone:     make(chan struct{}),
	}
	j.m = journalMetrics{
		appended: prometheus.NewCounter(prometheus.CounterOpts{Name: "mote_ingest_appended_total",
			Help: "Messages made durable in the ingest journal before their acknowledgement."}),
		failed: prometheus.NewCounter(prometheus.CounterOpts{Name: "mote_ingest_append_failures_total",
			Help: "Journal appends that failed (the publish was refused, not acknowledged)."}),
		replayed: prometheus.NewCounter(prometheus.CounterOpts{Name: "mote_ingest_replayed_total",
			Help: "Messages replayed from the journal at start-up."}),
		corrupt: prometheus.NewCounter(prometheus.CounterOpts{Name: "mote_ingest_corrupt_records_total",
			Help: "Journal records that could not be decoded (skipped)."}),
		torn: prometheus.NewCounter(prometheus.CounterOpts{Name: "mote_ingest_torn_tail_bytes_total",
			Help: "Bytes of an incomplete last write cut off the journal at start-up."}),
		writeErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "mote_ingest_write_errors_total",
			Help: "Failed journal writes, fsyncs and attempts to write again (a full or failing disk)."}),
		recovered: prometheus.NewCounter(prometheus.CounterOpts{Name: "mote_ingest_write_recoveries_total",
			Help: "Times the journal wrote again after failing writes."}),
	}
	log := o.Logger
	l, err := wal.Open(o.Dir, wal.Options{After: o.Applied(), NoSync: o.NoSync, OnDurable: j.onDurable,
		OnWriteError: func(err error, first bool, retryIn time.Duration) {
			j.m.writeErrors.Inc()
			// At most one line per attempt, and the attempts back off.
			if first {
				log.Error("ingest journal cannot write; refusing durable publishes until it can", "error", err, "retry_in", retryIn)
			} else {
				log.Warn("ingest journal still cannot write", "error", err, "retry_in", retryIn)
			}
		},
		OnRecovered: func(down time.Duration) {
			j.m.recovered.Inc()
			log.Info("ingest journal writes again; taking durable publishes", "down", down.Round(time.Millisecond))
		},
	})
	if err != nil {
		return nil, fmt.Errorf("ingest: open journal: %w", err)
	}
	j.log = l
	if j.checkpointed, err = l.Checkpoint(); err != nil {
		_ = l.Close()
		return nil, fmt.Errorf("ingest: read checkpoint: %w", err)
	}
	if n := l.TornBytes(); n > 0 {
		j.m.torn.Add(float64(n))
		log.Warn("ingest journal: cut off an incomplete last write (a crash during a write; it was never acknowledged)", "bytes", n)
	}
	if o.Metrics != nil {
		backlog := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "mote_ingest_backlog",
			Help: "Durable messages not yet applied by the telemetry store."}, func() float64 {
			last, applied := l.LastSeq(), o.Applied()
			if applied >= last {
				return 0
			}
			return float64(last - applied)
		})
		writable := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "mote_ingest_writable",
			Help: "1 while the ingest journal can write, 0 while its writes fail and durable publishes are refused."}, func() float64 {
			if l.Err() != nil {
				return 0
			}
			return 1
		})
		o.Metrics.MustRegister(j.m.appended, j.m.failed, j.m.replayed, j.m.corrupt, backlog,
			j.m.torn, j.m.writeErrors, j.m.recovered, writable)
	}
	return j, nil
}

// Start replays the durable messages the consumer has not applied (on the
// caller's goroutine, before returning), then starts the consumer and the
// checkpoint loop, which hands durable messages to c. Call it before
// anything appends.
func (j *Journal) Start(c Consumer) (replayed int, err error) {
	if c == nil {
		return 0, errors.New("ingest: Start needs a consumer")
	}
	j.consumer.Store(&c)
	after := j.opts.Applied()
	err = j.log.Replay(after, func(seq uint64, rec []byte) error {
		j.apply(seq, rec)
		replayed++
		return nil
	})
	j.m.replayed.Add(float64(replayed))
	if err != nil {
		return replayed, fmt.Errorf("ingest: replay: %w", err)
	}
	if replayed > 0 {
		j.opts.Logger.Info("replayed acknowledged messages from the ingest journal", "messages", replayed, "after", after)
	}
	j.started = true
	go j.consume()
	go j.checkpointLoop()
	return replayed, nil
}

// Wants reports whether a message on topic must be appended before it is
// acknowledged.
func (j *Journal) Wants(topic string) bool {
	c := j.consumer.Load()
	return c != nil && (*c).Durable(topic)
}

// Err returns why the journal refuses appends while its writes fail (a
// full disk), or nil while it writes. It recovers by itself.
func (j *Journal) Err() error { return j.log.Err() }

// SetFault installs a fault hook on the log's writes, for tests (see
// wal.Log.SetFault).
func (j *Journal) SetFault(fn func(op string) error) { j.log.SetFault(fn) }

// appendErr turns an append error into the error the edges answer with:
// KindInsufficientStorage while the disk fails, KindUnavailable otherwise
// (closed at shutdown).
func appendErr(err error) error {
	if errors.Is(err, wal.ErrStorage) {
		return &core.Error{Kind: core.KindInsufficientStorage, Msg: "the ingest journal cannot write to its disk; send the message again later", Err: err}
	}
	return &core.Error{Kind: core.KindUnavailable, Msg: "the ingest journal cannot take the message", Err: err}
}

// Append makes m durable and returns its sequence number. It blocks until
// the group commit that carries it is fsynced.
func (j *Journal) Append(m core.Message) (uint64, error) {
	seq, err := j.log.Append(encode(m))
	if err != nil {
		j.m.failed.Inc()
		return 0, appendErr(err)
	}
	j.m.appended.Inc()
	return seq, nil
}

// AppendAsync queues m and returns its sequence number at once, with a
// channel that receives nil when the record is on disk (or the error):
// a publisher can go on reading while its message is being made durable.
func (j *Journal) AppendAsync(m core.Message) (uint64, <-chan error, error) {
	seq, done, err := j.log.AppendAsync(encode(m))
	if err != nil {
		j.m.failed.Inc()
		return 0, nil, appendErr(err)
	}
	j.m.appended.Inc()
	return seq, done, nil
}

// onDurable runs on the log's writer goroutine, in sequence order. The
// record is the one encode made for Append: the journal now owns it.
func (j *Journal) onDurable(seq uint64, rec []byte) {
	j.feed <- entry{seq, rec}
}

func (j *Journal) consume() {
	defer close(j.consumerDone)
	for e := range j.feed {
		j.apply(e.seq, e.rec)
	}
}

func (j *Journal) apply(seq uint64, rec []byte) {
	m, err := decode(rec)
	if err != nil {
		j.m.corrupt.Inc()
		j.opts.Logger.Error("ingest journal record skipped", "seq", seq, "error", err)
		return
	}
	m.Seq = seq
	(*j.consumer.Load()).ApplyDurable(m)
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

func (j *Journal) checkpoint() {
	c := j.opts.Applied()
	if c <= j.checkpointed {
		return
	}
	if err := j.log.SetCheckpoint(c); err != nil {
		// Once per failing stretch, not every tick: it retries next tick.
		if !j.checkpointFailing {
			j.opts.Logger.Warn("ingest journal checkpoint failed; retrying every tick", "error", err)
		}
		j.checkpointFailing = true
		return
	}
	if j.checkpointFailing {
		j.opts.Logger.Info("ingest journal checkpoint written again", "seq", c)
	}
	j.checkpointFailing = false
	j.checkpointed = c
}

// Drain closes the log — appends fail from now on — and waits until the
// consumer has applied everything durable. Call it after the broker has
// stopped.
func (j *Journal) Drain() {
	j.drainOnce.Do(func() {
		if err := j.log.Close(); err != nil {
			j.opts.Logger.Error("ingest journal close", "error", err)
		}
		close(j.feed)
		if j.started {
			<-j.consumerDone
		}
	})
}

// Close drains the journal if needed, stops the checkpoint loop and
// records a last checkpoint: call it after the consumer's writes are
// flushed (the telemetry writer closed), so that a clean restart replays
// nothing.
func (j *Journal) Close() error {
	j.Drain()
	var err error
	j.closeOnce.Do(func() {
		close(j.stop)
		if j.started {
			<-j.loopDone
		}
		c := j.opts.Applied()
		if c > j.checkpointed {
			err = j.log.SetCheckpoint(c)
			j.checkpointed = c
		}
	})
	return err
}
