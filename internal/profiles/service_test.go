package profiles

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/fleetindex"
	"github.com/moteiot/mote/internal/registry"
	"github.com/moteiot/mote/internal/shadow"
	"github.com/moteiot/mote/internal/store"
	"github.com/moteiot/mote/internal/store/sqlite"
	"github.com/moteiot/mote/internal/store/sqlite/sqlitetest"
)

type fixture struct {
	st      store.Store
	reg     *registry.Registry
	shadows *shadow.Service
	idx     *fleetindex.Index
	svc     *Service
	metrics *prometheus.Registry
}

func setup(t *testing.T, o Options) *fixture {
	t.Helper()
	st, err := sqlite.Open(sqlitetest.Path(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	f := &fixture{st: st, metrics: prometheus.NewRegistry()}
	f.reg = registry.New(registry.Options{Store: st})
	f.idx = fleetindex.New(fleetindex.Options{Store: st})
	f.reg.Listen(f.idx.OnRegistry)
	f.shadows = shadow.New(shadow.Options{Store: st.Shadows(), OnChange: f.idx.OnShadowChange})
	t.Cleanup(func() { f.shadows.Close() })
	f.idx.Start()
	t.Cleanup(func() { f.idx.Close() })
	waitFor(t, "index ready", f.idx.Ready)
	f.start(t, o)
	return f
}

// start starts a (new) profile service on the fixture's store.
func (f *fixture) start(t *testing.T, o Options) {
	t.Helper()
	o.Store, o.Fleet, o.Shadows = f.st, f.idx, f.shadows
	if o.Metrics == nil {
		f.metrics = prometheus.NewRegistry()
		o.Metrics = f.metrics
	}
	f.svc = New(o)
	stop := f.idx.Watch(f.svc.ThingsChanged)
	if err := f.svc.Start(); err != nil {
		t.Fatal(err)
	}
	svc := f.svc
	t.Cleanup(func() { stop(); svc.Close() })
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (f *fixture) thing(t *testing.T, th store.Thing) {
	t.Helper()
	th.Enabled = true
	if _, err := f.reg.CreateThing(t.Context(), th); err != nil {
		t.Fatal(err)
	}
}

// state returns a thing's classic shadow desired and reported state as
// canonical JSON.
func (f *fixture) state(t *testing.T, thing string) (desired, reported string) {
	t.Helper()
	d, r, err := f.svc.shadowState(t.Context(), thing)
	if err != nil {
		t.Fatal(err)
	}
	db, _ := json.Marshal(d)
	rb, _ := json.Marshal(r)
	return string(db), string(rb)
}

func (f *fixture) waitDesired(t *testing.T, thing, want string) {
	t.Helper()
	var got string
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, _ = f.state(t, thing)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("desired state of %s = %s; want %s", thing, got, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (f *fixture) create(t *testing.T, p Profile) {
	t.Helper()
	if _, err := f.svc.Create(t.Context(), p); err != nil {
		t.Fatalf("Create %s: %v", p.Name, err)
	}
}

func (f *fixture) update(t *testing.T, thing, doc string) {
	t.Helper()
	if _, err := f.shadows.Update(t.Context(), thing, "", []byte(doc)); err != nil {
		t.Fatal(err)
	}
}

// TestGroupQueryPriorityRemoval: a group profile and a query profile are
// merged per key by priority, operator keys stay, and deleting profiles
// restores the lower-priority value and then removes the keys.
func TestGroupQueryPriorityRemoval(t *testing.T) {
	f := setup(t, Options{})
	ctx := t.Context()
	if _, err := f.reg.CreateGroup(ctx, store.Group{Name: "plant"}); err != nil {
		t.Fatal(err)
	}
	f.thing(t, store.Thing{Name: "s1", Groups: []string{"plant"}, Attributes: map[string]string{"site": "ams"}})
	f.thing(t, store.Thing{Name: "s2", Attributes: map[string]string{"site": "ams"}})
	f.thing(t, store.Thing{Name: "other"})
	// The operator's own desired key, which no profile owns.
	f.update(t, "s1", `{"state":{"desired":{"led":"on"}}}`)

	f.create(t, Profile{Name: "base", Desired: json.RawMessage(`{"reportingInterval":60,"wifi":{"ssid":"plant","band":"2.4"}}`), Group: "plant", Priority: 1})
	f.create(t, Profile{Name: "ams", Desired: json.RawMessage(`{"reportingInterval":30,"wifi":{"ssid":"ams"}}`), Query: "attributes.site = 'ams'", Priority: 5})
	f.waitDesired(t, "s1", `{"led":"on","reportingInterval":30,"wifi":{"band":"2.4","ssid":"ams"}}`)
	f.waitDesired(t, "s2", `{"reportingInterval":30,"wifi":{"ssid":"ams"}}`)
	if d, _ := f.state(t, "other"); d != "null" {
		t.Errorf("a thing no target selects got desired %s", d)
	}

	// The higher priority profile goes: the lower one's values return.
	if err := f.svc.Delete(ctx, "ams"); err != nil {
		t.Fatal(err)
	}
	f.waitDesired(t, "s1", `{"led":"on","reportingInterval":60,"wifi":{"band":"2.4","ssid":"plant"}}`)
	f.waitDesired(t, "s2", `null`)
	// The last one goes: its keys are removed, the operator's stays.
	if err := f.svc.Delete(ctx, "base"); err != nil {
		t.Fatal(err)
	}
	f.waitDesired(t, "s1", `{"led":"on"}`)
	waitFor(t, "state forgotten", func() bool {
		_, err := f.st.Profiles().GetApplied(ctx, "s1")
		return core.IsNotFound(err)
	})
	if n := testutil.ToFloat64(f.svc.mWrites.WithLabelValues("applied")); n < 4 {
		t.Errorf("mote_profile_writes_total{applied} = %v; want at least 4", n)
	}
}

// TestTieBrokenByName: equal priorities are decided by name.
func TestTieBrokenByName(t *testing.T) {
	got := Merge([]Applying{
		{Name: "b", Leaves: leaves(t, `{"x":2,"y":{"z":1}}`)},
		{Name: "a", Leaves: leaves(t, `{"x":1,"y":3}`)},
		{Name: "c", Priority: -1, Leaves: leaves(t, `{"w":true}`)},
	})
	want := []Leaf{
		{Path: []string{"w"}, Value: json.RawMessage(`true`), Profile: "c"},
		{Path: []string{"x"}, Value: json.RawMessage(`1`), Profile: "a"},
		{Path: []string{"y"}, Value: json.RawMessage(`3`), Profile: "a"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Merge = %+v; want %+v", got, want)
	}
}

func leaves(t *testing.T, doc string) []Leaf {
	t.Helper()
	l, err := ParseDocument([]byte(doc), 0)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestJoinLaterAndEnforce: a thing that joins the group later gets the
// profile; a profile key edited away is set again; one that leaves loses
// it; an operator change of a key after it left is kept.
func TestJoinLaterAndEnforce(t *testing.T) {
	f := setup(t, Options{Reconcile: time.Hour}) // only the change feed
	ctx := t.Context()
	if _, err := f.reg.CreateGroup(ctx, store.Group{Name: "plant"}); err != nil {
		t.Fatal(err)
	}
	f.create(t, Profile{Name: "p", Desired: json.RawMessage(`{"interval":60}`), Group: "plant"})
	f.thing(t, store.Thing{Name: "late"})
	waitFor(t, "first reconcile", func() bool { return testutil.ToFloat64(f.svc.mRuns.WithLabelValues("full")) >= 1 })
	if _, err := f.reg.UpdateThing(ctx, "late", store.ThingPatch{Groups: []string{"plant"}}); err != nil {
		t.Fatal(err)
	}
	f.waitDesired(t, "late", `{"interval":60}`)
	f.update(t, "late", `{"state":{"desired":{"interval":5}}}`)
	f.waitDesired(t, "late", `{"interval":60}`)
	if _, err := f.reg.UpdateThing(ctx, "late", store.ThingPatch{Groups: []string{}}); err != nil {
		t.Fatal(err)
	}
	f.waitDesired(t, "late", `null`)
	waitFor(t, "no profile applies to late", func() bool {
		ps, err := f.svc.ThingProfiles(ctx, "late")
		return err == nil && len(ps) == 0
	})
}

// TestCompliance: a thing is compliant for a profile when its reported
// state holds the merged value of every key the profile decides.
func TestCompliance(t *testing.T) {
	f := setup(t, Options{})
	ctx := t.Context()
	f.thing(t, store.Thing{Name: "a", Attributes: map[string]string{"kind": "sensor"}})
	f.thing(t, store.Thing{Name: "b", Attributes: map[string]string{"kind": "sensor"}})
	f.create(t, Profile{Name: "hi", Desired: json.RawMessage(`{"x":1}`), Query: "attributes.kind = 'sensor'", Priority: 2})
	f.create(t, Profile{Name: "lo", Desired: json.RawMessage(`{"x":2,"y":{"z":"q"}}`), Query: "attributes.kind = 'sensor'"})
	f.waitDesired(t, "b", `{"x":1,"y":{"z":"q"}}`)
	f.update(t, "a", `{"state":{"reported":{"x":1.0,"y":{"z":"q"}}}}`)
	f.update(t, "b", `{"state":{"reported":{"x":2}}}`)
	c, err := f.svc.ProfileCompliance(ctx, "hi", "", 10)
	if err != nil {
		t.Fatal(err)
	}
	if c.Things != 2 || c.Compliant != 1 || c.NonCompliant != 1 || len(c.Page) != 1 || c.Page[0].Thing != "b" {
		t.Fatalf("compliance of hi = %+v; want b alone non-compliant", c)
	}
	if d := c.Page[0].Differing; len(d) != 1 || d[0].Key != "x" || string(d[0].Desired) != "1" || string(d[0].Reported) != "2" {
		t.Errorf("b's differing keys = %+v; want x: 1 vs 2", d)
	}
	ps, err := f.svc.ThingProfiles(ctx, "b")
	if err != nil || len(ps) != 2 || ps[0].Profile != "hi" || ps[1].Profile != "lo" {
		t.Fatalf("ThingProfiles(b) = %+v, %v", ps, err)
	}
	// lo decides only y.z (x is hi's): b has not reported it.
	if ps[1].Compliant || ps[1].Keys != 1 || ps[1].Differing[0].Key != "y.z" || ps[1].Differing[0].Reported != nil {
		t.Errorf("b for lo = %+v; want non-compliant on y.z", ps[1])
	}
	f.update(t, "b", `{"state":{"reported":{"x":1,"y":{"z":"q"}}}}`)
	c, err = f.svc.ProfileCompliance(ctx, "lo", "", 10)
	if err != nil || c.Compliant != 2 || c.NonCompliant != 0 {
		t.Errorf("compliance of lo after b reported = %+v, %v; want 2 compliant", c, err)
	}
}

// TestRestartRemovesWhatChangedWhileDown: a profile deleted while the
// service was down (another node, a restore) is removed from the things
// at the next start, from the recorded state.
func TestRestartRemovesWhatChangedWhileDown(t *testing.T) {
	f := setup(t, Options{})
	ctx := t.Context()
	f.thing(t, store.Thing{Name: "a", Attributes: map[string]string{"kind": "sensor"}})
	f.create(t, Profile{Name: "p", Desired: json.RawMessage(`{"x":1}`), Query: "attributes.kind = 'sensor'"})
	f.waitDesired(t, "a", `{"x":1}`)
	f.svc.Close()
	if err := f.st.Profiles().Delete(ctx, "p"); err != nil {
		t.Fatal(err)
	}
	f.start(t, Options{})
	f.waitDesired(t, "a", `null`)
}

// TestQueueFullConverges: a flood of changes beyond the queue is dropped,
// counted, and a full reconcile applies the profile anyway.
func TestQueueFullConverges(t *testing.T) {
	f := setup(t, Options{QueueSize: 1, Reconcile: time.Hour})
	f.thing(t, store.Thing{Name: "a", Attributes: map[string]string{"kind": "sensor"}})
	f.thing(t, store.Thing{Name: "b", Attributes: map[string]string{"kind": "sensor"}})
	waitFor(t, "first reconcile", func() bool { return testutil.ToFloat64(f.svc.mRuns.WithLabelValues("full")) >= 1 })
	// Stored directly: no reconcile is scheduled by the API.
	if _, err := f.st.Profiles().Create(t.Context(), store.Profile{Name: "p", Desired: []byte(`{"x":1}`), Query: "attributes.kind = 'sensor'"}); err != nil {
		t.Fatal(err)
	}
	// A profile stored behind the service's back (as another node would)
	// is seen at the next reconcile; until then the service believes there
	// is none and skips changed things. Tell it, as that reconcile would.
	f.svc.none.Store(false)
	names := make([]string, 100)
	for i := range names {
		names[i] = "flood" + string(rune('a'+i%26)) + string(rune('a'+i/26))
	}
	f.svc.ThingsChanged(append(names, "a", "b"))
	f.waitDesired(t, "a", `{"x":1}`)
	f.waitDesired(t, "b", `{"x":1}`)
	if n := testutil.ToFloat64(f.svc.mDropped); n < 99 {
		t.Errorf("mote_profile_dropped_total = %v; want at least 99", n)
	}
}

// TestRefused: bad documents, targets and the profile limit are refused
// with the field named.
func TestRefused(t *testing.T) {
	f := setup(t, Options{MaxProfiles: 1, MaxSize: 64})
	ctx := t.Context()
	for _, c := range []struct {
		p     Profile
		kind  core.Kind
		field string
	}{
		{Profile{Name: "x", Desired: json.RawMessage(`[1]`), Query: "connected = true"}, core.KindInvalid, "desired"},
		{Profile{Name: "x", Desired: json.RawMessage(`{"a":null}`), Query: "connected = true"}, core.KindInvalid, "desired"},
		{Profile{Name: "x", Desired: json.RawMessage(`{"a":"` + string(make([]byte, 80)) + `"}`), Query: "connected = true"}, core.KindTooLarge, "desired"},
		{Profile{Name: "x", Desired: json.RawMessage(`{"a":1}`)}, core.KindInvalid, "target"},
		{Profile{Name: "x", Desired: json.RawMessage(`{"a":1}`), Group: "g", Query: "connected = true"}, core.KindInvalid, "target"},
		{Profile{Name: "x", Desired: json.RawMessage(`{"a":1}`), Group: "nosuch"}, core.KindInvalid, "target.group"},
		{Profile{Name: "x", Desired: json.RawMessage(`{"a":1}`), Query: "connected = "}, core.KindInvalid, "target.query"},
		{Profile{Name: "x/y", Desired: json.RawMessage(`{"a":1}`), Query: "connected = true"}, core.KindInvalid, "name"},
		{Profile{Name: "x", Desired: json.RawMessage(`{"a":1}`), Query: "connected = true", Priority: MaxPriority + 1}, core.KindInvalid, "priority"},
	} {
		_, err := f.svc.Create(ctx, c.p)
		var ce *core.Error
		if core.KindOf(err) != c.kind || !asCore(err, &ce) || ce.Field != c.field {
			t.Errorf("Create(%+v) = %v; want %v on %s", c.p, err, c.kind, c.field)
		}
	}
	f.create(t, Profile{Name: "one", Desired: json.RawMessage(`{"a":1}`), Query: "connected = true"})
	if _, err := f.svc.Create(ctx, Profile{Name: "two", Desired: json.RawMessage(`{"a":1}`), Query: "connected = true"}); core.KindOf(err) != core.KindConflict {
		t.Errorf("Create beyond --max-profiles = %v; want conflict", err)
	}
}

// TestCompliancePages: the non-compliant things come in pages by name,
// with a cursor, and the counts cover them all.
func TestCompliancePages(t *testing.T) {
	f := setup(t, Options{})
	ctx := t.Context()
	for _, n := range []string{"a", "b", "c", "d"} {
		f.thing(t, store.Thing{Name: n, Attributes: map[string]string{"kind": "sensor"}})
	}
	f.create(t, Profile{Name: "p", Desired: json.RawMessage(`{"x":1}`), Query: "attributes.kind = 'sensor'"})
	for _, n := range []string{"a", "b", "c", "d"} {
		f.waitDesired(t, n, `{"x":1}`)
	}
	f.update(t, "c", `{"state":{"reported":{"x":1}}}`)
	var got []string
	cursor := ""
	for range 5 {
		c, err := f.svc.ProfileCompliance(ctx, "p", cursor, 2)
		if err != nil {
			t.Fatal(err)
		}
		if c.Things != 4 || c.Compliant != 1 || c.NonCompliant != 3 {
			t.Fatalf("counts = %+v; want 4 things, 1 compliant", c)
		}
		for _, it := range c.Page {
			got = append(got, it.Thing)
		}
		if cursor = c.Next; cursor == "" {
			break
		}
	}
	if want := []string{"a", "b", "d"}; !reflect.DeepEqual(got, want) {
		t.Errorf("pages = %q; want %q", got, want)
	}
}
