package httpapi

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/bcrypt"

	"github.com/moteiot/mote/internal/audit"
	"github.com/moteiot/mote/internal/registry"
	"github.com/moteiot/mote/internal/ruleengine"
	"github.com/moteiot/mote/internal/shadow"
	"github.com/moteiot/mote/internal/store"
	"github.com/moteiot/mote/internal/thingimport"
	"github.com/moteiot/mote/internal/users"
)

// newAuditEnv is newEnv with the audit recorder, a rules engine and
// console users.
func newAuditEnv(t *testing.T, o audit.Options) (*env, *users.Service) {
	t.Helper()
	e := newEnv(t)
	log := slog.New(slog.NewTextHandler(e.logs, nil))
	o.Store = e.st.Audit()
	o.Logger = log
	rec := audit.New(o)
	if err := rec.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rec.Close() })
	eng := ruleengine.New(ruleengine.Options{Store: e.st.Rules(), Logger: log})
	if err := eng.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { eng.Close() })
	shadows := shadow.New(shadow.Options{Store: e.st.Shadows(), Logger: log})
	t.Cleanup(func() { shadows.Close() })
	us := users.New(users.Options{Store: e.st.Users(), Cost: bcrypt.MinCost, Logger: log})
	im := thingimport.New(thingimport.Options{Registry: e.reg, MaxSize: 64 << 10, MaxRows: 100, Logger: log})
	h := New(Options{Registry: e.reg, Rules: eng, Shadows: shadows, Users: us, Logger: log, Metrics: prometheus.NewRegistry(), Audit: rec, Importer: im})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	e.srv, e.handler = srv, h
	return e, us
}

// auditList reads GET /audit with a query and decodes the page.
func auditList(t *testing.T, e *env, token, q string) (list[AuditEntry], resp) {
	t.Helper()
	r := e.req(t, "GET", "/audit?"+q, token, nil)
	var l list[AuditEntry]
	if r.status == http.StatusOK {
		if err := json.Unmarshal(r.body, &l); err != nil {
			t.Fatalf("GET /audit?%s: %v: %s", q, err, r.body)
		}
	}
	return l, r
}

func mustStatus(t *testing.T, r resp, want int, what string) {
	t.Helper()
	if r.status != want {
		t.Fatalf("%s = %d %s; want %d", what, r.status, r.body, want)
	}
}

// TestAuditRecordsChanges: thing, policy, rule and token changes are
// recorded with actor, action, target, status, source, request id and
// before/after; secrets never appear; reads are not recorded.
func TestAuditRecordsChanges(t *testing.T) {
	e, _ := newAuditEnv(t, audit.Options{})
	ctx := context.Background()
	mustStatus(t, e.req(t, "POST", "/groups", e.admin, map[string]any{"name": "plant-1"}), 201, "create group")
	mustStatus(t, e.req(t, "POST", "/things", e.admin, map[string]any{"name": "t1", "attributes": map[string]string{"site": "a"}}, "X-Request-Id", "req-42"), 201, "create thing")
	mustStatus(t, e.req(t, "PATCH", "/things/t1", e.admin, map[string]any{"attributes": map[string]string{"site": "b"}}), 200, "patch thing")
	mustStatus(t, e.req(t, "GET", "/things/t1", e.admin, nil), 200, "get thing")
	mustStatus(t, e.req(t, "PATCH", "/things/nope", e.admin, map[string]any{"enabled": false}), 404, "patch missing thing")
	mustStatus(t, e.req(t, "POST", "/policies", e.admin, map[string]any{"name": "p1", "document": allowDoc}), 201, "create policy")
	mustStatus(t, e.req(t, "PUT", "/policies/p1", e.admin, map[string]any{"description": "changed", "document": allowDoc}), 200, "replace policy")
	mustStatus(t, e.req(t, "POST", "/rules", e.admin, map[string]any{"name": "r1", "sql": "SELECT * FROM 'things/+/telemetry'", "actions": []any{}}), 201, "create rule")
	mustStatus(t, e.req(t, "DELETE", "/rules/r1", e.admin, nil), 204, "delete rule")
	tok := e.req(t, "POST", "/tokens", e.admin, map[string]any{"name": "ops", "role": "operator"})
	mustStatus(t, tok, 201, "create token")
	var nt struct{ ID, Token string }
	json.Unmarshal(tok.body, &nt)
	cred := e.req(t, "POST", "/things/t1/credentials", nt.Token, map[string]any{"type": "secret"})
	mustStatus(t, cred, 201, "create credential")
	var nc struct{ ID, Secret string }
	json.Unmarshal(cred.body, &nc)
	mustStatus(t, e.req(t, "POST", "/things/t1/credentials/"+nc.ID+"/revoke", nt.Token, nil), 200, "revoke credential")
	mustStatus(t, e.req(t, "DELETE", "/things/t1", e.admin, nil), 204, "delete thing")

	all, r := auditList(t, e, e.admin, "limit=1000")
	mustStatus(t, r, 200, "GET /audit")
	got := map[string]AuditEntry{}
	var actions []string
	for _, a := range all.Items {
		actions = append(actions, a.Action)
		got[a.Action+" "+a.Target.Name+" "+http.StatusText(a.Status)] = a
	}
	want := []string{"thing.delete", "thing.credential.revoke", "thing.credential.create", "token.create", "rule.delete",
		"rule.create", "policy.replace", "policy.create", "thing.update", "thing.update", "thing.create", "group.create"}
	if strings.Join(actions, " ") != strings.Join(want, " ") {
		t.Fatalf("actions newest first = %v; want %v", actions, want)
	}
	create := got["thing.create t1 Created"]
	if create.Actor != (AuditActor{Kind: "token", Name: "test-admin", ID: create.Actor.ID}) || create.Actor.ID == "" ||
		create.Target != (AuditTarget{Kind: "thing", Name: "t1"}) || create.RequestID != "req-42" ||
		create.Source != "127.0.0.1" || create.Before != nil || !strings.Contains(string(create.After), `"site":"a"`) {
		t.Errorf("thing.create entry = %+v", create)
	}
	upd := got["thing.update t1 OK"]
	if !strings.Contains(string(upd.Before), `"site":"a"`) || !strings.Contains(string(upd.After), `"site":"b"`) {
		t.Errorf("thing.update before %s after %s; want site a → b", upd.Before, upd.After)
	}
	if miss := got["thing.update nope Not Found"]; miss.Status != 404 || miss.After != nil {
		t.Errorf("failed update entry = %+v; want status 404 and no after", miss)
	}
	if del := got["thing.delete t1 No Content"]; del.Before == nil || del.After != nil {
		t.Errorf("thing.delete before %s after %s; want the thing before and nothing after", del.Before, del.After)
	}
	if pr := got["policy.replace p1 OK"]; !strings.Contains(string(pr.After), "changed") || pr.Before == nil {
		t.Errorf("policy.replace = %+v", pr)
	}
	if c := got["thing.credential.create t1 Created"]; c.Actor.Name != "ops" || c.Actor.Kind != "token" || c.Actor.ID != nt.ID {
		t.Errorf("credential create actor = %+v; want token ops (%s)", c.Actor, nt.ID)
	}
	if tc := got["token.create ops Created"]; !strings.Contains(string(tc.After), audit.Redacted) {
		t.Errorf("token.create after = %s; want the token redacted", tc.After)
	}
	// No secret anywhere in the log, in the list or the export.
	exp := e.req(t, "GET", "/audit/export", e.admin, nil)
	for _, secret := range []string{nt.Token, nc.Secret, e.admin} {
		if secret == "" {
			t.Fatal("a secret is empty: the test would prove nothing")
		}
		if bytes.Contains(r.body, []byte(secret)) || bytes.Contains(exp.body, []byte(secret)) {
			t.Errorf("a secret appears in the audit log")
		}
	}
	// The entries are in the store, not only in memory.
	stored, err := e.st.Audit().List(ctx, store.AuditFilter{Limit: 1000})
	if err != nil || len(stored) != len(want) {
		t.Errorf("store holds %d entries (%v); want %d", len(stored), err, len(want))
	}
}

// TestAuditSecretRoutes: every secret-bearing route leaves no secret in
// the log: token, secret, symmetric key and certificate key pair creation
// and a console sign-in (success and failure).
func TestAuditSecretRoutes(t *testing.T) {
	e, us := newAuditEnv(t, audit.Options{})
	ctx := context.Background()
	if _, err := us.Create(ctx, "alice", "correct-horse-battery", registry.RoleOperator); err != nil {
		t.Fatal(err)
	}
	mustStatus(t, e.req(t, "POST", "/things", e.admin, map[string]any{"name": "t1"}), 201, "create thing")
	var secrets []string
	collect := func(r resp, fields ...string) {
		var m map[string]any
		json.Unmarshal(r.body, &m)
		for _, f := range fields {
			if v, _ := m[f].(string); v != "" {
				secrets = append(secrets, v)
			} else {
				t.Errorf("response %s has no %s: the test would prove nothing", r.body, f)
			}
		}
	}
	collect(e.req(t, "POST", "/tokens", e.admin, map[string]any{"name": "x", "role": "viewer"}), "token")
	collect(e.req(t, "POST", "/things/t1/credentials", e.admin, map[string]any{"type": "secret"}), "secret")
	collect(e.req(t, "POST", "/things/t1/credentials", e.admin, map[string]any{"type": "x509"}), "privateKey")
	mustStatus(t, e.req(t, "POST", "/auth/login", "", map[string]any{"user": "alice", "password": "correct-horse-battery"}), 200, "login")
	mustStatus(t, e.req(t, "POST", "/auth/login", "", map[string]any{"user": "alice", "password": "wrong-password-123"}), 401, "failed login")
	secrets = append(secrets, "correct-horse-battery", "wrong-password-123")

	exp := e.req(t, "GET", "/audit/export", e.admin, nil)
	mustStatus(t, exp, 200, "export")
	for _, s := range secrets {
		if bytes.Contains(exp.body, []byte(s)) {
			t.Errorf("secret %.12q… appears in the audit log", s)
		}
	}
	logins, _ := auditList(t, e, e.admin, "action=auth.login")
	if len(logins.Items) != 2 || logins.Items[0].Status != 401 || logins.Items[1].Status != 200 ||
		logins.Items[0].Actor != (AuditActor{Kind: "user", Name: "alice"}) {
		t.Errorf("login entries = %+v; want a 200 and a 401 by user alice", logins.Items)
	}
}

// TestAuditQueryAndExport: filters, pagination, the viewer's 403 and the
// NDJSON export.
func TestAuditQueryAndExport(t *testing.T) {
	e, _ := newAuditEnv(t, audit.Options{})
	for i := range 25 {
		mustStatus(t, e.req(t, "POST", "/things", e.admin, map[string]any{"name": "t" + string(rune('a'+i))}), 201, "create")
	}
	mustStatus(t, e.req(t, "PATCH", "/things/tc", e.admin, map[string]any{"enabled": false}), 200, "patch")
	_, viewer, err := e.reg.CreateToken(context.Background(), "v", registry.RoleViewer, nil)
	if err != nil {
		t.Fatal(err)
	}
	// A viewer (and an operator) may not read the log.
	if _, r := auditList(t, e, viewer, ""); r.status != http.StatusForbidden {
		t.Errorf("viewer GET /audit = %d; want 403", r.status)
	}
	if r := e.req(t, "GET", "/audit/export", viewer, nil); r.status != http.StatusForbidden {
		t.Errorf("viewer GET /audit/export = %d; want 403", r.status)
	}
	// Pages of 10 walk 26 entries.
	var seen []string
	q := "limit=10"
	for {
		l, r := auditList(t, e, e.admin, q)
		mustStatus(t, r, 200, "page")
		for _, a := range l.Items {
			seen = append(seen, a.ID)
		}
		if l.NextCursor == "" {
			break
		}
		q = "limit=10&cursor=" + l.NextCursor
	}
	if len(seen) != 26 {
		t.Errorf("pages saw %d entries; want 26", len(seen))
	}
	for _, c := range []struct {
		q    string
		want int
	}{
		{"target=thing:tc", 2}, {"target=tc", 2}, {"action=thing.update", 1}, {"action=thing.*", 26},
		{"actor=test-admin", 26}, {"actor=nobody", 0},
		{"since=" + url.QueryEscape(time.Now().Add(time.Hour).Format(time.RFC3339)), 0},
		{"until=" + url.QueryEscape(time.Now().Add(time.Hour).Format(time.RFC3339)), 26},
	} {
		l, r := auditList(t, e, e.admin, c.q+"&limit=100")
		if r.status != 200 || len(l.Items) != c.want {
			t.Errorf("GET /audit?%s = %d, %d entries; want %d", c.q, r.status, len(l.Items), c.want)
		}
	}
	for _, bad := range []string{"since=yesterday", "cursor=zz", "limit=0", "color=red"} {
		if _, r := auditList(t, e, e.admin, bad); r.status != http.StatusBadRequest {
			t.Errorf("GET /audit?%s = %d; want 400", bad, r.status)
		}
	}
	// The export is valid NDJSON holding every entry, newest first.
	exp := e.req(t, "GET", "/audit/export?action=thing.create", e.admin, nil)
	mustStatus(t, exp, 200, "export")
	if ct := exp.header.Get("Content-Type"); ct != "application/x-ndjson" {
		t.Errorf("export Content-Type = %q", ct)
	}
	sc := bufio.NewScanner(bytes.NewReader(exp.body))
	n := 0
	last := "~"
	for sc.Scan() {
		var a AuditEntry
		if err := json.Unmarshal(sc.Bytes(), &a); err != nil {
			t.Fatalf("export line %d: %v: %s", n+1, err, sc.Bytes())
		}
		if a.Action != "thing.create" || a.ID >= last {
			t.Errorf("export line %d = %+v", n+1, a)
		}
		last = a.ID
		n++
	}
	if n != 25 {
		t.Errorf("export has %d lines; want 25", n)
	}
}

// TestAuditFullQueueRefusesChange: with the audit queue full (its store
// hung), a change is refused with 503 and not made.
func TestAuditFullQueueRefusesChange(t *testing.T) {
	e := newEnv(t)
	hung := &hungAudit{AuditStore: e.st.Audit(), release: make(chan struct{})}
	rec := audit.New(audit.Options{Store: hung, Queue: 1, QueueWait: 20 * time.Millisecond, CloseTimeout: time.Second})
	if err := rec.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(New(Options{Registry: e.reg, Logger: slog.New(slog.NewTextHandler(e.logs, nil)), Audit: rec}))
	t.Cleanup(srv.Close)
	e.srv = srv
	mustStatus(t, e.req(t, "POST", "/things", e.admin, map[string]any{"name": "first"}), 201, "first create")
	r := e.req(t, "POST", "/things", e.admin, map[string]any{"name": "second"})
	if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" {
		t.Errorf("create with a full audit queue = %d (Retry-After %q); want 503 with Retry-After", r.status, r.header.Get("Retry-After"))
	}
	if _, err := e.reg.GetThing(context.Background(), "second"); err == nil {
		t.Error("the refused change was made")
	}
	// Reads are not audited: they still work.
	mustStatus(t, e.req(t, "GET", "/things/first", e.admin, nil), 200, "read")
	close(hung.release)
	if err := rec.Close(); err != nil {
		t.Fatal(err)
	}
	got, _ := e.st.Audit().List(context.Background(), store.AuditFilter{})
	if len(got) != 1 || got[0].TargetName != "first" {
		t.Errorf("stored %+v; want the first create only", got)
	}
}

type hungAudit struct {
	store.AuditStore
	release chan struct{}
}

func (h *hungAudit) Append(ctx context.Context, e []store.AuditEntry) error {
	select {
	case <-h.release:
	case <-ctx.Done():
		return ctx.Err()
	}
	return h.AuditStore.Append(ctx, e)
}

// TestAuditActions: the action and target of every audited route of the
// table are derived (or named) sensibly: lower case, dotted, a verb.
func TestAuditActions(t *testing.T) {
	s := &server{}
	table := s.routes()
	ars := auditRoutes(table)
	want := map[string]string{
		"POST /things":                                "thing.create",
		"PATCH /things/{name}":                        "thing.update",
		"DELETE /things/{name}":                       "thing.delete",
		"POST /things/{name}/credentials":             "thing.credential.create",
		"POST /things/{name}/credentials/{id}/revoke": "thing.credential.revoke",
		"PUT /policies/{name}":                        "policy.replace",
		"POST /jobs/{id}/cancel":                      "job.cancel",
		"POST /alarms/{id}/ack":                       "alarm.ack",
		"POST /tokens":                                "token.create",
		"POST /auth/login":                            "auth.login",
		"POST /analytics/rules":                       "analytics.rule.create",
		"POST /things/{name}/commands":                "thing.command.create",
	}
	for k, a := range want {
		if ars[k].action != a {
			t.Errorf("action of %s = %q; want %q", k, ars[k].action, a)
		}
	}
	for _, rt := range table {
		k := rt.method + " " + rt.path
		_, ok := ars[k]
		mutating := !safeMethod(rt.method) && (rt.role == roleWrite || rt.role == roleAdmin)
		if mutating && !ok {
			t.Errorf("%s changes state but is not audited", k)
		}
		if rt.role == roleDevice && ok {
			t.Errorf("device route %s is audited", k)
		}
	}
	if _, ok := ars["POST /rules/test"]; ok {
		t.Error("POST /rules/test (read-only) is audited")
	}
	if ars["DELETE /things/{name}"].before == nil || ars["POST /things/{name}/credentials/{id}/revoke"].before == nil {
		t.Error("no before read for a delete or a revoke")
	}
	if ars["POST /things"].before != nil {
		t.Error("a create reads a before document (the list)")
	}
}
