// Package audit is Mote's audit log (docs/audit.md): who changed what,
// when, from which address and with which result, with the target's JSON
// document before and after the change when it is small, secrets redacted.
//
// The API edge (internal/httpapi) records every state-changing request
// through a Recorder. Recording must neither add a database round trip to
// the request nor lose an entry, so the Recorder is a bounded queue in
// front of one writer that stores entries in batches:
//
//   - Before a change is made, the request Reserves a slot in the queue.
//     When every slot is taken (the store is slow or down), Reserve waits
//     up to QueueWait and then refuses: the API answers 503 and the change
//     is not made. An audit log that silently drops entries would be worse
//     than a refused change.
//   - After the change, the request Commits its entry into the reserved
//     slot; that never blocks. The writer frees the slot once the entry is
//     stored. A failed write is retried with backoff, holding the slots, so
//     that a dead store ends in refusals, not in lost entries.
//
// The log is append-only: the store has no update or delete but Prune,
// which a background pruner runs to keep Retention.
package audit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/store"
)

// Actor kinds.
const (
	ActorUser   = "user"
	ActorToken  = "token"
	ActorDevice = "device"
	ActorSystem = "system"
)

// Options configure a Recorder.
type Options struct {
	Store store.AuditStore
	// Queue is how many entries may wait for the writer (0: 10000);
	// QueueWait how long Reserve waits for a free slot before it refuses
	// (0: 2s).
	Queue     int
	QueueWait time.Duration
	// Retention is how long entries are kept (0: 90 days); the pruner
	// runs every PruneEvery (0: an hour) and once at Start.
	Retention  time.Duration
	PruneEvery time.Duration
	// MaxDocument bounds each of an entry's before and after documents,
	// in bytes, after redaction (0: 8 KiB); larger ones are omitted and
	// the entry flagged.
	MaxDocument int
	// CloseTimeout bounds how long Close writes what is still queued
	// (0: 10s).
	CloseTimeout time.Duration
	Logger       *slog.Logger
	Metrics      prometheus.Registerer // may be nil
}

// batchSize is the most entries the writer stores in one transaction.
const batchSize = 500

// listWait bounds how long List waits for queued entries to be stored.
const listWait = 5 * time.Second

// Recorder records audit entries; see the package documentation.
type Recorder struct {
	o     Options
	st    store.AuditStore
	log   *slog.Logger
	m     *metrics
	slots chan struct{}         // one per reserved, not yet stored entry
	queue chan store.AuditEntry // committed entries waiting for the writer

	mu      sync.RWMutex // closed vs Commit
	closed  bool
	stop    chan struct{} // closed by Close: the writer drains and ends
	done    chan struct{} // closed when the writer has ended
	pruneWG sync.WaitGroup

	// Flush bookkeeping: committed counts entries put in the queue,
	// written those the writer stored (or gave up on at Close).
	committed atomic.Int64
	wmu       sync.Mutex
	written   int64
	wchanged  chan struct{} // closed and replaced whenever written moves

	idMu   sync.Mutex
	lastID int64
	errLog logLimiter
}

// New returns a Recorder; Start starts its writer and pruner.
func New(o Options) *Recorder {
	if o.Queue <= 0 {
		o.Queue = 10_000
	}
	if o.QueueWait <= 0 {
		o.QueueWait = 2 * time.Second
	}
	if o.Retention <= 0 {
		o.Retention = 90 * 24 * time.Hour
	}
	if o.PruneEvery <= 0 {
		o.PruneEvery = time.Hour
	}
	if o.MaxDocument <= 0 {
		o.MaxDocument = 8 << 10
	}
	if o.CloseTimeout <= 0 {
		o.CloseTimeout = 10 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	r := &Recorder{
		o: o, st: o.Store, log: o.Logger,
		slots:    make(chan struct{}, o.Queue),
		queue:    make(chan store.AuditEntry, o.Queue),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
		wchanged: make(chan struct{}),
	}
	r.m = newMetrics(o.Metrics, r)
	return r
}

// MaxDocument is the largest before or after document kept, in bytes.
func (r *Recorder) MaxDocument() int { return r.o.MaxDocument }

// Start starts the writer and the pruner; they run until Close.
func (r *Recorder) Start(ctx context.Context) error {
	if r.st == nil {
		return errors.New("audit: no store")
	}
	go r.writer()
	r.pruneWG.Add(1)
	go r.pruner()
	return nil
}

// Close stops taking entries, stores what is queued (for at most
// CloseTimeout) and stops the pruner. It returns an error when entries
// could not be stored.
func (r *Recorder) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	close(r.stop)
	r.mu.Unlock()
	r.pruneWG.Wait()
	select {
	case <-r.done:
	case <-time.After(r.o.CloseTimeout + time.Second):
		return errors.New("audit: the writer did not end")
	}
	if n := r.m.lostCount.Load(); n > 0 {
		return fmt.Errorf("audit: %d entries could not be stored", n)
	}
	return nil
}

// Slot is a reserved place in the queue for one entry: Commit it or
// Cancel it, exactly once.
type Slot struct {
	r    *Recorder
	used atomic.Bool
}

// ErrFull is the error of a Reserve that found no free slot in time.
var ErrFull = core.Errorf(core.KindUnavailable, "the audit log is not keeping up (its queue is full): the change was not made; retry later")

// Reserve takes a slot in the queue, waiting up to QueueWait (or until
// ctx ends) for one: ErrFull (core.KindUnavailable) when none frees.
func (r *Recorder) Reserve(ctx context.Context) (*Slot, error) {
	r.mu.RLock()
	closed := r.closed
	r.mu.RUnlock()
	if closed {
		return nil, core.Errorf(core.KindUnavailable, "the server is shutting down")
	}
	select {
	case r.slots <- struct{}{}:
		return &Slot{r: r}, nil
	default:
	}
	t := time.NewTimer(r.o.QueueWait)
	defer t.Stop()
	select {
	case r.slots <- struct{}{}:
		return &Slot{r: r}, nil
	case <-t.C:
	case <-ctx.Done():
	}
	r.m.refused.Inc()
	r.errLog.log(r.log, "audit: queue full, refusing a change", "queue", r.o.Queue)
	return nil, ErrFull
}

// Cancel gives the slot back without an entry.
func (s *Slot) Cancel() {
	if s == nil || !s.used.CompareAndSwap(false, true) {
		return
	}
	<-s.r.slots
}

// Commit queues e in the slot; it never blocks. A zero ID and Time are
// filled in.
func (s *Slot) Commit(e store.AuditEntry) {
	if s == nil || !s.used.CompareAndSwap(false, true) {
		return
	}
	r := s.r
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	e.Time = e.Time.UTC().Truncate(time.Millisecond)
	if e.ID == "" {
		e.ID = r.newID(e.Time)
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.closed {
		<-r.slots
		r.m.lost.Inc()
		r.m.lostCount.Add(1)
		return
	}
	r.committed.Add(1)
	r.queue <- e // a slot is held: there is room
}

// Record reserves a slot and commits e in it (for changes made outside the
// API, such as provisioning).
func (r *Recorder) Record(ctx context.Context, e store.AuditEntry) error {
	s, err := r.Reserve(ctx)
	if err != nil {
		return err
	}
	s.Commit(e)
	return nil
}

// newID returns a time-ordered ID: 16 hex digits of Unix nanoseconds
// (strictly increasing in this process) and 8 random ones (unique across
// the nodes of a cluster).
func (r *Recorder) newID(t time.Time) string {
	r.idMu.Lock()
	n := t.UnixNano()
	if n <= r.lastID {
		n = r.lastID + 1
	}
	r.lastID = n
	r.idMu.Unlock()
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%016x%s", n, hex.EncodeToString(b[:]))
}

// Flush waits until every entry committed before the call is stored, or
// ctx ends.
func (r *Recorder) Flush(ctx context.Context) error {
	target := r.committed.Load()
	for {
		r.wmu.Lock()
		w, ch := r.written, r.wchanged
		r.wmu.Unlock()
		if w >= target {
			return nil
		}
		select {
		case <-ch:
		case <-r.done:
			return nil
		case <-ctx.Done():
			return core.Errorf(core.KindUnavailable, "the audit log is behind: %d entries not yet stored", target-w)
		}
	}
}

func (r *Recorder) markWritten(n int) {
	r.wmu.Lock()
	r.written += int64(n)
	close(r.wchanged)
	r.wchanged = make(chan struct{})
	r.wmu.Unlock()
}

// writer stores queued entries in batches until Close, then drains.
func (r *Recorder) writer() {
	defer close(r.done)
	batch := make([]store.AuditEntry, 0, batchSize)
	for {
		batch = batch[:0]
		select {
		case e := <-r.queue:
			batch = append(batch, e)
		case <-r.stop:
			r.drain()
			return
		}
	fill:
		for len(batch) < batchSize {
			select {
			case e := <-r.queue:
				batch = append(batch, e)
			default:
				break fill
			}
		}
		if !r.store(batch, r.stop) {
			r.drainAfter(batch)
			return
		}
	}
}

// store writes a batch, retrying with backoff until it is stored (true)
// or stop is closed (false: not stored).
func (r *Recorder) store(batch []store.AuditEntry, stop <-chan struct{}) bool {
	backoff := 100 * time.Millisecond
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := r.st.Append(ctx, batch)
		cancel()
		if err == nil {
			for range batch {
				<-r.slots
			}
			r.m.recorded.Add(float64(len(batch)))
			r.markWritten(len(batch))
			return true
		}
		r.m.writeErrors.Inc()
		r.errLog.log(r.log, "audit: storing entries failed; retrying", "entries", len(batch), "err", err)
		select {
		case <-time.After(backoff):
		case <-stop:
			return false
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// drainAfter is drain with a batch that was not stored yet.
func (r *Recorder) drainAfter(pending []store.AuditEntry) {
	r.drainFrom(append([]store.AuditEntry(nil), pending...))
}

func (r *Recorder) drain() { r.drainFrom(nil) }

// drainFrom stores what is left (Commit no longer queues: closed is set),
// giving up at CloseTimeout; what is not stored is counted lost.
func (r *Recorder) drainFrom(rest []store.AuditEntry) {
	for {
		select {
		case e := <-r.queue:
			rest = append(rest, e)
			continue
		default:
		}
		break
	}
	deadline := time.NewTimer(r.o.CloseTimeout)
	defer deadline.Stop()
	giveUp := make(chan struct{})
	go func() {
		select {
		case <-deadline.C:
			close(giveUp)
		case <-r.done: // the writer ended
		}
	}()
	for len(rest) > 0 {
		n := min(len(rest), batchSize)
		if !r.store(rest[:n], giveUp) {
			break
		}
		rest = rest[n:]
	}
	if len(rest) > 0 {
		r.m.lost.Add(float64(len(rest)))
		r.m.lostCount.Add(int64(len(rest)))
		r.log.Error("audit: entries lost at shutdown: the store did not take them", "entries", len(rest))
		r.markWritten(len(rest))
	}
}

// pruner deletes entries older than Retention, at Start and then every
// PruneEvery.
func (r *Recorder) pruner() {
	defer r.pruneWG.Done()
	t := time.NewTicker(r.o.PruneEvery)
	defer t.Stop()
	for {
		r.Prune(context.Background())
		select {
		case <-t.C:
		case <-r.stop:
			return
		}
	}
}

// Prune deletes the entries older than Retention now and returns how many.
func (r *Recorder) Prune(ctx context.Context) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	n, err := r.st.Prune(ctx, time.Now().Add(-r.o.Retention))
	if err != nil {
		r.errLog.log(r.log, "audit: pruning failed", "err", err)
		return 0, err
	}
	r.m.pruned.Add(float64(n))
	return n, nil
}

// List returns a page of entries that match f, newest first, and the
// cursor of the next page ("" at the end). It first waits (up to
// listWait) for entries committed before it, so that a change is in the
// log when its response has been seen.
func (r *Recorder) List(ctx context.Context, f store.AuditFilter) ([]store.AuditEntry, string, error) {
	fctx, cancel := context.WithTimeout(ctx, listWait)
	_ = r.Flush(fctx)
	cancel()
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	f.Limit = limit
	list, err := r.st.List(ctx, f)
	if err != nil {
		return nil, "", err
	}
	if len(list) < limit {
		return list, "", nil
	}
	// A full page: is there more? (The store's largest page is the
	// largest limit, so limit+1 cannot be asked for.)
	last := list[len(list)-1].ID
	f.After, f.Limit = last, 1
	more, err := r.st.List(ctx, f)
	if err != nil {
		return nil, "", err
	}
	if len(more) == 0 {
		return list, "", nil
	}
	return list, last, nil
}

type metrics struct {
	recorded, refused, writeErrors, lost, pruned prometheus.Counter
	lostCount                                    atomic.Int64
}

func newMetrics(reg prometheus.Registerer, r *Recorder) *metrics {
	m := &metrics{
		recorded: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mote_audit_entries_total", Help: "Audit entries stored.",
		}),
		refused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mote_audit_refused_total", Help: "Changes refused (503) because the audit queue stayed full for --audit-queue-wait.",
		}),
		writeErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mote_audit_write_errors_total", Help: "Failed attempts to store a batch of audit entries (retried).",
		}),
		lost: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mote_audit_lost_total", Help: "Audit entries not stored at shutdown because the store did not take them in time.",
		}),
		pruned: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mote_audit_pruned_total", Help: "Audit entries deleted by retention (--audit-retention).",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.recorded, m.refused, m.writeErrors, m.lost, m.pruned,
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "mote_audit_queue_length", Help: "Audit entries reserved or queued and not yet stored.",
			}, func() float64 { return float64(len(r.slots)) }))
	}
	return m
}

// logLimiter logs a kind of message at most once per 10 seconds.
type logLimiter struct{ last atomic.Int64 }

func (l *logLimiter) log(log *slog.Logger, msg string, args ...any) {
	now := time.Now().UnixNano()
	last := l.last.Load()
	if now-last < int64(10*time.Second) || !l.last.CompareAndSwap(last, now) {
		return
	}
	log.Warn(msg, args...)
}
