package telemetry

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/moteiot/mote/internal/core"
)

// WriterOptions tune a Writer. Zero values take the defaults.
type WriterOptions struct {
	// FlushInterval is the longest points wait before they are written
	// (default 100ms).
	FlushInterval time.Duration
	// FlushPoints starts a write as soon as this many points are pending
	// (default 5,000).
	FlushPoints int
	// MaxBacklog bounds the points pending or being written; an Add that
	// would exceed it waits (default 4 × FlushPoints). An Add of more points
	// than MaxBacklog is accepted when nothing else is pending.
	MaxBacklog int
	// MaxWait is the longest an Add waits for room in the backlog before it
	// fails with a KindUnavailable error (default 10s).
	MaxWait time.Duration
	// OnError is called, from the Writer's goroutine, for every failed
	// write. The Writer retries the write (with a growing pause, at most
	// 5s) until it succeeds or the Writer is closed. nil: errors are only
	// returned by Flush and Close.
	OnError func(error)
}

func (o *WriterOptions) setDefaults() {
	if o.FlushInterval <= 0 {
		o.FlushInterval = 100 * time.Millisecond
	}
	if o.FlushPoints <= 0 {
		o.FlushPoints = 5000
	}
	if o.MaxBacklog <= 0 {
		o.MaxBacklog = 4 * o.FlushPoints
	}
	if o.MaxWait <= 0 {
		o.MaxWait = 10 * time.Second
	}
}

// ErrWriterClosed is returned by Add and Flush after Close.
var ErrWriterClosed error = &core.Error{Kind: core.KindUnavailable, Msg: "telemetry writer is closed"}

// Writer batches the points of many messages into few Store.Append calls:
// it writes whatever is pending every FlushInterval, or as soon as
// FlushPoints are pending, one transaction per write, and records the
// largest sequence number of the batch with it.
//
// Sequence numbers must increase from one Add to the next (the order of
// the WAL), and all points of one message must come in one Add: an Add
// with a sequence number at or below the Store's LastSeq when the Writer
// was made is a replay and is ignored; one at or below an earlier Add's is
// refused. Add with seq 0 adds points that do not come from the WAL; they
// may come from any goroutine in any order.
//
// A failed write is retried, in order, until it succeeds, so a later batch
// is never recorded before an earlier one and LastSeq never passes a
// message that was not stored. Meanwhile the backlog fills and Add blocks,
// then fails: the Writer slows its producers rather than dropping points.
type Writer struct {
	store Store
	opts  WriterOptions

	mu        sync.Mutex
	pending   []Point
	spare     []Point // the previous batch's array, for reuse
	pendSeq   uint64  // largest seq among the pending Adds (0: none)
	pendSpans []Span  // the pending points by message, for a SpanAppender
	inflight  int     // points being written
	replayed  uint64  // LastSeq when the Writer was made
	added     uint64  // seq of the last accepted Add with a seq
	addGen    uint64  // number of accepted Adds
	doneGen   uint64  // accepted Adds whose points are stored
	flushTo   uint64  // Flush waits for the Adds up to this one
	committed uint64  // largest seq stored
	failures  uint64  // failed writes so far
	lastErr   error
	closed    bool
	closeErr  error
	changed   chan struct{} // closed and replaced whenever the state above changes

	kick chan struct{} // wakes the writer goroutine
	quit chan struct{} // closed by Close
	done chan struct{} // closed when the writer goroutine has ended
}

// NewWriter starts a Writer on s. It reads s.LastSeq to recognise replayed
// messages. The caller closes the Writer (Close) before s.
func NewWriter(ctx context.Context, s Store, opts WriterOptions) (*Writer, error) {
	last, err := s.LastSeq(ctx)
	if err != nil {
		return nil, fmt.Errorf("telemetry: writer: %w", err)
	}
	opts.setDefaults()
	w := &Writer{
		store:     s,
		opts:      opts,
		replayed:  last,
		added:     last,
		committed: last,
		changed:   make(chan struct{}),
		kick:      make(chan struct{}, 1),
		quit:      make(chan struct{}),
		done:      make(chan struct{}),
	}
	go w.run()
	return w, nil
}

// broadcast wakes everyone waiting for a change; w.mu is held.
func (w *Writer) broadcast() {
	close(w.changed)
	w.changed = make(chan struct{})
}

func (w *Writer) wake() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// Add queues points for writing; seq is the WAL sequence number of the
// message they come from (0: not from the WAL). It copies points, so the
// caller may reuse the slice. It returns once the points are queued, not
// stored (Flush waits for that). Invalid points are refused at once with
// a KindInvalid error (ValidatePoints). When the backlog is full Add
// waits, at most MaxWait (then a KindUnavailable error) and until ctx
// ends.
func (w *Writer) Add(ctx context.Context, points []Point, seq uint64) error {
	if len(points) == 0 && seq == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := ValidatePoints(points); err != nil {
		return err
	}
	var timer *time.Timer
	w.mu.Lock()
	for {
		if w.closed {
			w.mu.Unlock()
			return ErrWriterClosed
		}
		if seq != 0 && seq <= w.replayed {
			w.mu.Unlock()
			return nil // stored before: a replay
		}
		if seq != 0 && seq <= w.added {
			added := w.added
			w.mu.Unlock()
			return core.Errorf(core.KindInternal, "telemetry writer: sequence number %d is not after %d: messages must be added in the order of the log, each in one Add", seq, added)
		}
		backlog := len(w.pending) + w.inflight
		if backlog == 0 || backlog+len(points) <= w.opts.MaxBacklog {
			break
		}
		ch := w.changed
		w.mu.Unlock()
		if timer == nil {
			timer = time.NewTimer(w.opts.MaxWait)
			defer timer.Stop()
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-timer.C:
			return &core.Error{Kind: core.KindUnavailable,
				Msg: fmt.Sprintf("telemetry store is overloaded: %d points waited %s for room in the write backlog", len(points), w.opts.MaxWait)}
		}
		w.mu.Lock()
	}
	w.pending = append(w.pending, points...)
	if n := len(w.pendSpans); seq == 0 && n > 0 && w.pendSpans[n-1].Seq == 0 {
		w.pendSpans[n-1].End = len(w.pending)
	} else {
		w.pendSpans = append(w.pendSpans, Span{End: len(w.pending), Seq: seq})
	}
	if seq != 0 {
		w.added = seq
		w.pendSeq = seq
	}
	w.addGen++
	full := len(w.pending) >= w.opts.FlushPoints
	w.mu.Unlock()
	if full {
		w.wake()
	}
	return nil
}

// Flush writes everything added before it and waits until it is stored.
// If a write fails meanwhile it returns that error (the Writer goes on
// retrying).
func (w *Writer) Flush(ctx context.Context) error {
	w.mu.Lock()
	target := w.addGen
	if w.doneGen >= target {
		w.mu.Unlock()
		return nil
	}
	if w.closed {
		w.mu.Unlock()
		return ErrWriterClosed
	}
	failures := w.failures
	if target > w.flushTo {
		w.flushTo = target
	}
	w.mu.Unlock()
	w.wake()
	for {
		w.mu.Lock()
		switch {
		case w.doneGen >= target:
			w.mu.Unlock()
			return nil
		case w.failures > failures:
			err := w.lastErr
			w.mu.Unlock()
			return err
		}
		ch := w.changed
		w.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Committed returns the largest sequence number the Writer has stored
// (at first, the Store's LastSeq): the WAL may be checkpointed up to it.
func (w *Writer) Committed() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.committed
}

// Close writes what is pending (one more attempt if a write is failing),
// stops the Writer and returns the error of a write that failed then.
// After such a failure nothing later is written either, so LastSeq stays
// before the lost points and the WAL replays them. Adds waiting for room
// fail with ErrWriterClosed. Close does not close the Store.
func (w *Writer) Close() error {
	w.mu.Lock()
	if !w.closed {
		w.closed = true
		close(w.quit)
		w.broadcast()
	}
	w.mu.Unlock()
	<-w.done
	return w.closeErr
}

// run is the writer goroutine.
func (w *Writer) run() {
	defer close(w.done)
	tick := time.NewTicker(w.opts.FlushInterval)
	defer tick.Stop()
	for {
		select {
		case <-w.kick:
		case <-tick.C:
		case <-w.quit:
		}
		if w.flushPending() {
			return
		}
	}
}

// flushPending writes pending batches: one, and more while a batch is
// full, a Flush waits or the Writer is closing. It reports whether the
// Writer is closed and has nothing left.
func (w *Writer) flushPending() (finished bool) {
	for {
		w.mu.Lock()
		if w.closeErr != nil {
			// A batch was given up at Close: writing a later one would
			// record its sequence number and so skip the lost one at replay.
			w.pending, w.pendSeq, w.pendSpans = nil, 0, nil
		}
		if len(w.pending) == 0 && w.pendSeq == 0 {
			closed := w.closed
			w.mu.Unlock()
			return closed
		}
		batch, spans, seq, gen := w.pending, w.pendSpans, w.pendSeq, w.addGen
		w.pending, w.spare, w.pendSeq, w.pendSpans = w.spare[:0], nil, 0, nil
		w.inflight = len(batch)
		w.mu.Unlock()

		w.write(batch, spans, seq, gen)

		w.mu.Lock()
		again := w.closed || len(w.pending) >= w.opts.FlushPoints || w.flushTo > w.doneGen
		w.mu.Unlock()
		if !again {
			return false
		}
	}
}

// write stores one batch, retrying until it succeeds or the Writer closes.
// A SpanAppender store gets the batch message by message, so that what
// another writer of the same journal stored meanwhile is skipped.
func (w *Writer) write(batch []Point, spans []Span, seq, gen uint64) {
	pause := 50 * time.Millisecond
	sa, bySpan := w.store.(SpanAppender)
	for attempt := 1; ; attempt++ {
		var err error
		if bySpan {
			err = sa.AppendSpans(context.Background(), batch, spans)
		} else {
			err = w.store.Append(context.Background(), batch, seq)
		}
		w.mu.Lock()
		if err == nil {
			w.inflight = 0
			w.doneGen = gen
			if seq > w.committed {
				w.committed = seq
			}
			clear(batch) // drop the strings for the garbage collector
			if cap(batch) <= 2*w.opts.MaxBacklog {
				w.spare = batch[:0] // reuse the array, unless an oversized Add made it
			}
			w.broadcast()
			w.mu.Unlock()
			return
		}
		err = fmt.Errorf("telemetry: writing %d points (up to sequence number %d, attempt %d): %w", len(batch), seq, attempt, err)
		w.failures++
		w.lastErr = err
		closed := w.closed
		if closed {
			// Give up: the points stay in the WAL (LastSeq did not move).
			w.inflight = 0
			w.closeErr = errors.Join(w.closeErr, err)
		}
		w.broadcast()
		w.mu.Unlock()
		if w.opts.OnError != nil {
			w.opts.OnError(err)
		}
		if closed {
			return
		}
		t := time.NewTimer(pause)
		select {
		case <-t.C:
		case <-w.quit:
			t.Stop()
		}
		pause = min(2*pause, 5*time.Second)
	}
}
