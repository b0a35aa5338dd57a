package cluster

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/moteiot/mote/internal/bus/natsbus"
)

// Rate limits across nodes
//
// Every UsageInterval each node announces on "<prefix>.ctl.usage" the
// tokens of the per-thing rate limits (--device-rate-limit) its things
// took since the last announcement; every other node charges them to its
// own buckets (broker.ChargeRate). A thing sending through k nodes is so
// held to about one rate: each node lets it take at most one burst, plus
// the rate over one interval and the NATS latency, before hearing of what
// the others let through (docs/cluster.md#limits-and-quotas-across-nodes).

// DefaultUsageInterval is how often a node announces its rate-limit usage.
const DefaultUsageInterval = 200 * time.Millisecond

// maxUsageMessage bounds one usage announcement; more things go in more
// messages.
const maxUsageMessage = 32 << 10

// RateUsage is the broker's side of shared rate limits (*broker.Broker).
type RateUsage interface {
	// RateUsage calls f with the tokens each thing took here since the
	// last call.
	RateUsage(f func(thing string, n int64))
	// ChargeRate takes n tokens of thing's bucket for messages another
	// node accepted.
	ChargeRate(thing string, n int64)
}

// ShareRateUsage announces src's usage to the other nodes every interval
// (DefaultUsageInterval when 0) and charges theirs to src, until stop is
// called. The charges run on the NATS delivery goroutine (src.ChargeRate
// only takes a bucket's lock).
func (n *Node) ShareRateUsage(src RateUsage, interval time.Duration, reg prometheus.Registerer) (stop func() error, err error) {
	if interval <= 0 {
		interval = DefaultUsageInterval
	}
	sent := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "mote_cluster_rate_usage_announcements_total",
		Help: "Rate-limit usage announcements this node sent to the other nodes (--device-rate-limit shared across nodes).",
	})
	charged := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "mote_cluster_rate_usage_charged_total",
		Help: "Rate-limit tokens other nodes' things took, charged to this node's buckets.",
	})
	if reg != nil {
		for _, c := range []prometheus.Collector{sent, charged} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("cluster: metrics: %w", err)
			}
		}
	}
	nc := n.nb.Conn()
	subject := n.opts.Prefix + ".ctl.usage"
	sub, err := nc.Subscribe(subject, func(msg *nats.Msg) {
		node, entries, err := parseUsage(msg.Data)
		if err != nil {
			n.decodeFailed.Add(1)
			return
		}
		if node == n.opts.NodeID {
			return
		}
		for _, e := range entries {
			src.ChargeRate(e.thing, e.n)
			charged.Add(float64(e.n))
		}
	})
	if err != nil {
		return nil, fmt.Errorf("cluster: subscribe: %w", err)
	}
	if err := sub.SetPendingLimits(n.opts.RelayQueue, natsbus.DefaultPendingBytes); err != nil {
		_ = sub.Unsubscribe()
		return nil, fmt.Errorf("cluster: pending limits: %w", err)
	}
	if err := nc.FlushTimeout(natsbus.DefaultFlushTimeout); err != nil {
		_ = sub.Unsubscribe()
		return nil, fmt.Errorf("cluster: subscriptions not confirmed by NATS: %w", err)
	}
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(interval)
		defer t.Stop()
		var buf []byte
		for {
			select {
			case <-quit:
				return
			case <-t.C:
			}
			buf = buf[:0]
			flush := func() {
				if len(buf) > 0 && !n.closed.Load() {
					if nc.Publish(subject, buf) == nil {
						sent.Inc()
					}
				}
				buf = buf[:0]
			}
			src.RateUsage(func(thing string, k int64) {
				if len(buf) > 0 && len(buf)+len(thing)+24 > maxUsageMessage {
					flush()
				}
				if len(buf) == 0 {
					buf = appendUsageHeader(buf, n.opts.NodeID)
				}
				buf = appendUsage(buf, thing, k)
			})
			flush()
		}
	}()
	var once sync.Once
	return func() error {
		once.Do(func() { close(quit); <-done; _ = sub.Unsubscribe() })
		return nil
	}, nil
}

// The usage announcement: "1", the node id, "\n", then per thing its name,
// a space, the tokens in decimal and "\n".
func appendUsageHeader(dst []byte, node string) []byte {
	dst = append(dst, '1')
	dst = append(dst, node...)
	return append(dst, '\n')
}

func appendUsage(dst []byte, thing string, n int64) []byte {
	dst = append(dst, thing...)
	dst = append(dst, ' ')
	dst = strconv.AppendInt(dst, n, 10)
	return append(dst, '\n')
}

type usageEntry struct {
	thing string
	n     int64
}

// maxUsageTokens bounds one entry's tokens (a node cannot let a thing
// through more than this in one interval).
const maxUsageTokens = 1 << 40

func parseUsage(data []byte) (node string, entries []usageEntry, err error) {
	if len(data) < 1 || data[0] != '1' {
		return "", nil, errors.New("cluster: usage: unknown version")
	}
	head, rest, ok := bytes.Cut(data[1:], []byte{'\n'})
	if !ok || len(head) == 0 || bytes.ContainsAny(head, " \x00") {
		return "", nil, errors.New("cluster: usage: malformed header")
	}
	for len(rest) > 0 {
		var line []byte
		line, rest, ok = bytes.Cut(rest, []byte{'\n'})
		if !ok {
			return "", nil, errors.New("cluster: usage: unterminated entry")
		}
		thing, num, ok := bytes.Cut(line, []byte{' '})
		if !ok || len(thing) == 0 || bytes.IndexByte(thing, 0) >= 0 {
			return "", nil, errors.New("cluster: usage: malformed entry")
		}
		k, err := strconv.ParseInt(string(num), 10, 64)
		if err != nil || k < 1 || k > maxUsageTokens || num[0] == '+' {
			return "", nil, errors.New("cluster: usage: bad token count")
		}
		entries = append(entries, usageEntry{string(thing), k})
	}
	return string(head), entries, nil
}
