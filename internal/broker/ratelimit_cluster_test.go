package broker

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TestRateCharge: tokens another node reports are taken from the thing's
// bucket here (so its next message is refused), at most one burst of
// debt; what is reported is only what this node's messages took.
func TestRateCharge(t *testing.T) {
	refused := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "x"}, []string{"protocol"})
	l := newRateLimits(10, 5, refused)
	b := &Broker{limits: l}
	now := time.Now()
	for i := range 2 {
		if ok, _ := l.take("dev", now); !ok {
			t.Fatalf("take %d refused with a fresh bucket", i)
		}
	}
	got := map[string]int64{}
	b.RateUsage(func(thing string, n int64) { got[thing] += n })
	if got["dev"] != 2 || len(got) != 1 {
		t.Fatalf("usage = %v; want dev: 2", got)
	}
	b.RateUsage(func(thing string, n int64) { t.Errorf("usage reported twice: %s %d", thing, n) })

	// Another node used 3 of the 3 tokens left: nothing left here.
	l.charge("dev", 3, now)
	if ok, _ := l.take("dev", now); ok {
		t.Fatal("take after the other node's usage was charged passed; want refused")
	}
	// A huge report leaves at most one burst of debt: after the time one
	// burst takes to refill (0.5 s at 10/s), plus one token, a message passes.
	l.charge("dev", 1_000_000, now)
	if ok, _ := l.take("dev", now.Add(500*time.Millisecond)); ok {
		t.Fatal("take within the debt passed")
	}
	if ok, d := l.take("dev", now.Add(600*time.Millisecond+time.Millisecond)); !ok {
		t.Fatalf("take after one burst refilled refused (wait %v): the debt exceeded one burst", d)
	}
	// Charges are not reported back (no echo between nodes).
	got = map[string]int64{}
	b.RateUsage(func(thing string, n int64) { got[thing] += n })
	if got["dev"] != 1 {
		t.Errorf("usage after charges = %v; want only this node's one message", got)
	}
	// A thing that never sent here gets a bucket with the charge.
	l.charge("other", 5, now)
	if ok, _ := l.take("other", now); ok {
		t.Error("a thing charged a whole burst on another node passed here at once")
	}
}
