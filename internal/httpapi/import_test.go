package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/moteiot/mote/internal/audit"
	"github.com/moteiot/mote/internal/registry"
	"github.com/moteiot/mote/internal/store"
	"github.com/moteiot/mote/internal/thingimport"
)

// TestImportThings: POST /things:import end to end: CSV and JSON lines,
// atomic 422, bestEffort, dry run, secrets once and never in the audit
// log, and the refusals: 415, 400 with the line, 413 by size and rows,
// 403 for a viewer.
func TestImportThings(t *testing.T) {
	e, _ := newAuditEnv(t, audit.Options{})
	ctx := context.Background()
	mustStatus(t, e.req(t, "POST", "/groups", e.admin, map[string]any{"name": "plant-1"}), 201, "group")
	imp := func(q, ct, body string, token ...string) (thingimport.Report, resp) {
		t.Helper()
		tok := e.admin
		if len(token) > 0 {
			tok = token[0]
		}
		r := e.req(t, "POST", "/things:import"+q, tok, body, "Content-Type", ct)
		var rep thingimport.Report
		if r.status == 200 || r.status == 422 {
			if err := json.Unmarshal(r.body, &rep); err != nil {
				t.Fatalf("report: %v: %s", err, r.body)
			}
		}
		return rep, r
	}
	csvBody := "name,type,attributes.site,groups,credential\nc1,,berlin,plant-1,secret\nc2,,paris,,\nc3,nope,,,\n"
	rep, r := imp("", "text/csv", csvBody)
	if r.status != 422 || rep.Applied || rep.Errors != 3 {
		t.Fatalf("atomic import with a bad row = %d %s; want 422, nothing applied", r.status, r.body)
	}
	if _, err := e.reg.GetThing(ctx, "c1"); err == nil {
		t.Fatal("an atomic import with errors created c1")
	}
	rep, r = imp("?mode=bestEffort&dryRun=true", "text/csv", csvBody)
	if r.status != 200 || rep.Applied || rep.Created != 2 || !rep.DryRun {
		t.Fatalf("dry run = %d %s", r.status, r.body)
	}
	rep, r = imp("?mode=bestEffort", "text/csv; charset=utf-8", csvBody)
	if r.status != 200 || !rep.Applied || rep.Created != 2 || rep.Errors != 1 {
		t.Fatalf("bestEffort = %d %s", r.status, r.body)
	}
	var secret string
	for _, row := range rep.Rows {
		if row.Name == "c1" {
			secret = row.Secret
		}
		if row.Name == "c3" && (row.Line != 4 || !strings.Contains(row.Reason, `"nope" does not exist`)) {
			t.Errorf("c3 row = %+v", row)
		}
	}
	if secret == "" {
		t.Fatal("no secret for c1")
	}
	th, err := e.reg.GetThing(ctx, "c1")
	if err != nil || th.Attributes["site"] != "berlin" || len(th.Groups) != 1 {
		t.Errorf("c1 = %+v, %v", th, err)
	}
	// JSON lines; c2 again is unchanged.
	rep, r = imp("", "application/x-ndjson", `{"name":"j1","attributes":{"k":"v"}}`+"\n"+`{"name":"c2","attributes":{"site":"paris"}}`+"\n")
	if r.status != 200 || rep.Created != 1 || rep.Unchanged != 1 {
		t.Fatalf("jsonl = %d %s", r.status, r.body)
	}
	// Refusals.
	if _, r := imp("", "application/json", `{"name":"x"}`); r.status != http.StatusUnsupportedMediaType {
		t.Errorf("application/json = %d; want 415", r.status)
	}
	if _, r := imp("", "text/csv", "name,type\n\"x,sensor\n"); r.status != 400 || !strings.Contains(string(r.body), "line 2") {
		t.Errorf("malformed CSV = %d %s; want 400 naming line 2", r.status, r.body)
	}
	if _, r := imp("", "application/x-ndjson", "{\"name\":\"ok\"}\n{oops\n"); r.status != 400 || !strings.Contains(string(r.body), "line 2") {
		t.Errorf("malformed JSON line = %d %s; want 400 naming line 2", r.status, r.body)
	}
	big := "name\n" + strings.Repeat("thing-xxxxxxxxxxxxxxx\n", 4000) // > 64 KiB
	if _, r := imp("", "text/csv", big); r.status != http.StatusRequestEntityTooLarge {
		t.Errorf("a body over --import-max-size = %d; want 413", r.status)
	}
	var many strings.Builder
	many.WriteString("name\n")
	for i := range 101 {
		many.WriteString("m" + strings.Repeat("x", 3) + string(rune('a'+i%26)) + string(rune('a'+i/26)) + "\n")
	}
	if _, r := imp("", "text/csv", many.String()); r.status != http.StatusRequestEntityTooLarge || !strings.Contains(string(r.body), "100 rows") {
		t.Errorf("101 rows over --import-max-rows 100 = %d %s; want 413", r.status, r.body)
	}
	if _, r := imp("?mode=all", "text/csv", csvBody); r.status != 400 {
		t.Errorf("mode=all = %d; want 400", r.status)
	}
	_, viewer, _ := e.reg.CreateToken(ctx, "v", registry.RoleViewer, nil)
	if _, r := imp("", "text/csv", "name\nv1\n", viewer); r.status != http.StatusForbidden {
		t.Errorf("viewer import = %d; want 403", r.status)
	}
	// The audit log has the imports, their summaries, and no secret.
	entries, err := e.st.Audit().List(ctx, store.AuditFilter{Action: "thing.import", Limit: 100})
	if err != nil || len(entries) < 4 {
		t.Fatalf("thing.import entries = %d, %v", len(entries), err)
	}
	exp := e.req(t, "GET", "/audit/export", e.admin, nil)
	if bytes.Contains(exp.body, []byte(secret)) {
		t.Error("an imported secret appears in the audit log")
	}
	if !bytes.Contains(exp.body, []byte(`"created":2`)) {
		t.Errorf("no import summary in the audit log: %s", exp.body)
	}
}
