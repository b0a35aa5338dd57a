package broker

import "time"

// In a cluster the per-thing token buckets are shared approximately: each
// node reports the tokens its things took (RateUsage) and charges the
// tokens reported by the other nodes to its own buckets (ChargeRate), so
// a thing sending through several nodes is held to about one rate
// (docs/cluster.md gives the bound).

// RateUsage calls f with the tokens each thing took on this node since
// the previous call, and resets them. It does nothing without a rate
// limit.
func (b *Broker) RateUsage(f func(thing string, n int64)) {
	l := b.limits
	if l == nil {
		return
	}
	type used struct {
		thing string
		n     int64
	}
	var out []used
	for i := range l.shards {
		sh := &l.shards[i]
		sh.mu.Lock()
		for k, bk := range sh.m {
			if n := bk.unreported.Swap(0); n > 0 {
				out = append(out, used{k, n})
			}
		}
		sh.mu.Unlock()
	}
	for _, u := range out {
		f(u.thing, u.n)
	}
}

// ChargeRate takes n tokens from thing's bucket for messages another node
// accepted. The bucket may go into debt (at most one burst), which this
// node's next messages of the thing repay by waiting. It does nothing
// without a rate limit.
func (b *Broker) ChargeRate(thing string, n int64) {
	if l := b.limits; l != nil && n > 0 {
		l.charge(thing, n, time.Now())
	}
}

func (l *rateLimits) charge(thing string, n int64, now time.Time) {
	b := l.bucket(thing, now)
	// The debt stops at one burst: a bucket a burst in debt already
	// holds the thing back here for the time it takes to refill.
	if k := min(n, int64(b.lim.TokensAt(now)+float64(l.burst))); k > 0 {
		b.lim.ReserveN(now, int(k))
	}
}
