package ruleengine

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/moteiot/mote/internal/store"
)

// countingPublisher counts what the engine republishes, by topic.
type countingPublisher struct {
	mu sync.Mutex
	n  map[string]int
}

func (p *countingPublisher) Publish(topic string, payload []byte, retain bool, qos byte) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.n == nil {
		p.n = map[string]int{}
	}
	p.n[topic]++
	return nil
}

func (p *countingPublisher) count(topic string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n[topic]
}

func newKafka(t testing.TB, opts ...kfake.Opt) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1), kfake.SeedTopics(3, "readings")}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// consume reads n records of topic from the cluster.
func consume(t *testing.T, addrs []string, topic string, n int, opts ...kgo.Opt) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addrs...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(100 * time.Millisecond)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var out []*kgo.Record
	ctx, cancel := contextWithTimeout(t, 10*time.Second)
	defer cancel()
	for len(out) < n {
		f := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consumed %d records of %s; want %d", len(out), topic, n)
		}
		for _, e := range f.Errors() {
			t.Logf("fetch: %v", e.Err)
		}
		out = append(out, f.Records()...)
	}
	return out
}

// TestKafkaAction: a rule produces each message to Kafka (franz-go's
// in-process kfake cluster) with its key from the output; records with
// one key land on one partition, and a fixed partition is honoured.
func TestKafkaAction(t *testing.T) {
	k := newKafka(t)
	v := newEnv(t)
	brokers, _ := json.Marshal(k.ListenAddrs())
	ctx := t.Context()
	if _, err := v.e.Create(ctx, store.Rule{Name: "to-kafka", Enabled: true, SQL: "SELECT n, topic(2) AS device FROM 'things/+/data'",
		Actions: json.RawMessage(`[{"type":"kafka","brokers":` + string(brokers) + `,"topic":"readings","key":"${device}"},
			{"type":"kafka","brokers":` + string(brokers) + `,"topic":"pinned-${thing()}","partition":2}]`)}); err != nil {
		t.Fatal(err)
	}
	for _, th := range []string{"t0", "t1", "t2"} {
		if err := k.CreateTopic("pinned-"+th, 3, nil); err != nil {
			t.Fatal(err)
		}
	}
	const n = 30
	for i := range n {
		v.publish(fmt.Sprintf("things/t%d/data", i%3), fmt.Sprintf(`{"n":%d}`, i))
	}
	recs := consume(t, k.ListenAddrs(), "readings", n)
	partOf := map[string]int32{}
	seen := map[int]bool{}
	for _, r := range recs {
		var out struct {
			N      int    `json:"n"`
			Device string `json:"device"`
		}
		if err := json.Unmarshal(r.Value, &out); err != nil {
			t.Fatalf("record value %q: %v", r.Value, err)
		}
		if string(r.Key) != out.Device {
			t.Errorf("record %s has key %q; want %q", r.Value, r.Key, out.Device)
		}
		if p, ok := partOf[string(r.Key)]; ok && p != r.Partition {
			t.Errorf("key %s on partitions %d and %d; want one", r.Key, p, r.Partition)
		}
		partOf[string(r.Key)] = r.Partition
		seen[out.N] = true
	}
	if len(seen) != n || len(partOf) != 3 {
		t.Errorf("got %d distinct messages with %d keys; want %d with 3", len(seen), len(partOf), n)
	}
	for _, r := range consume(t, k.ListenAddrs(), "pinned-t1", n/3) {
		if r.Partition != 2 {
			t.Errorf("record %s of pinned-t1 on partition %d; want 2", r.Value, r.Partition)
		}
	}
	waitMetric(t, v.reg, 2*n, "mote_rule_action_total", "to-kafka", "kafka", "success")
}

// TestKafkaActionSASL: SCRAM-SHA-256 with the right password delivers;
// the secret is sealed at rest is covered by TestSecretsOfNewActionsSealed.
func TestKafkaActionSASL(t *testing.T) {
	k := newKafka(t, kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-256", "mote", "s3cret"))
	v := newEnv(t)
	brokers, _ := json.Marshal(k.ListenAddrs())
	if _, err := v.e.Create(t.Context(), store.Rule{Name: "sasl", Enabled: true, SQL: "SELECT n FROM 'things/+/data'",
		Actions: json.RawMessage(`[{"type":"kafka","brokers":` + string(brokers) + `,"topic":"readings",
			"sasl":{"mechanism":"SCRAM-SHA-256","user":"mote","password":"s3cret"}}]`)}); err != nil {
		t.Fatal(err)
	}
	v.publish("things/t1/data", `{"n":1}`)
	waitMetric(t, v.reg, 1, "mote_rule_action_total", "sasl", "kafka", "success")
	recs := consume(t, k.ListenAddrs(), "readings", 1, kgo.SASL(scramAuth("mote", "s3cret")))
	if string(recs[0].Value) != `{"n":1}` {
		t.Errorf("record = %s", recs[0].Value)
	}
}

// TestKafkaDown: with the broker gone, ingest and other rules keep
// flowing; the kafka action's queue fills to its bound, the rest is
// dropped and counted, and the error action runs for what failed. A new
// broker on the same port gets the messages published after it is up.
func TestKafkaDown(t *testing.T) {
	port := freePort(t)
	k := newKafka(t, kfake.Ports(port))
	pub := &countingPublisher{}
	v := newEnv(t, func(o *Options) {
		o.Publisher = pub
		o.ActionQueue, o.ActionConcurrency, o.BreakerFailures = 5, 1, 1_000_000
		o.Logger = slog.New(slog.NewTextHandler(tWriter{t}, nil))
	})
	ctx := t.Context()
	if _, err := v.e.Create(ctx, store.Rule{Name: "to-kafka", Enabled: true, SQL: "SELECT n FROM 'things/+/data'",
		Actions:     json.RawMessage(`[{"type":"kafka","brokers":["127.0.0.1:` + strconv.Itoa(port) + `"],"topic":"readings","timeoutMs":300,"retries":0}]`),
		ErrorAction: json.RawMessage(`{"type":"republish","topic":"errors/kafka"}`)}); err != nil {
		t.Fatal(err)
	}
	if _, err := v.e.Create(ctx, store.Rule{Name: "relay", Enabled: true, SQL: "SELECT n FROM 'things/+/data'",
		Actions: json.RawMessage(`[{"type":"republish","topic":"relay"}]`)}); err != nil {
		t.Fatal(err)
	}
	v.publish("things/t1/data", `{"n":0}`)
	waitMetric(t, v.reg, 1, "mote_rule_action_total", "to-kafka", "kafka", "success")
	k.Close()

	const n = 200
	start := time.Now()
	for i := range n {
		v.publish("things/t1/data", fmt.Sprintf(`{"n":%d}`, i+1))
	}
	waitFor(t, func() error {
		if got := pub.count("relay"); got != n+1 {
			return fmt.Errorf("relay republished %d; want %d", got, n+1)
		}
		return nil
	})
	relayed := time.Since(start)
	waitFor(t, func() error {
		full := metric(t, v.reg, "mote_rule_actions_dropped_total", "to-kafka", dropQueueFull)
		failed := metric(t, v.reg, "mote_rule_actions_dropped_total", "to-kafka", dropRetriesExhausted)
		if full+failed != n || full == 0 || failed == 0 {
			return fmt.Errorf("dropped %v queue_full + %v retries_exhausted; want both and %d in all", full, failed, n)
		}
		if got := pub.count("errors/kafka"); got != int(failed) {
			return fmt.Errorf("error action ran %d times; want %v", got, failed)
		}
		return nil
	})
	s := v.e.Stats("to-kafka")
	t.Logf("relay took %v for %d messages while Kafka was down; dropped %d queue_full, %d after their retries",
		relayed, n, s.DroppedQueueFull, s.DroppedRetriesExhausted)

	// The broker is back: new messages are delivered.
	k2 := newKafka(t, kfake.Ports(port))
	waitFor(t, func() error {
		v.publish("things/t1/data", `{"n":-1}`)
		if metric(t, v.reg, "mote_rule_action_total", "to-kafka", "kafka", "success") < 2 {
			return fmt.Errorf("nothing delivered after the broker came back")
		}
		return nil
	})
	recs := consume(t, k2.ListenAddrs(), "readings", 1)
	if string(recs[0].Value) != `{"n":-1}` {
		t.Errorf("first record on the new broker = %s", recs[0].Value)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func scramAuth(user, pass string) sasl.Mechanism {
	return scram.Auth{User: user, Pass: pass}.AsSha256Mechanism()
}

func contextWithTimeout(t *testing.T, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(t.Context(), d)
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }
