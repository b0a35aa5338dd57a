package broker

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

func TestRateLimits(t *testing.T) {
	refused := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "x"}, []string{"protocol"})
	l := newRateLimits(10, 3, refused)
	now := time.Unix(1000, 0)
	for i := range 3 {
		if ok, _ := l.allow("a", "mqtt", now); !ok {
			t.Fatalf("allow #%d within the burst = false", i+1)
		}
	}
	ok, after := l.allow("a", "http", now)
	if ok || after <= 0 || after > 100*time.Millisecond {
		t.Errorf("allow over the burst = %v, %v; want false, (0, 100ms]", ok, after)
	}
	if ok, _ := l.allow("b", "mqtt", now); !ok {
		t.Error("another thing shares the bucket")
	}
	if ok, _ := l.allow("a", "mqtt", now.Add(100*time.Millisecond)); !ok {
		t.Error("no token after 1/rate")
	}
	var m dto.Metric
	_ = refused.WithLabelValues("http").Write(&m)
	if got := m.GetCounter().GetValue(); got != 1 {
		t.Errorf("refused{http} = %v; want 1", got)
	}

	// Idle buckets are removed once they would be full again, not before.
	l.sweep(now.Add(100 * time.Millisecond))
	if n := l.size(); n != 2 {
		t.Errorf("buckets after an early sweep = %d; want 2", n)
	}
	l.sweep(now.Add(time.Hour))
	if n := l.size(); n != 0 {
		t.Errorf("buckets after an idle sweep = %d; want 0", n)
	}
	if newRateLimits(0, 10, refused) != nil {
		t.Error("rate 0 does not turn the limit off")
	}
}
