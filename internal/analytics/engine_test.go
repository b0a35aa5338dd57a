package analytics

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/moteiot/mote/internal/bus"
	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/store"
	"github.com/moteiot/mote/internal/store/sqlite"
	"github.com/moteiot/mote/internal/store/sqlite/sqlitetest"
)

// sink records raises and clears.
type sink struct {
	mu   sync.Mutex
	got  []string
	full bool
}

func (s *sink) RaiseAsync(thing, typ, severity string, details json.RawMessage, at time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got = append(s.got, fmt.Sprintf("raise %s %s %s", thing, typ, severity))
	return !s.full
}

func (s *sink) ClearAsync(thing, typ string, at time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got = append(s.got, fmt.Sprintf("clear %s %s", thing, typ))
	return !s.full
}

func (s *sink) list() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.got...)
}

func waitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func counter(c prometheus.Counter) float64 {
	var m dto.Metric
	_ = c.Write(&m)
	return m.GetCounter().GetValue()
}

type testEnv struct {
	st   store.Store
	bus  *bus.Local
	sink *sink
	e    *Engine
}

func newTestEnv(t *testing.T, st store.Store, o Options) *testEnv {
	t.Helper()
	if st == nil {
		var err error
		st, err = sqlite.Open(sqlitetest.Path(t))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
	}
	v := &testEnv{st: st, bus: &bus.Local{}, sink: &sink{}}
	o.Store, o.Things, o.Alarms = st.Analytics(), st.Things(), v.sink
	v.e = New(o)
	if err := v.e.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	v.e.Attach(v.bus)
	t.Cleanup(func() { v.e.Close() })
	return v
}

func (v *testEnv) telemetry(thing, topicThing, payload string, at time.Time) {
	v.bus.Publish(core.Message{Topic: "things/" + topicThing + "/telemetry", Payload: []byte(payload), Thing: thing, ClientID: thing, Received: at, Protocol: "mqtt"})
}

func TestEngineThresholdPerTypeAndGroup(t *testing.T) {
	v := newTestEnv(t, nil, Options{})
	ctx := t.Context()
	for _, th := range []store.Thing{{Name: "s1", Type: "sensor"}, {Name: "s2", Type: "other"}, {Name: "g1", Groups: nil}} {
		if _, err := v.st.Things().Create(ctx, th); err != nil {
			if _, err := v.st.Types().Create(ctx, store.ThingType{Name: th.Type}); err != nil {
				t.Fatal(err)
			}
			if _, err := v.st.Things().Create(ctx, th); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := v.e.CreateRule(ctx, Rule{Name: "hot", Kind: KindThreshold, ThingType: "sensor", Enabled: true,
		Config: json.RawMessage(`{"key":"temperature","above":80,"clearBelow":75,"alarmType":"overheat","severity":"critical"}`)}); err != nil {
		t.Fatal(err)
	}
	v.telemetry("s2", "s2", `{"temperature": 99}`, t0)                     // another type
	v.telemetry("s2", "s1", `{"temperature": 99}`, t0)                     // crafted: s2 publishing on s1's topic
	v.telemetry("s1", "s1", `{"temperature": 90, "thing": "s2"}`, t0)      // s1's own
	v.telemetry("s1", "s1", `{"temperature": "hot"}`, t0.Add(time.Second)) // not a number: ignored
	v.telemetry("s1", "s1", `[1,2]`, t0.Add(time.Second))                  // not an object
	v.telemetry("s1", "s1", `{"temperature": 70}`, t0.Add(2*time.Second))
	waitFor(t, "raise and clear", func() bool { return len(v.sink.list()) == 2 })
	if got := v.sink.list(); got[0] != "raise s1 overheat critical" || got[1] != "clear s1 overheat" {
		t.Fatalf("alarms %q; want s1's raise and clear only", got)
	}
	// A rule for a group applies to its members only.
	if _, err := v.st.Groups().Create(ctx, store.Group{Name: "fleet"}); err != nil {
		t.Fatal(err)
	}
	if _, err := v.st.Things().Update(ctx, "g1", store.ThingPatch{Groups: []string{"fleet"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := v.e.CreateRule(ctx, Rule{Name: "cold", Kind: KindThreshold, Group: "fleet", Enabled: true,
		Config: json.RawMessage(`{"key":"temperature","below":0,"alarmType":"frost"}`)}); err != nil {
		t.Fatal(err)
	}
	v.telemetry("s2", "s2", `{"temperature": -5}`, t0.Add(3*time.Second)) // not in the group
	v.telemetry("g1", "g1", `{"temperature": -5}`, t0.Add(3*time.Second))
	waitFor(t, "the frost alarm", func() bool { return len(v.sink.list()) == 3 })
	if got := v.sink.list()[2]; got != "raise g1 frost major" {
		t.Fatalf("alarm %q; want g1's frost", got)
	}
	if counter(v.e.m.evals) != 4 {
		t.Fatalf("evaluations %v; want 4 (s1's three JSON objects, g1's one)", counter(v.e.m.evals))
	}
}

// TestEngineStateSurvivesRestart: a window begun before a restart
// completes after it.
func TestEngineStateSurvivesRestart(t *testing.T) {
	st, err := sqlite.Open(sqlitetest.Path(t))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := t.Context()
	if _, err := st.Things().Create(ctx, store.Thing{Name: "s1"}); err != nil {
		t.Fatal(err)
	}
	v := newTestEnv(t, st, Options{})
	if _, err := v.e.CreateRule(ctx, Rule{Name: "hot", Kind: KindThreshold, Enabled: true,
		Config: json.RawMessage(`{"key":"t","above":80,"for":"1m"}`)}); err != nil {
		t.Fatal(err)
	}
	v.telemetry("s1", "s1", `{"t": 90}`, t0)
	waitFor(t, "the evaluation", func() bool { return counter(v.e.m.evals) == 1 })
	v.e.Close() // saves
	states, err := st.Analytics().States(ctx)
	if err != nil || len(states) != 1 {
		t.Fatalf("saved states %+v %v", states, err)
	}
	w := newTestEnv(t, st, Options{})
	w.telemetry("s1", "s1", `{"t": 91}`, t0.Add(61*time.Second))
	waitFor(t, "the raise", func() bool { return len(w.sink.list()) == 1 })
	if len(v.sink.list()) != 0 {
		t.Fatalf("raised before the restart: %q", v.sink.list())
	}
}

func TestEngineSilenceAndFlapping(t *testing.T) {
	var mu sync.Mutex
	now := t0
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	v := newTestEnv(t, nil, Options{Now: clock, TickInterval: time.Millisecond})
	ctx := t.Context()
	if _, err := v.st.Things().Create(ctx, store.Thing{Name: "d"}); err != nil {
		t.Fatal(err)
	}
	for _, r := range []Rule{
		{Name: "quiet", Kind: KindSilence, Enabled: true, Config: json.RawMessage(`{"expectedInterval":"10s","factor":2}`)},
		{Name: "loop", Kind: KindFlapping, Enabled: true, Config: json.RawMessage(`{"connects":3,"within":"1m"}`)},
	} {
		if _, err := v.e.CreateRule(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	v.telemetry("d", "d", `{"x":1}`, t0)
	for i := range 3 {
		body := fmt.Sprintf(`{"event":"connected","thing":"d","time":%q}`, t0.Add(time.Duration(i)*time.Second).Format(time.RFC3339Nano))
		v.bus.Publish(core.Message{Topic: core.PresenceConnected + "d", Payload: []byte(body), Received: t0, Protocol: "platform"})
	}
	// A device cannot fake presence: its messages carry its thing.
	v.bus.Publish(core.Message{Topic: core.PresenceConnected + "x", Thing: "d", Payload: []byte(`{"event":"connected","thing":"d"}`)})
	waitFor(t, "flapping", func() bool { return len(v.sink.list()) == 1 })
	mu.Lock()
	now = t0.Add(21 * time.Second)
	mu.Unlock()
	waitFor(t, "silence", func() bool { return len(v.sink.list()) == 2 })
	mu.Lock()
	now = t0.Add(2 * time.Minute)
	mu.Unlock()
	waitFor(t, "flapping clears", func() bool { return len(v.sink.list()) == 3 })
	got := v.sink.list()
	if got[0] != "raise d flapping major" || got[1] != "raise d device-silent major" || got[2] != "clear d flapping" {
		t.Fatalf("alarms %q", got)
	}
}

func TestEngineBounds(t *testing.T) {
	st, err := sqlite.Open(sqlitetest.Path(t))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := t.Context()
	for _, n := range []string{"a", "b", "c"} {
		if _, err := st.Things().Create(ctx, store.Thing{Name: n}); err != nil {
			t.Fatal(err)
		}
	}
	v := newTestEnv(t, st, Options{MaxStates: 2})
	if _, err := v.e.CreateRule(ctx, Rule{Name: "hot", Kind: KindThreshold, Enabled: true, Config: json.RawMessage(`{"key":"t","above":80}`)}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"a", "b", "c"} {
		v.telemetry(n, n, `{"t": 90}`, t0)
	}
	waitFor(t, "the refusal", func() bool { return counter(v.e.m.refused) == 1 })
	if got := len(v.sink.list()); got != 2 {
		t.Fatalf("raises %d; want 2 (the third thing has no state)", got)
	}

	// A full queue drops at once.
	q := New(Options{Store: st.Analytics(), Things: st.Things(), Alarms: &sink{}, Queue: 2})
	r := []*compiled{{}}
	q.rules.Store(&r) // not started: nothing drains
	for range 5 {
		q.enqueue(core.Message{Topic: "things/a/telemetry", Thing: "a"})
	}
	if counter(q.m.dropped) != 3 {
		t.Fatalf("dropped %v; want 3", counter(q.m.dropped))
	}
}

func TestRuleValidation(t *testing.T) {
	for _, c := range []struct {
		r     Rule
		field string
	}{
		{Rule{Name: "a/b", Kind: KindSilence, Config: json.RawMessage(`{"expectedInterval":"1m"}`)}, "name"},
		{Rule{Name: "r", Kind: KindSilence, ThingType: "t", Group: "g", Config: json.RawMessage(`{"expectedInterval":"1m"}`)}, "group"},
		{Rule{Name: "r", Kind: KindThreshold, Config: json.RawMessage(`{"key":"t"}`)}, "config.above"},
	} {
		if err := Validate(c.r); core.FieldOf(err) != c.field {
			t.Errorf("Validate(%+v) = %v; want field %s", c.r, err, c.field)
		}
	}
}

// TestEnginePositionKeys: a geofence rule that names no keys reads the
// engine's PositionKeys (--position-keys); one that names its own keeps
// them; a speed rule follows the engine's keys too.
func TestEnginePositionKeys(t *testing.T) {
	v := newTestEnv(t, nil, Options{PositionKeys: [2]string{"latitude", "longitude"}})
	ctx := t.Context()
	for _, n := range []string{"car", "bike"} {
		if _, err := v.st.Things().Create(ctx, store.Thing{Name: n}); err != nil {
			t.Fatal(err)
		}
	}
	fence := square(10, 50, 11, 51)
	for _, r := range []Rule{
		{Name: "yard", Kind: KindGeofence, Config: json.RawMessage(`{"fence":` + fence + `,"alarmType":"left-yard"}`)},
		{Name: "yard-gps", Kind: KindGeofence, Config: json.RawMessage(`{"fence":` + fence + `,"alarmType":"left-yard-gps","latKey":"gps_lat","lonKey":"gps_lon"}`)},
		{Name: "fast", Kind: KindSpeed, Config: json.RawMessage(`{"limitKmh":100,"alarmType":"fast"}`)},
	} {
		r.Enabled = true
		if _, err := v.e.CreateRule(ctx, r); err != nil {
			t.Fatalf("create %s: %v", r.Name, err)
		}
	}
	// lat/lon are not the keys any more: outside the fence, no alarm.
	v.telemetry("bike", "bike", `{"lat": 0, "lon": 0}`, t0)
	// car: inside, then outside by its latitude/longitude (and 1 degree
	// in one minute: ~110 km in 60 s, far above 100 km/h).
	v.telemetry("car", "car", `{"latitude": 50.5, "longitude": 10.5, "gps_lat": 50.5, "gps_lon": 10.5}`, t0)
	v.telemetry("car", "car", `{"latitude": 51.5, "longitude": 10.5, "gps_lat": 50.5, "gps_lon": 10.5}`, t0.Add(time.Minute))
	waitFor(t, "the car's alarms", func() bool { return len(v.sink.list()) >= 2 })
	v.telemetry("car", "car", `{"latitude": 51.5, "longitude": 10.5, "gps_lat": 52, "gps_lon": 10.5}`, t0.Add(time.Hour))
	waitFor(t, "the gps fence's alarm", func() bool { return len(v.sink.list()) >= 3 })
	got := strings.Join(v.sink.list(), "\n")
	for _, want := range []string{"raise car left-yard major", "raise car fast major", "raise car left-yard-gps major"} {
		if !strings.Contains(got, want) {
			t.Errorf("alarms:\n%s\nwant %q", got, want)
		}
	}
	if strings.Contains(got, "bike") {
		t.Errorf("alarms:\n%s\nwant none of bike (it has no latitude/longitude)", got)
	}
}
