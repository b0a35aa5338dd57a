package cluster

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// ownerBroker is a fakeBroker that holds client ids (ClientOwners).
type ownerBroker struct {
	fakeBroker
	mu     sync.Mutex
	things map[string]string
}

func (b *ownerBroker) ClientThing(id string) (string, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	t, ok := b.things[id]
	return t, ok
}

func (b *ownerBroker) hold(id, thing string) {
	b.mu.Lock()
	b.things[id] = thing
	b.mu.Unlock()
}

func flush(t *testing.T, n *Node) {
	t.Helper()
	if err := n.Conn().Flush(); err != nil {
		t.Fatal(err)
	}
}

func lookup(t *testing.T, n *Node, id, thing string) (string, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	owner, held, err := n.ClientOwner(ctx, id, thing)
	if err != nil {
		t.Fatalf("ClientOwner(%q) = %v", id, err)
	}
	return owner, held
}

// TestOwnerLookup: a client id connected on node A is found from node B
// with A's thing, as long as a connection under it is established there
// (counted per connection); an id nobody holds is free; each result is
// counted.
func TestOwnerLookup(t *testing.T) {
	s := startNATS(t)
	ba := &ownerBroker{things: map[string]string{}}
	a := join(t, s, "a", ba, 0)
	b := join(t, s, "b", &ownerBroker{things: map[string]string{}}, 0)

	if owner, held := lookup(t, b, "dev-1", "t2"); held {
		t.Fatalf("lookup of an id nobody holds = %q, held; want free", owner)
	}
	ba.hold("dev-1", "t1")
	a.ClientConnected("dev-1", "t1")
	a.ClientConnected("dev-1", "t1") // a takeover on A: two connections, one ends first
	flush(t, a)
	if owner, held := lookup(t, b, "dev-1", "t2"); !held || owner != "t1" {
		t.Fatalf("lookup from B = %q, %v; want t1, held", owner, held)
	}
	if owner, held := lookup(t, b, "dev-1", "t1"); !held || owner != "t1" {
		t.Fatalf("lookup by its own thing = %q, %v; want t1, held", owner, held)
	}
	a.ClientDisconnected("dev-1")
	flush(t, a)
	if _, held := lookup(t, b, "dev-1", "t2"); !held {
		t.Fatal("lookup after one of two connections ended: free; want held")
	}
	a.ClientDisconnected("dev-1")
	flush(t, a)
	if owner, held := lookup(t, b, "dev-1", "t2"); held {
		t.Fatalf("lookup after the last connection ended = %q, held; want free", owner)
	}
	o := &b.owners
	if f, s, x := o.free.Load(), o.same.Load(), o.other.Load(); f != 2 || s != 1 || x != 2 {
		t.Errorf("B counted free %d, same_thing %d, other_thing %d; want 2, 1, 2", f, s, x)
	}
	if n := a.owners.answered.Load(); n != 3 {
		t.Errorf("A answered %d lookups; want 3", n)
	}
}

// TestOwnerHolderGone: a holder whose broker no longer has the id answers
// "not held"; a holder that never answers (hung) lets the connection in
// at the deadline; garbage on the subject is counted and dropped.
func TestOwnerHolderGone(t *testing.T) {
	s := startNATS(t)
	ba := &ownerBroker{things: map[string]string{}}
	a := join(t, s, "a", ba, 0)
	b := join(t, s, "b", &ownerBroker{things: map[string]string{}}, 0)

	a.ClientConnected("stale", "t1") // the broker forgot it already
	flush(t, a)
	if _, held := lookup(t, b, "stale", "t2"); held {
		t.Error("lookup of an id the holder's broker does not hold: held; want free")
	}

	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	hung, err := nc.SubscribeSync(b.ownerSubject("hung")) // never answers
	if err != nil {
		t.Fatal(err)
	}
	defer hung.Unsubscribe()
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	owner, held, err := b.ClientOwner(ctx, "hung", "t2")
	if err != nil || held {
		t.Errorf("lookup with a hung holder = %q, %v, %v; want free, nil", owner, held, err)
	}
	if n := b.owners.timeout.Load(); n != 1 {
		t.Errorf("timeouts = %d; want 1", n)
	}

	a.ClientConnected("held", "t1")
	flush(t, a)
	for _, bad := range [][]byte{nil, []byte("x"), []byte("1n")} {
		if _, err := nc.Request(a.ownerSubject("held"), bad, 200*time.Millisecond); err == nil {
			t.Errorf("request %q answered; want dropped", bad)
		}
	}
	waitFor(t, "garbage counted", func() bool { return a.owners.decodeFailed.Load() == 3 })
}

// TestOwnerLookupsBounded: beyond OwnerLookups lookups at once a lookup
// is refused without asking NATS, and counted.
func TestOwnerLookupsBounded(t *testing.T) {
	s := startNATS(t)
	n, err := Connect(Options{URL: s.ClientURL(), NodeID: "a", OwnerLookups: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if err := n.Start(&ownerBroker{things: map[string]string{}}, nil); err != nil {
		t.Fatal(err)
	}
	n.owners.sem <- struct{}{}
	n.owners.sem <- struct{}{} // two lookups waiting
	if _, _, err := n.ClientOwner(context.Background(), "c", "t"); !errors.Is(err, ErrOwnerLookupsBusy) {
		t.Fatalf("lookup beyond the bound = %v; want ErrOwnerLookupsBusy", err)
	}
	<-n.owners.sem
	if _, held := lookup(t, n, "c", "t"); held {
		t.Error("lookup once a slot is free: held; want free")
	}
	if b := n.owners.busy.Load(); b != 1 {
		t.Errorf("busy = %d; want 1", b)
	}
}

func TestOwnerRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		thing string
		held  bool
	}{{"t1", true}, {"a b/ü", true}, {"", false}} {
		thing, node, held, err := parseOwner(appendOwner(nil, tc.thing, tc.held))
		if err != nil || thing != tc.thing || held != tc.held || node != "" {
			t.Errorf("parseOwner(appendOwner(%q, %v)) = %q, %q, %v, %v", tc.thing, tc.held, thing, node, held, err)
		}
	}
	// A holder with a persistent session names its node.
	thing, node, held, err := parseOwner(appendOwnerSession(nil, "node-1", "t1"))
	if err != nil || thing != "t1" || node != "node-1" || !held {
		t.Errorf("parseOwner(appendOwnerSession(node-1, t1)) = %q, %q, %v, %v", thing, node, held, err)
	}
	for _, bad := range []string{"", "1", "2Ht", "1H", "1Nx", "1X", "1P", "1Pnode", "1P\x00t", "1Pnode\x00"} {
		if _, _, _, err := parseOwner([]byte(bad)); err == nil {
			t.Errorf("parseOwner(%q) = nil error; want one", bad)
		}
	}
}

// FuzzOwner: any answer is parsed or refused without panicking, and what
// parses is written back the same.
func FuzzOwner(f *testing.F) {
	f.Add([]byte("1Hthing-1"))
	f.Add([]byte("1N"))
	f.Add([]byte("1H"))
	f.Add([]byte{})
	f.Add([]byte("1Pnode-1\x00thing-1"))
	f.Fuzz(func(t *testing.T, data []byte) {
		thing, node, held, err := parseOwner(data)
		if err != nil {
			return
		}
		got := appendOwner(nil, thing, held)
		if node != "" {
			got = appendOwnerSession(nil, node, thing)
		}
		if !bytes.Equal(got, data) {
			t.Fatalf("round trip of %q = %q", data, got)
		}
	})
}

// BenchmarkOwnerLookup is what a connect pays in a cluster for a client id
// that no node holds (NATS answers "no responders") and for one held by
// another node (its answer), on one in-process NATS server.
func BenchmarkOwnerLookup(b *testing.B) {
	s := startNATS(b)
	ba := &ownerBroker{things: map[string]string{"held": "t1"}}
	nodes := make([]*Node, 2)
	for i, id := range []string{"a", "b"} {
		n, err := Connect(Options{URL: s.ClientURL(), NodeID: id})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = n.Close() })
		if err := n.Start(ba, nil); err != nil {
			b.Fatal(err)
		}
		nodes[i] = n
	}
	nodes[0].ClientConnected("held", "t1")
	if err := nodes[0].Conn().Flush(); err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct {
		name, id string
		held     bool
	}{{"free", "free", false}, {"held", "held", true}} {
		b.Run(tc.name, func(b *testing.B) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			for b.Loop() {
				if _, held, err := nodes[1].ClientOwner(ctx, tc.id, "t2"); err != nil || held != tc.held {
					b.Fatalf("lookup = %v, %v; want %v", held, err, tc.held)
				}
			}
		})
	}
}
