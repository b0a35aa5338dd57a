package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/store"
)

func testTypes(t *testing.T, open func(t *testing.T) store.Store) {
	t.Run("RoundTrip", func(t *testing.T) {
		s, ctx := open(t), t.Context()
		fixture{Policies: []string{"p1", "p2", "p3"}}.create(t, ctx, s)
		in := store.ThingType{Name: "sensor", Description: "Temperature sensors", Policies: []string{"p3", "p1"},
			CreatedAt: base, UpdatedAt: base.Add(time.Minute)}
		want := in
		want.CreatedAt, want.UpdatedAt = ms(in.CreatedAt), ms(in.UpdatedAt)
		got, err := s.Types().Create(ctx, in)
		must(t, "Create", err)
		checkType(t, "Create result", got, want)
		got, err = s.Types().Get(ctx, "sensor")
		must(t, "Get", err)
		checkType(t, "Get", got, want)
		list, err := s.Types().List(ctx, "", 0)
		must(t, "List", err)
		if len(list) != 1 {
			t.Fatalf("List: got %d types; want 1", len(list))
		}
		checkType(t, "List[0]", list[0], want)
	})

	t.Run("Defaults", func(t *testing.T) {
		s, ctx := open(t), t.Context()
		w := startWindow()
		got, err := s.Types().Create(ctx, store.ThingType{Name: "bare"})
		w = w.end()
		must(t, "Create", err)
		eqList(t, "Policies", got.Policies, []string{})
		checkNow(t, "CreatedAt", got.CreatedAt, w)
		eqTime(t, "UpdatedAt", got.UpdatedAt, got.CreatedAt)
		got, err = s.Types().Get(ctx, "bare")
		must(t, "Get", err)
		eqList(t, "Get: Policies", got.Policies, []string{})
	})

	t.Run("Update", func(t *testing.T) {
		s, ctx := open(t), t.Context()
		fixture{Policies: []string{"p1", "p2", "p3"}}.create(t, ctx, s)
		want, err := s.Types().Create(ctx, store.ThingType{Name: "sensor", Description: "old", Policies: []string{"p1"}, CreatedAt: base})
		must(t, "Create", err)
		for _, st := range []store.ThingType{
			{Name: "sensor", Description: "new", Policies: []string{"p3", "p2", "p1"}},
			{Name: "sensor", Description: "new", Policies: []string{"p2"}},
			{Name: "sensor", Description: "", Policies: nil},
		} {
			w := startWindow()
			got, err := s.Types().Update(ctx, st)
			w = w.end()
			must(t, "Update", err)
			want.Description = st.Description
			want.Policies = st.Policies
			if want.Policies == nil {
				want.Policies = []string{}
			}
			checkNow(t, "Update: UpdatedAt", got.UpdatedAt, w)
			want.UpdatedAt = got.UpdatedAt
			checkType(t, fmt.Sprintf("Update %q", st.Policies), got, want)
			got, err = s.Types().Get(ctx, "sensor")
			must(t, "Get", err)
			checkType(t, fmt.Sprintf("Get after Update %q", st.Policies), got, want)
		}
	})

	t.Run("Errors", func(t *testing.T) {
		s, ctx := open(t), t.Context()
		fixture{Policies: []string{"p1"}}.create(t, ctx, s)
		orig, err := s.Types().Create(ctx, store.ThingType{Name: "sensor", Description: "d", Policies: []string{"p1"}})
		must(t, "Create", err)
		_, err = s.Types().Create(ctx, store.ThingType{Name: "sensor"})
		wantConflict(t, "Create duplicate", err, `thing type "sensor" already exists`)
		_, err = s.Types().Get(ctx, "ghost")
		wantNotFound(t, "Get missing", err, "thing type", "ghost")
		_, err = s.Types().Update(ctx, store.ThingType{Name: "ghost"})
		wantNotFound(t, "Update missing", err, "thing type", "ghost")
		err = s.Types().Delete(ctx, "ghost")
		wantNotFound(t, "Delete missing", err, "thing type", "ghost")

		_, err = s.Types().Create(ctx, store.ThingType{Name: "other", Policies: []string{"p1", "nosuchpolicy"}})
		wantInvalid(t, "Create with unknown policy", err, "policies", "nosuchpolicy")
		_, err = s.Types().Get(ctx, "other")
		wantNotFound(t, "Get after failed Create", err, "thing type", "other")

		_, err = s.Types().Update(ctx, store.ThingType{Name: "sensor", Description: "changed", Policies: []string{"nosuchpolicy"}})
		wantInvalid(t, "Update with unknown policy", err, "policies", "nosuchpolicy")
		got, err := s.Types().Get(ctx, "sensor")
		must(t, "Get", err)
		checkType(t, "Get after failed Update", got, orig)
	})

	t.Run("DeleteInUse", func(t *testing.T) {
		s, ctx := open(t), t.Context()
		fixture{Types: []string{"sensor", "unused"}}.create(t, ctx, s)
		for _, n := range []string{"a", "b"} {
			_, err := s.Things().Create(ctx, store.Thing{Name: n, Type: "sensor"})
			must(t, "Create thing "+n, err)
		}
		err := s.Types().Delete(ctx, "sensor")
		wantConflict(t, "Delete type used by 2 things", err, `"sensor"`, "2")
		if _, err := s.Types().Get(ctx, "sensor"); err != nil {
			t.Errorf("Get after refused Delete: got %v; want no error", err)
		}
		th, err := s.Things().Get(ctx, "a")
		must(t, "Get thing", err)
		eq(t, "thing a.Type after refused Delete", th.Type, "sensor")

		_, err = s.Things().Update(ctx, "a", store.ThingPatch{Type: ptr("")})
		must(t, "Update thing a", err)
		err = s.Types().Delete(ctx, "sensor")
		wantConflict(t, "Delete type used by 1 thing", err, `"sensor"`, "1")
		must(t, "Delete thing b", s.Things().Delete(ctx, "b"))
		must(t, "Delete type no longer used", s.Types().Delete(ctx, "sensor"))
		_, err = s.Types().Get(ctx, "sensor")
		wantNotFound(t, "Get after Delete", err, "thing type", "sensor")
		must(t, "Delete unused type", s.Types().Delete(ctx, "unused"))
	})

	t.Run("DeleteDropsPolicies", func(t *testing.T) {
		s, ctx := open(t), t.Context()
		fixture{Policies: []string{"p1"}}.create(t, ctx, s)
		_, err := s.Types().Create(ctx, store.ThingType{Name: "sensor", Policies: []string{"p1"}})
		must(t, "Create", err)
		must(t, "Delete", s.Types().Delete(ctx, "sensor"))
		got, err := s.Types().Create(ctx, store.ThingType{Name: "sensor"})
		must(t, "Create again", err)
		eqList(t, "recreated.Policies", got.Policies, []string{})
		if _, err := s.Policies().Get(ctx, "p1"); err != nil {
			t.Errorf("Get policy after deleting the type: got %v; want no error", err)
		}
	})

	t.Run("List", func(t *testing.T) {
		s, ctx := open(t), t.Context()
		fixture{Types: []string{"e", "c", "a", "d", "b"}}.create(t, ctx, s)
		for _, tc := range []struct {
			after string
			limit int
			want  []string
		}{
			{"", 0, []string{"a", "b", "c", "d", "e"}},
			{"", 2, []string{"a", "b"}},
			{"b", 2, []string{"c", "d"}},
			{"bb", 0, []string{"c", "d", "e"}},
			{"e", 0, []string{}},
		} {
			list, err := s.Types().List(ctx, tc.after, tc.limit)
			must(t, "List", err)
			names := make([]string, len(list))
			for i, y := range list {
				names[i] = y.Name
			}
			if list == nil {
				t.Errorf("List(%q, %d): got nil; want a non-nil slice", tc.after, tc.limit)
			}
			eqList(t, fmt.Sprintf("List(%q, %d)", tc.after, tc.limit), names, tc.want)
		}
	})
}

func testGroups(t *testing.T, open func(t *testing.T) store.Store) {
	t.Run("RoundTrip", func(t *testing.T) {
		s, ctx := open(t), t.Context()
		in := store.Group{Name: "north", Description: "North wing", CreatedAt: base, UpdatedAt: base.Add(time.Minute)}
		want := in
		want.CreatedAt, want.UpdatedAt = ms(in.CreatedAt), ms(in.UpdatedAt)
		got, err := s.Groups().Create(ctx, in)
		must(t, "Create", err)
		checkGroup(t, "Create result", got, want)
		got, err = s.Groups().Get(ctx, "north")
		must(t, "Get", err)
		checkGroup(t, "Get", got, want)
		list, err := s.Groups().List(ctx, "", 0)
		must(t, "List", err)
		if len(list) != 1 {
			t.Fatalf("List: got %d groups; want 1", len(list))
		}
		checkGroup(t, "List[0]", list[0], want)
	})

	t.Run("Defaults", func(t *testing.T) {
		s, ctx := open(t), t.Context()
		w := startWindow()
		got, err := s.Groups().Create(ctx, store.Group{Name: "bare"})
		w = w.end()
		must(t, "Create", err)
		checkNow(t, "CreatedAt", got.CreatedAt, w)
		eqTime(t, "UpdatedAt", got.UpdatedAt, got.CreatedAt)
	})

	t.Run("Update", func(t *testing.T) {
		s, ctx := open(t), t.Context()
		want, err := s.Groups().Create(ctx, store.Group{Name: "g", Description: "old", CreatedAt: base})
		must(t, "Create", err)
		w := startWindow()
		got, err := s.Groups().Update(ctx, store.Group{Name: "g", Description: "new"})
		w = w.end()
		must(t, "Update", err)
		checkNow(t, "Update: UpdatedAt", got.UpdatedAt, w)
		want.Description, want.UpdatedAt = "new", got.UpdatedAt
		checkGroup(t, "Update result", got, want)
		got, err = s.Groups().Get(ctx, "g")
		must(t, "Get", err)
		checkGroup(t, "Get after Update", got, want)
	})

	t.Run("Dynamic", func(t *testing.T) {
		// A dynamic group keeps its query as given (the store does not
		// parse it); Update replaces it; a static group's is "".
		s, ctx := open(t), t.Context()
		q := "attributes.site = 'ams' AND version(shadow.reported.firmware) < '1.5'"
		want, err := s.Groups().Create(ctx, store.Group{Name: "old-ams", Description: "d", Query: q, CreatedAt: base})
		must(t, "Create", err)
		eq(t, "Create: Query", want.Query, q)
		_, err = s.Groups().Create(ctx, store.Group{Name: "static"})
		must(t, "Create static", err)
		list, err := s.Groups().List(ctx, "", 0)
		must(t, "List", err)
		if len(list) != 2 {
			t.Fatalf("List: got %d groups; want 2", len(list))
		}
		checkGroup(t, "List[0]", list[0], want)
		eq(t, "List[1].Query", list[1].Query, "")
		got, err := s.Groups().Update(ctx, store.Group{Name: "old-ams", Description: "d", Query: "connected = true"})
		must(t, "Update", err)
		want.Query, want.UpdatedAt = "connected = true", got.UpdatedAt
		checkGroup(t, "Update result", got, want)
		got, err = s.Groups().Get(ctx, "old-ams")
		must(t, "Get", err)
		checkGroup(t, "Get after Update", got, want)
	})

	t.Run("Errors", func(t *testing.T) {
		s, ctx := open(t), t.Context()
		_, err := s.Groups().Create(ctx, store.Group{Name: "g"})
		must(t, "Create", err)
		_, err = s.Groups().Create(ctx, store.Group{Name: "g"})
		wantConflict(t, "Create duplicate", err, `group "g" already exists`)
		_, err = s.Groups().Get(ctx, "ghost")
		wantNotFound(t, "Get missing", err, "group", "ghost")
		_, err = s.Groups().Update(ctx, store.Group{Name: "ghost"})
		wantNotFound(t, "Update missing", err, "group", "ghost")
		err = s.Groups().Delete(ctx, "ghost")
		wantNotFound(t, "Delete missing", err, "group", "ghost")
	})

	t.Run("DeleteRemovesMemberships", func(t *testing.T) {
		s, ctx := open(t), t.Context()
		fixture{Groups: []string{"g1", "g2"}}.create(t, ctx, s)
		x, err := s.Things().Create(ctx, store.Thing{Name: "x", Groups: []string{"g1", "g2"}})
		must(t, "Create x", err)
		_, err = s.Things().Create(ctx, store.Thing{Name: "y", Groups: []string{"g1"}})
		must(t, "Create y", err)
		must(t, "Delete g1", s.Groups().Delete(ctx, "g1"))
		_, err = s.Groups().Get(ctx, "g1")
		wantNotFound(t, "Get after Delete", err, "group", "g1")

		got, err := s.Things().Get(ctx, "x")
		must(t, "Get x", err)
		eqList(t, "x.Groups", got.Groups, []string{"g2"})
		eqTime(t, "x.UpdatedAt", got.UpdatedAt, x.UpdatedAt)
		got, err = s.Things().Get(ctx, "y")
		must(t, "Get y", err)
		eqList(t, "y.Groups", got.Groups, []string{})

		_, err = s.Groups().Create(ctx, store.Group{Name: "g1"})
		must(t, "Create g1 again", err)
		list, err := s.Things().List(ctx, store.ThingFilter{Group: "g1"})
		must(t, "List", err)
		eqList(t, "members of recreated g1", thingNames(list), []string{})
		list, err = s.Things().List(ctx, store.ThingFilter{Group: "g2"})
		must(t, "List", err)
		eqList(t, "members of g2", thingNames(list), []string{"x"})
	})

	t.Run("List", func(t *testing.T) {
		s, ctx := open(t), t.Context()
		fixture{Groups: []string{"e", "c", "a", "d", "b"}}.create(t, ctx, s)
		for _, tc := range []struct {
			after string
			limit int
			want  []string
		}{
			{"", 0, []string{"a", "b", "c", "d", "e"}},
			{"", 3, []string{"a", "b", "c"}},
			{"c", 0, []string{"d", "e"}},
			{"e", 0, []string{}},
		} {
			list, err := s.Groups().List(ctx, tc.after, tc.limit)
			must(t, "List", err)
			names := make([]string, len(list))
			for i, g := range list {
				names[i] = g.Name
			}
			if list == nil {
				t.Errorf("List(%q, %d): got nil; want a non-nil slice", tc.after, tc.limit)
			}
			eqList(t, fmt.Sprintf("List(%q, %d)", tc.after, tc.limit), names, tc.want)
		}
	})
}

func testPolicies(t *testing.T, open func(t *testing.T) store.Store) {
	doc1 := []byte(`{"version":"2024-01-01","statements":[{"effect":"allow","actions":["mqtt:publish"],"resources":["things/${thing}/#"]}]}`)
	doc2 := []byte(`{"version":"2024-01-01","statements":[{"effect":"deny","actions":["*"],"resources":["*"]}]}`)

	t.Run("RoundTrip", func(t *testing.T) {
		s, ctx := open(t), t.Context()
		in := store.Policy{Name: "device-default", Description: "What a device may do", Document: doc1, Builtin: true,
			CreatedAt: base, UpdatedAt: base.Add(time.Minute)}
		want := in
		want.CreatedAt, want.UpdatedAt = ms(in.CreatedAt), ms(in.UpdatedAt)
		got, err := s.Policies().Create(ctx, in)
		must(t, "Create", err)
		checkPolicy(t, "Create result", got, want)
		got, err = s.Policies().Get(ctx, "device-default")
		must(t, "Get", err)
		checkPolicy(t, "Get", got, want)
		list, err := s.Policies().List(ctx, "", 0)
		must(t, "List", err)
		if len(list) != 1 {
			t.Fatalf("List: got %d policies; want 1", len(list))
		}
		checkPolicy(t, "List[0]", list[0], want)
	})

	t.Run("Defaults", func(t *testing.T) {
		s, ctx := open(t), t.Context()
		w := startWindow()
		got, err := s.Policies().Create(ctx, store.Policy{Name: "bare", Document: doc1})
		w = w.end()
		must(t, "Create", err)
		eq(t, "Builtin", got.Builtin, false)
		checkNow(t, "CreatedAt", got.CreatedAt, w)
		eqTime(t, "UpdatedAt", got.UpdatedAt, got.CreatedAt)
	})

	t.Run("Update", func(t *testing.T) {
		s, ctx := open(t), t.Context()
		for _, builtin := range []bool{false, true} {
			name := fmt.Sprintf("p-builtin-%v", builtin)
			want, err := s.Policies().Create(ctx, store.Policy{Name: name, Description: "old", Document: doc1, Builtin: builtin, CreatedAt: base})
			must(t, "Create", err)
			w := startWindow()
			// Update changes Description and Document only, not Builtin.
			got, err := s.Policies().Update(ctx, store.Policy{Name: name, Description: "new", Document: doc2, Builtin: !builtin})
			w = w.end()
			must(t, "Update", err)
			checkNow(t, "Update: UpdatedAt", got.UpdatedAt, w)
			want.Description, want.Document, want.UpdatedAt = "new", doc2, got.UpdatedAt
			checkPolicy(t, "Update "+name, got, want)
			got, err = s.Policies().Get(ctx, name)
			must(t, "Get", err)
			checkPolicy(t, "Get after Update "+name, got, want)
		}
	})

	t.Run("Errors", func(t *testing.T) {
		s, ctx := open(t), t.Context()
		_, err := s.Policies().Create(ctx, store.Policy{Name: "p", Document: doc1})
		must(t, "Create", err)
		_, err = s.Policies().Create(ctx, store.Policy{Name: "p", Document: doc2})
		wantConflict(t, "Create duplicate", err, `policy "p" already exists`)
		got, err := s.Policies().Get(ctx, "p")
		must(t, "Get", err)
		eqJSON(t, "Document after failed Create", got.Document, doc1)
		_, err = s.Policies().Get(ctx, "ghost")
		wantNotFound(t, "Get missing", err, "policy", "ghost")
		_, err = s.Policies().Update(ctx, store.Policy{Name: "ghost", Document: doc1})
		wantNotFound(t, "Update missing", err, "policy", "ghost")
		err = s.Policies().Delete(ctx, "ghost")
		wantNotFound(t, "Delete missing", err, "policy", "ghost")
	})

	t.Run("DeleteBuiltinRefused", func(t *testing.T) {
		s, ctx := open(t), t.Context()
		_, err := s.Policies().Create(ctx, store.Policy{Name: "admin", Document: doc1, Builtin: true})
		must(t, "Create", err)
		_, err = s.Things().Create(ctx, store.Thing{Name: "x", Policies: []string{"admin"}})
		must(t, "Create thing", err)
		err = s.Policies().Delete(ctx, "admin")
		wantConflict(t, "Delete builtin", err, `policy "admin" is built in and cannot be deleted`)
		if _, err := s.Policies().Get(ctx, "admin"); err != nil {
			t.Errorf("Get after refused Delete: got %v; want no error", err)
		}
		th, err := s.Things().Get(ctx, "x")
		must(t, "Get thing", err)
		eqList(t, "thing.Policies after refused Delete", th.Policies, []string{"admin"})
	})

	t.Run("DeleteDetaches", func(t *testing.T) {
		s, ctx := open(t), t.Context()
		fixture{Policies: []string{"p1", "p2", "p3"}}.create(t, ctx, s)
		_, err := s.Types().Create(ctx, store.ThingType{Name: "sensor", Policies: []string{"p3", "p2"}})
		must(t, "Create type", err)
		_, err = s.Things().Create(ctx, store.Thing{Name: "x", Type: "sensor", Policies: []string{"p1", "p2", "p3"}})
		must(t, "Create thing", err)
		must(t, "Delete p2", s.Policies().Delete(ctx, "p2"))
		_, err = s.Policies().Get(ctx, "p2")
		wantNotFound(t, "Get after Delete", err, "policy", "p2")

		th, err := s.Things().Get(ctx, "x")
		must(t, "Get thing", err)
		eqList(t, "thing.Policies", th.Policies, []string{"p1", "p3"})
		y, err := s.Types().Get(ctx, "sensor")
		must(t, "Get type", err)
		eqList(t, "type.Policies", y.Policies, []string{"p3"})

		_, err = s.Policies().Create(ctx, store.Policy{Name: "p2", Document: doc1})
		must(t, "Create p2 again", err)
		th, err = s.Things().Get(ctx, "x")
		must(t, "Get thing", err)
		eqList(t, "thing.Policies after re-creating p2", th.Policies, []string{"p1", "p3"})
		y, err = s.Types().Get(ctx, "sensor")
		must(t, "Get type", err)
		eqList(t, "type.Policies after re-creating p2", y.Policies, []string{"p3"})
	})

	t.Run("GetMany", func(t *testing.T) {
		s, ctx := open(t), t.Context()
		want := map[string]store.Policy{}
		for i, n := range []string{"pa", "pb", "pc"} {
			p, err := s.Policies().Create(ctx, store.Policy{Name: n, Description: "policy " + n, Document: doc1,
				Builtin: i == 1, CreatedAt: base.Add(time.Duration(i) * time.Second)})
			must(t, "Create "+n, err)
			want[n] = p
		}
		for _, tc := range []struct {
			names []string
			want  []string
		}{
			{nil, []string{}},
			{[]string{}, []string{}},
			{[]string{"ghost"}, []string{}},
			{[]string{"pb"}, []string{"pb"}},
			{[]string{"pc", "ghost", "pa"}, []string{"pc", "pa"}},
			{[]string{"pb", "pc", "pa"}, []string{"pb", "pc", "pa"}},
			{[]string{"pa", "pc", "pa"}, []string{"pa", "pc"}}, // repeats once, first position
		} {
			list, err := s.Policies().GetMany(ctx, tc.names)
			must(t, "GetMany", err)
			if list == nil {
				t.Errorf("GetMany(%q): got nil; want a non-nil slice", tc.names)
			}
			names := make([]string, len(list))
			for i, p := range list {
				names[i] = p.Name
				checkPolicy(t, fmt.Sprintf("GetMany(%q)[%d]", tc.names, i), p, want[p.Name])
			}
			eqList(t, fmt.Sprintf("GetMany(%q)", tc.names), names, tc.want)
		}
	})

	t.Run("List", func(t *testing.T) {
		s, ctx := open(t), t.Context()
		fixture{Policies: []string{"e", "c", "a", "d", "b"}}.create(t, ctx, s)
		for _, tc := range []struct {
			after string
			limit int
			want  []string
		}{
			{"", 0, []string{"a", "b", "c", "d", "e"}},
			{"a", 2, []string{"b", "c"}},
			{"e", 0, []string{}},
		} {
			list, err := s.Policies().List(ctx, tc.after, tc.limit)
			must(t, "List", err)
			names := make([]string, len(list))
			for i, p := range list {
				names[i] = p.Name
			}
			if list == nil {
				t.Errorf("List(%q, %d): got nil; want a non-nil slice", tc.after, tc.limit)
			}
			eqList(t, fmt.Sprintf("List(%q, %d)", tc.after, tc.limit), names, tc.want)
		}
	})
}
