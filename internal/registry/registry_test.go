package registry

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"path/filepath"
	"reflect"
	"sync"
	"testing"

	"github.com/moteiot/mote/internal/auth"
	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/pki"
	"github.com/moteiot/mote/internal/policy"
	"github.com/moteiot/mote/internal/store"
	"github.com/moteiot/mote/internal/store/sqlite"
	"github.com/moteiot/mote/internal/store/sqlite/sqlitetest"
)

// env is a registry over a real SQLite store, CA and hasher in a temporary
// directory.
type env struct {
	reg    *Registry
	st     *sqlite.Store
	ca     *pki.CA
	hasher *auth.Hasher
	dir    string
	events *recorder
}

// newEnv returns a bootstrapped registry whose events are recorded.
func newEnv(t *testing.T) *env {
	t.Helper()
	e := newBareEnv(t)
	if err := e.reg.Bootstrap(context.Background()); err != nil {
		t.Fatalf("Bootstrap() = %v; want nil", err)
	}
	return e
}

// newBareEnv returns a registry that has not been bootstrapped.
func newBareEnv(t *testing.T) *env {
	t.Helper()
	dir := t.TempDir()
	sqlitetest.Seed(t, filepath.Join(dir, "mote.db"))
	st, err := sqlite.Open(filepath.Join(dir, "mote.db"))
	if err != nil {
		t.Fatalf("sqlite.Open: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	ca, err := pki.LoadOrCreateCA(filepath.Join(dir, "ca"))
	if err != nil {
		t.Fatalf("pki.LoadOrCreateCA: %v", err)
	}
	h, err := auth.LoadOrCreateHasher(filepath.Join(dir, "hash.key"))
	if err != nil {
		t.Fatalf("auth.LoadOrCreateHasher: %v", err)
	}
	reg := New(Options{Store: st, Hasher: h, CA: ca, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	rec := &recorder{}
	reg.Listen(rec.add)
	return &env{reg: reg, st: st, ca: ca, hasher: h, dir: dir, events: rec}
}

// recorder collects the events a registry emits.
type recorder struct {
	mu     sync.Mutex
	events []Event
	index  []Event // ThingCreated and GroupsChanged
}

func (r *recorder) add(e Event) {
	r.mu.Lock()
	if e.Kind == ThingCreated || e.Kind == GroupsChanged {
		r.index = append(r.index, e) // for the fleet index, not live connections
	} else {
		r.events = append(r.events, e)
	}
	r.mu.Unlock()
}

// take returns the events recorded since the last call and forgets them.
func (r *recorder) take() []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.events
	r.events = nil
	return out
}

// checkEvents fails the test unless exactly want was emitted since the last
// call (or since the start).
func (e *env) checkEvents(t *testing.T, what string, want ...Event) {
	t.Helper()
	got := e.events.take()
	if len(got) == 0 && len(want) == 0 {
		return
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("events of %s = %+v; want %+v", what, got, want)
	}
}

// checkErr fails the test unless err is a *core.Error of the given kind
// and, if field is not "", about that field.
func checkErr(t *testing.T, what string, err error, kind core.Kind, field string) {
	t.Helper()
	if err == nil {
		t.Errorf("%s = nil error; want an error of kind %v", what, kind)
		return
	}
	if got := core.KindOf(err); got != kind {
		t.Errorf("%s: KindOf(%v) = %v; want %v", what, err, got, kind)
	}
	if field != "" {
		if got := core.FieldOf(err); got != field {
			t.Errorf("%s: FieldOf(%v) = %q; want %q", what, err, got, field)
		}
	}
}

func mustThing(t *testing.T, e *env, th store.Thing) store.Thing {
	t.Helper()
	got, err := e.reg.CreateThing(context.Background(), th)
	if err != nil {
		t.Fatalf("CreateThing(%q) = %v; want nil", th.Name, err)
	}
	return got
}

func TestBootstrap(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newBareEnv(t)
	for i := range 3 {
		if err := e.reg.Bootstrap(ctx); err != nil {
			t.Fatalf("Bootstrap() #%d = %v; want nil", i+1, err)
		}
	}
	ps, next, err := e.reg.ListPolicies(ctx, "", 0)
	if err != nil {
		t.Fatalf("ListPolicies() = %v", err)
	}
	if len(ps) != 1 || next != "" {
		t.Fatalf("ListPolicies() after 3 Bootstraps = %d policies, next %q; want 1, \"\"", len(ps), next)
	}
	p := ps[0]
	if p.Name != DefaultPolicy || !p.Builtin {
		t.Errorf("ListPolicies()[0] = %q builtin %v; want %q builtin true", p.Name, p.Builtin, DefaultPolicy)
	}
	if want := policy.DefaultDocument(); !reflect.DeepEqual(p.Document, want) {
		t.Errorf("default policy document = %+v; want %+v", p.Document, want)
	}
	var stored policy.Document
	if err := json.Unmarshal(p.Policy.Document, &stored); err != nil || !reflect.DeepEqual(stored, policy.DefaultDocument()) {
		t.Errorf("stored default document = %s (%v); want policy.DefaultDocument()", p.Policy.Document, err)
	}

	// An edited default policy survives a later Bootstrap.
	edited := policy.Document{Statements: []policy.Statement{{Effect: policy.Allow, Actions: []policy.Action{policy.Publish}, Topics: []string{"things/${thing}/up"}}}}
	if _, err := e.reg.UpdatePolicy(ctx, DefaultPolicy, "mine", edited); err != nil {
		t.Fatalf("UpdatePolicy(default) = %v", err)
	}
	if err := e.reg.Bootstrap(ctx); err != nil {
		t.Fatalf("Bootstrap() after edit = %v", err)
	}
	got, err := e.reg.GetPolicy(ctx, DefaultPolicy)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Document, edited) || got.Description != "mine" {
		t.Errorf("GetPolicy(default) after Bootstrap = %q %+v; want the edited one", got.Description, got.Document)
	}
}
