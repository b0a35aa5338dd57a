package analytics

import (
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/devicemodel"
	"github.com/moteiot/mote/internal/store"
	"github.com/moteiot/mote/internal/store/sqlite"
	"github.com/moteiot/mote/internal/store/sqlite/sqlitetest"
)

// TestSilenceIntervalFromModel: a silence rule without expectedInterval
// takes it from the device model of the thing's type (the largest key, or
// the rule's key); a thing whose type has no model is never silent.
func TestSilenceIntervalFromModel(t *testing.T) {
	var mu sync.Mutex
	now := t0
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	st, err := sqlite.Open(sqlitetest.Path(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ctx := t.Context()
	model := `{"telemetry": {"t": {"unit": "°C", "interval": "10s"}, "h": {"interval": "1m"}}}`
	for _, y := range []store.ThingType{{Name: "sensor", Model: []byte(model)}, {Name: "plain"}} {
		if _, err := st.Types().Create(ctx, y); err != nil {
			t.Fatal(err)
		}
	}
	for _, th := range []store.Thing{{Name: "s", Type: "sensor"}, {Name: "p", Type: "plain"}} {
		if _, err := st.Things().Create(ctx, th); err != nil {
			t.Fatal(err)
		}
	}
	v := newTestEnv(t, st, Options{Now: clock, TickInterval: time.Millisecond, Intervals: devicemodel.NewModels(st.Types(), 0)})
	for _, r := range []Rule{
		{Name: "any", Kind: KindSilence, Enabled: true, Config: json.RawMessage(`{"factor": 2, "alarmType": "silent-any"}`)},
		{Name: "t-only", Kind: KindSilence, Enabled: true, Config: json.RawMessage(`{"factor": 2, "key": "t", "alarmType": "silent-t"}`)},
	} {
		if _, err := v.e.CreateRule(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	v.telemetry("s", "s", `{"t": 1, "h": 2}`, t0)
	v.telemetry("p", "p", `{"t": 1}`, t0)
	waitFor(t, "the evaluations", func() bool { return counter(v.e.m.evals) >= 4 })
	mu.Lock()
	now = t0.Add(21 * time.Second) // > 2 × 10s (t), < 2 × 1m (largest)
	mu.Unlock()
	waitFor(t, "silent on t", func() bool { return len(v.sink.list()) == 1 })
	mu.Lock()
	now = t0.Add(121 * time.Second) // > 2 × 1m
	mu.Unlock()
	waitFor(t, "silent on any key", func() bool { return len(v.sink.list()) == 2 })
	mu.Lock()
	now = t0.Add(time.Hour)
	mu.Unlock()
	// Let the ticker run past the hour; p (no model) must stay quiet.
	n := counter(v.e.m.evals)
	waitFor(t, "more ticks", func() bool { return counter(v.e.m.evals) > n+10 })
	got := v.sink.list()
	if len(got) != 2 || got[0] != "raise s silent-t major" || got[1] != "raise s silent-any major" {
		t.Fatalf("alarms %q; want s silent on t, then on any key, and nothing for p", got)
	}
}
