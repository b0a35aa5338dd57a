package devicemodel

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/moteiot/mote/internal/bus"
	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/store"
	"github.com/moteiot/mote/internal/store/sqlite"
	"github.com/moteiot/mote/internal/store/sqlite/sqlitetest"
)

func openStore(t *testing.T) *sqlite.Store {
	t.Helper()
	st, err := sqlite.Open(sqlitetest.Path(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestMonitorFlags: telemetry out of range and a reported value outside
// the schema are counted and recorded on the thing; a message published
// by another thing than the topic's, and things of a type without a
// model, are not.
func TestMonitorFlags(t *testing.T) {
	st := openStore(t)
	ctx := t.Context()
	raw, _ := os.ReadFile("testdata/sensor.json")
	if _, err := st.Types().Create(ctx, store.ThingType{Name: "sensor", Model: raw}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Types().Create(ctx, store.ThingType{Name: "plain"}); err != nil {
		t.Fatal(err)
	}
	for _, th := range []store.Thing{{Name: "s1", Type: "sensor"}, {Name: "p1", Type: "plain"}} {
		if _, err := st.Things().Create(ctx, th); err != nil {
			t.Fatal(err)
		}
	}
	reg := prometheus.NewRegistry()
	b := &bus.Local{}
	m := NewMonitor(MonitorOptions{Models: NewModels(st.Types(), 0), Things: st.Things(), Flush: 20 * time.Millisecond, Metrics: reg})
	m.Attach(b)
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	pub := func(thing, topic, payload string) {
		b.Publish(core.Message{Topic: topic, Payload: []byte(payload), Thing: thing, Received: time.Now()})
	}
	pub("s1", "things/s1/telemetry", `{"temperature": 20}`)                                // fine
	pub("s1", "things/s1/telemetry", `{"temperature": 130, "humidity": 50}`)               // 1
	pub("p1", "things/p1/telemetry", `{"temperature": 900}`)                               // no model
	pub("p1", "things/s1/telemetry", `{"temperature": 900}`)                               // not its topic
	pub("s1", "$aws/things/s1/shadow/update", `{"state": {"reported": {"battery": 150}}}`) // 2
	waitFor(t, "two violations recorded on s1", func() bool {
		th, err := st.Things().Get(ctx, "s1")
		return err == nil && th.Stats.ModelViolations == 2
	})
	th, _ := st.Things().Get(ctx, "s1")
	if !strings.Contains(th.Stats.LastModelViolation, `"key":"/battery"`) || th.Stats.LastModelViolationAt == nil {
		t.Errorf("last violation = %q at %v; want /battery", th.Stats.LastModelViolation, th.Stats.LastModelViolationAt)
	}
	if got := testutil.ToFloat64(m.violations.WithLabelValues("telemetry")); got != 1 {
		t.Errorf("mote_model_violations_total{kind=telemetry} = %v; want 1", got)
	}
	if got := testutil.ToFloat64(m.violations.WithLabelValues("reported")); got != 1 {
		t.Errorf("mote_model_violations_total{kind=reported} = %v; want 1", got)
	}
	p, _ := st.Things().Get(ctx, "p1")
	if p.Stats.ModelViolations != 0 {
		t.Errorf("p1 violations = %d; want 0", p.Stats.ModelViolations)
	}
}

// TestMonitorQueueBounded: a flood beyond the queue is dropped and
// counted, never blocking the publisher.
func TestMonitorQueueBounded(t *testing.T) {
	st := openStore(t)
	b := &bus.Local{}
	m := NewMonitor(MonitorOptions{Models: NewModels(st.Types(), 0), Things: st.Things(), Queue: 4})
	m.Attach(b) // not started: nothing drains the queue
	defer m.Close()
	for range 100 {
		b.Publish(core.Message{Topic: "things/x/telemetry", Payload: []byte(`{}`), Thing: "x"})
	}
	if got := testutil.ToFloat64(m.dropped); got != 96 {
		t.Errorf("dropped = %v; want 96", got)
	}
}
