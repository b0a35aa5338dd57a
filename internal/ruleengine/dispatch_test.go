package ruleengine

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/store"
)

// blackhole is a TCP listener that accepts connections and never answers.
type blackhole struct {
	ln       net.Listener
	accepted atomic.Int64
	mu       sync.Mutex
	conns    []net.Conn
}

func newBlackhole(t *testing.T) *blackhole {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &blackhole{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b.accepted.Add(1)
			b.mu.Lock()
			b.conns = append(b.conns, c)
			b.mu.Unlock()
		}
	}()
	t.Cleanup(b.close)
	return b
}

func (b *blackhole) url() string { return "http://" + b.ln.Addr().String() + "/hook" }

func (b *blackhole) close() {
	b.ln.Close()
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, c := range b.conns {
		c.Close()
	}
}

// TestBlackholedWebhookDoesNotStallOtherRules: rule a-hook's webhook goes
// to an address that accepts and never answers; rule b-relay, on the same
// messages and run after it, still republishes every one at once. a-hook's
// deliveries beyond its queue are dropped and counted.
func TestBlackholedWebhookDoesNotStallOtherRules(t *testing.T) {
	v := newEnv(t, func(o *Options) {
		o.ActionQueue, o.ActionConcurrency, o.WebhookTimeout, o.WebhookRetries = 5, 1, time.Minute, -1
	})
	hole := newBlackhole(t) // closed before the engine: its attempt ends
	ctx := t.Context()
	if _, err := v.e.Create(ctx, store.Rule{Name: "a-hook", Enabled: true, SQL: "SELECT * FROM 'things/+/data'",
		Actions: json.RawMessage(`[{"type":"webhook","url":"` + hole.url() + `"}]`)}); err != nil {
		t.Fatal(err)
	}
	if _, err := v.e.Create(ctx, store.Rule{Name: "b-relay", Enabled: true, SQL: "SELECT n FROM 'things/+/data'",
		Actions: json.RawMessage(`[{"type":"republish","topic":"relay/${topic(2)}"}]`)}); err != nil {
		t.Fatal(err)
	}
	const n = 300
	go func() {
		for i := range n {
			v.publish("things/s1/data", fmt.Sprintf(`{"n": %d}`, i))
		}
	}()
	deadline := time.After(10 * time.Second)
	for i := range n {
		select {
		case p := <-v.pub.ch:
			if want := fmt.Sprintf(`{"n":%d}`, i); p.topic != "relay/s1" || p.payload != want {
				t.Fatalf("relayed %s %s; want relay/s1 %s", p.topic, p.payload, want)
			}
		case <-deadline:
			t.Fatalf("b-relay republished %d of %d messages in 10s: held by a-hook's webhook", i, n)
		}
	}
	waitFor(t, func() error {
		if hole.accepted.Load() == 0 {
			return fmt.Errorf("the webhook never connected")
		}
		return nil
	})
	// 1 in flight, 5 queued, the rest dropped.
	st := v.e.Stats("a-hook")
	if st.DroppedQueueFull < n-1-5 || st.ActionsDropped() != st.DroppedQueueFull {
		t.Errorf("a-hook stats %+v; want at least %d dropped as queue_full", st, n-1-5)
	}
	if got := metric(t, v.reg, "mote_rule_actions_dropped_total", "a-hook", dropQueueFull); got != float64(st.DroppedQueueFull) {
		t.Errorf("mote_rule_actions_dropped_total{a-hook,queue_full} = %v; want %d", got, st.DroppedQueueFull)
	}
	if st := v.e.Stats("b-relay"); st.Matched != n || st.ActionsDropped() != 0 {
		t.Errorf("b-relay stats %+v; want %d matched, none dropped", st, n)
	}
}

// TestErrorActionOffTheJournal: a rule's error action is a webhook that
// never answers; the journal's consumer (ApplyDurable) only queues it, so
// the next durable message — another device's telemetry — is added at once.
func TestErrorActionOffTheJournal(t *testing.T) {
	v := newEnv(t, func(o *Options) { o.WebhookTimeout = time.Minute })
	hole := newBlackhole(t)
	ctx := t.Context()
	r, err := v.e.Get(ctx, "telemetry")
	if err != nil {
		t.Fatal(err)
	}
	r.ErrorAction = json.RawMessage(`{"type":"webhook","url":"` + hole.url() + `"}`)
	if _, err := v.e.Update(ctx, r); err != nil {
		t.Fatal(err)
	}
	// Not from a thing: its telemetry cannot be stored, the error action runs.
	a := core.Message{Topic: "things/a/telemetry", Payload: []byte(`{"temp": 1}`), QoS: 1, ClientID: "a",
		Received: time.UnixMilli(1_700_000_000_000), Protocol: "mqtt", Seq: 1}
	b := core.Message{Topic: "things/b/telemetry", Payload: []byte(`{"temp": 5}`), QoS: 1, ClientID: "b", Thing: "b",
		Received: time.UnixMilli(1_700_000_000_000), Protocol: "mqtt", Seq: 2}
	done := make(chan struct{})
	go func() {
		v.e.ApplyDurable(a)
		v.e.ApplyDurable(b)
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("ApplyDurable held by the error action's webhook")
	}
	if got := fmt.Sprint(v.tw.seqAdds()); got != "[1:0 2:1]" {
		t.Fatalf("durable adds %s; want [1:0 2:1]", got)
	}
	waitFor(t, func() error { // the error action really was attempted
		if hole.accepted.Load() == 0 {
			return fmt.Errorf("the error action's webhook never connected")
		}
		return nil
	})
}

// TestBreakerOpensAndRecovers: after BreakerFailures failed attempts the
// breaker opens and deliveries are dropped without calling the endpoint;
// after the cool-down a probe goes through, succeeds, and closes it.
func TestBreakerOpensAndRecovers(t *testing.T) {
	var up atomic.Bool
	var hits, okHits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if !up.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		okHits.Add(1)
	}))
	defer srv.Close()
	v := newEnv(t, func(o *Options) {
		o.ActionConcurrency, o.BreakerFailures, o.BreakerCooldown, o.WebhookRetries = 1, 3, 300*time.Millisecond, -1
	})
	if _, err := v.e.Create(t.Context(), store.Rule{Name: "hook", Enabled: true, SQL: "SELECT * FROM 'things/+/data'",
		Actions: json.RawMessage(`[{"type":"webhook","url":"` + srv.URL + `"}]`)}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		v.publish("things/s1/data", `{}`)
	}
	waitFor(t, func() error {
		if st := v.e.Stats("hook"); !st.BreakerOpen || st.DroppedRetriesExhausted != 3 {
			return fmt.Errorf("stats %+v; want the breaker open after 3 failures", st)
		}
		return nil
	})
	waitMetric(t, v.reg, 1, "mote_rule_breakers_open", "hook")
	for range 10 {
		v.publish("things/s1/data", `{}`)
	}
	waitFor(t, func() error {
		if st := v.e.Stats("hook"); st.DroppedBreakerOpen < 10 {
			return fmt.Errorf("stats %+v; want 10 dropped as breaker_open", st)
		}
		return nil
	})
	if n := hits.Load(); n != 3 {
		t.Errorf("endpoint called %d times; want 3 (nothing while the breaker is open)", n)
	}
	// The endpoint comes back: after the cool-down a probe closes the breaker.
	up.Store(true)
	waitFor(t, func() error {
		v.publish("things/s1/data", `{}`)
		if st := v.e.Stats("hook"); st.BreakerOpen || okHits.Load() == 0 {
			return fmt.Errorf("stats %+v, %d delivered; want the breaker closed", st, okHits.Load())
		}
		return nil
	})
	waitMetric(t, v.reg, 0, "mote_rule_breakers_open", "hook")
	before := okHits.Load()
	for range 5 {
		v.publish("things/s1/data", `{}`)
	}
	waitFor(t, func() error {
		if n := okHits.Load() - before; n < 5 {
			return fmt.Errorf("%d of 5 delivered after the breaker closed", n)
		}
		return nil
	})
}

// TestWebhookErrorsHideSecrets: a failing webhook's error, as logged and
// as given to the error action, names its URL without the password and
// carries no header value.
func TestWebhookErrorsHideSecrets(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // connections are refused
	var logs strings.Builder
	var mu sync.Mutex
	v := newEnv(t, func(o *Options) {
		o.WebhookRetries = -1
		o.Logger = slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
			mu.Lock()
			defer mu.Unlock()
			return logs.Write(p)
		}), nil))
	})
	if _, err := v.e.Create(t.Context(), store.Rule{Name: "hook", Enabled: true, SQL: "SELECT * FROM 'things/+/data'",
		Actions:     json.RawMessage(`[{"type":"webhook","url":"http://user:pa55word@` + addr + `/x","headers":{"Authorization":"Bearer tok3n"}}]`),
		ErrorAction: json.RawMessage(`{"type":"republish","topic":"errors/${rule}"}`)}); err != nil {
		t.Fatal(err)
	}
	v.publish("things/s1/data", `{}`)
	p := <-v.pub.ch
	var doc errorDoc
	if err := json.Unmarshal([]byte(p.payload), &doc); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(doc.Error, "http://user:***@"+addr+"/x") || strings.Contains(p.payload, "pa55word") || strings.Contains(p.payload, "tok3n") {
		t.Errorf("error document %s; want the URL with the password redacted", p.payload)
	}
	mu.Lock()
	defer mu.Unlock()
	if l := logs.String(); !strings.Contains(l, "user:***@") || strings.Contains(l, "pa55word") || strings.Contains(l, "tok3n") {
		t.Errorf("logs:\n%s\nwant the failure logged without secrets", l)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
