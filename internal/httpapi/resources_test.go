package httpapi

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
)

func TestTypes(t *testing.T) {
	e := newEnv(t)
	e.ok(t, "POST", "/policies", map[string]any{"name": "p1", "document": allowDoc}, 201, nil)
	ty := e.obj(t, "POST", "/types", map[string]any{"name": "sensor", "description": "a sensor", "policies": []string{"p1"}}, 201)
	if got, want := keys(ty), "createdAt,description,name,policies,updatedAt"; got != want {
		t.Fatalf("keys %s, want %s", got, want)
	}
	if ty["name"] != "sensor" || ty["description"] != "a sensor" || fmt.Sprint(ty["policies"]) != "[p1]" {
		t.Fatalf("type %v", ty)
	}
	wantProblem(t, e.req(t, "POST", "/types", e.admin, `{"name":"sensor"}`), 409, "conflict", "")
	wantProblem(t, e.req(t, "POST", "/types", e.admin, `{"name":"a/b"}`), 400, "invalid", "name")
	wantProblem(t, e.req(t, "POST", "/types", e.admin, `{"name":"t2","policies":["nope"]}`), 400, "invalid", "policies")
	wantProblem(t, e.req(t, "POST", "/types", e.admin, `{"name":"t2","polices":[]}`), 400, "invalid", "polices")

	// PATCH keeps what is absent.
	ty = e.obj(t, "PATCH", "/types/sensor", map[string]any{"description": "changed"}, 200)
	if ty["description"] != "changed" || fmt.Sprint(ty["policies"]) != "[p1]" {
		t.Fatalf("patch description: %v", ty)
	}
	ty = e.obj(t, "PATCH", "/types/sensor", map[string]any{"policies": []string{}}, 200)
	if ty["description"] != "changed" || fmt.Sprint(ty["policies"]) != "[]" {
		t.Fatalf("patch policies: %v", ty)
	}
	wantProblem(t, e.req(t, "PATCH", "/types/ghost", e.admin, `{}`), 404, "not_found", "")
	wantProblem(t, e.req(t, "PATCH", "/types/sensor", e.admin, `{"name":"x"}`), 400, "invalid", "name")

	ty = e.obj(t, "GET", "/types/sensor", nil, 200)
	if ty["description"] != "changed" {
		t.Fatalf("get: %v", ty)
	}
	for i := range 5 {
		e.ok(t, "POST", "/types", map[string]any{"name": fmt.Sprintf("t%d", i)}, 201, nil)
	}
	items, next := e.items(t, "/types?limit=4")
	if len(items) != 4 || next == "" {
		t.Fatalf("page 1: %d %q", len(items), next)
	}
	items2, next2 := e.items(t, "/types?limit=4&cursor="+next)
	if len(items2) != 2 || next2 != "" || items2[0]["name"] == items[3]["name"] {
		t.Fatalf("page 2: %v %q", items2, next2)
	}
	wantProblem(t, e.req(t, "GET", "/types?prefix=t", e.admin, nil), 400, "invalid", "prefix")

	// A used type cannot be deleted.
	e.ok(t, "POST", "/things", map[string]any{"name": "s1", "type": "sensor"}, 201, nil)
	wantProblem(t, e.req(t, "DELETE", "/types/sensor", e.admin, nil), 409, "conflict", "")
	e.ok(t, "DELETE", "/things/s1", nil, 204, nil)
	e.ok(t, "DELETE", "/types/sensor", nil, 204, nil)
	wantProblem(t, e.req(t, "GET", "/types/sensor", e.admin, nil), 404, "not_found", "")
	wantProblem(t, e.req(t, "DELETE", "/types/sensor", e.admin, nil), 404, "not_found", "")
}

func TestGroups(t *testing.T) {
	e := newEnv(t)
	g := e.obj(t, "POST", "/groups", map[string]any{"name": "floor-1", "description": "first floor"}, 201)
	if got, want := keys(g), "createdAt,description,dynamic,name,updatedAt"; got != want {
		t.Fatalf("keys %s, want %s", got, want)
	}
	wantProblem(t, e.req(t, "POST", "/groups", e.admin, `{"name":"floor-1"}`), 409, "conflict", "")
	wantProblem(t, e.req(t, "POST", "/groups", e.admin, `{"name":""}`), 400, "invalid", "name")
	g = e.obj(t, "PATCH", "/groups/floor-1", map[string]any{"description": "ground"}, 200)
	if g["description"] != "ground" {
		t.Fatalf("patch: %v", g)
	}
	if g = e.obj(t, "GET", "/groups/floor-1", nil, 200); g["description"] != "ground" {
		t.Fatalf("get: %v", g)
	}
	wantProblem(t, e.req(t, "PATCH", "/groups/ghost", e.admin, `{"description":"x"}`), 404, "not_found", "")
	items, _ := e.items(t, "/groups")
	if len(items) != 1 || items[0]["name"] != "floor-1" {
		t.Fatalf("list: %v", items)
	}

	// Members stay without the membership.
	e.ok(t, "POST", "/things", map[string]any{"name": "m", "groups": []string{"floor-1"}}, 201, nil)
	if items, _ := e.items(t, "/things?group=floor-1"); len(items) != 1 {
		t.Fatalf("members: %v", items)
	}
	e.ok(t, "DELETE", "/groups/floor-1", nil, 204, nil)
	if th := e.obj(t, "GET", "/things/m", nil, 200); fmt.Sprint(th["groups"]) != "[]" {
		t.Fatalf("member after group delete: %v", th)
	}
	wantProblem(t, e.req(t, "GET", "/groups/floor-1", e.admin, nil), 404, "not_found", "")
}

func TestPolicies(t *testing.T) {
	e := newEnv(t)
	p := e.obj(t, "POST", "/policies", map[string]any{"name": "telemetry", "description": "d", "document": allowDoc}, 201)
	if got, want := keys(p), "builtin,createdAt,description,document,name,updatedAt"; got != want {
		t.Fatalf("keys %s, want %s", got, want)
	}
	doc, _ := json.Marshal(p["document"])
	want, _ := json.Marshal(allowDoc)
	if string(doc) != string(want) || p["builtin"] != false {
		t.Fatalf("policy %v", p)
	}
	wantProblem(t, e.req(t, "POST", "/policies", e.admin, map[string]any{"name": "telemetry", "document": allowDoc}), 409, "conflict", "")

	bad := func(st map[string]any) map[string]any {
		return map[string]any{"name": "bad", "document": map[string]any{"statements": []any{st}}}
	}
	for name, tc := range map[string]struct {
		body  any
		field string
	}{
		"no document": {map[string]any{"name": "bad"}, "document"},
		"null doc":    {map[string]any{"name": "bad", "document": nil}, "document"},
		"bad name":    {map[string]any{"name": "a b", "document": allowDoc}, "name"},
		"effect":      {bad(map[string]any{"effect": "maybe", "actions": []string{"publish"}, "topics": []string{"a"}}), "document.statements[0].effect"},
		"action":      {bad(map[string]any{"effect": "allow", "actions": []string{"publish", "fly"}, "topics": []string{"a"}}), "document.statements[0].actions[1]"},
		"topic":       {bad(map[string]any{"effect": "allow", "actions": []string{"publish"}, "topics": []string{"a/#/b"}}), "document.statements[0].topics[0]"},
		"unknown":     {bad(map[string]any{"effect": "allow", "actions": []string{"publish"}, "topics": []string{"a"}, "resource": "x"}), "resource"},
		"type":        {map[string]any{"name": "bad", "document": map[string]any{"statements": "all"}}, "document.statements"},
	} {
		r := e.req(t, "POST", "/policies", e.admin, tc.body)
		t.Run(name, func(t *testing.T) { wantProblem(t, r, 400, "invalid", tc.field) })
	}
	wantProblem(t, e.req(t, "GET", "/policies/bad", e.admin, nil), 404, "not_found", "")

	// PUT replaces description and document.
	newDoc := map[string]any{"statements": []any{
		map[string]any{"effect": "deny", "actions": []string{"subscribe", "receive"}, "topics": []string{"things/+/secret"}},
	}}
	p = e.obj(t, "PUT", "/policies/telemetry", map[string]any{"document": newDoc}, 200)
	doc, _ = json.Marshal(p["document"])
	want, _ = json.Marshal(newDoc)
	if string(doc) != string(want) || p["description"] != "" {
		t.Fatalf("after PUT: %v", p)
	}
	got := e.obj(t, "GET", "/policies/telemetry", nil, 200)
	if doc, _ = json.Marshal(got["document"]); string(doc) != string(want) {
		t.Fatalf("stored: %s", doc)
	}
	// Sending back what GET returned, minus the read-only fields, works.
	e.ok(t, "PUT", "/policies/telemetry", map[string]any{"name": "telemetry", "description": "x", "document": newDoc}, 200, nil)
	wantProblem(t, e.req(t, "PUT", "/policies/telemetry", e.admin, map[string]any{"name": "other", "document": newDoc}), 400, "invalid", "name")
	wantProblem(t, e.req(t, "PUT", "/policies/telemetry", e.admin, map[string]any{"description": "no doc"}), 400, "invalid", "document")
	wantProblem(t, e.req(t, "PUT", "/policies/ghost", e.admin, map[string]any{"document": newDoc}), 404, "not_found", "")

	items, _ := e.items(t, "/policies")
	if len(items) != 2 || items[0]["name"] != "default" || items[0]["builtin"] != true || items[1]["name"] != "telemetry" {
		t.Fatalf("list: %v", items)
	}

	// Delete detaches everywhere; the default policy stays.
	e.ok(t, "POST", "/things", map[string]any{"name": "th", "policies": []string{"telemetry"}}, 201, nil)
	e.ok(t, "DELETE", "/policies/telemetry", nil, 204, nil)
	if th := e.obj(t, "GET", "/things/th", nil, 200); fmt.Sprint(th["policies"]) != "[]" {
		t.Fatalf("thing after policy delete: %v", th)
	}
	wantProblem(t, e.req(t, "DELETE", "/policies/telemetry", e.admin, nil), 404, "not_found", "")
	wantProblem(t, e.req(t, "DELETE", "/policies/default", e.admin, nil), 409, "conflict", "")
	// ... but it can be edited.
	e.ok(t, "PUT", "/policies/default", map[string]any{"description": "edited", "document": newDoc}, 200, nil)
	if d := e.obj(t, "GET", "/policies/default", nil, 200); d["description"] != "edited" || d["builtin"] != true {
		t.Fatalf("default: %v", d)
	}
}

func TestTokens(t *testing.T) {
	e := newEnv(t)
	tok := e.obj(t, "POST", "/tokens", map[string]any{"name": "dashboard", "role": "viewer"}, 201)
	if got, want := keys(tok), "createdAt,id,name,role,token"; got != want {
		t.Fatalf("keys %s, want %s", got, want)
	}
	viewer := tok["token"].(string)
	id := tok["id"].(string)
	if !strings.HasPrefix(viewer, "mote."+id+".") || tok["role"] != "viewer" {
		t.Fatalf("token %v", tok)
	}

	if r := e.req(t, "GET", "/things", viewer, nil); r.status != 200 {
		t.Fatalf("viewer GET: %d %s", r.status, r.body)
	}
	wantProblem(t, e.req(t, "POST", "/things", viewer, `{"name":"x"}`), 403, "forbidden", "")

	// Default role admin; expiry.
	adm := e.obj(t, "POST", "/tokens", map[string]any{"name": "ci", "expiresAt": "2099-01-01T00:00:00Z"}, 201)
	if adm["role"] != "admin" || adm["expiresAt"] != "2099-01-01T00:00:00Z" {
		t.Fatalf("token %v", adm)
	}
	wantProblem(t, e.req(t, "POST", "/tokens", e.admin, `{"name":"x","role":"root"}`), 400, "invalid", "role")
	wantProblem(t, e.req(t, "POST", "/tokens", e.admin, `{"role":"viewer"}`), 400, "invalid", "name")
	wantProblem(t, e.req(t, "POST", "/tokens", e.admin, `{"name":"x","expiresAt":"2001-01-01T00:00:00Z"}`), 400, "invalid", "expiresAt")
	wantProblem(t, e.req(t, "POST", "/tokens", e.admin, `{"name":"x","expiresAt":"soon"}`), 400, "invalid", "expiresAt")

	r := e.ok(t, "GET", "/tokens", nil, 200, nil)
	if strings.Contains(r.String(), viewer) || strings.Contains(r.String(), `"token"`) || strings.Contains(r.String(), "hash") {
		t.Fatalf("list shows secrets: %s", r)
	}
	items, _ := e.items(t, "/tokens")
	if len(items) != 3 {
		t.Fatalf("tokens: %v", items)
	}
	page1, next := e.items(t, "/tokens?limit=2")
	page2, next2 := e.items(t, "/tokens?limit=2&cursor="+next)
	if len(page1) != 2 || next == "" || len(page2) != 1 || next2 != "" || page2[0]["id"] != items[2]["id"] {
		t.Fatalf("token pages: %v %q %v %q", page1, next, page2, next2)
	}

	e.ok(t, "DELETE", "/tokens/"+id, nil, 204, nil)
	wantProblem(t, e.req(t, "GET", "/things", viewer, nil), 401, "unauthorized", "")
	wantProblem(t, e.req(t, "DELETE", "/tokens/"+id, e.admin, nil), 404, "not_found", "")
}

func TestPublicEndpoints(t *testing.T) {
	e := newEnv(t)
	res, err := http.Get(e.srv.URL + "/api/v1/ca.pem")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != "application/x-pem-file" {
		t.Fatalf("ca.pem: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("ca.pem: %s", b)
	}
	ca, err := x509.ParseCertificate(blk.Bytes)
	if err != nil || !ca.IsCA {
		t.Fatalf("ca.pem: %v %v", err, ca)
	}
	if string(b) != string(e.reg.CACertPEM()) {
		t.Fatal("ca.pem is not the registry's CA")
	}

	res, err = http.Get(e.srv.URL + "/api/v1/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(res.Body)
	res.Body.Close()
	var doc map[string]any
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != "application/json" || json.Unmarshal(b, &doc) != nil || doc["openapi"] != "3.1.0" {
		t.Fatalf("openapi.json: %d %s", res.StatusCode, b[:min(len(b), 200)])
	}
}
