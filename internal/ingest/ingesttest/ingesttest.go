// Package ingesttest is the conformance suite of ingest journals
// (ingest.Durable): the write-ahead log of one node and the JetStream
// journal of a cluster node run the same cases.
package ingesttest

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/ingest"
)

// Options are what the suite sets on a journal it opens.
type Options struct {
	Wants   func(topic string) bool
	Apply   func(m core.Message)
	Applied func() uint64
}

// Opener opens a journal on one durable storage with the replay point
// applied: every call within a test opens the same storage again (the same
// directory, the same stream and node), as a restart would. The suite
// starts it with its consumer (Options.Wants, Options.Apply).
type Opener func(applied func() uint64) (ingest.Durable, error)

// Run runs the suite; storage makes a fresh durable storage for a test.
func Run(t *testing.T, storage func(t *testing.T) Opener) {
	t.Run("AppliedInOrderOnce", func(t *testing.T) { testInOrder(t, storage(t)) })
	t.Run("RestartAppliesWhatWasNotCommitted", func(t *testing.T) { testRestart(t, storage(t)) })
	t.Run("RefusedAfterDrain", func(t *testing.T) { testDrain(t, storage(t)) })
	t.Run("Wants", func(t *testing.T) { testWants(t, storage(t)) })
}

// consumer records what a journal applied, and plays the telemetry store:
// commit(c) makes everything up to c durable (Applied returns it).
type consumer struct {
	mu        sync.Mutex
	applied   []core.Message
	committed uint64
	changed   chan struct{}
}

func newConsumer() *consumer { return &consumer{changed: make(chan struct{}, 1)} }

func (c *consumer) opts(wants func(string) bool) Options {
	return Options{Wants: wants, Apply: c.apply, Applied: c.appliedPoint}
}

func (c *consumer) apply(m core.Message) {
	c.mu.Lock()
	c.applied = append(c.applied, m)
	c.mu.Unlock()
	select {
	case c.changed <- struct{}{}:
	default:
	}
}

func (c *consumer) appliedPoint() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.committed
}

func (c *consumer) snapshot() []core.Message {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.applied)
}

// waitFor waits until n messages were applied (10 s at most).
func (c *consumer) waitFor(t *testing.T, n int) []core.Message {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		if got := c.snapshot(); len(got) >= n {
			return got
		}
		select {
		case <-c.changed:
		case <-time.After(20 * time.Millisecond):
		case <-deadline:
			t.Fatalf("applied %d messages in 10 s; want %d", len(c.snapshot()), n)
		}
	}
}

func msg(i int) core.Message {
	return core.Message{Topic: "t/dev/telemetry", Payload: fmt.Appendf(nil, `{"i":%d}`, i), QoS: 1,
		ClientID: "dev", Thing: "dev", Protocol: "mqtt", Received: time.UnixMilli(int64(1000 + i))}
}

func open(t *testing.T, op Opener, o Options) ingest.Durable {
	t.Helper()
	j, err := op(o.Applied)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	if _, err := j.Start(ingest.Funcs{Wants: o.Wants, Apply: o.Apply}); err != nil {
		t.Fatalf("Start: %v", err)
	}
	return j
}

// testInOrder: appends from several publishers are each acknowledged, then
// applied once each, with increasing sequence numbers and their fields.
func testInOrder(t *testing.T, op Opener) {
	c := newConsumer()
	j := open(t, op, c.opts(nil))
	const publishers, each = 4, 50
	var wg sync.WaitGroup
	errs := make(chan error, publishers*each)
	for p := range publishers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var dones []<-chan error
			for i := range each {
				_, done, err := j.AppendAsync(msg(p*each + i))
				if err != nil {
					errs <- err
					return
				}
				dones = append(dones, done)
			}
			for _, d := range dones {
				if err := <-d; err != nil {
					errs <- err
				}
			}
		}()
	}
	if _, err := j.Append(msg(publishers * each)); err != nil {
		t.Fatalf("Append: %v", err)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("append: %v", err)
	}
	got := c.waitFor(t, publishers*each+1)
	j.Drain()
	if err := j.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	got = c.snapshot()
	seen := map[string]bool{}
	var last uint64
	for _, m := range got {
		if m.Seq <= last {
			t.Fatalf("applied seq %d after %d; want increasing", m.Seq, last)
		}
		last = m.Seq
		if m.Topic != "t/dev/telemetry" || m.Thing != "dev" || m.QoS != 1 || m.Protocol != "mqtt" {
			t.Fatalf("applied %+v; fields lost", m)
		}
		if seen[string(m.Payload)] {
			t.Fatalf("applied %s twice", m.Payload)
		}
		seen[string(m.Payload)] = true
	}
	if len(seen) != publishers*each+1 {
		t.Fatalf("applied %d distinct messages; want %d", len(seen), publishers*each+1)
	}
}

// testRestart: the consumer commits only part of what was applied, then the
// journal is closed ("crash"); after reopening, exactly what was not
// committed is applied again, so every message is stored once.
func testRestart(t *testing.T, op Opener) {
	c1 := newConsumer()
	j1 := open(t, op, c1.opts(nil))
	const n = 20
	for i := range n {
		if _, err := j1.Append(msg(i)); err != nil {
			t.Fatalf("Append %d: %v", i, err)
		}
	}
	got1 := c1.waitFor(t, n)
	c1.mu.Lock()
	c1.committed = got1[n/2-1].Seq // the store committed the first half
	c1.mu.Unlock()
	j1.Drain()
	if err := j1.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	c2 := newConsumer()
	c2.committed = got1[n/2-1].Seq // what the store has after the restart
	j2 := open(t, op, c2.opts(nil))
	got2 := c2.waitFor(t, n-n/2)
	// Nothing more may come: append a marker and wait for it.
	if _, err := j2.Append(msg(n)); err != nil {
		t.Fatalf("Append after restart: %v", err)
	}
	got2 = c2.waitFor(t, n-n/2+1)
	j2.Drain()
	if err := j2.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	stored := map[string]int{}
	for _, m := range got1[:n/2] {
		stored[string(m.Payload)]++
	}
	for _, m := range got2 {
		if m.Seq <= c2.committed {
			t.Errorf("after the restart applied seq %d, at or below the committed %d", m.Seq, c2.committed)
		}
		stored[string(m.Payload)]++
	}
	for i := range n + 1 {
		if k := stored[string(msg(i).Payload)]; k != 1 {
			t.Errorf("message %d stored %d times; want exactly once", i, k)
		}
	}
}

// testDrain: after Drain an append is refused with an error of a kind the
// edges map (never acknowledged), and nothing more is applied.
func testDrain(t *testing.T, op Opener) {
	c := newConsumer()
	j := open(t, op, c.opts(nil))
	if _, err := j.Append(msg(1)); err != nil {
		t.Fatal(err)
	}
	c.waitFor(t, 1)
	j.Drain()
	_, err := j.Append(msg(2))
	if err == nil {
		t.Fatal("Append after Drain succeeded")
	}
	var ce *core.Error
	if !errors.As(err, &ce) || ce.Kind != core.KindUnavailable {
		t.Errorf("Append after Drain: %v; want a core.KindUnavailable error", err)
	}
	if _, _, err := j.AppendAsync(msg(3)); err == nil {
		t.Error("AppendAsync after Drain succeeded")
	}
	if err := j.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if got := c.snapshot(); len(got) != 1 {
		t.Errorf("applied %d messages; want 1", len(got))
	}
}

func testWants(t *testing.T, op Opener) {
	c := newConsumer()
	j := open(t, op, c.opts(func(topic string) bool { return topic == "a" }))
	if !j.Wants("a") || j.Wants("b") {
		t.Errorf("Wants(a), Wants(b) = %v, %v; want true, false", j.Wants("a"), j.Wants("b"))
	}
	j.Drain()
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	// Not started yet: no consumer, so nothing is wanted.
	j2, err := op(c.appliedPoint)
	if err != nil {
		t.Fatal(err)
	}
	defer j2.Close()
	if j2.Wants("a") {
		t.Error("Wants before Start = true; want false")
	}
	if _, err := j2.Start(ingest.Funcs{Apply: c.apply}); err != nil {
		t.Fatal(err)
	}
	if j2.Wants("a") {
		t.Error("Wants with no Wants function = true; want false")
	}
	j2.Drain()
}
