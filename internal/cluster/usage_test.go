package cluster

import (
	"bytes"
	"fmt"
	"sync"
	"testing"
	"time"
)

// fakeUsage is a RateUsage with settable usage that records charges.
type fakeUsage struct {
	mu      sync.Mutex
	used    map[string]int64
	charged map[string]int64
}

func newFakeUsage() *fakeUsage {
	return &fakeUsage{used: map[string]int64{}, charged: map[string]int64{}}
}

func (f *fakeUsage) RateUsage(fn func(string, int64)) {
	f.mu.Lock()
	used := f.used
	f.used = map[string]int64{}
	f.mu.Unlock()
	for k, n := range used {
		fn(k, n)
	}
}

func (f *fakeUsage) ChargeRate(thing string, n int64) {
	f.mu.Lock()
	f.charged[thing] += n
	f.mu.Unlock()
}

func (f *fakeUsage) use(thing string, n int64) {
	f.mu.Lock()
	f.used[thing] += n
	f.mu.Unlock()
}

func (f *fakeUsage) charge(thing string) int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.charged[thing]
}

// TestShareRateUsage: the tokens one node's things took are charged on the
// other nodes, never on the node itself; many things are split into
// several bounded announcements; a malformed one is dropped and counted.
func TestShareRateUsage(t *testing.T) {
	s := startNATS(t)
	a := join(t, s, "a", &fakeBroker{}, 0)
	b := join(t, s, "b", &fakeBroker{}, 0)
	ua, ub := newFakeUsage(), newFakeUsage()
	stopA, err := a.ShareRateUsage(ua, 20*time.Millisecond, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer stopA()
	stopB, err := b.ShareRateUsage(ub, 20*time.Millisecond, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer stopB()

	ua.use("pump", 7)
	const many = 3000 // ~40 KB of entries: more than one announcement
	for i := range many {
		ua.use(fmt.Sprintf("thing-with-a-long-name-%05d", i), 1)
	}
	ub.use("valve", 3)
	waitFor(t, "b charged a's usage", func() bool {
		ub.mu.Lock()
		defer ub.mu.Unlock()
		return len(ub.charged) == many+1
	})
	waitFor(t, "a charged b's usage", func() bool { return ua.charge("valve") == 3 })
	if ua.charge("pump") != 0 || ub.charge("valve") != 0 {
		t.Errorf("a node charged its own usage: a pump %d, b valve %d", ua.charge("pump"), ub.charge("valve"))
	}
	if ub.charge("pump") != 7 || ub.charge(fmt.Sprintf("thing-with-a-long-name-%05d", many-1)) != 1 {
		t.Errorf("b charged pump %d, the last thing %d; want 7 and 1", ub.charge("pump"), ub.charge(fmt.Sprintf("thing-with-a-long-name-%05d", many-1)))
	}
	if a.nb.Conn().Stats().OutMsgs < 2 {
		t.Error("many things went in one announcement; want several bounded ones")
	}
	before := b.decodeFailed.Load()
	if err := a.nb.Conn().Publish("mote.ctl.usage", []byte("1x\npump -5\n")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the malformed announcement counted", func() bool { return b.decodeFailed.Load() > before })
	if ub.charge("pump") != 7 {
		t.Errorf("a negative charge was applied: pump %d", ub.charge("pump"))
	}
}

// FuzzUsage: a usage announcement from the network never panics the
// parser; what it accepts has a node, positive bounded counts and survives
// a round trip.
func FuzzUsage(f *testing.F) {
	f.Add(appendUsage(appendUsage(appendUsageHeader(nil, "node-1"), "pump", 7), "valve", 1))
	f.Add([]byte("1n\n"))
	f.Add([]byte("1n\nx 0\n"))
	f.Add([]byte("1n\nx +1\n"))
	f.Add([]byte("2n\nx 1\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		node, entries, err := parseUsage(data)
		if err != nil {
			return
		}
		if node == "" {
			t.Fatal("accepted an announcement without a node")
		}
		b := appendUsageHeader(nil, node)
		for _, e := range entries {
			if e.n < 1 || e.n > maxUsageTokens || e.thing == "" {
				t.Fatalf("accepted entry %+v", e)
			}
			b = appendUsage(b, e.thing, e.n)
		}
		if !bytes.Equal(b, data) {
			node2, entries2, err := parseUsage(b)
			if err != nil || node2 != node || len(entries2) != len(entries) {
				t.Fatalf("round trip of %q: %q %v %v", data, b, entries2, err)
			}
		}
	})
}
