package dashboards

import (
	"context"
	"errors"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

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

func TestServiceVersionsAndLimit(t *testing.T) {
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	s := New(Options{Store: openStore(t).Dashboards(), MaxDashboards: 2, Metrics: reg})
	doc, err := s.Parse([]byte(validDoc))
	if err != nil {
		t.Fatal(err)
	}
	d, err := s.Create(ctx, doc)
	if err != nil || d.Version != 1 || len(d.Widgets) != 6 || d.Widgets[5].Command != "reboot" {
		t.Fatalf("Create = %+v, %v", d, err)
	}
	doc.Title = "edited"
	if d, err = s.Update(ctx, doc, 1); err != nil || d.Version != 2 || d.Title != "edited" {
		t.Fatalf("Update v1 = %+v, %v", d, err)
	}
	// A second editor still at version 1 is refused, and nothing changes.
	doc.Title = "lost"
	if _, err := s.Update(ctx, doc, 1); !errors.Is(err, ErrStale) {
		t.Errorf("stale Update = %v; want ErrStale", err)
	}
	if err := s.Delete(ctx, "plant", 1); !errors.Is(err, ErrStale) {
		t.Errorf("stale Delete = %v; want ErrStale", err)
	}
	if got, _ := s.Get(ctx, "plant"); got.Title != "edited" || got.Version != 2 {
		t.Errorf("after stale writes: %q v%d", got.Title, got.Version)
	}
	// The limit: a second dashboard fits, a third does not.
	if _, err := s.Create(ctx, Document{Name: "two"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(ctx, Document{Name: "three"}); core.KindOf(err) != core.KindConflict {
		t.Errorf("third dashboard at a limit of 2 = %v; want conflict", err)
	}
	if _, err := s.Create(ctx, Document{Name: "two"}); core.KindOf(err) != core.KindConflict {
		t.Errorf("duplicate = %v; want conflict", err)
	}
	list, err := s.List(ctx, "", 0)
	if err != nil || len(list) != 2 || list[1].Name != "two" || len(list[1].Widgets) != 0 {
		t.Errorf("List = %+v, %v", list, err)
	}
	if _, err := s.Parse([]byte(`{"name": "x"}`)); err == nil {
		t.Error("Parse without widgets succeeded")
	}
	for reason, want := range map[string]float64{"limit": 1, "stale": 2, "invalid": 1, "too_large": 0} {
		if got := testutil.ToFloat64(s.refused.WithLabelValues(reason)); got != want {
			t.Errorf("mote_dashboards_refused_total{reason=%q} = %v; want %v", reason, got, want)
		}
	}
}

type counts struct{ msgs, connected, alarms atomic.Int64 }

func (c *counts) MessagesReceived() int64 { return c.msgs.Load() }
func (c *counts) ThingCounts(context.Context) (store.ThingCounts, error) {
	return store.ThingCounts{Connected: int(c.connected.Load())}, nil
}
func (c *counts) CountOpen(context.Context) (int, error) { return int(c.alarms.Load()), nil }

func TestSamplerRecordsAndSurvivesRestart(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	sqlitetest.Seed(t, filepath.Join(dir, "mote.db"))
	st, err := sqlite.Open(filepath.Join(dir, "mote.db"))
	if err != nil {
		t.Fatal(err)
	}
	c := &counts{}
	c.msgs.Store(1000) // counted before the sampler started: not in the history
	c.connected.Store(3)
	c.alarms.Store(2)
	s := NewSampler(SamplerOptions{Store: st.StatsHistory(), Things: c, Alarms: c, Messages: c, Interval: 20 * time.Millisecond, Metrics: prometheus.NewRegistry()})
	s.Start()
	c.msgs.Add(50)
	deadline := time.Now().Add(10 * time.Second)
	var pts []HistoryPoint
	for {
		pts, err = History(ctx, st.StatsHistory(), time.Now(), time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if len(pts) >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 10s the history has %d points; want 3", len(pts))
		}
		time.Sleep(10 * time.Millisecond) // polling the store, not waiting for a condition blindly
	}
	s.Close()
	var total int64
	for _, p := range pts {
		total += p.Messages
		if p.Connected != 3 || p.ActiveAlarms != 2 {
			t.Errorf("point %+v; want connected 3, alarms 2", p)
		}
	}
	if total != 50 {
		t.Errorf("messages over the points = %d; want the 50 since the start", total)
	}
	if pts[0].MessagesPerSecond <= 0 {
		t.Errorf("first point %+v has no rate", pts[0])
	}
	if testutil.ToFloat64(s.points) < 3 {
		t.Errorf("mote_stats_history_points_total = %v", testutil.ToFloat64(s.points))
	}
	st.Close()
	st2, err := sqlite.Open(filepath.Join(dir, "mote.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st2.Close()
	again, err := History(ctx, st2.StatsHistory(), time.Now(), time.Hour)
	if err != nil || len(again) < len(pts) {
		t.Errorf("after reopening: %d points, %v; want at least %d", len(again), err, len(pts))
	}
}

func TestHistoryMergesLongWindows(t *testing.T) {
	ctx := context.Background()
	h := openStore(t).StatsHistory()
	base := time.Now().Add(-time.Hour).Truncate(time.Second)
	const maxPoints = 10
	n := maxPoints*2 + 1
	for i := range n {
		if err := h.Append(ctx, store.StatsPoint{Time: base.Add(time.Duration(i) * time.Second), Interval: time.Second, Messages: 2, Connected: i % 7}, base.Add(-time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	pts, err := history(ctx, h, time.Now(), 2*time.Hour, maxPoints)
	if err != nil {
		t.Fatal(err)
	}
	if len(pts) != 7 { // 21 points in runs of 3
		t.Fatalf("%d points; want 7", len(pts))
	}
	var total int64
	for _, p := range pts {
		total += p.Messages
		if p.MessagesPerSecond != 2 {
			t.Fatalf("merged point %+v: rate %v; want 2/s", p, p.MessagesPerSecond)
		}
	}
	if total != int64(2*n) {
		t.Errorf("messages after merging = %d; want %d", total, 2*n)
	}
	if pts[0].Connected != 2 {
		t.Errorf("first merged point connected = %d; want the highest of its run (2)", pts[0].Connected)
	}
}

// deadHistory is a history store whose database is gone.
type deadHistory struct{ calls atomic.Int64 }

func (d *deadHistory) Append(context.Context, store.StatsPoint, time.Time) error {
	d.calls.Add(1)
	return errors.New("database is gone")
}
func (d *deadHistory) Since(context.Context, time.Time, int) ([]store.StatsPoint, error) {
	return nil, errors.New("database is gone")
}

// TestSamplerDeadStore: a store that fails costs a counted failure per
// point, never the sampler, and Close still returns.
func TestSamplerDeadStore(t *testing.T) {
	dead := &deadHistory{}
	c := &counts{}
	s := NewSampler(SamplerOptions{Store: dead, Things: c, Messages: c, Interval: 10 * time.Millisecond, Metrics: prometheus.NewRegistry()})
	s.Start()
	deadline := time.Now().Add(10 * time.Second)
	for testutil.ToFloat64(s.failures) < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("after 10s: %v failures counted", testutil.ToFloat64(s.failures))
		}
		time.Sleep(5 * time.Millisecond) // polling a counter with a deadline
	}
	s.Close()
	if got := testutil.ToFloat64(s.points); got != 0 {
		t.Errorf("points recorded into a dead store: %v", got)
	}
	if dead.calls.Load() < 3 {
		t.Errorf("the store was tried %d times", dead.calls.Load())
	}
}

// TestCorruptStoredDashboard: a row whose widgets are not JSON (a bad
// restore, a hand edit) is an error for that dashboard, not a crash, and
// can be replaced.
func TestCorruptStoredDashboard(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	if _, err := st.Dashboards().Create(ctx, store.Dashboard{Name: "bad", Widgets: []byte(`[{"id": `)}, 0); err != nil {
		t.Fatal(err)
	}
	s := New(Options{Store: st.Dashboards(), Metrics: prometheus.NewRegistry()})
	if _, err := s.Get(ctx, "bad"); err == nil || core.KindOf(err) != core.KindInternal {
		t.Errorf("Get of a corrupt row = %v; want an internal error", err)
	}
	if list, err := s.List(ctx, "", 0); err != nil || len(list) != 1 || list[0].Name != "bad" {
		t.Errorf("List over a corrupt row = %+v, %v; want it listed (without widgets) so it can be found", list, err)
	}
	d, err := s.Update(ctx, Document{Name: "bad", Title: "fixed"}, 0)
	if err != nil || d.Title != "fixed" || len(d.Widgets) != 0 {
		t.Errorf("replacing the corrupt row = %+v, %v", d, err)
	}
}
