package fleetindex

import (
	"slices"
	"sync"
	"testing"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/store"
)

// TestWatchAndFilter: the change feed names a thing whose attributes and
// shadow change, and Filter evaluates a query over the given things only.
func TestWatchAndFilter(t *testing.T) {
	f := setup(t, Options{})
	ctx := t.Context()
	f.thing(t, store.Thing{Name: "a"})
	f.thing(t, store.Thing{Name: "b", Attributes: map[string]string{"site": "ams"}})
	f.start(t)
	var (
		mu   sync.Mutex
		seen []string
	)
	stop := f.idx.Watch(func(names []string) {
		mu.Lock()
		seen = append(seen, names...)
		mu.Unlock()
	})
	has := func(n string) func() bool {
		return func() bool { mu.Lock(); defer mu.Unlock(); return slices.Contains(seen, n) }
	}
	if _, err := f.reg.UpdateThing(ctx, "a", store.ThingPatch{Attributes: map[string]string{"site": "ams"}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a in the change feed", has("a"))
	if _, err := f.shadows.Update(ctx, "b", "", []byte(`{"state":{"reported":{"x":1}}}`)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "b in the change feed", has("b"))
	f.waitMatch(t, "shadow.reported.x = 1", "b")
	got, err := f.idx.Filter(ctx, "attributes.site = 'ams' AND shadow.reported.x = 1", []string{"a", "b", "nosuch"})
	if err != nil || !slices.Equal(got, []string{"b"}) {
		t.Errorf("Filter = %q, %v; want [b]", got, err)
	}
	if _, err := f.idx.Filter(ctx, "attributes.site = ", []string{"a"}); core.KindOf(err) != core.KindInvalid {
		t.Errorf("Filter(bad query) = %v; want invalid", err)
	}
	stop()
	mu.Lock()
	seen = nil
	mu.Unlock()
	if _, err := f.reg.UpdateThing(ctx, "b", store.ThingPatch{Attributes: map[string]string{"site": "rtm"}}); err != nil {
		t.Fatal(err)
	}
	f.waitMatch(t, "attributes.site = 'rtm'", "b")
	if has("b")() {
		t.Error("a stopped watcher was still called")
	}
}
