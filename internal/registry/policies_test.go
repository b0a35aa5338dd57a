package registry

import (
	"context"
	"reflect"
	"strings"
	"testing"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/policy"
	"github.com/moteiot/mote/internal/store"
)

// docFor returns a valid document that can be told apart by its topic.
func docFor(name string) policy.Document {
	return policy.Document{Statements: []policy.Statement{{
		Effect:  policy.Allow,
		Actions: []policy.Action{policy.Publish},
		Topics:  []string{"fleet/" + name + "/#"},
	}}}
}

// docNames maps documents made by docFor back to their names (the default
// document to "default").
func docNames(docs []policy.Document) []string {
	out := make([]string, 0, len(docs))
	for _, d := range docs {
		if reflect.DeepEqual(d, policy.DefaultDocument()) {
			out = append(out, DefaultPolicy)
			continue
		}
		out = append(out, strings.TrimSuffix(strings.TrimPrefix(d.Statements[0].Topics[0], "fleet/"), "/#"))
	}
	return out
}

func TestEffectivePolicies(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	for _, p := range []string{"pa", "pb", "pc"} {
		if _, err := e.reg.CreatePolicy(ctx, p, "", docFor(p)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.reg.CreateType(ctx, store.ThingType{Name: "sensor", Policies: []string{"pb", "pa"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.reg.CreateType(ctx, store.ThingType{Name: "bare"}); err != nil {
		t.Fatal(err)
	}
	mustThing(t, e, store.Thing{Name: "typed", Type: "sensor", Policies: []string{"pc", "pa", DefaultPolicy}})
	mustThing(t, e, store.Thing{Name: "plain"})
	mustThing(t, e, store.Thing{Name: "own", Type: "bare", Policies: []string{"pc"}})

	tests := []struct {
		thing store.Thing
		want  []string
	}{
		{store.Thing{Name: "x"}, []string{"default"}},
		{store.Thing{Name: "x", Type: "sensor"}, []string{"default", "pb", "pa"}},
		{store.Thing{Name: "x", Type: "sensor", Policies: []string{"pc", "pa", "default"}}, []string{"default", "pb", "pa", "pc"}},
		{store.Thing{Name: "x", Policies: []string{"pb", "pb", "pa"}}, []string{"default", "pb", "pa"}},
		{store.Thing{Name: "x", Type: "gone", Policies: []string{"pa"}}, []string{"default", "pa"}},
		{store.Thing{Name: "x", Policies: []string{"nosuch", "pc"}}, []string{"default", "pc"}},
	}
	for _, tt := range tests {
		docs, err := e.reg.EffectivePolicies(ctx, tt.thing)
		if err != nil {
			t.Errorf("EffectivePolicies(type %q, policies %q) = %v", tt.thing.Type, tt.thing.Policies, err)
			continue
		}
		if got := docNames(docs); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("EffectivePolicies(type %q, policies %q) = %q; want %q", tt.thing.Type, tt.thing.Policies, got, tt.want)
		}
	}

	for _, tt := range []struct {
		thing string
		want  []string
	}{
		{"typed", []string{"default", "pb", "pa", "pc"}},
		{"plain", []string{"default"}},
		{"own", []string{"default", "pc"}},
	} {
		docs, err := e.reg.PoliciesFor(ctx, tt.thing)
		if got := docNames(docs); err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("PoliciesFor(%q) = %q, %v; want %q", tt.thing, got, err, tt.want)
		}
	}
	if _, err := e.reg.PoliciesFor(ctx, "nosuch"); !core.IsNotFound(err) {
		t.Errorf("PoliciesFor(nosuch) = %v; want not found", err)
	}

	// Changes to policies and types take effect and are announced.
	if _, err := e.reg.UpdateType(ctx, store.ThingType{Name: "sensor", Policies: []string{"pc"}}); err != nil {
		t.Fatal(err)
	}
	e.checkEvents(t, "UpdateType", Event{Kind: PoliciesChanged})
	docs, _ := e.reg.PoliciesFor(ctx, "typed")
	if got, want := docNames(docs), []string{"default", "pc", "pa"}; !reflect.DeepEqual(got, want) {
		t.Errorf("PoliciesFor(typed) after UpdateType = %q; want %q", got, want)
	}

	if _, err := e.reg.UpdatePolicy(ctx, "pa", "now pz", docFor("pz")); err != nil {
		t.Fatal(err)
	}
	e.checkEvents(t, "UpdatePolicy", Event{Kind: PoliciesChanged})
	docs, _ = e.reg.PoliciesFor(ctx, "typed")
	if got, want := docNames(docs), []string{"default", "pc", "pz"}; !reflect.DeepEqual(got, want) {
		t.Errorf("PoliciesFor(typed) after UpdatePolicy = %q; want %q", got, want)
	}

	if err := e.reg.DeletePolicy(ctx, "pc"); err != nil {
		t.Fatalf("DeletePolicy(pc) = %v", err)
	}
	e.checkEvents(t, "DeletePolicy", Event{Kind: PoliciesChanged})
	docs, _ = e.reg.PoliciesFor(ctx, "typed")
	if got, want := docNames(docs), []string{"default", "pz"}; !reflect.DeepEqual(got, want) {
		t.Errorf("PoliciesFor(typed) after DeletePolicy(pc) = %q; want %q", got, want)
	}
	th, _ := e.reg.GetThing(ctx, "typed")
	if want := []string{"pa", "default"}; !reflect.DeepEqual(th.Policies, want) {
		t.Errorf("GetThing(typed).Policies after DeletePolicy(pc) = %q; want %q", th.Policies, want)
	}

	// Failures announce nothing.
	if _, err := e.reg.UpdatePolicy(ctx, "nosuch", "", docFor("x")); !core.IsNotFound(err) {
		t.Errorf("UpdatePolicy(nosuch) = %v; want not found", err)
	}
	bad := policy.Document{Statements: []policy.Statement{{Effect: "maybe", Actions: []policy.Action{policy.Publish}, Topics: []string{"a"}}}}
	if _, err := e.reg.UpdatePolicy(ctx, "pa", "", bad); core.KindOf(err) != core.KindInvalid {
		t.Errorf("UpdatePolicy(pa, bad effect) = %v; want invalid", err)
	}
	if err := e.reg.DeletePolicy(ctx, "pc"); !core.IsNotFound(err) {
		t.Errorf("DeletePolicy(pc) again = %v; want not found", err)
	}
	if _, err := e.reg.UpdateType(ctx, store.ThingType{Name: "sensor", Policies: []string{"nosuch"}}); core.FieldOf(err) != "policies" {
		t.Errorf("UpdateType(sensor, unknown policy) = %v; want invalid policies", err)
	}
	if err := e.reg.DeleteType(ctx, "sensor"); core.KindOf(err) != core.KindConflict {
		t.Errorf("DeleteType(sensor) while in use = %v; want conflict", err)
	}
	e.checkEvents(t, "failed changes")
}

func TestCreatePolicyValidation(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	tests := []struct {
		name  string
		doc   policy.Document
		field string
	}{
		{"", docFor("a"), "name"},
		{"a/b", docFor("a"), "name"},
		{"ok", policy.Document{Statements: []policy.Statement{{Effect: policy.Allow, Actions: []policy.Action{policy.Publish}, Topics: []string{"a/#/b"}}}}, "statements[0].topics[0]"},
	}
	for _, tt := range tests {
		_, err := e.reg.CreatePolicy(ctx, tt.name, "", tt.doc)
		checkErr(t, "CreatePolicy("+tt.name+")", err, core.KindInvalid, tt.field)
	}
	if _, err := e.reg.CreatePolicy(ctx, DefaultPolicy, "", docFor("a")); core.KindOf(err) != core.KindConflict {
		t.Errorf("CreatePolicy(default) = %v; want conflict", err)
	}
}

func TestDeleteDefaultPolicy(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	want := `policy "default" is built in and cannot be deleted`

	e := newEnv(t)
	err := e.reg.DeletePolicy(ctx, DefaultPolicy)
	checkErr(t, "DeletePolicy(default)", err, core.KindConflict, "")
	if err != nil && err.Error() != want {
		t.Errorf("DeletePolicy(default) = %q; want %q", err, want)
	}
	e.checkEvents(t, "DeletePolicy(default)")

	// A policy named "default" that was stored before Bootstrap (so not
	// flagged built in) is still the default policy and stays.
	e = newBareEnv(t)
	if _, err := e.reg.CreatePolicy(ctx, DefaultPolicy, "early", policy.DefaultDocument()); err != nil {
		t.Fatal(err)
	}
	if err := e.reg.Bootstrap(ctx); err != nil {
		t.Fatal(err)
	}
	err = e.reg.DeletePolicy(ctx, DefaultPolicy)
	checkErr(t, "DeletePolicy(non-builtin default)", err, core.KindConflict, "")
	if _, err := e.reg.GetPolicy(ctx, DefaultPolicy); err != nil {
		t.Errorf("GetPolicy(default) after refused delete = %v; want it still there", err)
	}
	e.checkEvents(t, "DeletePolicy(non-builtin default)")
}

func TestDescriptionLimit(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	if _, err := e.reg.CreatePolicy(ctx, "pol", "", docFor("a")); err != nil {
		t.Fatal(err)
	}
	if _, err := e.reg.CreateType(ctx, store.ThingType{Name: "typ"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.reg.CreateGroup(ctx, store.Group{Name: "grp"}); err != nil {
		t.Fatal(err)
	}
	ops := []struct {
		name string
		op   func(name, desc string) error
	}{
		{"CreatePolicy", func(n, d string) error { _, err := e.reg.CreatePolicy(ctx, "new"+n, d, docFor("a")); return err }},
		{"UpdatePolicy", func(n, d string) error { _, err := e.reg.UpdatePolicy(ctx, "pol", d, docFor("a")); return err }},
		{"CreateType", func(n, d string) error {
			_, err := e.reg.CreateType(ctx, store.ThingType{Name: "new" + n, Description: d})
			return err
		}},
		{"UpdateType", func(n, d string) error {
			_, err := e.reg.UpdateType(ctx, store.ThingType{Name: "typ", Description: d})
			return err
		}},
		{"CreateGroup", func(n, d string) error {
			_, err := e.reg.CreateGroup(ctx, store.Group{Name: "new" + n, Description: d})
			return err
		}},
		{"UpdateGroup", func(n, d string) error {
			_, err := e.reg.UpdateGroup(ctx, store.Group{Name: "grp", Description: d})
			return err
		}},
	}
	tests := []struct {
		name string
		desc string
		ok   bool
	}{
		{"empty", "", true},
		{"max", strings.Repeat("d", MaxDescription), true},
		{"max-multibyte", strings.Repeat("ü", MaxDescription/2), true},
		{"over", strings.Repeat("d", MaxDescription+1), false},
		{"over-multibyte", strings.Repeat("ü", MaxDescription/2) + "x", false},
	}
	for _, op := range ops {
		for _, tt := range tests {
			err := op.op(tt.name, tt.desc)
			if tt.ok {
				if err != nil {
					t.Errorf("%s(%d-byte description) = %v; want nil", op.name, len(tt.desc), err)
				}
				continue
			}
			checkErr(t, op.name+"("+tt.name+" description)", err, core.KindInvalid, "description")
		}
	}
	p, _ := e.reg.GetPolicy(ctx, "pol")
	if len(p.Description) != MaxDescription {
		t.Errorf("GetPolicy(pol).Description has %d bytes; want %d (the last valid update)", len(p.Description), MaxDescription)
	}
}
