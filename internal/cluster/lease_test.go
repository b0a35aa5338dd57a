package cluster

import (
	"bytes"
	"context"
	"slices"
	"sync"
	"testing"
	"time"
)

// fakePresence is a LeaseStore: things by node.
type fakePresence struct {
	mu     sync.Mutex
	things map[string][]string // node → things connected on it
	resets []string            // nodes reset, in order
}

func (p *fakePresence) ConnectedNodes(context.Context) ([]string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for n, th := range p.things {
		if len(th) > 0 {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out, nil
}

func (p *fakePresence) ResetNodePresence(_ context.Context, node string) ([]string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := p.things[node]
	delete(p.things, node)
	p.resets = append(p.resets, node)
	return out, nil
}

func (p *fakePresence) resetNodes() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.resets)
}

type lostLog struct {
	mu   sync.Mutex
	lost map[string][]string
}

func (l *lostLog) add(node string, things []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lost == nil {
		l.lost = map[string][]string{}
	}
	l.lost[node] = append(l.lost[node], things...)
}

func (l *lostLog) get(node string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.lost[node])
}

// TestLease: node b stops (its NATS connection closed); a finds it lost
// after the timeout and resets its things once. A node that things are
// connected on but that was never heard ("ghost") is lost too. b, cut
// off, takes nobody for lost.
func TestLease(t *testing.T) {
	s := startNATS(t)
	a := join(t, s, "a", &fakeBroker{}, 0)
	b := join(t, s, "b", &fakeBroker{}, 0)
	storeA := &fakePresence{things: map[string][]string{"b": {"t1", "t2"}, "ghost": {"g1"}}}
	storeB := &fakePresence{things: map[string][]string{"a": {"t3"}}}
	var lostA, lostB lostLog
	o := LeaseOptions{Interval: 20 * time.Millisecond, Timeout: 150 * time.Millisecond}
	oa, ob := o, o
	oa.Store, oa.Lost = storeA, lostA.add
	ob.Store, ob.Lost = storeB, lostB.add
	la, err := a.StartLease(oa)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = la.Close() })
	lb, err := b.StartLease(ob)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a and b to hear each other", func() bool {
		return slices.Equal(la.Nodes(), []string{"a", "b"}) && slices.Equal(lb.Nodes(), []string{"a", "b"})
	})
	waitFor(t, "the ghost node to be found lost", func() bool { return slices.Equal(lostA.get("ghost"), []string{"g1"}) })
	if got := lostA.get("b"); len(got) != 0 {
		t.Fatalf("b was found lost while heard: %v", got)
	}

	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "b to be found lost", func() bool { return slices.Equal(lostA.get("b"), []string{"t1", "t2"}) })
	if got := la.Nodes(); !slices.Equal(got, []string{"a"}) {
		t.Errorf("Nodes = %v; want [a]", got)
	}
	// b is cut off: it must not reset a's things. Give it twice the
	// timeout of checks, counted by its isolated checks.
	waitFor(t, "b's checks while cut off", func() bool { return lb.isolated.Load() >= 10 })
	if got := storeB.resetNodes(); len(got) != 0 {
		t.Errorf("the cut-off node reset %v", got)
	}
	if err := lb.Close(); err != nil {
		t.Errorf("Close of the lease of a closed node = %v", err)
	}
	if got := storeA.resetNodes(); !slices.Equal(got, []string{"ghost", "b"}) {
		t.Errorf("resets = %v; want [ghost b], each once", got)
	}
}

// TestLeaseRejoined: a node that hears itself again after a gap longer
// than the timeout records its connections again.
func TestLeaseRejoined(t *testing.T) {
	s := startNATS(t)
	a := join(t, s, "a", &fakeBroker{}, 0)
	rejoined := make(chan struct{}, 1)
	l, err := a.StartLease(LeaseOptions{Interval: 20 * time.Millisecond, Timeout: 100 * time.Millisecond, Store: &fakePresence{},
		Rejoined: func() { rejoined <- struct{}{} }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	l.mu.Lock()
	l.selfSeen = time.Now().Add(-time.Second) // as if cut off for a second
	l.mu.Unlock()
	select {
	case <-rejoined:
	case <-time.After(10 * time.Second):
		t.Fatal("Rejoined not called")
	}
	if l.rejoined.Load() != 1 {
		t.Errorf("rejoined = %d; want 1", l.rejoined.Load())
	}
}

func TestLeaseOptions(t *testing.T) {
	s := startNATS(t)
	a := join(t, s, "a", &fakeBroker{}, 0)
	for _, o := range []LeaseOptions{{}, {Interval: time.Second, Timeout: time.Second}} {
		if _, err := a.StartLease(o); err == nil {
			t.Errorf("StartLease(%+v) = nil error; want one", o)
		}
	}
}

func TestHeartbeatRoundTrip(t *testing.T) {
	for _, node := range []string{"n", "node-1", "a_b"} {
		if got, err := parseHeartbeat(appendHeartbeat(nil, node)); err != nil || got != node {
			t.Errorf("parseHeartbeat(appendHeartbeat(%q)) = %q, %v", node, got, err)
		}
	}
	for _, bad := range []string{"", "1", "2n", "1n\x00", string(append([]byte{'1'}, bytes.Repeat([]byte("x"), 65)...))} {
		if _, err := parseHeartbeat([]byte(bad)); err == nil {
			t.Errorf("parseHeartbeat(%q) = nil error; want one", bad)
		}
	}
}

// FuzzHeartbeat: any input is parsed or refused without panicking, and
// what parses is written back the same.
func FuzzHeartbeat(f *testing.F) {
	f.Add([]byte("1node-1"))
	f.Add([]byte("1"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		node, err := parseHeartbeat(data)
		if err != nil {
			return
		}
		if got := appendHeartbeat(nil, node); !bytes.Equal(got, data) || len(node) > 64 {
			t.Fatalf("round trip of %q = %q", data, got)
		}
	})
}

// TestLeaseGone: Gone hears a lost node that had no things (Lost does
// not), and Alive follows the heartbeats: true while heard, false once
// lost, true again when the node is back.
func TestLeaseGone(t *testing.T) {
	s := startNATS(t)
	a := join(t, s, "a", &fakeBroker{}, 0)
	b := join(t, s, "b", &fakeBroker{}, 0)
	gone := make(chan string, 4)
	o := LeaseOptions{Interval: 20 * time.Millisecond, Timeout: 150 * time.Millisecond}
	oa, ob := o, o
	oa.Store, oa.Gone = &fakePresence{}, func(node string) { gone <- node }
	ob.Store = &fakePresence{}
	la, err := a.StartLease(oa)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = la.Close() })
	lb, err := b.StartLease(ob)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a to hear b", func() bool { return la.Alive("b") })
	if !la.Alive("a") || la.Alive("nobody") {
		t.Errorf("Alive(a), Alive(nobody) = %v, %v; want true, false", la.Alive("a"), la.Alive("nobody"))
	}
	_ = lb.Close()
	select {
	case node := <-gone:
		if node != "b" {
			t.Errorf("Gone(%q); want b", node)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Gone not called for b (a lost node without things)")
	}
	if la.Alive("b") {
		t.Error("Alive(b) after b was found lost")
	}
	lb2, err := b.StartLease(ob) // b is back
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = lb2.Close() })
	waitFor(t, "a to hear b again", func() bool { return la.Alive("b") })
}
