package registry

import (
	"context"
	"database/sql"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/policy"
	"github.com/moteiot/mote/internal/store"
)

func ptr[T any](v T) *T { return &v }

func manyAttrs(n int) map[string]string {
	m := make(map[string]string, n)
	for i := range n {
		m[fmt.Sprintf("k%03d", i)] = "v"
	}
	return m
}

func manyNames(prefix string, n int) []string {
	s := make([]string, n)
	for i := range s {
		s[i] = fmt.Sprintf("%s%03d", prefix, i)
	}
	return s
}

func TestCreateThingValidation(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	tests := []struct {
		name  string
		thing store.Thing
		field string
	}{
		{"empty name", store.Thing{Name: ""}, "name"},
		{"slash in name", store.Thing{Name: "a/b"}, "name"},
		{"plus in name", store.Thing{Name: "a+b"}, "name"},
		{"hash in name", store.Thing{Name: "a#"}, "name"},
		{"dollar in name", store.Thing{Name: "$sys"}, "name"},
		{"space in name", store.Thing{Name: "a b"}, "name"},
		{"name starts with dot", store.Thing{Name: ".a"}, "name"},
		{"name starts with dash", store.Thing{Name: "-a"}, "name"},
		{"name too long", store.Thing{Name: strings.Repeat("a", core.MaxNameLen+1)}, "name"},
		{"bad type", store.Thing{Name: "ok", Type: "a/b"}, "type"},
		{"unknown type", store.Thing{Name: "ok", Type: "nosuch"}, "type"},
		{"too many attributes", store.Thing{Name: "ok", Attributes: manyAttrs(MaxAttributes + 1)}, "attributes"},
		{"empty attribute key", store.Thing{Name: "ok", Attributes: map[string]string{"": "v"}}, "attributes"},
		{"long attribute key", store.Thing{Name: "ok", Attributes: map[string]string{strings.Repeat("k", MaxAttributeKey+1): "v"}}, "attributes"},
		{"control character in key", store.Thing{Name: "ok", Attributes: map[string]string{"a\nb": "v"}}, "attributes"},
		{"DEL in key", store.Thing{Name: "ok", Attributes: map[string]string{"a\x7f": "v"}}, "attributes"},
		{"invalid UTF-8 key", store.Thing{Name: "ok", Attributes: map[string]string{"a\xff": "v"}}, "attributes"},
		{"long attribute value", store.Thing{Name: "ok", Attributes: map[string]string{"site": strings.Repeat("v", MaxAttributeValue+1)}}, "attributes.site"},
		{"invalid UTF-8 value", store.Thing{Name: "ok", Attributes: map[string]string{"site": "\xc3"}}, "attributes.site"},
		{"too many tags", store.Thing{Name: "ok", Tags: manyNames("t", MaxTags+1)}, "tags"},
		{"empty tag", store.Thing{Name: "ok", Tags: []string{"a", ""}}, "tags"},
		{"control character in tag", store.Thing{Name: "ok", Tags: []string{"a\tb"}}, "tags"},
		{"long tag", store.Thing{Name: "ok", Tags: []string{strings.Repeat("t", MaxAttributeKey+1)}}, "tags"},
		{"too many groups", store.Thing{Name: "ok", Groups: manyNames("g", MaxGroups+1)}, "groups"},
		{"bad group name", store.Thing{Name: "ok", Groups: []string{"a b"}}, "groups"},
		{"unknown group", store.Thing{Name: "ok", Groups: []string{"nosuch"}}, "groups"},
		{"too many policies", store.Thing{Name: "ok", Policies: manyNames("p", MaxPolicies+1)}, "policies"},
		{"bad policy name", store.Thing{Name: "ok", Policies: []string{"#"}}, "policies"},
		{"unknown policy", store.Thing{Name: "ok", Policies: []string{"nosuch"}}, "policies"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.reg.CreateThing(ctx, tt.thing)
			checkErr(t, fmt.Sprintf("CreateThing(%.40q)", tt.thing.Name), err, core.KindInvalid, tt.field)
		})
	}
	if _, err := e.reg.GetThing(ctx, "ok"); !core.IsNotFound(err) {
		t.Errorf("GetThing(ok) after failed creates = %v; want not found", err)
	}

	// The limits themselves are allowed.
	ok := store.Thing{
		Name:       strings.Repeat("a", core.MaxNameLen),
		Attributes: manyAttrs(MaxAttributes),
		Tags:       manyNames("t", MaxTags),
		Enabled:    true,
	}
	ok.Attributes["k000"] = strings.Repeat("é", MaxAttributeValue/2)
	if _, err := e.reg.CreateThing(ctx, ok); err != nil {
		t.Errorf("CreateThing(at the limits) = %v; want nil", err)
	}
	if _, err := e.reg.CreateThing(ctx, ok); core.KindOf(err) != core.KindConflict {
		t.Errorf("CreateThing(duplicate) = %v; want a conflict", err)
	}
}

func TestUpdateThingValidation(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	mustThing(t, e, store.Thing{Name: "dev", Enabled: true, Tags: []string{"keep"}})
	tests := []struct {
		name  string
		patch store.ThingPatch
		field string
	}{
		{"bad type", store.ThingPatch{Type: ptr("a b")}, "type"},
		{"unknown type", store.ThingPatch{Type: ptr("nosuch")}, "type"},
		{"control character in key", store.ThingPatch{Attributes: map[string]string{"\x00": "v"}}, "attributes"},
		{"long value", store.ThingPatch{Attributes: map[string]string{"k": strings.Repeat("v", MaxAttributeValue+1)}}, "attributes.k"},
		{"too many tags", store.ThingPatch{Tags: manyNames("t", MaxTags+1)}, "tags"},
		{"control character in tag", store.ThingPatch{Tags: []string{"\x1b[31m"}}, "tags"},
		{"bad group", store.ThingPatch{Groups: []string{"a/b"}}, "groups"},
		{"too many policies", store.ThingPatch{Policies: manyNames("p", MaxPolicies+1)}, "policies"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.reg.UpdateThing(ctx, "dev", tt.patch)
			checkErr(t, "UpdateThing(dev)", err, core.KindInvalid, tt.field)
		})
	}
	e.checkEvents(t, "failed updates")
	got, err := e.reg.GetThing(ctx, "dev")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Tags, []string{"keep"}) || got.Type != "" {
		t.Errorf("GetThing(dev) after failed updates = type %q tags %q; want unchanged", got.Type, got.Tags)
	}
	if _, err := e.reg.UpdateThing(ctx, "nosuch", store.ThingPatch{Enabled: ptr(false)}); !core.IsNotFound(err) {
		t.Errorf("UpdateThing(nosuch) = %v; want not found", err)
	}
	e.checkEvents(t, "update of a missing thing")
}

func TestThingLifecycleEvents(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	if _, err := e.reg.CreateType(ctx, store.ThingType{Name: "sensor"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.reg.CreateGroup(ctx, store.Group{Name: "lab"}); err != nil {
		t.Fatal(err)
	}

	created := mustThing(t, e, store.Thing{
		Name:       "dev-1",
		Type:       "sensor",
		Attributes: map[string]string{"site": "berlin"},
		Tags:       []string{"b", "a"},
		Groups:     []string{"lab"},
		Enabled:    true,
	})
	if created.Name != "dev-1" || created.Type != "sensor" || !created.Enabled || created.Connected ||
		created.Attributes["site"] != "berlin" || !reflect.DeepEqual(created.Tags, []string{"a", "b"}) ||
		!reflect.DeepEqual(created.Groups, []string{"lab"}) {
		t.Errorf("CreateThing(dev-1) = %+v; want it as given (tags sorted)", created)
	}
	e.checkEvents(t, "CreateThing") // nothing connected can be affected

	// The registry ignores presence given by the caller.
	seen := created.CreatedAt
	c2 := mustThing(t, e, store.Thing{Name: "dev-2", Connected: true, LastSeen: &seen})
	if c2.Connected || c2.LastSeen != nil || c2.Enabled {
		t.Errorf("CreateThing(dev-2, connected) = connected %v lastSeen %v enabled %v; want false, nil, false", c2.Connected, c2.LastSeen, c2.Enabled)
	}

	steps := []struct {
		name  string
		patch store.ThingPatch
		want  Event
		check func(store.Thing) bool
	}{
		{"disable", store.ThingPatch{Enabled: ptr(false)},
			Event{Kind: ThingChanged, Thing: "dev-1", Enabled: false},
			func(th store.Thing) bool { return !th.Enabled }},
		{"enable", store.ThingPatch{Enabled: ptr(true)},
			Event{Kind: ThingChanged, Thing: "dev-1", Enabled: true},
			func(th store.Thing) bool { return th.Enabled }},
		{"retag", store.ThingPatch{Tags: []string{"x"}},
			Event{Kind: ThingChanged, Thing: "dev-1", Enabled: true},
			func(th store.Thing) bool { return reflect.DeepEqual(th.Tags, []string{"x"}) }},
		{"remove type", store.ThingPatch{Type: ptr("")},
			Event{Kind: ThingChanged, Thing: "dev-1", Enabled: true},
			func(th store.Thing) bool { return th.Type == "" }},
	}
	for _, s := range steps {
		got, err := e.reg.UpdateThing(ctx, "dev-1", s.patch)
		if err != nil {
			t.Fatalf("UpdateThing(dev-1, %s) = %v; want nil", s.name, err)
		}
		if !s.check(got) {
			t.Errorf("UpdateThing(dev-1, %s) = %+v; change not applied", s.name, got)
		}
		e.checkEvents(t, "UpdateThing "+s.name, s.want)
	}

	if err := e.reg.DeleteThing(ctx, "dev-1"); err != nil {
		t.Fatalf("DeleteThing(dev-1) = %v; want nil", err)
	}
	e.checkEvents(t, "DeleteThing", Event{Kind: ThingDeleted, Thing: "dev-1"})
	if _, err := e.reg.GetThing(ctx, "dev-1"); !core.IsNotFound(err) {
		t.Errorf("GetThing(dev-1) after delete = %v; want not found", err)
	}
	if err := e.reg.DeleteThing(ctx, "dev-1"); !core.IsNotFound(err) {
		t.Errorf("DeleteThing(dev-1) again = %v; want not found", err)
	}
	e.checkEvents(t, "second DeleteThing")
}

func TestUpdateThingEmptyPatch(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	before := mustThing(t, e, store.Thing{Name: "dev", Enabled: true, Tags: []string{"a"}})
	got, err := e.reg.UpdateThing(ctx, "dev", store.ThingPatch{})
	if err != nil {
		t.Fatalf("UpdateThing(dev, {}) = %v; want nil", err)
	}
	if !reflect.DeepEqual(got, before) {
		t.Errorf("UpdateThing(dev, {}) = %+v; want %+v", got, before)
	}
	e.checkEvents(t, "UpdateThing with an empty patch")
	if _, err := e.reg.UpdateThing(ctx, "nosuch", store.ThingPatch{}); !core.IsNotFound(err) {
		t.Errorf("UpdateThing(nosuch, {}) = %v; want not found", err)
	}
}

// TestListThingsPages lists 2,500 things page by page: every thing comes
// exactly once, in order, and only the last page has no cursor. With a
// limit of 1000 (the store's own maximum) the cursor of a full page must
// not be lost.
func TestListThingsPages(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	const n = 2500
	seedThings(t, e, n)
	tests := []struct {
		limit     int
		filter    store.ThingFilter
		wantCount int
		wantPages int
	}{
		{limit: 1000, wantCount: n, wantPages: 3},
		{limit: 7, wantCount: n, wantPages: (n + 6) / 7},
		{limit: 500, wantCount: n, wantPages: 5}, // the last page is full: the cursor probe finds nothing
		{limit: 0, filter: store.ThingFilter{NamePrefix: "dev-1"}, wantCount: 1000, wantPages: 10},
		{limit: 1000, filter: store.ThingFilter{Tag: "even"}, wantCount: n / 2, wantPages: 2},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("limit=%d/prefix=%q/tag=%q", tt.limit, tt.filter.NamePrefix, tt.filter.Tag), func(t *testing.T) {
			t.Parallel()
			seen := map[string]int{}
			var last string
			pages := 0
			f := tt.filter
			f.Limit = tt.limit
			for {
				things, next, err := e.reg.ListThings(ctx, f)
				if err != nil {
					t.Fatalf("ListThings(after %q) = %v", f.After, err)
				}
				pages++
				if pages > tt.wantPages+1 {
					t.Fatalf("ListThings: more than %d pages", tt.wantPages)
				}
				for _, th := range things {
					seen[th.Name]++
					if th.Name <= last {
						t.Fatalf("ListThings: %q after %q; want ascending names", th.Name, last)
					}
					last = th.Name
				}
				if next == "" {
					break
				}
				if len(things) == 0 || next != things[len(things)-1].Name {
					t.Fatalf("ListThings(after %q) = %d things, next %q; want next = the last name", f.After, len(things), next)
				}
				f.After = next
			}
			if len(seen) != tt.wantCount || pages != tt.wantPages {
				t.Errorf("ListThings pages = %d things in %d pages; want %d in %d", len(seen), pages, tt.wantCount, tt.wantPages)
			}
			for name, c := range seen {
				if c != 1 {
					t.Errorf("ListThings returned %q %d times; want once", name, c)
				}
			}
		})
	}

	for _, limit := range []int{-1, 1001} {
		if _, _, err := e.reg.ListThings(ctx, store.ThingFilter{Limit: limit}); core.FieldOf(err) != "limit" {
			t.Errorf("ListThings(limit %d) = %v; want an invalid limit", limit, err)
		}
	}
}

// seed runs SQL statements on the store's database file. Tests that need
// thousands of rows use it because as many calls of Create take many
// seconds under the race detector; what they test (the listing) goes
// through the store as usual.
func seed(t *testing.T, e *env, stmts ...string) {
	t.Helper()
	db, err := sql.Open("sqlite", e.st.Path()+"?_pragma=busy_timeout(10000)&_pragma=foreign_keys(1)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, q := range stmts {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("seeding: %v\n%s", err, q)
		}
	}
}

// seedThings stores n enabled things dev-0000, dev-0001, … with the tag
// "even" on every second one, and checks that the store sees them.
func seedThings(t *testing.T, e *env, n int) {
	t.Helper()
	ms := time.Now().UnixMilli()
	seed(t, e, fmt.Sprintf(`WITH RECURSIVE seq(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM seq WHERE i + 1 < %d)
		INSERT INTO things (name, enabled, connected, created_at, updated_at)
		SELECT printf('dev-%%04d', i), 1, 0, %d, %d FROM seq`, n, ms, ms),
		`INSERT INTO thing_tags (thing, tag) SELECT name, 'even' FROM things WHERE CAST(substr(name, 5) AS INTEGER) % 2 = 0`)
	ctx := context.Background()
	total, _, err := e.st.Things().Count(ctx)
	if err != nil || total != n {
		t.Fatalf("Count() after seeding = %d, %v; want %d", total, err, n)
	}
	th, err := e.reg.GetThing(ctx, "dev-0002")
	if err != nil || !th.Enabled || !reflect.DeepEqual(th.Tags, []string{"even"}) {
		t.Fatalf("GetThing(dev-0002) after seeding = %+v, %v; want enabled, tagged even", th, err)
	}
}

// seedGroups stores n groups g0000, g0001, … and checks that the store sees
// the last.
func seedGroups(t *testing.T, e *env, n int) {
	t.Helper()
	ms := time.Now().UnixMilli()
	seed(t, e, fmt.Sprintf(`WITH RECURSIVE seq(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM seq WHERE i + 1 < %d)
		INSERT INTO groups (name, description, created_at, updated_at)
		SELECT printf('g%%04d', i), '', %d, %d FROM seq`, n, ms, ms))
	last := fmt.Sprintf("g%04d", n-1)
	if g, err := e.reg.GetGroup(context.Background(), last); err != nil || g.Name != last {
		t.Fatalf("GetGroup(%s) after seeding = %+v, %v", last, g, err)
	}
}

// TestListPages checks the pages of types, groups and policies, which
// share the cursor logic with things.
func TestListPages(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	const groups = 1001
	seedGroups(t, e, groups)
	for i := range 5 {
		if _, err := e.reg.CreateType(ctx, store.ThingType{Name: fmt.Sprintf("type%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	doc := policy.DefaultDocument()
	for i := range 4 {
		if _, err := e.reg.CreatePolicy(ctx, fmt.Sprintf("p%d", i), "", doc); err != nil {
			t.Fatal(err)
		}
	}
	type lister func(after string, limit int) ([]string, string, error)
	var groupNames lister = func(after string, limit int) ([]string, string, error) {
		gs, next, err := e.reg.ListGroups(ctx, after, limit)
		var out []string
		for _, g := range gs {
			out = append(out, g.Name)
		}
		return out, next, err
	}
	var typeNames lister = func(after string, limit int) ([]string, string, error) {
		ts, next, err := e.reg.ListTypes(ctx, after, limit)
		var out []string
		for _, x := range ts {
			out = append(out, x.Name)
		}
		return out, next, err
	}
	var policyNames lister = func(after string, limit int) ([]string, string, error) {
		ps, next, err := e.reg.ListPolicies(ctx, after, limit)
		var out []string
		for _, x := range ps {
			out = append(out, x.Name)
		}
		return out, next, err
	}
	tests := []struct {
		what      string
		list      lister
		limit     int
		wantCount int
		wantPages int
	}{
		{"groups", groupNames, 1000, groups, 2},
		{"groups", groupNames, 0, groups, 11},
		{"types", typeNames, 2, 5, 3},
		{"types", typeNames, 5, 5, 1},
		{"types", typeNames, 1000, 5, 1},
		{"policies", policyNames, 1, 5, 5}, // p0..p3 and default
		{"policies", policyNames, 4, 5, 2},
	}
	for _, tt := range tests {
		seen := map[string]bool{}
		after, pages := "", 0
		for {
			page, next, err := tt.list(after, tt.limit)
			if err != nil {
				t.Fatalf("List %s(after %q, %d) = %v", tt.what, after, tt.limit, err)
			}
			pages++
			for _, n := range page {
				if seen[n] {
					t.Errorf("List %s: %q twice", tt.what, n)
				}
				seen[n] = true
			}
			if next == "" || pages > tt.wantPages {
				break
			}
			after = next
		}
		if len(seen) != tt.wantCount || pages != tt.wantPages {
			t.Errorf("List %s with limit %d = %d in %d pages; want %d in %d", tt.what, tt.limit, len(seen), pages, tt.wantCount, tt.wantPages)
		}
	}
	for _, limit := range []int{-1, 1001} {
		if _, _, err := e.reg.ListGroups(ctx, "", limit); core.FieldOf(err) != "limit" {
			t.Errorf("ListGroups(limit %d) = %v; want an invalid limit", limit, err)
		}
	}
}
