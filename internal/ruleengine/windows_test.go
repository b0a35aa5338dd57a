package ruleengine

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/moteiot/mote/internal/bus"
	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/store"
	"github.com/moteiot/mote/internal/store/sqlite"
)

// windowEnv is an engine on a store of its own that windowed-rule tests
// can restart.
type windowEnv struct {
	st  store.Store
	e   *Engine
	bus bus.Bus
	pub *fakePublisher
	reg *prometheus.Registry
}

func openWindowStore(t *testing.T) store.Store {
	t.Helper()
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "mote.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func startWindowEnv(t *testing.T, st store.Store, opts ...func(*Options)) *windowEnv {
	t.Helper()
	v := &windowEnv{st: st, bus: &bus.Local{}, pub: &fakePublisher{ch: make(chan published, 1000)}, reg: prometheus.NewRegistry()}
	o := Options{Store: st.Rules(), Publisher: v.pub, Metrics: v.reg, Workers: 2, WindowStore: st.RuleWindows(),
		WindowGrace: 20 * time.Millisecond}
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

func (v *windowEnv) publish(thing, payload string, at time.Time) {
	v.bus.Publish(core.Message{Topic: "things/" + thing + "/telemetry", Payload: []byte(payload), ClientID: thing, Thing: thing,
		Received: at, Protocol: "mqtt"})
}

// waitUntil waits up to 5s for cond.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func (v *windowEnv) matched(rule string) uint64 {
	m, _ := v.e.Counters(rule)
	return m
}

func createRule(t *testing.T, e *Engine, name, sql, actions string) {
	t.Helper()
	if _, err := e.Create(t.Context(), store.Rule{Name: name, SQL: sql, Enabled: true, Actions: json.RawMessage(actions)}); err != nil {
		t.Fatal(err)
	}
}

// future is a whole hour well after now: windows there do not close by
// the clock during a test, only when the test closes them.
func future() time.Time { return time.Now().Truncate(time.Hour).Add(24 * time.Hour) }

// TestWindowedRuleEmitsOnTime: a tumbling window of 1s closes by the
// timer, with no further message, and its row goes to the republish
// action.
func TestWindowedRuleEmitsOnTime(t *testing.T) {
	v := startWindowEnv(t, openWindowStore(t))
	createRule(t, v.e, "avg", "SELECT avg(temp) AS a, count(*) AS n, topic(2) AS device FROM 'things/+/telemetry' GROUP BY thing, TUMBLING(1s)",
		`[{"type":"republish","topic":"alerts/${device}/avg"}]`)
	// Both in one window: the first millisecond of the next second and
	// 100ms later (the window is 1s long).
	at := time.Now().Truncate(time.Second).Add(time.Second)
	v.publish("d1", `{"temp": 10}`, at)
	v.publish("d1", `{"temp": 20}`, at.Add(100*time.Millisecond))
	select {
	case p := <-v.pub.ch:
		if p.topic != "alerts/d1/avg" || p.payload != `{"a":15,"n":2,"device":"d1"}` {
			t.Fatalf("published %s %s", p.topic, p.payload)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no window emitted in 5s")
	}
	if got := testutil.ToFloat64(v.e.wm.emitted.WithLabelValues("avg")); got != 1 {
		t.Fatalf("mote_rule_window_emitted_total = %v; want 1", got)
	}
}

// TestWindowedRuleRestart: windows open at a clean shutdown are saved and
// go on after the restart: the window emitted afterwards holds the
// messages of both runs.
func TestWindowedRuleRestart(t *testing.T) {
	st := openWindowStore(t)
	v := startWindowEnv(t, st)
	createRule(t, v.e, "hour", "SELECT avg(temp) AS a, max(temp) AS m, count(*) AS n FROM 'things/+/telemetry' GROUP BY thing, TUMBLING(1h)",
		`[{"type":"republish","topic":"out"}]`)
	t0 := future()
	v.publish("d1", `{"temp": 10}`, t0.Add(time.Minute))
	v.publish("d1", `{"temp": 30}`, t0.Add(2*time.Minute))
	v.publish("d2", `{"temp": 1}`, t0.Add(2*time.Minute))
	waitUntil(t, "3 messages in windows", func() bool { return v.matched("hour") == 3 })
	v.e.Close()

	v2 := startWindowEnv(t, st)
	if got := testutil.ToFloat64(v2.e.wm.restored); got != 2 {
		t.Fatalf("restored %v groups; want 2", got)
	}
	v2.publish("d1", `{"temp": 50}`, t0.Add(3*time.Minute))
	waitUntil(t, "the message after the restart", func() bool { return v2.matched("hour") == 1 })
	v2.e.closeWindows(t0.Add(time.Hour))
	got := map[string]bool{}
	for range 2 {
		select {
		case p := <-v2.pub.ch:
			got[p.payload] = true
		case <-time.After(5 * time.Second):
			t.Fatalf("windows emitted: %v; want 2", got)
		}
	}
	if !got[`{"a":30,"m":50,"n":3}`] || !got[`{"a":1,"m":1,"n":1}`] {
		t.Fatalf("windows emitted %v; want d1's over both runs and d2's", got)
	}
	// A rule whose SQL changed while it was down starts afresh.
	v2.publish("d1", `{"temp": 5}`, t0.Add(time.Hour+time.Minute))
	waitUntil(t, "a message in the next window", func() bool { return v2.matched("hour") == 2 })
	v2.e.Close()
	r, err := st.Rules().Get(t.Context(), "hour")
	if err != nil {
		t.Fatal(err)
	}
	r.SQL = "SELECT count(*) AS n FROM 'things/+/telemetry' GROUP BY thing, TUMBLING(1h)"
	if _, err := st.Rules().Update(t.Context(), r); err != nil {
		t.Fatal(err)
	}
	v3 := startWindowEnv(t, st)
	if got := testutil.ToFloat64(v3.e.wm.restored); got != 0 {
		t.Fatalf("restored %v groups for a changed rule; want 0", got)
	}
}

// TestWindowGroupFlood: distinct things beyond --rule-window-max-groups
// are refused and counted; the groups within it still emit.
func TestWindowGroupFlood(t *testing.T) {
	v := startWindowEnv(t, openWindowStore(t), func(o *Options) { o.WindowMaxGroups = 10 })
	createRule(t, v.e, "flood", "SELECT count(*) AS n FROM 'things/+/telemetry' GROUP BY thing, TUMBLING(1m)",
		`[{"type":"republish","topic":"out"}]`)
	t0 := future()
	for i := range 50 {
		v.publish(fmt.Sprint("d", i), `{}`, t0)
	}
	refused := v.e.wm.refused.WithLabelValues("flood")
	waitUntil(t, "50 messages taken or refused", func() bool { return v.matched("flood")+uint64(testutil.ToFloat64(refused)) == 50 })
	// Up to one group per worker may slip past the limit (two workers).
	if n := v.e.winGroups.Load(); n < 10 || n > 12 {
		t.Fatalf("%d groups open; want 10 (to 12)", n)
	}
	if got := testutil.ToFloat64(refused); got < 38 {
		t.Fatalf("mote_rule_window_refused_total = %v; want about 40", got)
	}
	if got := testutil.ToFloat64(v.e.wm.groups); got != float64(v.e.winGroups.Load()) {
		t.Fatalf("mote_rule_window_groups = %v", got)
	}
	v.e.closeWindows(t0.Add(time.Minute))
	if v.e.winGroups.Load() != 0 {
		t.Fatalf("%d groups open after their windows closed", v.e.winGroups.Load())
	}
	// Room again: a new thing is taken.
	v.publish("late-comer", `{}`, t0.Add(time.Minute))
	waitUntil(t, "the new thing taken", func() bool { return v.e.winGroups.Load() == 1 })
}

// TestWindowedRuleDeleted: deleting a windowed rule frees its groups.
func TestWindowedRuleDeleted(t *testing.T) {
	v := startWindowEnv(t, openWindowStore(t))
	createRule(t, v.e, "w", "SELECT count(*) AS n FROM 'things/+/telemetry' GROUP BY thing, TUMBLING(1m)", `[{"type":"log"}]`)
	v.publish("d1", `{}`, future())
	waitUntil(t, "a group", func() bool { return v.e.winGroups.Load() == 1 })
	if err := v.e.Delete(t.Context(), "w"); err != nil {
		t.Fatal(err)
	}
	if n := v.e.winGroups.Load(); n != 0 {
		t.Fatalf("%d groups after the rule was deleted", n)
	}
}

// TestTestWindowed: Test of a windowed statement on timed messages.
func TestTestWindowed(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC)
	res, err := Test(TestInput{SQL: "SELECT avg(temp) AS a, count(*) AS n FROM 'things/+/telemetry' GROUP BY thing, TUMBLING(1m) HAVING count(*) > 1",
		Messages: []TestMessage{
			{Topic: "things/a/telemetry", Payload: []byte(`{"temp": 1}`), At: t0},
			{Topic: "things/a/telemetry", Payload: []byte(`{"temp": "x"}`), At: t0.Add(time.Second)},
			{Topic: "things/b/telemetry", Payload: []byte(`{"temp": 5}`), At: t0},
			{Topic: "other/topic", Payload: []byte(`{"temp": 5}`), At: t0},
			{Topic: "things/a/telemetry", Payload: []byte(`{"temp": 3}`), At: t0.Add(2 * time.Minute)},
		}})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(res)
	want := `{"matched":true,"windows":[{"group":"a","start":"2026-01-01T10:00:00Z","end":"2026-01-01T10:01:00Z","output":{"a":1,"n":2}}],"skipped":1}`
	if string(b) != want {
		t.Fatalf("Test = %s; want %s", b, want)
	}
	for _, c := range []struct {
		in    TestInput
		field string
	}{
		{TestInput{SQL: "SELECT count(*) AS n FROM '#' GROUP BY thing, TUMBLING(1m)", Messages: []TestMessage{{Topic: "a"}}}, "messages[0]"},
		{TestInput{SQL: "SELECT count(*) AS n FROM '#' GROUP BY thing, TUMBLING(1m)", Messages: make([]TestMessage, MaxTestMessages+1)}, "messages"},
		{TestInput{SQL: "SELECT a FROM '#'", Messages: []TestMessage{{Topic: "a", At: t0}}}, "messages"},
		{TestInput{SQL: "SELECT avg(a) FROM '#'", Topic: "a"}, "sql"},
	} {
		_, err := Test(c.in)
		if core.KindOf(err) != core.KindInvalid || !containsField(err, c.field) {
			t.Errorf("Test(%s, %d messages) = %v; want invalid %s", c.in.SQL, len(c.in.Messages), err, c.field)
		}
	}
	// One message without times: it is received now, and its window shown.
	res, err = Test(TestInput{SQL: "SELECT max(temp) AS m FROM 'things/+/telemetry' GROUP BY topic(2), SLIDING(1m, 30s)",
		Topic: "things/a/telemetry", Payload: []byte(`{"temp": 4}`)})
	if err != nil || len(res.Windows) != 2 || string(res.Windows[0].Output) != `{"m":4}` {
		t.Fatalf("Test of one message = %+v, %v; want the two sliding windows that hold it", res, err)
	}
}

func containsField(err error, field string) bool { return core.FieldOf(err) == field }
