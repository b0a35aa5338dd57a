package storetest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/store"
)

func testDashboards(t *testing.T, open func(t *testing.T) store.Store) {
	ctx := context.Background()
	s := open(t)
	ds := s.Dashboards()

	w := startWindow()
	d, err := ds.Create(ctx, store.Dashboard{Name: "plant", Title: "Plant", Widgets: []byte(`[{"id":"a","type":"latest"}]`)}, 3)
	must(t, "Create", err)
	w = w.end()
	eq(t, "Name", d.Name, "plant")
	eq(t, "Title", d.Title, "Plant")
	eq(t, "Version", d.Version, int64(1))
	eqJSON(t, "Widgets", d.Widgets, []byte(`[{"id":"a","type":"latest"}]`))
	checkNow(t, "CreatedAt", d.CreatedAt, w)
	eqTime(t, "UpdatedAt", d.UpdatedAt, d.CreatedAt)

	_, err = ds.Create(ctx, store.Dashboard{Name: "plant"}, 3)
	wantConflict(t, "Create duplicate", err, "plant")
	_, err = ds.Create(ctx, store.Dashboard{}, 3)
	wantKind(t, "Create without a name", err, core.KindInvalid)

	// An empty widget list is stored as [].
	e, err := ds.Create(ctx, store.Dashboard{Name: "empty"}, 3)
	must(t, "Create empty", err)
	eqJSON(t, "empty Widgets", e.Widgets, []byte(`[]`))
	_, err = ds.Create(ctx, store.Dashboard{Name: "b"}, 3)
	must(t, "Create b", err)
	// The limit counts every dashboard.
	_, err = ds.Create(ctx, store.Dashboard{Name: "c"}, 3)
	wantConflict(t, "Create beyond max", err, "3 dashboards")
	if _, err := ds.Get(ctx, "c"); err == nil {
		t.Errorf("Get c after a refused Create: found")
	}

	got, err := ds.Get(ctx, "plant")
	must(t, "Get", err)
	eq(t, "Get Version", got.Version, int64(1))
	eqTime(t, "Get CreatedAt", got.CreatedAt, d.CreatedAt)
	_, err = ds.Get(ctx, "nope")
	wantNotFound(t, "Get missing", err, "dashboard", "nope")

	// Update with the current version, then with the stale one.
	u, err := ds.Update(ctx, store.Dashboard{Name: "plant", Title: "Plant 2", Widgets: []byte(`[]`)}, 1)
	must(t, "Update", err)
	eq(t, "Update Version", u.Version, int64(2))
	eq(t, "Update Title", u.Title, "Plant 2")
	eqJSON(t, "Update Widgets", u.Widgets, []byte(`[]`))
	eqTime(t, "Update CreatedAt", u.CreatedAt, d.CreatedAt)
	if u.UpdatedAt.Before(d.UpdatedAt) {
		t.Errorf("Update UpdatedAt %v before %v", u.UpdatedAt, d.UpdatedAt)
	}
	_, err = ds.Update(ctx, store.Dashboard{Name: "plant", Title: "lost"}, 1)
	wantConflict(t, "Update stale", err)
	if !errors.Is(err, store.ErrStaleVersion) {
		t.Errorf("Update stale: %v is not ErrStaleVersion", err)
	}
	if got, _ := ds.Get(ctx, "plant"); got.Title != "Plant 2" || got.Version != 2 {
		t.Errorf("after a stale Update: %q v%d; want \"Plant 2\" v2", got.Title, got.Version)
	}
	// Version 0: unconditional.
	u, err = ds.Update(ctx, store.Dashboard{Name: "plant", Title: "Plant 3"}, 0)
	must(t, "Update unconditional", err)
	eq(t, "unconditional Version", u.Version, int64(3))
	_, err = ds.Update(ctx, store.Dashboard{Name: "nope"}, 0)
	wantNotFound(t, "Update missing", err, "dashboard", "nope")

	list, err := ds.List(ctx, "", 0)
	must(t, "List", err)
	var names []string
	for _, d := range list {
		names = append(names, d.Name)
	}
	eqList(t, "List", names, []string{"b", "empty", "plant"})
	list, err = ds.List(ctx, "b", 1)
	must(t, "List after b", err)
	if len(list) != 1 || list[0].Name != "empty" {
		t.Errorf("List after b, limit 1 = %v; want [empty]", list)
	}

	err = ds.Delete(ctx, "plant", 2)
	wantConflict(t, "Delete stale", err)
	if !errors.Is(err, store.ErrStaleVersion) {
		t.Errorf("Delete stale: %v is not ErrStaleVersion", err)
	}
	must(t, "Delete", ds.Delete(ctx, "plant", 3))
	wantNotFound(t, "Delete again", ds.Delete(ctx, "plant", 0), "dashboard", "plant")
	must(t, "Delete unconditional", ds.Delete(ctx, "b", 0))
	_, err = ds.Create(ctx, store.Dashboard{Name: "c"}, 3)
	must(t, "Create after deletes", err)

	testStatsHistory(t, s)
}

func testStatsHistory(t *testing.T, s store.Store) {
	ctx := context.Background()
	h := s.StatsHistory()
	base := time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)
	for i := range 5 {
		p := store.StatsPoint{Time: base.Add(time.Duration(i) * time.Minute), Interval: time.Minute, Messages: int64(i * 10), Connected: i, ActiveAlarms: 5 - i}
		must(t, fmt.Sprint("Append ", i), h.Append(ctx, p, base))
	}
	// The same time replaces the point.
	must(t, "Append again", h.Append(ctx, store.StatsPoint{Time: base.Add(4 * time.Minute), Interval: 30 * time.Second, Messages: 99, Connected: 7}, base))
	got, err := h.Since(ctx, base.Add(2*time.Minute), 0)
	must(t, "Since", err)
	if len(got) != 3 {
		t.Fatalf("Since +2m = %d points; want 3", len(got))
	}
	eqTime(t, "first Time", got[0].Time, base.Add(2*time.Minute))
	eq(t, "first Messages", got[0].Messages, int64(20))
	eq(t, "first Connected", got[0].Connected, 2)
	eq(t, "first ActiveAlarms", got[0].ActiveAlarms, 3)
	eq(t, "first Interval", got[0].Interval, time.Minute)
	eq(t, "replaced Messages", got[2].Messages, int64(99))
	eq(t, "replaced Interval", got[2].Interval, 30*time.Second)
	eq(t, "replaced ActiveAlarms", got[2].ActiveAlarms, 0)
	// limit keeps the newest, oldest first.
	got, err = h.Since(ctx, base, 2)
	must(t, "Since limit 2", err)
	if len(got) != 2 || !got[0].Time.Equal(base.Add(3*time.Minute)) {
		t.Errorf("Since limit 2 = %+v; want the points at +3m and +4m", got)
	}
	// Pruning drops the points older than before.
	must(t, "Append pruning", h.Append(ctx, store.StatsPoint{Time: base.Add(5 * time.Minute), Interval: time.Minute}, base.Add(3*time.Minute)))
	got, err = h.Since(ctx, time.Time{}, 0)
	must(t, "Since all", err)
	if len(got) != 3 || !got[0].Time.Equal(base.Add(3*time.Minute)) {
		t.Errorf("after pruning = %+v; want 3 points from +3m", got)
	}
}
