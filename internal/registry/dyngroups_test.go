package registry

import (
	"slices"
	"strings"
	"testing"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/store"
)

// TestDynamicGroups: a group's query is checked (errors at line:column),
// bounded in number, fixed in kind (static stays static), kept out of
// things' own groups, and every change is announced for the fleet index.
func TestDynamicGroups(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	e.reg.maxDynamic = 2
	if _, err := e.reg.CreateGroup(ctx, store.Group{Name: "bad", Query: "connected = 'yes'"}); core.KindOf(err) != core.KindInvalid || !strings.Contains(err.Error(), "at 1:13") {
		t.Errorf("CreateGroup(bad query) = %v; want invalid at 1:13", err)
	}
	for _, n := range []string{"d1", "d2"} {
		if _, err := e.reg.CreateGroup(ctx, store.Group{Name: n, Query: "connected = true"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.reg.CreateGroup(ctx, store.Group{Name: "d3", Query: "connected = true"}); core.KindOf(err) != core.KindConflict {
		t.Errorf("CreateGroup(third dynamic, limit 2) = %v; want conflict", err)
	}
	if _, err := e.reg.CreateGroup(ctx, store.Group{Name: "static"}); err != nil {
		t.Errorf("a static group beyond the dynamic limit: %v", err)
	}
	if _, err := e.reg.UpdateGroup(ctx, store.Group{Name: "static", Query: "connected = true"}); core.KindOf(err) != core.KindInvalid {
		t.Errorf("UpdateGroup(static gets a query) = %v; want invalid", err)
	}
	if _, err := e.reg.UpdateGroup(ctx, store.Group{Name: "d1"}); core.KindOf(err) != core.KindInvalid {
		t.Errorf("UpdateGroup(dynamic loses its query) = %v; want invalid", err)
	}
	if g, err := e.reg.UpdateGroup(ctx, store.Group{Name: "d1", Query: "enabled = false"}); err != nil || g.Query != "enabled = false" {
		t.Errorf("UpdateGroup(new query) = %+v, %v", g, err)
	}
	if _, err := e.reg.CreateThing(ctx, store.Thing{Name: "t", Groups: []string{"d2"}}); core.KindOf(err) != core.KindInvalid {
		t.Errorf("CreateThing(groups: [d2]) = %v; want invalid", err)
	}
	if _, err := e.reg.CreateThing(ctx, store.Thing{Name: "t", Groups: []string{"static"}}); err != nil {
		t.Fatal(err)
	}
	if err := e.reg.DeleteGroup(ctx, "static"); err != nil {
		t.Fatal(err)
	}
	e.events.mu.Lock()
	got := slices.Clone(e.events.index)
	e.events.mu.Unlock()
	want := []Event{{Kind: GroupsChanged}, {Kind: GroupsChanged}, {Kind: GroupsChanged}, {Kind: GroupsChanged},
		{Kind: ThingCreated, Thing: "t"}, {Kind: GroupsChanged, Group: "static"}}
	if len(got) != len(want) {
		t.Fatalf("index events = %+v; want %+v", got, want)
	}
	for i := range want {
		if got[i].Kind != want[i].Kind || got[i].Thing != want[i].Thing || got[i].Group != want[i].Group {
			t.Errorf("index event %d = %+v; want %+v", i, got[i], want[i])
		}
	}
}
