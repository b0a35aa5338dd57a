// Package storetest is the conformance suite of store.Store: every backend
// runs it from its own tests and must pass it unchanged.
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) store.Store {
//			s := openEmptyStore(t)
//			t.Cleanup(func() { s.Close() })
//			return s
//		})
//	}
//
// The suite uses only the store.Store interface. It checks what the
// registry relies on: round trips field by field, the kinds (and for
// missing resources the exact messages) of errors, List filtering and
// cursor pagination, presence, cascades and concurrent use. Durability is
// backend-specific and is not tested here.
package storetest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/store"
)

// Run runs the conformance suite. open must return a new, empty store for
// each call and arrange for it to be closed when t ends (t.Cleanup).
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	t.Run("Things", func(t *testing.T) { testThings(t, open) })
	t.Run("ThingList", func(t *testing.T) { testThingList(t, open) })
	t.Run("Presence", func(t *testing.T) { testPresence(t, open) })
	t.Run("PresenceNodes", func(t *testing.T) { testPresenceNodes(t, open) })
	t.Run("NodePresence", func(t *testing.T) { testNodePresence(t, open) })
	t.Run("Activity", func(t *testing.T) { testActivity(t, open) })
	t.Run("ThingSortAndCounts", func(t *testing.T) { testThingSort(t, open) })
	t.Run("Types", func(t *testing.T) { testTypes(t, open) })
	t.Run("TypeModels", func(t *testing.T) { testTypeModels(t, open) })
	t.Run("Groups", func(t *testing.T) { testGroups(t, open) })
	t.Run("Policies", func(t *testing.T) { testPolicies(t, open) })
	t.Run("Credentials", func(t *testing.T) { testCredentials(t, open) })
	t.Run("Tokens", func(t *testing.T) { testTokens(t, open) })
	t.Run("Shadows", func(t *testing.T) { testShadows(t, open) })
	t.Run("ShadowsChecked", func(t *testing.T) { testShadowsChecked(t, open) })
	t.Run("Rules", func(t *testing.T) { testRules(t, open) })
	t.Run("Users", func(t *testing.T) { testUsers(t, open) })
	t.Run("Commands", func(t *testing.T) { testCommands(t, open) })
	t.Run("Retained", func(t *testing.T) { testRetained(t, open) })
	t.Run("Sessions", func(t *testing.T) { testSessions(t, open) })
	t.Run("Artifacts", func(t *testing.T) { testArtifacts(t, open) })
	t.Run("Files", func(t *testing.T) { testFiles(t, open) })
	t.Run("Alarms", func(t *testing.T) { testAlarms(t, open) })
	t.Run("Analytics", func(t *testing.T) { testAnalytics(t, open) })
	t.Run("Jobs", func(t *testing.T) { testJobs(t, open) })
	t.Run("Profiles", func(t *testing.T) { testProfiles(t, open) })
	t.Run("Dashboards", func(t *testing.T) { testDashboards(t, open) })
	t.Run("Provisioning", func(t *testing.T) { testProvisioning(t, open) })
	t.Run("Audit", func(t *testing.T) { testAudit(t, open) })
	t.Run("RuleWindows", func(t *testing.T) { testRuleWindows(t, open) })
	t.Run("CreateMany", func(t *testing.T) { testCreateMany(t, open) })
	t.Run("GetManyThings", func(t *testing.T) { testGetManyThings(t, open) })
	t.Run("Concurrency", func(t *testing.T) { testConcurrency(t, open) })
}

// ms is what the store returns for a time it was given: UTC, truncated to
// the millisecond.
func ms(t time.Time) time.Time { return t.UTC().Truncate(time.Millisecond) }

func msPtr(t time.Time) *time.Time { t = ms(t); return &t }

// base is an arbitrary time with sub-millisecond digits in a non-UTC zone,
// so round trips show the conversion to UTC milliseconds.
var base = time.Date(2024, 3, 1, 12, 30, 45, 123456789, time.FixedZone("CET", 3600))

// window records the time around an operation that sets a time to "now".
type window struct{ from, to time.Time }

func startWindow() window { return window{from: time.Now().Truncate(time.Millisecond)} }

func (w window) end() window { w.to = time.Now(); return w }

// checkNow checks that got is a UTC time set to "now" during w.
func checkNow(t *testing.T, field string, got time.Time, w window) {
	t.Helper()
	if got.Location() != time.UTC {
		t.Errorf("%s: got location %v; want UTC", field, got.Location())
	}
	if got.Before(w.from) || got.After(w.to) {
		t.Errorf("%s: got %v; want a time between %v and %v (now)", field, got, w.from, w.to)
	}
	if got.Nanosecond()%int(time.Millisecond) != 0 {
		t.Errorf("%s: got %v; want a time truncated to the millisecond", field, got)
	}
}

// wantKind checks that err is of kind want.
func wantKind(t *testing.T, op string, err error, want core.Kind) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: got no error; want a %s error", op, want)
		return
	}
	if got := core.KindOf(err); got != want {
		t.Errorf("%s: got error %q of kind %s; want kind %s", op, err, got, want)
	}
}

// wantNotFound checks that err is core.NotFound(what, name), message included.
func wantNotFound(t *testing.T, op string, err error, what, name string) {
	t.Helper()
	wantKind(t, op, err, core.KindNotFound)
	if err != nil {
		if got, want := err.Error(), core.NotFound(what, name).Error(); got != want {
			t.Errorf("%s: got message %q; want %q", op, got, want)
		}
	}
}

// wantConflict checks that err is a conflict whose message contains every
// one of parts.
func wantConflict(t *testing.T, op string, err error, parts ...string) {
	t.Helper()
	wantKind(t, op, err, core.KindConflict)
	if err != nil {
		for _, p := range parts {
			if !strings.Contains(err.Error(), p) {
				t.Errorf("%s: got message %q; want it to contain %q", op, err, p)
			}
		}
	}
}

// wantInvalid checks that err is core.Invalid about field, naming name.
func wantInvalid(t *testing.T, op string, err error, field, name string) {
	t.Helper()
	wantKind(t, op, err, core.KindInvalid)
	if err != nil {
		if got := core.FieldOf(err); got != field {
			t.Errorf("%s: got error field %q; want %q", op, got, field)
		}
		if !strings.Contains(err.Error(), fmt.Sprintf("%q", name)) {
			t.Errorf("%s: got message %q; want it to name %q", op, err, name)
		}
	}
}

// must fails the test at once if err is not nil.
func must(t *testing.T, op string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", op, err)
	}
}

func eq[T comparable](t *testing.T, field string, got, want T) {
	t.Helper()
	if got != want {
		t.Errorf("%s: got %#v; want %#v", field, got, want)
	}
}

func eqList(t *testing.T, field string, got, want []string) {
	t.Helper()
	if got == nil {
		t.Errorf("%s: got nil; want a non-nil slice", field)
	}
	if !slices.Equal(got, want) {
		t.Errorf("%s: got %q; want %q", field, got, want)
	}
}

func eqMap(t *testing.T, field string, got, want map[string]string) {
	t.Helper()
	if got == nil {
		t.Errorf("%s: got nil; want a non-nil map", field)
	}
	if !maps.Equal(got, want) {
		t.Errorf("%s: got %q; want %q", field, got, want)
	}
}

func eqBytes(t *testing.T, field string, got, want []byte) {
	t.Helper()
	if !bytes.Equal(got, want) {
		t.Errorf("%s: got %x; want %x", field, got, want)
	}
}

// eqJSON compares two JSON documents by value, so that a backend may
// normalise the text (e.g. PostgreSQL jsonb).
func eqJSON(t *testing.T, field string, got, want []byte) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Errorf("%s: got %q, which is not JSON: %v", field, got, err)
		return
	}
	if err := json.Unmarshal(want, &w); err != nil {
		panic(err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("%s: got %s; want %s", field, got, want)
	}
}

func eqTime(t *testing.T, field string, got, want time.Time) {
	t.Helper()
	if !got.Equal(want) {
		t.Errorf("%s: got %v; want %v", field, got, want)
	} else if got.Location() != time.UTC {
		t.Errorf("%s: got location %v; want UTC", field, got.Location())
	}
}

func eqTimePtr(t *testing.T, field string, got, want *time.Time) {
	t.Helper()
	switch {
	case got == nil && want == nil:
	case got == nil:
		t.Errorf("%s: got nil; want %v", field, *want)
	case want == nil:
		t.Errorf("%s: got %v; want nil", field, *got)
	default:
		eqTime(t, field, *got, *want)
	}
}

func checkThing(t *testing.T, what string, got, want store.Thing) {
	t.Helper()
	eq(t, what+".Name", got.Name, want.Name)
	eq(t, what+".Type", got.Type, want.Type)
	eqMap(t, what+".Attributes", got.Attributes, want.Attributes)
	eqList(t, what+".Tags", got.Tags, want.Tags)
	eqList(t, what+".Groups", got.Groups, want.Groups)
	eqList(t, what+".Policies", got.Policies, want.Policies)
	eq(t, what+".Enabled", got.Enabled, want.Enabled)
	eq(t, what+".Connected", got.Connected, want.Connected)
	eqTimePtr(t, what+".LastSeen", got.LastSeen, want.LastSeen)
	eqTime(t, what+".CreatedAt", got.CreatedAt, want.CreatedAt)
	eqTime(t, what+".UpdatedAt", got.UpdatedAt, want.UpdatedAt)
}

func checkType(t *testing.T, what string, got, want store.ThingType) {
	t.Helper()
	eq(t, what+".Name", got.Name, want.Name)
	eq(t, what+".Description", got.Description, want.Description)
	eqList(t, what+".Policies", got.Policies, want.Policies)
	eqTime(t, what+".CreatedAt", got.CreatedAt, want.CreatedAt)
	eqTime(t, what+".UpdatedAt", got.UpdatedAt, want.UpdatedAt)
}

func checkGroup(t *testing.T, what string, got, want store.Group) {
	t.Helper()
	eq(t, what+".Name", got.Name, want.Name)
	eq(t, what+".Description", got.Description, want.Description)
	eq(t, what+".Query", got.Query, want.Query)
	eqTime(t, what+".CreatedAt", got.CreatedAt, want.CreatedAt)
	eqTime(t, what+".UpdatedAt", got.UpdatedAt, want.UpdatedAt)
}

func checkPolicy(t *testing.T, what string, got, want store.Policy) {
	t.Helper()
	eq(t, what+".Name", got.Name, want.Name)
	eq(t, what+".Description", got.Description, want.Description)
	eqJSON(t, what+".Document", got.Document, want.Document)
	eq(t, what+".Builtin", got.Builtin, want.Builtin)
	eqTime(t, what+".CreatedAt", got.CreatedAt, want.CreatedAt)
	eqTime(t, what+".UpdatedAt", got.UpdatedAt, want.UpdatedAt)
}

func checkCredential(t *testing.T, what string, got, want store.Credential) {
	t.Helper()
	eq(t, what+".ID", got.ID, want.ID)
	eq(t, what+".Thing", got.Thing, want.Thing)
	eq(t, what+".Type", got.Type, want.Type)
	eqBytes(t, what+".SecretHash", got.SecretHash, want.SecretHash)
	eq(t, what+".Fingerprint", got.Fingerprint, want.Fingerprint)
	eq(t, what+".CertPEM", got.CertPEM, want.CertPEM)
	eqTimePtr(t, what+".NotAfter", got.NotAfter, want.NotAfter)
	eq(t, what+".Revoked", got.Revoked, want.Revoked)
	eqTimePtr(t, what+".RevokedAt", got.RevokedAt, want.RevokedAt)
	eqTime(t, what+".CreatedAt", got.CreatedAt, want.CreatedAt)
	eq(t, what+".SealedKey", got.SealedKey, want.SealedKey)
}

func checkToken(t *testing.T, what string, got, want store.Token) {
	t.Helper()
	eq(t, what+".ID", got.ID, want.ID)
	eq(t, what+".Name", got.Name, want.Name)
	eqBytes(t, what+".Hash", got.Hash, want.Hash)
	eq(t, what+".Role", got.Role, want.Role)
	eqTime(t, what+".CreatedAt", got.CreatedAt, want.CreatedAt)
	eqTimePtr(t, what+".ExpiresAt", got.ExpiresAt, want.ExpiresAt)
	eqTimePtr(t, what+".LastUsedAt", got.LastUsedAt, want.LastUsedAt)
}

// thingNames returns the names of things in the order given.
func thingNames(list []store.Thing) []string {
	names := make([]string, len(list))
	for i, t := range list {
		names[i] = t.Name
	}
	return names
}

// fixture creates types, groups and policies by name.
type fixture struct {
	Types, Groups, Policies []string
}

func (f fixture) create(t *testing.T, ctx context.Context, s store.Store) {
	t.Helper()
	for _, p := range f.Policies {
		_, err := s.Policies().Create(ctx, store.Policy{Name: p, Document: []byte(`{"statements":[]}`)})
		must(t, "create policy "+p, err)
	}
	for _, y := range f.Types {
		_, err := s.Types().Create(ctx, store.ThingType{Name: y})
		must(t, "create thing type "+y, err)
	}
	for _, g := range f.Groups {
		_, err := s.Groups().Create(ctx, store.Group{Name: g})
		must(t, "create group "+g, err)
	}
}

func sorted(list []string) []string {
	list = slices.Clone(list)
	sort.Strings(list)
	return list
}
