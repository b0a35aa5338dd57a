package storetest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/store"
)

func ptr[T any](v T) *T { return &v }

func testThings(t *testing.T, open func(t *testing.T) store.Store) {
	t.Run("CreateGetRoundTrip", func(t *testing.T) {
		s, ctx := open(t), t.Context()
		fixture{Types: []string{"sensor"}, Groups: []string{"g1", "g2"}, Policies: []string{"p1", "p2", "p3"}}.create(t, ctx, s)
		in := store.Thing{
			Name: "dev-1",
			Type: "sensor",
			Attributes: map[string]string{
				"site":  "berlin",
				"floor": "3",
				"odd":   "Grüße \"quoted\" \\ back\nslash 🌡 <>&",
				"empty": "",
			},
			Tags:      []string{"zeta", "alpha", "mid"},
			Groups:    []string{"g2", "g1"},
			Policies:  []string{"p3", "p1", "p2"},
			Enabled:   true,
			Connected: true,
			LastSeen:  ptr(base.Add(time.Hour)),
			CreatedAt: base,
			UpdatedAt: base.Add(time.Minute),
		}
		want := in
		want.Tags = []string{"alpha", "mid", "zeta"} // sorted
		want.Groups = []string{"g1", "g2"}           // sorted
		want.Policies = []string{"p3", "p1", "p2"}   // attachment order
		want.LastSeen = msPtr(*in.LastSeen)
		want.CreatedAt = ms(in.CreatedAt)
		want.UpdatedAt = ms(in.UpdatedAt)

		got, err := s.Things().Create(ctx, in)
		must(t, "Create", err)
		checkThing(t, "Create result", got, want)
		got, err = s.Things().Get(ctx, "dev-1")
		must(t, "Get", err)
		checkThing(t, "Get", got, want)
		list, err := s.Things().List(ctx, store.ThingFilter{})
		must(t, "List", err)
		if len(list) != 1 {
			t.Fatalf("List: got %d things; want 1", len(list))
		}
		checkThing(t, "List[0]", list[0], want)
	})

	t.Run("CreateDefaults", func(t *testing.T) {
		s, ctx := open(t), t.Context()
		w := startWindow()
		got, err := s.Things().Create(ctx, store.Thing{Name: "bare"})
		w = w.end()
		must(t, "Create", err)
		for _, th := range []struct {
			op string
			fn func() (store.Thing, error)
		}{
			{"Create result", func() (store.Thing, error) { return got, nil }},
			{"Get", func() (store.Thing, error) { return s.Things().Get(ctx, "bare") }},
		} {
			g, err := th.fn()
			must(t, th.op, err)
			eq(t, th.op+".Type", g.Type, "")
			eqMap(t, th.op+".Attributes", g.Attributes, map[string]string{})
			eqList(t, th.op+".Tags", g.Tags, []string{})
			eqList(t, th.op+".Groups", g.Groups, []string{})
			eqList(t, th.op+".Policies", g.Policies, []string{})
			eq(t, th.op+".Enabled", g.Enabled, false)
			eq(t, th.op+".Connected", g.Connected, false)
			eqTimePtr(t, th.op+".LastSeen", g.LastSeen, nil)
			checkNow(t, th.op+".CreatedAt", g.CreatedAt, w)
			eqTime(t, th.op+".UpdatedAt", g.UpdatedAt, g.CreatedAt)
		}
	})

	t.Run("CreateKeepsGivenCreatedAt", func(t *testing.T) {
		s, ctx := open(t), t.Context()
		got, err := s.Things().Create(ctx, store.Thing{Name: "old", CreatedAt: base})
		must(t, "Create", err)
		eqTime(t, "CreatedAt", got.CreatedAt, ms(base))
		eqTime(t, "UpdatedAt (zero on input)", got.UpdatedAt, ms(base))
	})

	t.Run("CreateDuplicate", func(t *testing.T) {
		s, ctx := open(t), t.Context()
		orig, err := s.Things().Create(ctx, store.Thing{Name: "dup", Attributes: map[string]string{"a": "1"}})
		must(t, "Create", err)
		_, err = s.Things().Create(ctx, store.Thing{Name: "dup", Attributes: map[string]string{"a": "2"}})
		wantConflict(t, "Create again", err, `thing "dup" already exists`)
		got, err := s.Things().Get(ctx, "dup")
		must(t, "Get", err)
		checkThing(t, "Get after failed Create", got, orig)
	})

	t.Run("CreateUnknownReferences", func(t *testing.T) {
		s, ctx := open(t), t.Context()
		fixture{Types: []string{"sensor"}, Groups: []string{"g1"}, Policies: []string{"p1"}}.create(t, ctx, s)
		for _, tc := range []struct {
			thing        store.Thing
			field, names string
		}{
			{store.Thing{Name: "x1", Type: "nosuchtype"}, "type", "nosuchtype"},
			{store.Thing{Name: "x2", Type: "sensor", Groups: []string{"g1", "nosuchgroup"}}, "groups", "nosuchgroup"},
			{store.Thing{Name: "x3", Groups: []string{"g1"}, Policies: []string{"p1", "nosuchpolicy"}}, "policies", "nosuchpolicy"},
		} {
			_, err := s.Things().Create(ctx, tc.thing)
			wantInvalid(t, "Create "+tc.thing.Name, err, tc.field, tc.names)
			_, err = s.Things().Get(ctx, tc.thing.Name)
			wantNotFound(t, "Get "+tc.thing.Name+" after failed Create", err, "thing", tc.thing.Name)
		}
	})

	t.Run("RepeatedNamesStoredOnce", func(t *testing.T) {
		s, ctx := open(t), t.Context()
		fixture{Groups: []string{"g1"}, Policies: []string{"p1", "p2"}}.create(t, ctx, s)
		got, err := s.Things().Create(ctx, store.Thing{Name: "rep",
			Tags: []string{"b", "a", "b"}, Groups: []string{"g1", "g1"}, Policies: []string{"p2", "p1", "p2"}})
		must(t, "Create", err)
		eqList(t, "Tags", got.Tags, []string{"a", "b"})
		eqList(t, "Groups", got.Groups, []string{"g1"})
		eqList(t, "Policies", got.Policies, []string{"p2", "p1"})
	})

	t.Run("Missing", func(t *testing.T) {
		s, ctx := open(t), t.Context()
		_, err := s.Things().Get(ctx, "ghost")
		wantNotFound(t, "Get", err, "thing", "ghost")
		_, err = s.Things().Update(ctx, "ghost", store.ThingPatch{Enabled: ptr(true)})
		wantNotFound(t, "Update", err, "thing", "ghost")
		err = s.Things().Delete(ctx, "ghost")
		wantNotFound(t, "Delete", err, "thing", "ghost")
	})

	t.Run("Update", func(t *testing.T) {
		s, ctx := open(t), t.Context()
		fixture{Types: []string{"t1", "t2"}, Groups: []string{"g1", "g2", "g3"}, Policies: []string{"p1", "p2", "p3"}}.create(t, ctx, s)
		want, err := s.Things().Create(ctx, store.Thing{
			Name: "u", Type: "t1", Attributes: map[string]string{"a": "1", "b": "2"},
			Tags: []string{"x"}, Groups: []string{"g1"}, Policies: []string{"p1"}, Enabled: true,
			Connected: true, LastSeen: ptr(base), CreatedAt: base,
		})
		must(t, "Create", err)

		steps := []struct {
			name  string
			patch store.ThingPatch
			apply func(*store.Thing)
		}{
			{"empty patch", store.ThingPatch{}, func(*store.Thing) {}},
			{"type", store.ThingPatch{Type: ptr("t2")}, func(w *store.Thing) { w.Type = "t2" }},
			{"attributes", store.ThingPatch{Attributes: map[string]string{"c": "3"}},
				func(w *store.Thing) { w.Attributes = map[string]string{"c": "3"} }},
			{"tags", store.ThingPatch{Tags: []string{"z", "y"}}, func(w *store.Thing) { w.Tags = []string{"y", "z"} }},
			{"groups", store.ThingPatch{Groups: []string{"g3", "g2"}}, func(w *store.Thing) { w.Groups = []string{"g2", "g3"} }},
			{"policies", store.ThingPatch{Policies: []string{"p3", "p1"}}, func(w *store.Thing) { w.Policies = []string{"p3", "p1"} }},
			{"enabled", store.ThingPatch{Enabled: ptr(false)}, func(w *store.Thing) { w.Enabled = false }},
			{"several", store.ThingPatch{Enabled: ptr(true), Policies: []string{"p2", "p3", "p1"}, Tags: []string{"q"}},
				func(w *store.Thing) {
					w.Enabled = true
					w.Policies = []string{"p2", "p3", "p1"}
					w.Tags = []string{"q"}
				}},
			{"clear type", store.ThingPatch{Type: ptr("")}, func(w *store.Thing) { w.Type = "" }},
			{"clear sets", store.ThingPatch{Attributes: map[string]string{}, Tags: []string{}, Groups: []string{}, Policies: []string{}},
				func(w *store.Thing) {
					w.Attributes = map[string]string{}
					w.Tags = []string{}
					w.Groups = []string{}
					w.Policies = []string{}
				}},
		}
		for _, st := range steps {
			w := startWindow()
			got, err := s.Things().Update(ctx, "u", st.patch)
			w = w.end()
			must(t, "Update "+st.name, err)
			st.apply(&want)
			checkNow(t, "Update "+st.name+": UpdatedAt", got.UpdatedAt, w)
			want.UpdatedAt = got.UpdatedAt
			checkThing(t, "Update "+st.name+": result", got, want)
			got, err = s.Things().Get(ctx, "u")
			must(t, "Get after "+st.name, err)
			checkThing(t, "Get after update "+st.name, got, want)
		}
	})

	t.Run("UpdateUnknownReferences", func(t *testing.T) {
		s, ctx := open(t), t.Context()
		fixture{Types: []string{"t1"}, Groups: []string{"g1"}, Policies: []string{"p1"}}.create(t, ctx, s)
		orig, err := s.Things().Create(ctx, store.Thing{Name: "u", Type: "t1", Groups: []string{"g1"}, Policies: []string{"p1"},
			Attributes: map[string]string{"a": "1"}, Tags: []string{"t"}, CreatedAt: base})
		must(t, "Create", err)
		for _, tc := range []struct {
			name         string
			patch        store.ThingPatch
			field, names string
		}{
			{"type", store.ThingPatch{Type: ptr("nosuchtype"), Tags: []string{"changed"}}, "type", "nosuchtype"},
			{"groups", store.ThingPatch{Groups: []string{"nosuchgroup"}, Attributes: map[string]string{"changed": "1"}}, "groups", "nosuchgroup"},
			{"policies", store.ThingPatch{Policies: []string{"p1", "nosuchpolicy"}, Enabled: ptr(true)}, "policies", "nosuchpolicy"},
		} {
			_, err := s.Things().Update(ctx, "u", tc.patch)
			wantInvalid(t, "Update "+tc.name, err, tc.field, tc.names)
			got, err := s.Things().Get(ctx, "u")
			must(t, "Get", err)
			checkThing(t, "Get after failed Update "+tc.name, got, orig)
		}
	})

	t.Run("Delete", func(t *testing.T) {
		s, ctx := open(t), t.Context()
		fixture{Types: []string{"t1"}, Groups: []string{"g1"}, Policies: []string{"p1"}}.create(t, ctx, s)
		_, err := s.Things().Create(ctx, store.Thing{Name: "d", Type: "t1", Groups: []string{"g1"}, Policies: []string{"p1"},
			Attributes: map[string]string{"a": "1"}, Tags: []string{"t"}})
		must(t, "Create", err)
		_, err = s.Things().Create(ctx, store.Thing{Name: "keep"})
		must(t, "Create keep", err)
		_, err = s.Credentials().Create(ctx, store.Credential{ID: "c1", Thing: "d", Type: store.CredentialSecret, SecretHash: []byte("h1")})
		must(t, "Create credential", err)

		must(t, "Delete", s.Things().Delete(ctx, "d"))
		_, err = s.Things().Get(ctx, "d")
		wantNotFound(t, "Get after Delete", err, "thing", "d")
		_, err = s.Credentials().Get(ctx, "c1")
		wantNotFound(t, "Get credential of deleted thing", err, "credential", "c1")
		_, err = s.Credentials().FindSecret(ctx, []byte("h1"))
		wantKind(t, "FindSecret of deleted thing", err, core.KindNotFound)
		err = s.Things().Delete(ctx, "d")
		wantNotFound(t, "Delete again", err, "thing", "d")
		if _, err := s.Things().Get(ctx, "keep"); err != nil {
			t.Errorf("Get other thing: got %v; want no error", err)
		}
		// The type, group and policy are still there and usable.
		for _, err := range []error{
			func() error { _, err := s.Types().Get(ctx, "t1"); return err }(),
			func() error { _, err := s.Groups().Get(ctx, "g1"); return err }(),
			func() error { _, err := s.Policies().Get(ctx, "p1"); return err }(),
		} {
			if err != nil {
				t.Errorf("after deleting a thing: got %v; want no error", err)
			}
		}

		// A new thing of the same name starts empty.
		got, err := s.Things().Create(ctx, store.Thing{Name: "d"})
		must(t, "Create again", err)
		eqMap(t, "recreated.Attributes", got.Attributes, map[string]string{})
		eqList(t, "recreated.Tags", got.Tags, []string{})
		eqList(t, "recreated.Groups", got.Groups, []string{})
		eqList(t, "recreated.Policies", got.Policies, []string{})
		creds, err := s.Credentials().ListByThing(ctx, "d")
		must(t, "ListByThing", err)
		eq(t, "credentials of recreated thing", len(creds), 0)
		total, _, err := s.Things().Count(ctx)
		must(t, "Count", err)
		eq(t, "Count total", total, 2)
	})
}

func testThingList(t *testing.T, open func(t *testing.T) store.Store) {
	t.Run("Filters", func(t *testing.T) {
		s, ctx := open(t), t.Context()
		fixture{Types: []string{"sensor", "gateway"}, Groups: []string{"north", "south"}}.create(t, ctx, s)
		for _, th := range []store.Thing{
			{Name: "alpha", Type: "sensor", Groups: []string{"north"}, Tags: []string{"red"}, Attributes: map[string]string{"site": "berlin", "floor": "1"}},
			{Name: "bravo", Type: "sensor", Groups: []string{"south"}, Tags: []string{"blue"}, Attributes: map[string]string{"site": "berlin", "floor": "2"}},
			{Name: "charlie", Type: "gateway", Groups: []string{"north", "south"}, Tags: []string{"red", "blue"}, Attributes: map[string]string{"site": "paris"}},
			{Name: "delta", Attributes: map[string]string{"floor": "1"}},
			{Name: "echo", Type: "sensor", Groups: []string{"north"}, Tags: []string{"red"}, Attributes: map[string]string{"site": "paris", "floor": "1"}},
		} {
			_, err := s.Things().Create(ctx, th)
			must(t, "Create "+th.Name, err)
		}
		must(t, "RecordPresence", s.Things().RecordPresence(ctx, []store.Presence{
			{Thing: "alpha", Connected: true, At: base}, {Thing: "charlie", Connected: true, At: base}, {Thing: "echo", Connected: true, At: base},
		}))
		for _, tc := range []struct {
			name   string
			filter store.ThingFilter
			want   []string
		}{
			{"none", store.ThingFilter{}, []string{"alpha", "bravo", "charlie", "delta", "echo"}},
			{"type sensor", store.ThingFilter{Type: "sensor"}, []string{"alpha", "bravo", "echo"}},
			{"type gateway", store.ThingFilter{Type: "gateway"}, []string{"charlie"}},
			{"unknown type", store.ThingFilter{Type: "nosuch"}, []string{}},
			{"group north", store.ThingFilter{Group: "north"}, []string{"alpha", "charlie", "echo"}},
			{"group south", store.ThingFilter{Group: "south"}, []string{"bravo", "charlie"}},
			{"unknown group", store.ThingFilter{Group: "nosuch"}, []string{}},
			{"tag red", store.ThingFilter{Tag: "red"}, []string{"alpha", "charlie", "echo"}},
			{"tag blue", store.ThingFilter{Tag: "blue"}, []string{"bravo", "charlie"}},
			{"one attribute", store.ThingFilter{Attributes: map[string]string{"site": "berlin"}}, []string{"alpha", "bravo"}},
			{"attribute floor", store.ThingFilter{Attributes: map[string]string{"floor": "1"}}, []string{"alpha", "delta", "echo"}},
			{"two attributes", store.ThingFilter{Attributes: map[string]string{"site": "paris", "floor": "1"}}, []string{"echo"}},
			{"attributes no match", store.ThingFilter{Attributes: map[string]string{"site": "berlin", "floor": "3"}}, []string{}},
			{"empty attribute value", store.ThingFilter{Attributes: map[string]string{"site": ""}}, []string{}},
			{"connected", store.ThingFilter{Connected: ptr(true)}, []string{"alpha", "charlie", "echo"}},
			{"disconnected", store.ThingFilter{Connected: ptr(false)}, []string{"bravo", "delta"}},
			{"prefix", store.ThingFilter{NamePrefix: "c"}, []string{"charlie"}},
			{"prefix whole name", store.ThingFilter{NamePrefix: "delta"}, []string{"delta"}},
			{"prefix no match", store.ThingFilter{NamePrefix: "zulu"}, []string{}},
			{"after", store.ThingFilter{After: "bravo"}, []string{"charlie", "delta", "echo"}},
			{"after non-existent name", store.ThingFilter{After: "b"}, []string{"bravo", "charlie", "delta", "echo"}},
			{"after last", store.ThingFilter{After: "echo"}, []string{}},
			{"limit", store.ThingFilter{Limit: 2}, []string{"alpha", "bravo"}},
			{"type+group+tag+connected", store.ThingFilter{Type: "sensor", Group: "north", Tag: "red", Connected: ptr(true)}, []string{"alpha", "echo"}},
			{"all filters", store.ThingFilter{NamePrefix: "e", Type: "sensor", Group: "north", Tag: "red",
				Attributes: map[string]string{"floor": "1", "site": "paris"}, Connected: ptr(true)}, []string{"echo"}},
			{"group+attribute", store.ThingFilter{Group: "south", Attributes: map[string]string{"site": "berlin"}}, []string{"bravo"}},
			{"after+type", store.ThingFilter{After: "alpha", Type: "sensor"}, []string{"bravo", "echo"}},
			{"after+limit", store.ThingFilter{After: "alpha", Limit: 2}, []string{"bravo", "charlie"}},
			{"disconnected+tag", store.ThingFilter{Connected: ptr(false), Tag: "blue"}, []string{"bravo"}},
		} {
			list, err := s.Things().List(ctx, tc.filter)
			if err != nil {
				t.Errorf("List %s: %v", tc.name, err)
				continue
			}
			if list == nil {
				t.Errorf("List %s: got nil; want a non-nil slice", tc.name)
			}
			eqList(t, "List "+tc.name, thingNames(list), tc.want)
		}
	})

	t.Run("NamePrefixIsLiteral", func(t *testing.T) {
		s, ctx := open(t), t.Context()
		for _, n := range []string{"sensor", "sensor.x", "sensorA", "sensorZ", "sensor_1", "sensor__2", "sensos", "sensp"} {
			_, err := s.Things().Create(ctx, store.Thing{Name: n})
			must(t, "Create "+n, err)
		}
		for _, tc := range []struct {
			prefix string
			want   []string
		}{
			{"sensor", []string{"sensor", "sensor.x", "sensorA", "sensorZ", "sensor_1", "sensor__2"}},
			{"sensor_", []string{"sensor_1", "sensor__2"}},
			{"sensor__", []string{"sensor__2"}},
			{"sensor.", []string{"sensor.x"}},
			{"senso", []string{"sensor", "sensor.x", "sensorA", "sensorZ", "sensor_1", "sensor__2", "sensos"}},
			{"sensor_1x", []string{}},
		} {
			list, err := s.Things().List(ctx, store.ThingFilter{NamePrefix: tc.prefix})
			must(t, "List", err)
			eqList(t, fmt.Sprintf("List NamePrefix %q", tc.prefix), thingNames(list), tc.want)
		}
	})

	t.Run("Limit", func(t *testing.T) {
		n := 1005
		if testing.Short() {
			n = 105
		}
		s, ctx := open(t), t.Context()
		createMany(t, ctx, s, n, func(i int) store.Thing { return store.Thing{Name: fmt.Sprintf("t%04d", i)} })
		for _, tc := range []struct{ limit, want int }{
			{0, 100},
			{1, 1},
			{99, 99},
			{1000, min(1000, n)},
			{1001, min(1000, n)},
			{1 << 30, min(1000, n)},
		} {
			list, err := s.Things().List(ctx, store.ThingFilter{Limit: tc.limit})
			must(t, "List", err)
			eq(t, fmt.Sprintf("len(List Limit %d) of %d things", tc.limit, n), len(list), tc.want)
		}
	})

	t.Run("Pagination", func(t *testing.T) {
		s, ctx := open(t), t.Context()
		const n = 250
		createMany(t, ctx, s, n, func(i int) store.Thing {
			th := store.Thing{Name: fmt.Sprintf("thing-%03d", i)}
			if i%2 == 1 {
				th.Tags = []string{"odd"}
			}
			return th
		})
		walk := func(f store.ThingFilter, wantPages []int, wantNames func(i int) bool) {
			t.Helper()
			var (
				got   []string
				pages []int
				seen  = map[string]int{}
			)
			for len(pages) <= n {
				page, err := s.Things().List(ctx, f)
				must(t, "List", err)
				pages = append(pages, len(page))
				for _, th := range page {
					seen[th.Name]++
					got = append(got, th.Name)
				}
				if len(page) < f.Limit {
					break
				}
				f.After = page[len(page)-1].Name
			}
			eq(t, "page sizes", fmt.Sprint(pages), fmt.Sprint(wantPages))
			var want []string
			for i := range n {
				if wantNames(i) {
					want = append(want, fmt.Sprintf("thing-%03d", i))
				}
			}
			eq(t, "number of things walked", len(got), len(want))
			for name, k := range seen {
				if k != 1 {
					t.Errorf("thing %s: seen %d times; want once", name, k)
				}
			}
			eqList(t, "things walked, in order", got, want)
		}
		walk(store.ThingFilter{Limit: 100}, []int{100, 100, 50}, func(int) bool { return true })
		walk(store.ThingFilter{Limit: 50}, []int{50, 50, 50, 50, 50, 0}, func(int) bool { return true })
		walk(store.ThingFilter{Limit: 40, Tag: "odd"}, []int{40, 40, 40, 5}, func(i int) bool { return i%2 == 1 })
		walk(store.ThingFilter{Limit: 30, NamePrefix: "thing-1"}, []int{30, 30, 30, 10}, func(i int) bool { return i >= 100 && i < 200 })
	})
}

// createMany creates n things, mk(i) for i in a scrambled order, so that
// List's order cannot come from the order of insertion.
func createMany(t *testing.T, ctx context.Context, s store.Store, n int, mk func(i int) store.Thing) {
	t.Helper()
	for k := range n {
		i := (k*7919 + 13) % n // a permutation when n is not a multiple of 7919
		th := mk(i)
		if _, err := s.Things().Create(ctx, th); err != nil {
			t.Fatalf("Create %s: %v", th.Name, err)
		}
	}
}

func testPresence(t *testing.T, open func(t *testing.T) store.Store) {
	s, ctx := open(t), t.Context()
	created := map[string]store.Thing{}
	for _, n := range []string{"a", "b", "c"} {
		th, err := s.Things().Create(ctx, store.Thing{Name: n, CreatedAt: base})
		must(t, "Create "+n, err)
		created[n] = th
	}
	count := func(op string, wantTotal, wantConnected int) {
		t.Helper()
		total, connected, err := s.Things().Count(ctx)
		must(t, "Count", err)
		eq(t, op+": Count total", total, wantTotal)
		eq(t, op+": Count connected", connected, wantConnected)
	}
	state := func(op, name string, connected bool, lastSeen *time.Time) {
		t.Helper()
		th, err := s.Things().Get(ctx, name)
		must(t, "Get "+name, err)
		eq(t, op+": "+name+".Connected", th.Connected, connected)
		eqTimePtr(t, op+": "+name+".LastSeen", th.LastSeen, lastSeen)
		eqTime(t, op+": "+name+".UpdatedAt (not changed by presence)", th.UpdatedAt, created[name].UpdatedAt)
	}
	connected := func(op string, want ...string) {
		t.Helper()
		list, err := s.Things().List(ctx, store.ThingFilter{Connected: ptr(true)})
		must(t, "List", err)
		if want == nil {
			want = []string{}
		}
		eqList(t, op+": List Connected", thingNames(list), want)
	}
	count("initially", 3, 0)

	t1, t2, t3 := base.Add(time.Second), base.Add(2*time.Second), base.Add(3*time.Second)
	must(t, "RecordPresence", s.Things().RecordPresence(ctx, []store.Presence{
		{Thing: "a", Connected: true, At: t1},
		{Thing: "b", Connected: true, At: t1},
		{Thing: "ghost", Connected: true, At: t1}, // unknown: ignored
		{Thing: "a", Connected: false, At: t2},    // later entry wins
	}))
	state("after first batch", "a", false, msPtr(t2))
	state("after first batch", "b", true, msPtr(t1))
	state("after first batch", "c", false, nil)
	count("after first batch", 3, 1)
	connected("after first batch", "b")
	if _, err := s.Things().Get(ctx, "ghost"); err == nil {
		t.Errorf("Get ghost: RecordPresence created an unknown thing")
	}

	must(t, "RecordPresence (empty)", s.Things().RecordPresence(ctx, nil))
	must(t, "RecordPresence (only unknown)", s.Things().RecordPresence(ctx, []store.Presence{{Thing: "ghost", Connected: true, At: t3}}))
	count("after empty batches", 3, 1)

	must(t, "RecordPresence", s.Things().RecordPresence(ctx, []store.Presence{
		{Thing: "c", Connected: true, At: t3},
		{Thing: "a", Connected: true, At: t3},
	}))
	count("after second batch", 3, 3)
	connected("after second batch", "a", "b", "c")

	// Update does not touch presence.
	_, err := s.Things().Update(ctx, "a", store.ThingPatch{Enabled: ptr(true)})
	must(t, "Update", err)
	th, err := s.Things().Get(ctx, "a")
	must(t, "Get a", err)
	eq(t, "after Update: a.Connected", th.Connected, true)
	eqTimePtr(t, "after Update: a.LastSeen", th.LastSeen, msPtr(t3))
	created["a"] = th

	must(t, "ResetPresence", s.Things().ResetPresence(ctx))
	count("after ResetPresence", 3, 0)
	connected("after ResetPresence")
	state("after ResetPresence", "a", false, msPtr(t3))
	state("after ResetPresence", "b", false, msPtr(t1))
	state("after ResetPresence", "c", false, msPtr(t3))
}
