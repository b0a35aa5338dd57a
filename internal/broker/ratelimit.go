package broker

import (
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/moteiot/mote/internal/core"
)

// rateLimits holds one token bucket per thing, shared by all its
// connections and its HTTP requests. Buckets are created on a thing's
// first message and removed once idle long enough to be full again, so
// removing one never gives a device more than it would have had.
type rateLimits struct {
	limit rate.Limit
	burst int
	idle  time.Duration // time for an empty bucket to fill up

	shards [64]struct {
		mu sync.Mutex
		m  map[string]*bucket
	}
	refused *prometheus.CounterVec
}

type bucket struct {
	lim      *rate.Limiter
	lastUsed atomic.Int64 // unix nanoseconds
	// unreported counts the tokens taken here that the other nodes of a
	// cluster have not been told of yet (ratelimit_cluster.go).
	unreported atomic.Int64
}

// newRateLimits returns the per-thing limits; perSecond <= 0 turns them off
// (nil). burst < 1 is max(perSecond, 1).
func newRateLimits(perSecond float64, burst int, refused *prometheus.CounterVec) *rateLimits {
	if perSecond <= 0 {
		return nil
	}
	if burst < 1 {
		burst = max(int(perSecond), 1)
	}
	l := &rateLimits{limit: rate.Limit(perSecond), burst: burst, refused: refused}
	l.idle = time.Duration(float64(burst)/perSecond*float64(time.Second)) + time.Second
	for i := range l.shards {
		l.shards[i].m = make(map[string]*bucket)
	}
	return l
}

func (l *rateLimits) shard(thing string) *struct {
	mu sync.Mutex
	m  map[string]*bucket
} {
	var h uint32 = 2166136261 // FNV-1a
	for i := 0; i < len(thing); i++ {
		h = (h ^ uint32(thing[i])) * 16777619
	}
	return &l.shards[h%uint32(len(l.shards))]
}

// allow takes one token of thing's bucket. When there is none it returns
// false and how long until there will be one.
func (l *rateLimits) allow(thing, protocol string, now time.Time) (bool, time.Duration) {
	ok, d := l.take(thing, now)
	if !ok {
		l.refused.WithLabelValues(protocol).Inc()
	}
	return ok, d
}

// bucket returns the thing's bucket, created full on first use, marked
// used at now.
func (l *rateLimits) bucket(thing string, now time.Time) *bucket {
	sh := l.shard(thing)
	sh.mu.Lock()
	b := sh.m[thing]
	if b == nil {
		b = &bucket{lim: newLimiter(l)}
		sh.m[thing] = b
	}
	sh.mu.Unlock()
	b.lastUsed.Store(now.UnixNano())
	return b
}

// take takes a token from the thing's bucket if it has one, or reports how
// long until it will.
func (l *rateLimits) take(thing string, now time.Time) (bool, time.Duration) {
	b := l.bucket(thing, now)
	r := b.lim.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	b.unreported.Add(1)
	return true, 0
}

func newLimiter(l *rateLimits) *rate.Limiter { return rate.NewLimiter(l.limit, l.burst) }

// sweep removes the buckets not used for long enough to be full again.
func (l *rateLimits) sweep(now time.Time) {
	cutoff := now.Add(-l.idle).UnixNano()
	for i := range l.shards {
		sh := &l.shards[i]
		sh.mu.Lock()
		for k, b := range sh.m {
			if b.lastUsed.Load() < cutoff {
				delete(sh.m, k)
			}
		}
		sh.mu.Unlock()
	}
}

// size returns the number of buckets (for tests).
func (l *rateLimits) size() int {
	n := 0
	for i := range l.shards {
		sh := &l.shards[i]
		sh.mu.Lock()
		n += len(sh.m)
		sh.mu.Unlock()
	}
	return n
}

// runSweeper removes idle buckets every minute until stop is closed.
func (l *rateLimits) runSweeper(stop <-chan struct{}) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			l.sweep(now)
		}
	}
}

// RateLimitError is returned (by PublishAs) for a message over the
// thing's rate limit. It is a core.KindRateLimited error; RetryAfter says
// when the next message will be accepted.
type RateLimitError struct {
	Thing string
	After time.Duration
}

func (e *RateLimitError) Error() string {
	return "thing " + strconv.Quote(e.Thing) + " is over its message rate limit"
}

// RetryAfter is how long to wait before sending again.
func (e *RateLimitError) RetryAfter() time.Duration { return e.After }

// Unwrap makes the error a core.KindRateLimited one.
func (e *RateLimitError) Unwrap() error {
	return &core.Error{Kind: core.KindRateLimited, Msg: e.Error()}
}

// maxThrottle is the longest an MQTT 3.1.1 QoS 1/2 publisher over its
// rate limit is held before it is disconnected instead.
const maxThrottle = 5 * time.Second

// limitPublish applies the thing's rate limit to an MQTT publish in
// OnPublish: nil lets it pass. Over the limit:
//   - MQTT 5 QoS 1/2: PUBACK (PUBREC) 0x96 "message rate too high", the
//     message is dropped;
//   - QoS 0 (both versions): dropped;
//   - MQTT 3.1.1 QoS 1/2, which has no way to say no: acknowledging would
//     lose the message without the device knowing, so the publisher is
//     throttled instead — its reading waits until its bucket has room
//     (TCP slows the device down), at most maxThrottle; if it would have
//     to wait longer it is disconnected without the acknowledgement and
//     sends the message again after reconnecting.
//
// Every refusal and every throttled message is counted.
func (b *Broker) limitPublish(cl *mqtt.Client, s *session, pk packets.Packet) error {
	if b.limits == nil {
		return nil
	}
	ok, after := b.limits.allow(s.id.Thing, "mqtt", time.Now())
	if ok {
		return nil
	}
	if refuse(cl, pk, packets.ErrMessageRateTooHigh) {
		b.dropLog.Info("publish over the rate limit refused", "client", cl.ID, "thing", s.id.Thing, "topic", pk.TopicName)
		return packets.ErrRejectPacket
	}
	if pk.FixedHeader.Qos == 0 {
		b.dropLog.Info("QoS 0 publish over the rate limit dropped", "client", cl.ID, "thing", s.id.Thing, "topic", pk.TopicName)
		return packets.CodeSuccessIgnore
	}
	deadline := time.Now().Add(maxThrottle)
	for {
		if time.Now().Add(after).After(deadline) {
			b.dropLog.Warn("MQTT 3.1.1 publisher over its rate limit disconnected", "client", cl.ID, "thing", s.id.Thing)
			_ = b.server.DisconnectClient(cl, packets.ErrMessageRateTooHigh)
			return packets.ErrRejectPacket
		}
		select {
		case <-time.After(after):
		case <-b.stop:
			return packets.ErrRejectPacket
		}
		if ok, after = b.limits.take(s.id.Thing, time.Now()); ok {
			return nil
		}
	}
}

// initRateLimits builds the per-thing limits and their metric.
func (b *Broker) initRateLimits() {
	refused := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mote_rate_limited_total",
		Help: "Device messages refused because the thing was over its rate limit (--device-rate-limit), by protocol.",
	}, []string{"protocol"})
	refused.WithLabelValues("mqtt")
	refused.WithLabelValues("http")
	if b.opts.Metrics != nil {
		b.opts.Metrics.MustRegister(refused)
	}
	b.limits = newRateLimits(b.opts.DeviceRateLimit, b.opts.DeviceRateBurst, refused)
}

// startRateLimits runs the sweeper of idle buckets until Close.
func (b *Broker) startRateLimits() {
	if b.limits == nil {
		return
	}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		b.limits.runSweeper(b.stop)
	}()
}
