package httpapi_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/moteiot/mote/internal/httpapi"
)

// TestScopedStats: GET /stats answers a principal scoped to groups with
// the counts of its things only (and neither rules nor message rates,
// which are fleet-wide), and the unscoped answer keeps them.
func TestScopedStats(t *testing.T) {
	f, ps := newAuthzFixture(t)
	root, sc, scTok := ps[2], ps[5], ps[9]
	if sc.name != "scoped operator session" || scTok.name != "scoped operator token" {
		t.Fatalf("fixture principals moved: %s, %s", sc.name, scTok.name)
	}
	// in-2 (in the user's dynamic group) is disabled: one disabled thing
	// in the user's scope, none in the token's.
	f.must(t, root, "PATCH", "/things/in-2", map[string]any{"enabled": false}, 200)
	f.must(t, root, "PATCH", "/things/out-1", map[string]any{"enabled": false}, 200)
	type stats struct {
		Things struct {
			Total, Connected, Disabled int
		}
		Rules    *json.RawMessage
		Messages *json.RawMessage
		Scoped   bool
	}
	read := func(p principal) stats {
		t.Helper()
		var st stats
		if err := json.Unmarshal(f.must(t, p, "GET", "/stats", nil, 200), &st); err != nil {
			t.Fatal(err)
		}
		return st
	}
	all := read(root)
	if all.Scoped || all.Rules == nil || all.Messages == nil || all.Things.Total != 3 || all.Things.Disabled != 2 {
		t.Errorf("GET /stats as admin = %+v; want 3 things, 2 disabled, rules and messages, not scoped", all)
	}
	user := read(sc)
	if !user.Scoped || user.Rules != nil || user.Messages != nil || user.Things.Total != 2 || user.Things.Disabled != 1 || user.Things.Connected != 0 {
		t.Errorf("GET /stats as the scoped user = %+v; want 2 things (in-1, in-2), 1 disabled, no rules or messages", user)
	}
	tok := read(scTok)
	if !tok.Scoped || tok.Things.Total != 1 || tok.Things.Disabled != 0 {
		t.Errorf("GET /stats as the scoped token = %+v; want 1 thing (in-1), none disabled", tok)
	}
	// The fleet-wide history stays refused.
	if code, _ := f.do(t, sc, "GET", "/stats/history", nil); code != 403 {
		t.Errorf("GET /stats/history as the scoped user: %d; want 403", code)
	}
}

// TestValidatePolicy: POST /policies:validate checks a document as POST
// /policies would and stores nothing; a syntax error names its line and
// column, a wrong value its field.
func TestValidatePolicy(t *testing.T) {
	f, ps := newAuthzFixture(t)
	vw := ps[4]
	if vw.role != "viewer" {
		t.Fatalf("fixture principal 4 is %s; want a viewer", vw.name)
	}
	post := func(body string) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest("POST", f.s.API+httpapi.BasePath+"/policies:validate", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if vw.authz != "" {
			req.Header.Set("Authorization", vw.authz)
		}
		if vw.cookie != "" {
			req.AddCookie(&http.Cookie{Name: httpapi.SessionCookie, Value: vw.cookie})
			req.Header.Set(httpapi.CSRFHeader, "1")
		}
		res, err := f.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		var m map[string]any
		json.Unmarshal(b, &m)
		return res.StatusCode, m
	}
	for _, c := range []struct {
		body, field, detail string
	}{
		{"{\n  \"statements\": [\n    {\"effect\": \"allow\",, }\n  ]\n}", "", "line 3, column 24"},
		{`{"statements": [{"effect": "allow", "actions": ["publish"], "topics": ["a/#/b"]}]}`, "statements[0].topics[0]", "a/#/b"},
		{`{"statements": [{"effect": "allow", "actions": ["publish"], "topics": ["a"]}, {"effect": "maybe"}]}`, "statements[1].effect", "maybe"},
		{`{"statements": [], "extra": 1}`, "extra", "extra"},
		{`{"statements": []} {}`, "", "line 1, column 20"},
		{`{"statements": [`, "", "line 1, column 17"},
		{``, "", "required"},
	} {
		code, m := post(c.body)
		field, _ := m["field"].(string)
		detail, _ := m["detail"].(string)
		if code != 400 || field != c.field || !strings.Contains(detail, c.detail) {
			t.Errorf("validate %q = %d field %q detail %q; want 400 field %q detail containing %q", c.body, code, field, detail, c.field, c.detail)
		}
	}
	code, m := post(`{"statements": [{"effect": "deny", "actions": ["receive"], "topics": ["things/${thing}/secret"]}]}`)
	if code != 200 || m["valid"] != true || m["statements"] != 1.0 {
		t.Errorf("a valid document: %d %v; want 200 valid, 1 statement", code, m)
	}
	// A huge document is refused, and nothing was stored.
	code, _ = post(`{"statements": [` + strings.Repeat(" ", int(httpapi.MaxBodyBytes)) + `]}`)
	if code != 413 {
		t.Errorf("a document beyond the body limit: %d; want 413", code)
	}
	if b := f.must(t, ps[2], "GET", "/policies", nil, 200); bytes.Count(b, []byte(`"name"`)) != 1 {
		t.Errorf("policies after validating: %s; want only the default", b)
	}
}
