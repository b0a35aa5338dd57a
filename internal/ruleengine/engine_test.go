package ruleengine

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/moteiot/mote/internal/bus"
	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/store"
	"github.com/moteiot/mote/internal/store/sqlite"
	"github.com/moteiot/mote/internal/telemetry"
)

type published struct {
	topic   string
	payload string
}

type fakePublisher struct{ ch chan published }

func (p *fakePublisher) Publish(topic string, payload []byte, retain bool, qos byte) error {
	p.ch <- published{topic, string(payload)}
	return nil
}

type fakeWriter struct {
	mu     sync.Mutex
	points []telemetry.Point
	adds   []string // "seq:npoints" of every Add with a sequence number
}

func (w *fakeWriter) Add(_ context.Context, points []telemetry.Point, seq uint64) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.points = append(w.points, points...)
	if seq != 0 {
		w.adds = append(w.adds, fmt.Sprintf("%d:%d", seq, len(points)))
	}
	return nil
}

func (w *fakeWriter) seqAdds() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.adds...)
}

func (w *fakeWriter) get() []telemetry.Point {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]telemetry.Point(nil), w.points...)
}

type env struct {
	e   *Engine
	bus bus.Bus
	pub *fakePublisher
	tw  *fakeWriter
	reg *prometheus.Registry
	st  store.Store
}

func newEnv(t *testing.T, opts ...func(*Options)) *env {
	t.Helper()
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "mote.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	v := &env{bus: &bus.Local{}, pub: &fakePublisher{ch: make(chan published, 100)}, tw: &fakeWriter{}, reg: prometheus.NewRegistry(), st: st}
	// One worker: messages are processed in order (see none).
	o := Options{Store: st.Rules(), Publisher: v.pub, Telemetry: v.tw, Metrics: v.reg, WebhookBackoff: time.Millisecond, Workers: 1}
	for _, f := range opts {
		f(&o)
	}
	v.e = New(o)
	if err := v.e.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	v.e.Attach(v.bus)
	t.Cleanup(func() { v.e.Close() })
	return v
}

func (v *env) publish(topic, payload string) {
	v.bus.Publish(core.Message{Topic: topic, Payload: []byte(payload), ClientID: "c-" + strings.Split(topic, "/")[1],
		Thing: strings.Split(topic, "/")[1], Received: time.UnixMilli(1_700_000_000_000), Protocol: "mqtt"})
}

func (v *env) want(t *testing.T, topic, payload string) {
	t.Helper()
	select {
	case p := <-v.pub.ch:
		if p.topic != topic || (payload != "" && p.payload != payload) {
			t.Fatalf("published %s %s; want %s %s", p.topic, p.payload, topic, payload)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("nothing published; want %s", topic)
	}
}

// none checks that nothing was published for the messages before it: it
// sends a message through a barrier rule, which the single worker
// processes after them, and wants the barrier's republish first.
func (v *env) none(t *testing.T) {
	t.Helper()
	if _, err := v.e.Get(t.Context(), "zz-barrier"); core.KindOf(err) == core.KindNotFound {
		if _, err := v.e.Create(t.Context(), store.Rule{Name: "zz-barrier", Enabled: true, SQL: "SELECT * FROM 'barrier/+'",
			Actions: json.RawMessage(`[{"type":"republish","topic":"barrier/done"}]`)}); err != nil {
			t.Fatal(err)
		}
	}
	v.bus.Publish(core.Message{Topic: "barrier/x", Payload: []byte(`{}`), Received: time.Now()})
	v.want(t, "barrier/done", "")
}

func TestRepublishAndLifecycle(t *testing.T) {
	v := newEnv(t)
	ctx := t.Context()
	_, err := v.e.Create(ctx, store.Rule{Name: "hot", Enabled: true,
		SQL:     "SELECT temp, topic(2) AS device FROM 'things/+/telemetry' WHERE temp > 50",
		Actions: json.RawMessage(`[{"type":"republish","topic":"alerts/${topic(2)}/${device}"}]`)})
	if err != nil {
		t.Fatal(err)
	}
	v.publish("things/s1/telemetry", `{"temp": 20}`)
	v.publish("things/s1/telemetry", `{"temp": 55.5, "hum": 3}`)
	v.want(t, "alerts/s1/s1", `{"temp":55.5,"device":"s1"}`)

	if _, err := v.e.SetEnabled(ctx, "hot", false); err != nil {
		t.Fatal(err)
	}
	v.publish("things/s1/telemetry", `{"temp": 60}`)
	v.none(t)
	if _, err := v.e.SetEnabled(ctx, "hot", true); err != nil {
		t.Fatal(err)
	}
	r, _ := v.e.Get(ctx, "hot")
	r.Actions = json.RawMessage(`[{"type":"republish","topic":"hot/${clientid()}"}]`)
	if _, err := v.e.Update(ctx, r); err != nil {
		t.Fatal(err)
	}
	v.publish("things/s2/telemetry", `{"temp": 70}`)
	v.want(t, "hot/c-s2", `{"temp":70,"device":"s2"}`)
	waitMetric(t, v.reg, 2, "mote_rule_matched_total", "hot")
	waitMetric(t, v.reg, 2, "mote_rule_action_total", "hot", "republish", "success")
	if err := v.e.Delete(ctx, "hot"); err != nil {
		t.Fatal(err)
	}
	v.publish("things/s2/telemetry", `{"temp": 70}`)
	v.none(t)
	if n := series(t, v.reg, "mote_rule_matched_total"); n != 2 { // the default rule's and the barrier's
		t.Errorf("matched series after delete: %d; want 2 (telemetry, zz-barrier)", n)
	}
}

func TestDefaultRuleTelemetry(t *testing.T) {
	v := newEnv(t)
	v.publish("things/s1/telemetry", `{"temp": 21.5, "pos": {"lat": 1}}`)
	waitFor(t, func() error {
		if n := len(v.tw.get()); n < 2 {
			return fmt.Errorf("%d points stored; want 2", n)
		}
		return nil
	})
	pts := v.tw.get()
	if len(pts) != 2 || pts[0].Thing != "s1" || pts[0].Key != "temp" || pts[0].Value.Float() != 21.5 || pts[0].TS != 1_700_000_000_000 || pts[1].Key != "pos.lat" {
		t.Fatalf("points: %+v", pts)
	}
	// Deleted default rule stays deleted.
	if err := v.e.Delete(t.Context(), "telemetry"); err != nil {
		t.Fatal(err)
	}
	e2 := New(Options{Store: v.st.Rules()})
	if err := e2.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer e2.Close()
	if _, err := e2.Get(t.Context(), "telemetry"); core.KindOf(err) != core.KindNotFound {
		t.Fatalf("default rule after delete and restart: %v; want not found", err)
	}
}

// Durable messages (from the ingest journal) get their telemetry from
// ApplyDurable, all rules' points in one Add with the message's sequence
// number, and their other actions from the workers; the same message
// arriving on the bus is not processed twice.
func TestDurablePass(t *testing.T) {
	v := newEnv(t)
	ctx := t.Context()
	if _, err := v.e.Create(ctx, store.Rule{Name: "hot", Enabled: true,
		SQL:     "SELECT temp AS hot FROM 'things/+/telemetry' WHERE temp > 50",
		Actions: json.RawMessage(`[{"type":"telemetry"},{"type":"republish","topic":"alerts/${topic(2)}"}]`)}); err != nil {
		t.Fatal(err)
	}
	if !v.e.Durable("things/s1/telemetry") || v.e.Durable("things/s1/status") {
		t.Fatal("Durable: want true only for topics a telemetry rule matches")
	}
	msg := core.Message{Topic: "things/s1/telemetry", Payload: []byte(`{"temp": 60, "hum": 3}`), QoS: 1,
		ClientID: "c1", Thing: "s1", Received: time.UnixMilli(1_700_000_000_000), Protocol: "mqtt", Seq: 7}
	v.bus.Publish(msg) // what OnPublished hands the bus: ignored by the engine
	v.e.ApplyDurable(msg)
	msg.Seq, msg.Payload = 8, []byte(`{"temp": 10}`)
	v.e.ApplyDurable(msg)
	if got := fmt.Sprint(v.tw.seqAdds()); got != "[7:3 8:1]" {
		t.Fatalf("durable adds %s; want [7:3 8:1] (7: temp, hum from the default rule and hot; 8: only temp)", got)
	}
	v.want(t, "alerts/s1", `{"hot":60}`)
	v.none(t)
	waitMetric(t, v.reg, 1, "mote_rule_matched_total", "hot")
	waitMetric(t, v.reg, 2, "mote_rule_matched_total", "telemetry")
	if n := metric(t, v.reg, "mote_rule_action_total", "hot", "telemetry", "success"); n != 1 {
		t.Fatalf("hot telemetry successes %v; want 1 (not counted again by the workers)", n)
	}
	if len(v.tw.get()) != 4 {
		t.Fatalf("points %+v; want 4 in all", v.tw.get())
	}

	// A payload the telemetry action cannot store still advances the
	// sequence (an empty Add) and counts a failure.
	msg.Seq, msg.Payload = 9, []byte(`[1,2]`)
	v.e.ApplyDurable(msg)
	if got := fmt.Sprint(v.tw.seqAdds()); got != "[7:3 8:1 9:0]" {
		t.Fatalf("durable adds %s; want [7:3 8:1 9:0]", got)
	}
}

func TestWebhookAndErrorAction(t *testing.T) {
	var okHits, failHits atomic.Int32
	var gotBody atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.URL.Path == "/fail" {
			failHits.Add(1)
			w.WriteHeader(500)
			return
		}
		gotBody.Store(string(b) + "|" + r.Header.Get("X-Key"))
		okHits.Add(1)
	}))
	defer srv.Close()
	v := newEnv(t)
	ctx := t.Context()
	_, err := v.e.Create(ctx, store.Rule{Name: "hook", Enabled: true, SQL: "SELECT temp FROM 'things/+/hook'",
		Actions: json.RawMessage(`[{"type":"webhook","url":"` + srv.URL + `/ok","headers":{"X-Key":"k"}}]`)})
	if err != nil {
		t.Fatal(err)
	}
	_, err = v.e.Create(ctx, store.Rule{Name: "bad", Enabled: true, SQL: "SELECT temp FROM 'things/+/bad'",
		Actions:     json.RawMessage(`[{"type":"webhook","url":"` + srv.URL + `/fail","retries":2}]`),
		ErrorAction: json.RawMessage(`{"type":"republish","topic":"errors/${rule}"}`)})
	if err != nil {
		t.Fatal(err)
	}
	v.publish("things/s1/hook", `{"temp": 1}`)
	v.publish("things/s1/bad", `{"temp": 2}`)
	select {
	case p := <-v.pub.ch:
		if p.topic != "errors/bad" {
			t.Fatalf("error action topic %s", p.topic)
		}
		var doc errorDoc
		if err := json.Unmarshal([]byte(p.payload), &doc); err != nil {
			t.Fatal(err)
		}
		pl, _ := base64.StdEncoding.DecodeString(doc.Payload)
		if doc.Rule != "bad" || !strings.Contains(doc.Error, "500") || doc.Topic != "things/s1/bad" || string(pl) != `{"temp": 2}` ||
			doc.Thing != "s1" || doc.ClientID != "c-s1" || string(doc.Output) != `{"temp":2}` {
			t.Fatalf("error doc %+v", doc)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no error action")
	}
	if n := failHits.Load(); n != 3 {
		t.Errorf("failing webhook attempts: %d; want 3", n)
	}
	waitFor(t, func() error {
		if got, _ := gotBody.Load().(string); got != `{"temp":1}|k` {
			return fmt.Errorf("webhook got %q", got)
		}
		return nil
	})
	waitMetric(t, v.reg, 1, "mote_rule_action_total", "bad", "webhook", "failure")
	waitMetric(t, v.reg, 1, "mote_rule_errors_total", "bad")
}

func TestValidation(t *testing.T) {
	cases := []struct {
		r     store.Rule
		field string
	}{
		{store.Rule{Name: "a b", SQL: "SELECT * FROM 'x'"}, "name"},
		{store.Rule{Name: "r", SQL: "SELECT FROM 'x'"}, "sql"},
		{store.Rule{Name: "r", SQL: "SELECT * FROM 'x'", Actions: json.RawMessage(`[{"type":"amqp"}]`)}, "actions[0].type"},
		{store.Rule{Name: "r", SQL: "SELECT * FROM 'x'", Actions: json.RawMessage(`[{"type":"republish"}]`)}, "actions[0].topic"},
		{store.Rule{Name: "r", SQL: "SELECT * FROM 'x'", Actions: json.RawMessage(`[{"type":"republish","topic":"a/#"}]`)}, "actions[0].topic"},
		{store.Rule{Name: "r", SQL: "SELECT * FROM 'x'", Actions: json.RawMessage(`[{"type":"webhook","url":"ftp://x"}]`)}, "actions[0].url"},
		{store.Rule{Name: "r", SQL: "SELECT * FROM 'x'", Actions: json.RawMessage(`[{"type":"log","bogus":1}]`)}, "actions[0]"},
		{store.Rule{Name: "r", SQL: "SELECT * FROM 'x'", ErrorAction: json.RawMessage(`{"type":"webhook","url":"http://x","retries":99}`)}, "errorAction.retries"},
	}
	for _, c := range cases {
		err := Validate(c.r)
		var ce *core.Error
		if err == nil || !asCore(err, &ce) || ce.Kind != core.KindInvalid || ce.Field != c.field {
			t.Errorf("Validate(%+v) = %v; want invalid on %s", c.r, err, c.field)
		}
	}
	err := Validate(store.Rule{Name: "r", SQL: "SELECT\n  FROM 'x'"})
	if err == nil || !strings.Contains(err.Error(), "2:3") {
		t.Errorf("parse error position: %v", err)
	}
}

func asCore(err error, ce **core.Error) bool {
	e, ok := err.(*core.Error)
	*ce = e
	return ok
}

func TestTest(t *testing.T) {
	res, err := Test(TestInput{SQL: "SELECT temp * 2 AS t2, topic(2) AS d FROM 'things/+/telemetry' WHERE temp > 1", Topic: "things/x/telemetry", Payload: []byte(`{"temp":3}`)})
	if err != nil || !res.Matched || string(res.Output) != `{"t2":6,"d":"x"}` {
		t.Fatalf("Test: %+v %v", res, err)
	}
	res, err = Test(TestInput{SQL: "SELECT * FROM 'things/+/telemetry' WHERE temp > 1", Topic: "things/x/telemetry", Payload: []byte(`{"temp":0}`)})
	if err != nil || res.Matched {
		t.Fatalf("Test no match: %+v %v", res, err)
	}
	res, err = Test(TestInput{SQL: "SELECT * FROM 'a/b'", Topic: "things/x/telemetry", Payload: []byte(`{}`)})
	if err != nil || res.Matched {
		t.Fatalf("Test other topic: %+v %v", res, err)
	}
	_, err = Test(TestInput{SQL: "SELEC", Topic: "a"})
	if core.KindOf(err) != core.KindInvalid {
		t.Fatalf("Test bad sql: %v", err)
	}
}

func TestQueueFullDrops(t *testing.T) {
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "mote.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	reg := prometheus.NewRegistry()
	e := New(Options{Store: st.Rules(), QueueSize: 1, Metrics: reg})
	// Not started: no worker takes from the queue.
	b := &bus.Local{}
	e.Attach(b)
	// Messages no enabled rule wants never take a queue slot.
	for range 5 {
		b.Publish(core.Message{Topic: "things/a/telemetry", Payload: []byte(`{}`)})
	}
	if got := metric(t, reg, "mote_rules_dropped_total"); got != 0 {
		t.Errorf("dropped %v with no rule; want 0 (nothing is queued)", got)
	}
	if _, err := e.Create(context.Background(), store.Rule{Name: "r", SQL: "SELECT * FROM 'things/+/telemetry'", Enabled: true,
		Actions: json.RawMessage(`[{"type":"log"}]`)}); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		b.Publish(core.Message{Topic: "things/a/telemetry", Payload: []byte(`{}`)})
		b.Publish(core.Message{Topic: "things/a/other", Payload: []byte(`{}`)})
	}
	if got := metric(t, reg, "mote_rules_dropped_total"); got != 4 {
		t.Errorf("dropped %v; want 4", got)
	}
	e.Close()
}

// metric returns the value of the counter name whose label values are
// exactly values (in any order); 0 if there is none.
func metric(t *testing.T, reg *prometheus.Registry, name string, values ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			have := map[string]bool{}
			for _, l := range m.GetLabel() {
				have[l.GetValue()] = true
			}
			all := len(m.GetLabel()) == len(values)
			for _, v := range values {
				all = all && have[v]
			}
			if all {
				if g := m.GetGauge(); g != nil {
					return g.GetValue()
				}
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func series(t *testing.T, reg *prometheus.Registry, name string) int {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return len(mf.GetMetric())
		}
	}
	return 0
}

// waitMetric waits until the counter has the value want.
func waitMetric(t *testing.T, reg *prometheus.Registry, want float64, name string, values ...string) {
	t.Helper()
	waitFor(t, func() error {
		if got := metric(t, reg, name, values...); got != want {
			return fmt.Errorf("%s%v = %v; want %v", name, values, got, want)
		}
		return nil
	})
}

// waitFor polls cond until it returns nil, for at most 5s, then fails
// the test with its last error.
func waitFor(t *testing.T, cond func() error) {
	t.Helper()
	waitWithin(t, 5*time.Second, cond)
}

// waitWithin is waitFor with another deadline.
func waitWithin(t *testing.T, d time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %v", d, err)
		}
		<-tick.C
	}
}
