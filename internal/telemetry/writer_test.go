package telemetry_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/telemetry"
	"github.com/moteiot/mote/internal/telemetry/sqlite"
)

func openStore(t *testing.T) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(filepath.Join(t.TempDir(), "telemetry.db"))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func newWriter(t *testing.T, s telemetry.Store, opts telemetry.WriterOptions) *telemetry.Writer {
	t.Helper()
	w, err := telemetry.NewWriter(t.Context(), s, opts)
	if err != nil {
		t.Fatalf("NewWriter: %v", err)
	}
	t.Cleanup(func() { w.Close() })
	return w
}

// points returns count points of thing, key k, at ts from, from+1, ...
func points(thing string, from int64, count int) []telemetry.Point {
	ps := make([]telemetry.Point, count)
	for i := range ps {
		ps[i] = telemetry.Point{Thing: thing, Key: "k", TS: from + int64(i), Value: telemetry.Number(float64(from) + float64(i))}
	}
	return ps
}

// count returns how many points of thing the store has.
func count(t *testing.T, s telemetry.Store, thing string) int {
	t.Helper()
	b, err := s.Aggregate(t.Context(), telemetry.AggQuery{Things: []string{thing}, From: 0, To: telemetry.MaxTS + 1,
		Interval: 100000 * time.Hour, Func: telemetry.AggCount})
	if err != nil {
		t.Fatalf("Aggregate: %v", err)
	}
	n := 0
	for _, x := range b {
		n += int(x.Value)
	}
	return n
}

func lastSeq(t *testing.T, s telemetry.Store) uint64 {
	t.Helper()
	seq, err := s.LastSeq(t.Context())
	if err != nil {
		t.Fatalf("LastSeq: %v", err)
	}
	return seq
}

func TestWriterConcurrentAdd(t *testing.T) {
	s := openStore(t)
	ctx := t.Context()
	w := newWriter(t, s, telemetry.WriterOptions{FlushInterval: 5 * time.Millisecond, FlushPoints: 300})
	var wg sync.WaitGroup
	// Producers of points that do not come from the WAL...
	for g := range 6 {
		wg.Go(func() {
			for i := range 50 {
				if err := w.Add(ctx, points(fmt.Sprintf("g%d", g), int64(i*10), 10), 0); err != nil {
					t.Errorf("Add: %v", err)
					return
				}
			}
		})
	}
	// ... and the WAL consumer, in sequence order.
	wg.Go(func() {
		for seq := uint64(1); seq <= 200; seq++ {
			if err := w.Add(ctx, points("wal", int64(seq*3), 3), seq); err != nil {
				t.Errorf("Add(seq %d): %v", seq, err)
				return
			}
		}
	})
	// Flushes meanwhile.
	wg.Go(func() {
		for range 5 {
			if err := w.Flush(ctx); err != nil {
				t.Errorf("Flush: %v", err)
			}
		}
	})
	wg.Wait()
	if err := w.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	for g := range 6 {
		if got := count(t, s, fmt.Sprintf("g%d", g)); got != 500 {
			t.Errorf("points of g%d = %d; want 500", g, got)
		}
	}
	if got := count(t, s, "wal"); got != 600 {
		t.Errorf("points of wal = %d; want 600", got)
	}
	if got := lastSeq(t, s); got != 200 {
		t.Errorf("LastSeq() = %d; want 200", got)
	}
	if got := w.Committed(); got != 200 {
		t.Errorf("Committed() = %d; want 200", got)
	}
}

func TestWriterFlushOnClose(t *testing.T) {
	s := openStore(t)
	ctx := t.Context()
	// Neither the interval nor the size would flush during the test.
	w, err := telemetry.NewWriter(ctx, s, telemetry.WriterOptions{FlushInterval: time.Hour, FlushPoints: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	for seq := uint64(1); seq <= 10; seq++ {
		if err := w.Add(ctx, points("d", int64(seq*100), 7), seq); err != nil {
			t.Fatal(err)
		}
	}
	if got := count(t, s, "d"); got != 0 {
		t.Fatalf("points before Close = %d; want 0 (nothing flushed yet)", got)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if got := count(t, s, "d"); got != 70 {
		t.Errorf("points after Close = %d; want 70", got)
	}
	if got := lastSeq(t, s); got != 10 {
		t.Errorf("LastSeq() after Close = %d; want 10", got)
	}
	if err := w.Add(ctx, points("d", 1, 1), 11); !errors.Is(err, telemetry.ErrWriterClosed) {
		t.Errorf("Add after Close = %v; want ErrWriterClosed", err)
	}
	if err := w.Close(); err != nil {
		t.Errorf("second Close = %v; want nil", err)
	}
}

// TestWriterBackpressure: while a large batch is being written, an Add
// that would overflow the backlog waits until it is stored.
func TestWriterBackpressure(t *testing.T) {
	s := openStore(t)
	ctx := t.Context()
	w := newWriter(t, s, telemetry.WriterOptions{FlushInterval: time.Millisecond, FlushPoints: 1000, MaxBacklog: 1000, MaxWait: time.Minute})
	big := points("big", 0, 20000) // more than MaxBacklog: accepted because the backlog is empty
	if err := w.Add(ctx, big, 1); err != nil {
		t.Fatalf("Add(big): %v", err)
	}
	start := time.Now()
	if err := w.Add(ctx, points("small", 0, 10), 2); err != nil {
		t.Fatalf("Add(small): %v", err)
	}
	waited := time.Since(start)
	// The small Add returned only once the big batch was stored.
	if got := lastSeq(t, s); got < 1 {
		t.Errorf("LastSeq() when Add(small) returned = %d; want >= 1: Add did not wait for the backlog", got)
	}
	t.Logf("Add waited %v for 20,000 points to be written", waited)
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got := count(t, s, "big") + count(t, s, "small"); got != 20010 {
		t.Errorf("points = %d; want 20010", got)
	}

	// With a short MaxWait, the Add fails instead, and so does one whose
	// context ends.
	w2 := newWriter(t, s, telemetry.WriterOptions{FlushPoints: 1000, MaxBacklog: 1000, MaxWait: time.Millisecond})
	if err := w2.Add(ctx, points("big2", 0, 20000), 3); err != nil {
		t.Fatalf("Add(big2): %v", err)
	}
	err := w2.Add(ctx, points("small2", 0, 10), 4)
	if core.KindOf(err) != core.KindUnavailable {
		t.Errorf("Add on a full backlog with MaxWait 1ms = %v; want a KindUnavailable error", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := w2.Add(cctx, points("small2", 0, 10), 5); !errors.Is(err, context.Canceled) {
		t.Errorf("Add on a full backlog with a canceled context = %v; want context.Canceled", err)
	}
	if err := w2.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if got := count(t, s, "small2"); got != 0 {
		t.Errorf("points of refused Adds = %d; want 0", got)
	}
	if got := lastSeq(t, s); got != 3 {
		t.Errorf("LastSeq() = %d; want 3", got)
	}
}

func TestWriterSequence(t *testing.T) {
	s := openStore(t)
	ctx := t.Context()
	if err := s.Append(ctx, points("d", 0, 1), 10); err != nil {
		t.Fatal(err)
	}
	w := newWriter(t, s, telemetry.WriterOptions{})
	if got := w.Committed(); got != 10 {
		t.Errorf("Committed() of a new Writer = %d; want the store's LastSeq 10", got)
	}
	if err := w.Add(ctx, points("d", 100, 1), 7); err != nil { // a replay
		t.Errorf("Add(seq 7 <= LastSeq 10) = %v; want nil (ignored)", err)
	}
	if err := w.Add(ctx, points("d", 200, 1), 11); err != nil {
		t.Fatal(err)
	}
	if err := w.Add(ctx, points("d", 300, 1), 11); err == nil {
		t.Error("Add(seq 11) twice: want an error")
	}
	if err := w.Add(ctx, points("d", 400, 1), 0); err != nil {
		t.Errorf("Add(seq 0) = %v", err)
	}
	err := w.Add(ctx, []telemetry.Point{{Thing: "d", Key: "", TS: 1, Value: telemetry.Number(1)}}, 12)
	if core.KindOf(err) != core.KindInvalid {
		t.Errorf("Add of an invalid point = %v; want KindInvalid", err)
	}
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	got, _, err := s.Range(ctx, telemetry.RangeQuery{Things: []string{"d"}, From: 0, To: 1000, Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	var ts []int64
	for _, p := range got {
		ts = append(ts, p.TS)
	}
	if fmt.Sprint(ts) != "[0 200 400]" {
		t.Errorf("stored timestamps = %v; want [0 200 400]", ts)
	}
	if got := lastSeq(t, s); got != 11 {
		t.Errorf("LastSeq() = %d; want 11", got)
	}
	// The invalid point did not take seq 12.
	if err := w.Add(ctx, points("d", 500, 1), 12); err != nil {
		t.Errorf("Add(seq 12) after the refused one = %v", err)
	}
}

// failing makes the first fails Appends of the real store fail.
type failing struct {
	telemetry.Store
	fails atomic.Int32
}

var errDisk = errors.New("disk on fire")

func (f *failing) Append(ctx context.Context, points []telemetry.Point, seq uint64) error {
	if f.fails.Add(-1) >= 0 {
		return errDisk
	}
	return f.Store.Append(ctx, points, seq)
}

func TestWriterRetry(t *testing.T) {
	s := openStore(t)
	ctx := t.Context()
	f := &failing{Store: s}
	f.fails.Store(2)
	var mu sync.Mutex
	var reported []error
	w := newWriter(t, f, telemetry.WriterOptions{FlushInterval: time.Millisecond, OnError: func(err error) {
		mu.Lock()
		reported = append(reported, err)
		mu.Unlock()
	}})
	if err := w.Add(ctx, points("d", 0, 5), 1); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(ctx); !errors.Is(err, errDisk) {
		t.Errorf("Flush while writes fail = %v; want %v", err, errDisk)
	}
	if err := w.Add(ctx, points("d", 5, 5), 2); err != nil {
		t.Fatal(err)
	}
	// The Writer retries in order until the store works again.
	deadline := time.Now().Add(10 * time.Second)
	for w.Flush(ctx) != nil {
		if time.Now().After(deadline) {
			t.Fatal("writes still failing after 10s")
		}
	}
	if got := count(t, s, "d"); got != 10 {
		t.Errorf("points = %d; want 10 (each exactly once)", got)
	}
	if got := lastSeq(t, s); got != 2 {
		t.Errorf("LastSeq() = %d; want 2", got)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(reported) != 2 {
		t.Errorf("OnError was called %d times; want 2", len(reported))
	}
	for _, err := range reported {
		if !errors.Is(err, errDisk) {
			t.Errorf("OnError got %v; want it to wrap %v", err, errDisk)
		}
	}
}

// TestWriterCloseFails: a write that fails at Close is given up, and
// nothing after it is written, so LastSeq stays before the lost points.
func TestWriterCloseFails(t *testing.T) {
	s := openStore(t)
	ctx := t.Context()
	f := &failing{Store: s}
	w, err := telemetry.NewWriter(ctx, f, telemetry.WriterOptions{FlushInterval: time.Hour, FlushPoints: 10, MaxBacklog: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	f.fails.Store(1 << 20)
	for seq := uint64(1); seq <= 5; seq++ {
		if err := w.Add(ctx, points("d", int64(seq*100), 10), seq); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); !errors.Is(err, errDisk) {
		t.Errorf("Close = %v; want %v", err, errDisk)
	}
	f.fails.Store(0)
	if got := lastSeq(t, s); got != 0 {
		t.Errorf("LastSeq() = %d; want 0", got)
	}
	if got := count(t, s, "d"); got != 0 {
		t.Errorf("points = %d; want 0", got)
	}
}

func TestRunRetention(t *testing.T) {
	s := openStore(t)
	ctx, cancel := context.WithCancel(t.Context())
	now := time.Now().UnixMilli()
	old := now - 2*3600*1000
	if err := s.Append(ctx, []telemetry.Point{
		{Thing: "d", Key: "old", TS: old, Value: telemetry.Number(1)},
		{Thing: "d", Key: "new", TS: now, Value: telemetry.Number(2)},
	}, 1); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		telemetry.RunRetention(ctx, s, time.Hour, 10*time.Millisecond, slog.New(slog.DiscardHandler))
		close(done)
	}()
	// Retention runs every 10ms: check after each of its rounds could have
	// run, until the old point is gone or the deadline passes.
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for count(t, s, "d") != 1 {
		select {
		case <-tick.C:
		case <-deadline.C:
			t.Fatal("retention did not delete the old point within 10s")
		}
	}
	cancel()
	<-done
	keys, _ := s.Keys(t.Context(), "d")
	if fmt.Sprint(keys) != "[new]" {
		t.Errorf("Keys(d) after retention = %v; want [new]", keys)
	}
	// keep <= 0 keeps everything and returns at once.
	telemetry.RunRetention(t.Context(), s, 0, time.Millisecond, nil)
}

// BenchmarkIngest is the whole ingest path of a telemetry message: Flatten
// its JSON, Add its points to a Writer with the message's WAL sequence
// number, and the Writer's batched Appends to the SQLite store. Messages
// of 3 numeric fields from 100 things; it reports messages/s.
func BenchmarkIngest(b *testing.B) {
	s, err := sqlite.Open(filepath.Join(b.TempDir(), "telemetry.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := b.Context()
	w, err := telemetry.NewWriter(ctx, s, telemetry.WriterOptions{})
	if err != nil {
		b.Fatal(err)
	}
	payloads := make([][]byte, 1000)
	for i := range payloads {
		payloads[i] = fmt.Appendf(nil, `{"temp":%.2f,"hum":%d,"volt":%.3f}`, 15+float64(i%200)/10, 30+i%50, 3.3+float64(i%9)/100)
	}
	things := make([]string, 100)
	for i := range things {
		things[i] = fmt.Sprintf("sensor-%03d", i)
	}
	base := time.Date(2024, 6, 10, 0, 0, 0, 0, time.UTC)
	var pts []telemetry.Point
	b.ReportAllocs()
	b.ResetTimer()
	start, cpu := time.Now(), cpuTime()
	for i := range b.N {
		received := base.Add(time.Duration(i/len(things)) * time.Second)
		ts, fields, err := telemetry.Flatten(payloads[i%len(payloads)], received)
		if err != nil {
			b.Fatal(err)
		}
		pts = pts[:0]
		for _, f := range fields {
			pts = append(pts, telemetry.Point{Thing: things[i%len(things)], Key: f.Key, TS: ts, Value: f.Value})
		}
		if err := w.Add(ctx, pts, uint64(i+1)); err != nil {
			b.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
	b.ReportMetric(float64(cpuTime()-cpu)/float64(b.N), "cpu-ns/msg")
}
