package httpapi

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// fuzzPost sends body to path through the real handler and checks that the
// answer is never a 500 and is either the created resource (whose "name"
// it returns) or a well-formed problem.
func fuzzPost(t *testing.T, e *env, path string, body []byte) string {
	r := httptest.NewRequest("POST", BasePath+path, bytes.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("Authorization", "Bearer "+e.admin)
	rec := httptest.NewRecorder()
	e.handler.ServeHTTP(rec, r)
	res := resp{status: rec.Code, header: rec.Header(), body: rec.Body.Bytes()}
	switch {
	case res.status >= 500:
		t.Fatalf("POST %s %q: %d %s", path, body, res.status, res.body)
	case res.status == http.StatusCreated:
		if ct := res.header.Get("Content-Type"); ct != "application/json" {
			t.Fatalf("201 with Content-Type %q", ct)
		}
		var m map[string]any
		if err := json.Unmarshal(res.body, &m); err != nil {
			t.Fatalf("201 body is not a JSON object: %v: %s", err, res.body)
		}
		name, _ := m["name"].(string)
		if name == "" || m["createdAt"] == nil {
			t.Fatalf("201 body is not a resource: %s", res.body)
		}
		return name
	default:
		if ct := res.header.Get("Content-Type"); ct != problemContentType {
			t.Fatalf("%d with Content-Type %q: %s", res.status, ct, res.body)
		}
		var p Problem
		dec := json.NewDecoder(bytes.NewReader(res.body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&p); err != nil {
			t.Fatalf("problem does not decode: %v: %s", err, res.body)
		}
		if p.Status != res.status || !strings.HasPrefix(p.Type, problemTypeBase) || p.Title == "" || p.Detail == "" || p.ErrorID != "" {
			t.Fatalf("bad problem for %d: %s", res.status, res.body)
		}
		if res.status != 400 && res.status != 409 && res.status != 413 {
			t.Fatalf("unexpected status %d: %s", res.status, res.body)
		}
	}
	return ""
}

func fuzzEnv(f *testing.F) *env {
	e := newEnv(f)
	e.ok(f, "POST", "/types", map[string]any{"name": "sensor"}, 201, nil)
	e.ok(f, "POST", "/groups", map[string]any{"name": "g1"}, 201, nil)
	e.ok(f, "POST", "/policies", map[string]any{"name": "p1", "document": allowDoc}, 201, nil)
	return e
}

// FuzzCreateThing: whatever the body of POST /things, the answer is a thing
// or a problem, never a 500, and a created thing reads back the same.
func FuzzCreateThing(f *testing.F) {
	for _, s := range []string{
		`{"name":"a"}`,
		`{"name":"b","type":"sensor","groups":["g1"],"policies":["p1"],"tags":["x"],"attributes":{"k":"v"},"enabled":false}`,
		`{"name":"c","attributes":{"":"v"}}`,
		`{"name":"d","tags":[""]}`,
		`{"name":"e","enabled":null,"type":null}`,
		`{"name":"\u0000"}`,
		`[]`, `null`, `{}`, `"x"`, `{"name":1}`,
	} {
		f.Add([]byte(s))
	}
	e := fuzzEnv(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		name := fuzzPost(t, e, "/things", body)
		if name == "" {
			return
		}
		var th map[string]any
		r := e.req(t, "GET", "/things/"+name, e.admin, nil)
		if r.status != 200 || json.Unmarshal(r.body, &th) != nil || th["name"] != name {
			t.Fatalf("created %q but GET says %d %s", name, r.status, r.body)
		}
	})
}

// FuzzCreatePolicy: likewise for POST /policies; a created policy's
// document must be valid.
func FuzzCreatePolicy(f *testing.F) {
	for _, s := range []string{
		`{"name":"a","document":{"statements":[{"effect":"allow","actions":["publish"],"topics":["things/${thing}/#"]}]}}`,
		`{"name":"b","description":"d","document":{"statements":[{"effect":"deny","actions":["subscribe","receive"],"topics":["+/#"]}]}}`,
		`{"name":"c","document":{"statements":[]}}`,
		`{"name":"d","document":{"statements":[{"effect":"allow","actions":["publish"],"topics":["a/#/b"]}]}}`,
		`{"name":"e","document":{"statements":[{"effect":"allow","actions":["publish"],"topics":["$share/g/t"]}]}}`,
		`{"name":"f","document":{"statements":[{"effect":"allow","actions":["publish"],"topics":["${nope}"]}]}}`,
		`{"name":"g","document":null}`,
		`{"name":"h","document":{"statements":[null]}}`,
	} {
		f.Add([]byte(s))
	}
	e := fuzzEnv(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		name := fuzzPost(t, e, "/policies", body)
		if name == "" {
			return
		}
		p, err := e.reg.GetPolicy(t.Context(), name)
		if err != nil {
			t.Fatalf("created %q: %v", name, err)
		}
		if err := p.Document.Validate(); err != nil {
			t.Fatalf("created %q with an invalid document: %v", name, err)
		}
	})
}
