package storetest

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/store"
)

func testCreateMany(t *testing.T, open func(t *testing.T) store.Store) {
	ctx := context.Background()
	s := open(t)
	if _, err := s.Types().Create(ctx, store.ThingType{Name: "sensor"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Groups().Create(ctx, store.Group{Name: "plant"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Things().Create(ctx, store.Thing{Name: "existing", Enabled: true}); err != nil {
		t.Fatal(err)
	}
	var things []store.Thing
	for i := range 50 {
		things = append(things, store.Thing{Name: fmt.Sprintf("b%02d", i), Type: "sensor", Enabled: true,
			Attributes: map[string]string{"site": "s1", "n": fmt.Sprint(i)}, Groups: []string{"plant"}})
	}
	creds := []store.Credential{{ID: "cred_b00", Thing: "b00", Type: store.CredentialSecret, SecretHash: []byte("hash-b00")}}

	// A batch with one bad thing stores nothing.
	for name, bad := range map[string]struct {
		t    store.Thing
		kind core.Kind
	}{
		"taken name":    {store.Thing{Name: "existing"}, core.KindConflict},
		"missing type":  {store.Thing{Name: "zz", Type: "nope"}, core.KindInvalid},
		"missing group": {store.Thing{Name: "zz", Groups: []string{"nope"}}, core.KindInvalid},
		"twice":         {store.Thing{Name: "b07"}, core.KindConflict},
	} {
		batch := append(append([]store.Thing(nil), things...), bad.t)
		err := s.Things().CreateMany(ctx, batch, creds)
		if core.KindOf(err) != bad.kind {
			t.Errorf("CreateMany with a %s = %v; want kind %v", name, err, bad.kind)
		}
		if bad.kind == core.KindConflict && (err == nil || !strings.Contains(err.Error(), `"`+bad.t.Name+`"`)) {
			t.Errorf("CreateMany with a %s = %v; want it to name %q", name, err, bad.t.Name)
		}
		if total, _, _ := s.Things().Count(ctx); total != 1 {
			t.Fatalf("after a refused batch (%s): %d things; want 1 (nothing stored)", name, total)
		}
	}
	if err := s.Things().CreateMany(ctx, things, creds); err != nil {
		t.Fatalf("CreateMany: %v", err)
	}
	got, err := s.Things().Get(ctx, "b07")
	if err != nil || got.Type != "sensor" || got.Attributes["n"] != "7" || len(got.Groups) != 1 || got.Groups[0] != "plant" || !got.Enabled {
		t.Errorf("Get(b07) = %+v, %v", got, err)
	}
	if n, _ := s.Things().Total(ctx, store.ThingFilter{Group: "plant"}); n != 50 {
		t.Errorf("things in plant = %d; want 50", n)
	}
	c, err := s.Credentials().FindSecret(ctx, []byte("hash-b00"))
	if err != nil || c.Thing != "b00" || c.ID != "cred_b00" {
		t.Errorf("FindSecret = %+v, %v", c, err)
	}
}

func testGetManyThings(t *testing.T, open func(t *testing.T) store.Store) {
	ctx := context.Background()
	s := open(t)
	if _, err := s.Groups().Create(ctx, store.Group{Name: "plant"}); err != nil {
		t.Fatal(err)
	}
	var things []store.Thing
	var names []string
	for i := range 1234 { // more than one statement's worth
		n := fmt.Sprintf("g%04d", i)
		things = append(things, store.Thing{Name: n, Enabled: true, Attributes: map[string]string{"i": fmt.Sprint(i)}, Groups: []string{"plant"}})
		names = append(names, n, "missing-"+n)
	}
	if err := s.Things().CreateMany(ctx, things, nil); err != nil {
		t.Fatal(err)
	}
	got, err := s.Things().GetMany(ctx, names)
	if err != nil || len(got) != len(things) {
		t.Fatalf("GetMany of %d names = %d things, %v; want %d", len(names), len(got), err, len(things))
	}
	slices.SortFunc(got, func(a, b store.Thing) int { return strings.Compare(a.Name, b.Name) })
	one, err := s.Things().Get(ctx, "g0777")
	if err != nil {
		t.Fatal(err)
	}
	if g := got[777]; g.Name != "g0777" || g.Attributes["i"] != "777" || !slices.Equal(g.Groups, []string{"plant"}) || !g.Enabled || !g.CreatedAt.Equal(one.CreatedAt) {
		t.Errorf("GetMany's g0777 = %+v; want it as Get returns it: %+v", g, one)
	}
	if got, err := s.Things().GetMany(ctx, []string{"nope"}); err != nil || got == nil || len(got) != 0 {
		t.Errorf("GetMany(nope) = %v, %v; want an empty list", got, err)
	}
	if got, err := s.Things().GetMany(ctx, nil); err != nil || len(got) != 0 {
		t.Errorf("GetMany(nil) = %v, %v", got, err)
	}
}
