package httpapi

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/policy"
	"github.com/moteiot/mote/internal/registry"
	"github.com/moteiot/mote/internal/store"
)

// TestWireFormatUnchanged pins the JSON the API writes for its resources,
// byte for byte, as it was when the store rows still doubled as the wire
// format: the mapping from store rows to the API's own types must keep
// every field name, order and omitempty.
func TestWireFormatUnchanged(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	later := at.Add(time.Hour)
	full := store.Thing{Name: "t1", Type: "sensor", Attributes: map[string]string{"site": "ams"}, Tags: []string{"a"},
		Groups: []string{"g"}, Policies: []string{"p"}, Enabled: true, Connected: true, LastSeen: &later, CreatedAt: at, UpdatedAt: later,
		Stats: store.ThingStats{PublishDenied: 2, InvalidTelemetry: 3, LastDeniedTopic: "x/y", LastDeniedAt: &at, LastInvalidAt: &later,
			ModelViolations: 4, LastModelViolation: `{"kind":"telemetry","key":"t"}`, LastModelViolationAt: &at}}
	res := json.RawMessage(`{"ok":true}`)
	cases := []struct {
		name string
		v    any
		want string
	}{
		{"thing empty", thingOut(store.Thing{Name: "t0", CreatedAt: at, UpdatedAt: at}),
			`{"name":"t0","attributes":{},"tags":[],"groups":[],"policies":[],"enabled":false,"connected":false,"createdAt":"2026-01-02T03:04:05Z","updatedAt":"2026-01-02T03:04:05Z","stats":{"publishDenied":0,"invalidTelemetry":0,"modelViolations":0}}`},
		{"thing full", thingOut(full),
			`{"name":"t1","type":"sensor","attributes":{"site":"ams"},"tags":["a"],"groups":["g"],"policies":["p"],"enabled":true,"connected":true,"lastSeen":"2026-01-02T04:04:05Z","createdAt":"2026-01-02T03:04:05Z","updatedAt":"2026-01-02T04:04:05Z","stats":{"publishDenied":2,"invalidTelemetry":3,"lastDeniedTopic":"x/y","lastDeniedAt":"2026-01-02T03:04:05Z","lastInvalidAt":"2026-01-02T04:04:05Z","modelViolations":4,"lastModelViolation":{"kind":"telemetry","key":"t"},"lastModelViolationAt":"2026-01-02T03:04:05Z"}}`},
		{"policy", policyOut(registry.Policy{Policy: store.Policy{Name: "p", Description: "d", Document: []byte(`{}`), Builtin: true, CreatedAt: at, UpdatedAt: later},
			Document: policy.Document{Statements: []policy.Statement{{Effect: "allow", Actions: []policy.Action{"publish"}, Topics: []string{"a/#"}}}}}),
			`{"name":"p","description":"d","builtin":true,"createdAt":"2026-01-02T03:04:05Z","updatedAt":"2026-01-02T04:04:05Z","document":{"statements":[{"effect":"allow","actions":["publish"],"topics":["a/#"]}]}}`},
		{"policy empty", policyOut(registry.Policy{Policy: store.Policy{Name: "p", CreatedAt: at, UpdatedAt: at}}),
			`{"name":"p","description":"","builtin":false,"createdAt":"2026-01-02T03:04:05Z","updatedAt":"2026-01-02T03:04:05Z","document":{"statements":[]}}`},
		{"command queued", commandOut(store.Command{ID: "c1", Thing: "t", Name: "reboot", Status: store.CommandQueued, CreatedAt: at, ExpiresAt: later}),
			`{"id":"c1","thing":"t","name":"reboot","status":"queued","createdAt":"2026-01-02T03:04:05Z","expiresAt":"2026-01-02T04:04:05Z"}`},
		{"command done", commandOut(store.Command{ID: "c1", Thing: "t", Name: "reboot", Payload: json.RawMessage(`{"x":1}`), Status: store.CommandSucceeded,
			CreatedAt: at, ExpiresAt: later, DeliveredAt: &at, CompletedAt: &later, Result: &store.CommandResult{Status: store.CommandSucceeded, Output: res}}),
			`{"id":"c1","thing":"t","name":"reboot","payload":{"x":1},"status":"succeeded","createdAt":"2026-01-02T03:04:05Z","expiresAt":"2026-01-02T04:04:05Z","deliveredAt":"2026-01-02T03:04:05Z","completedAt":"2026-01-02T04:04:05Z","result":{"status":"succeeded","output":{"ok":true}}}`},
		{"group", groupOut(store.Group{Name: "g", Description: "d", Query: "attributes.a = 'b'", CreatedAt: at, UpdatedAt: at}),
			`{"name":"g","description":"d","dynamic":true,"query":"attributes.a = 'b'","createdAt":"2026-01-02T03:04:05Z","updatedAt":"2026-01-02T03:04:05Z"}`},
		{"type", typeOut(store.ThingType{Name: "ty", CreatedAt: at, UpdatedAt: at}),
			`{"name":"ty","description":"","policies":[],"createdAt":"2026-01-02T03:04:05Z","updatedAt":"2026-01-02T03:04:05Z"}`},
		{"token", tokenOut(store.Token{ID: "i", Name: "n", Hash: []byte("secret"), Role: "admin", CreatedAt: at, ExpiresAt: &later, User: "u", Groups: []string{"g"}, RateLimit: 5}),
			`{"id":"i","name":"n","role":"admin","user":"u","groups":["g"],"rateLimit":5,"createdAt":"2026-01-02T03:04:05Z","expiresAt":"2026-01-02T04:04:05Z"}`},
		{"user", userOut(store.User{Name: "u", PasswordHash: []byte("h"), Role: "viewer", CreatedAt: at, UpdatedAt: at}),
			`{"name":"u","role":"viewer","createdAt":"2026-01-02T03:04:05Z","updatedAt":"2026-01-02T03:04:05Z"}`},
	}
	for _, c := range cases {
		b, err := json.Marshal(c.v)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if string(b) != c.want {
			t.Errorf("%s:\n got %s\nwant %s", c.name, b, c.want)
		}
	}
}
