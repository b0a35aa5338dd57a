package provisioning

import (
	"net"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/moteiot/mote/internal/core"
)

// maxSources bounds the sources a Limiter remembers; when full it
// forgets them all (a flood of sources then gets fresh buckets once,
// which the burst bounds).
const maxSources = 100_000

// Limiter limits device provisioning requests (registrations, claim
// redeems, provisioning connects) per source address.
type Limiter struct {
	limit   rate.Limit
	burst   int
	refused *prometheus.CounterVec

	mu      sync.Mutex
	sources map[string]*rate.Limiter
}

// NewLimiter returns a limiter of perSecond requests per source (burst at
// once).
func NewLimiter(perSecond float64, burst int, reg prometheus.Registerer) *Limiter {
	l := &Limiter{limit: rate.Limit(perSecond), burst: max(burst, 1), sources: make(map[string]*rate.Limiter),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mote_provisioning_rate_limited_total",
			Help: "Device provisioning requests refused by --provisioning-rate-limit, by protocol (http, mqtt)."}, []string{"protocol"})}
	if reg != nil {
		reg.MustRegister(l.refused)
	}
	return l
}

// Allow takes one request of remote (host:port or host) or refuses it
// with a core.KindRateLimited error. A nil Limiter allows everything.
func (l *Limiter) Allow(remote, protocol string) error {
	if l == nil {
		return nil
	}
	host := remote
	if h, _, err := net.SplitHostPort(remote); err == nil {
		host = h
	}
	l.mu.Lock()
	lim, ok := l.sources[host]
	if !ok {
		if len(l.sources) >= maxSources {
			clear(l.sources)
		}
		lim = rate.NewLimiter(l.limit, l.burst)
		l.sources[host] = lim
	}
	l.mu.Unlock()
	if !lim.Allow() {
		l.refused.WithLabelValues(protocol).Inc()
		return &RateError{after: time.Duration(float64(time.Second) / float64(l.limit))}
	}
	return nil
}

// RateError is a refusal by the Limiter; RetryAfter says when to retry.
type RateError struct{ after time.Duration }

func (e *RateError) Error() string {
	return "too many provisioning requests from this address; retry later"
}

// Unwrap gives the error its core kind.
func (e *RateError) Unwrap() error {
	return core.Errorf(core.KindRateLimited, "too many provisioning requests from this address")
}

// RetryAfter is how long to wait.
func (e *RateError) RetryAfter() time.Duration { return max(e.after, time.Second) }
