package alarms

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/store"
	"github.com/moteiot/mote/internal/store/sqlite"
	"github.com/moteiot/mote/internal/store/sqlite/sqlitetest"
)

// recorder is a Publisher that keeps what it was given.
type recorder struct {
	mu     sync.Mutex
	topics []string
	bodies [][]byte
}

func (r *recorder) Publish(topic string, payload []byte, retain bool, qos byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.topics = append(r.topics, topic)
	r.bodies = append(r.bodies, payload)
	return nil
}

func (r *recorder) list() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.topics...)
}

func openStore(tb testing.TB, things ...string) store.Store {
	tb.Helper()
	st, err := sqlite.Open(sqlitetest.Path(tb))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	for _, n := range things {
		if _, err := st.Things().Create(tb.Context(), store.Thing{Name: n}); err != nil {
			tb.Fatal(err)
		}
	}
	return st
}

func newService(tb testing.TB, o Options) *Service {
	tb.Helper()
	s := New(o)
	if err := s.Start(tb.Context()); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

// waitFor polls cond until it holds or 5 seconds pass.
func waitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(30 * time.Second) // a condition, not a speed goal: CI machines are busy
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestLifecycleAndEvents(t *testing.T) {
	st := openStore(t, "dev")
	pub := &recorder{}
	s := newService(t, Options{Store: st.Alarms(), Publisher: pub})
	events, cancel := s.Subscribe(10)
	defer cancel()
	ctx := t.Context()

	a, err := s.Raise(ctx, "dev", "overheat", store.SeverityMajor, json.RawMessage(`{"temperature":81}`))
	if err != nil {
		t.Fatal(err)
	}
	if a.Status != store.AlarmActive || a.Count != 1 {
		t.Fatalf("raised: %+v; want active, count 1", a)
	}
	again, err := s.Raise(ctx, "dev", "overheat", store.SeverityCritical, nil)
	if err != nil || again.ID != a.ID || again.Count != 2 {
		t.Fatalf("repeat: %+v, %v; want the same alarm with count 2", again, err)
	}
	if _, err := s.Ack(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Ack(ctx, a.ID); core.KindOf(err) != core.KindConflict {
		t.Fatalf("ack twice: %v; want a conflict", err)
	}
	c, err := s.Clear(ctx, a.ID)
	if err != nil || c.Status != store.AlarmCleared {
		t.Fatalf("clear: %+v, %v", c, err)
	}
	want := []string{
		"$mote/events/alarms/dev/overheat/raised",
		"$mote/events/alarms/dev/overheat/acknowledged",
		"$mote/events/alarms/dev/overheat/cleared",
	}
	if got := pub.list(); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("events published: %q; want %q (a repeat publishes none)", got, want)
	}
	var ev Event
	if err := json.Unmarshal(pub.bodies[0], &ev); err != nil || ev.Event != EventRaised || ev.Alarm.ID != a.ID || string(ev.Alarm.Details) != `{"temperature":81}` {
		t.Fatalf("raised event body %s: %+v %v", pub.bodies[0], ev, err)
	}
	for _, w := range []string{EventRaised, EventAcknowledged, EventCleared} {
		if got := <-events; got.Event != w {
			t.Fatalf("subscriber got %q; want %q", got.Event, w)
		}
	}
}

func TestRaiseValidates(t *testing.T) {
	st := openStore(t, "dev")
	s := newService(t, Options{Store: st.Alarms()})
	ctx := t.Context()
	for _, c := range []struct {
		typ, sev, details string
		kind              core.Kind
	}{
		{"", "major", "", core.KindInvalid},
		{"a/b", "major", "", core.KindInvalid},
		{"x", "fatal", "", core.KindInvalid},
		{"x", "major", `[1]`, core.KindInvalid},
		{"x", "major", `{"a":"` + strings.Repeat("x", MaxDetails) + `"}`, core.KindTooLarge},
	} {
		_, err := s.Raise(ctx, "dev", c.typ, c.sev, json.RawMessage(c.details))
		if core.KindOf(err) != c.kind {
			t.Errorf("Raise(%q, %q, %.20q) = %v; want kind %s", c.typ, c.sev, c.details, err, c.kind)
		}
	}
	if _, err := s.Raise(ctx, "ghost", "x", "major", nil); !core.IsNotFound(err) {
		t.Errorf("raise for a missing thing: %v; want not found", err)
	}
}

// A flood of distinct alarms stops at MaxOpen, and the refusals are counted.
func TestFloodBoundedByMaxOpen(t *testing.T) {
	st := openStore(t, "dev")
	reg := prometheus.NewRegistry()
	s := newService(t, Options{Store: st.Alarms(), MaxOpen: 5, Metrics: reg})
	for i := range 50 {
		s.RaiseAsync("dev", "t"+strings.Repeat("x", i%25), store.SeverityMinor, nil, time.Time{})
	}
	// 25 distinct types, each raised twice: the first 5 open (their
	// repeats count up), the other 20 are refused both times.
	waitFor(t, "the refusals", func() bool { return counterValue(s.m.refused) >= 40 })
	if n := counterValue(s.m.refused); n != 40 {
		t.Fatalf("refusals = %v; want 40", n)
	}
	n, err := s.CountOpen(t.Context())
	if err != nil || n != 5 {
		t.Fatalf("open alarms after the flood: %d, %v; want 5", n, err)
	}
}

// A full queue drops instead of waiting.
func TestAsyncQueueFullDrops(t *testing.T) {
	st := openStore(t, "dev")
	s := New(Options{Store: st.Alarms(), Queue: 3}) // not started: nothing drains the queue
	defer s.Close()
	ok := 0
	for range 10 {
		if s.RaiseAsync("dev", "x", store.SeverityMinor, nil, time.Time{}) {
			ok++
		}
	}
	if ok != 3 || counterValue(s.m.dropped.WithLabelValues("queue_full")) != 7 {
		t.Fatalf("accepted %d, dropped %v; want 3 and 7", ok, counterValue(s.m.dropped.WithLabelValues("queue_full")))
	}
}

func TestClearAsyncOfNothingIsQuiet(t *testing.T) {
	st := openStore(t, "dev")
	s := newService(t, Options{Store: st.Alarms()})
	s.RaiseAsync("dev", "x", store.SeverityMinor, nil, time.Time{})
	s.ClearAsync("dev", "x", time.Time{})
	s.ClearAsync("dev", "x", time.Time{})
	waitFor(t, "the clear", func() bool {
		l, _ := s.List(t.Context(), store.AlarmFilter{Status: store.AlarmCleared})
		return len(l) == 1
	})
	if f := counterValue(s.m.failed); f != 0 {
		t.Fatalf("failed requests: %v; want 0 (clearing nothing is not a failure)", f)
	}
}

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}

// durableCheck is a Publisher that, for every event, reads the alarm back
// from the store: an event must only go out once its change is committed.
type durableCheck struct {
	recorder
	st     store.AlarmStore
	mu2    sync.Mutex
	errors []string
}

func (d *durableCheck) Publish(topic string, payload []byte, retain bool, qos byte) error {
	var ev Event
	if err := json.Unmarshal(payload, &ev); err != nil {
		return err
	}
	got, err := d.st.Get(context.Background(), ev.Alarm.ID)
	// (a later change of the same batch may already be there too)
	if err != nil || (ev.Alarm.Status == store.AlarmCleared && got.Status != store.AlarmCleared) {
		d.mu2.Lock()
		d.errors = append(d.errors, fmt.Sprintf("%s: stored %q, %v; the event says %q", topic, got.Status, err, ev.Alarm.Status))
		d.mu2.Unlock()
	}
	return d.recorder.Publish(topic, payload, retain, qos)
}

// TestGroupCommitInOrderDurable: a burst of queued raises and clears is
// stored in a few transactions (not one each), each change in queue
// order, each event published only after its change is committed, and
// all of it is there after the store is reopened.
func TestGroupCommitInOrderDurable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mote.db")
	st, err := sqlite.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	things := []string{"a", "b", "c"}
	for _, n := range things {
		if _, err := st.Things().Create(t.Context(), store.Thing{Name: n}); err != nil {
			t.Fatal(err)
		}
	}
	pub := &durableCheck{st: st.Alarms()}
	reg := prometheus.NewRegistry()
	s := New(Options{Store: st.Alarms(), Publisher: pub, Batch: 16, Metrics: reg})
	// Queue the burst before the service runs, so it is there at once.
	var want []string
	const rounds = 20
	for i := range rounds {
		for _, th := range things {
			s.RaiseAsync(th, "hot", store.SeverityMajor, nil, time.Time{})
			s.RaiseAsync(th, "hot", store.SeverityMajor, nil, time.Time{}) // a repeat: no event
			want = append(want, EventTopic(th, "hot", EventRaised))
			if i < rounds-1 {
				s.ClearAsync(th, "hot", time.Time{})
				want = append(want, EventTopic(th, "hot", EventCleared))
			}
		}
	}
	queued := rounds*len(things)*3 - len(things)
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "every event", func() bool { return len(pub.list()) >= len(want) })
	open, err := s.List(t.Context(), store.AlarmFilter{Status: store.AlarmActive})
	if err != nil || len(open) != len(things) {
		t.Fatalf("active alarms: %d, %v; want %d", len(open), err, len(things))
	}
	if _, err := s.Ack(t.Context(), open[0].ID); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if got := pub.list()[:len(want)]; strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("events out of order:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if len(pub.errors) > 0 {
		t.Fatalf("events published before their change was stored: %q", pub.errors)
	}
	var m dto.Metric
	if err := s.m.batches.Write(&m); err != nil {
		t.Fatal(err)
	}
	if n := m.GetHistogram().GetSampleCount(); n == 0 || n >= uint64(queued) || m.GetHistogram().GetSampleSum() != float64(queued) {
		t.Fatalf("%d requests in %d transactions (sum %v); want them grouped (fewer transactions than requests, at most 16 each)", queued, n, m.GetHistogram().GetSampleSum())
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	// After a restart: every episode is in the history, in order.
	st2, err := sqlite.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer st2.Close()
	for _, th := range things {
		list, err := st2.Alarms().List(t.Context(), store.AlarmFilter{Thing: th, Limit: 1000})
		if err != nil || len(list) != rounds {
			t.Fatalf("history of %s after a restart: %d alarms, %v; want %d", th, len(list), err, rounds)
		}
		for i, a := range list { // newest first
			wantStatus := store.AlarmCleared
			if i == 0 {
				wantStatus = store.AlarmActive
				if a.ID == open[0].ID {
					wantStatus = store.AlarmAcknowledged
				}
			}
			if a.Status != wantStatus || a.Count != 2 {
				t.Fatalf("%s's alarm %d after a restart: %s count %d; want %s count 2", th, i, a.Status, a.Count, wantStatus)
			}
			if i > 0 && list[i-1].CreatedAt.Before(*a.ClearedAt) {
				t.Fatalf("%s: episode %d created %v before the previous one was cleared %v", th, i, list[i-1].CreatedAt, a.ClearedAt)
			}
		}
	}
}
