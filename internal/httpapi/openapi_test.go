package httpapi

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
)

var openAPIMethods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

// TestOpenAPIMatchesRoutes checks openapi.json against the route table the
// server registers: every route is documented, every documented operation
// is routed, path parameters agree, and every $ref resolves.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	var doc map[string]any
	if err := json.Unmarshal(openAPIDoc, &doc); err != nil {
		t.Fatalf("openapi.json is not JSON: %v", err)
	}
	if doc["openapi"] != "3.1.0" {
		t.Errorf("openapi = %v", doc["openapi"])
	}
	paths, _ := doc["paths"].(map[string]any)
	if len(paths) == 0 {
		t.Fatal("no paths")
	}

	routed := map[string]route{}
	for _, rt := range (&server{}).routes() {
		key := strings.ToLower(rt.method) + " " + rt.path
		if _, dup := routed[key]; dup {
			t.Errorf("route %s registered twice", key)
		}
		routed[key] = rt
		item, ok := paths[rt.path].(map[string]any)
		if !ok {
			t.Errorf("route %s %s: path missing from openapi.json", rt.method, rt.path)
			continue
		}
		op, ok := item[strings.ToLower(rt.method)].(map[string]any)
		if !ok {
			t.Errorf("route %s %s: method missing from openapi.json", rt.method, rt.path)
			continue
		}
		checkOperation(t, doc, rt, item, op)
	}
	for p, v := range paths {
		item, _ := v.(map[string]any)
		for m := range item {
			if !slices.Contains(openAPIMethods, m) {
				continue // parameters, summary, ...
			}
			if _, ok := routed[m+" "+p]; !ok {
				t.Errorf("openapi.json documents %s %s, which is not routed", strings.ToUpper(m), p)
			}
		}
	}

	// Every $ref resolves, and the components named in the brief exist.
	walkRefs(doc, func(ref string) {
		if _, err := resolve(doc, ref); err != nil {
			t.Errorf("$ref %s: %v", ref, err)
		}
	})
	for _, s := range []string{"Thing", "Credential", "NewCredential", "ThingType", "Group", "Policy", "Statement", "Token", "Problem"} {
		if _, err := resolve(doc, "#/components/schemas/"+s); err != nil {
			t.Errorf("schema %s: %v", s, err)
		}
	}
}

// checkOperation checks one documented operation against its route.
func checkOperation(t *testing.T, doc map[string]any, rt route, item, op map[string]any) {
	t.Helper()
	name := rt.method + " " + rt.path
	// Path parameters: exactly those in the path template.
	var want []string
	for seg := range strings.SplitSeq(rt.path, "/") {
		if strings.HasPrefix(seg, "{") {
			want = append(want, strings.Trim(seg, "{}"))
		}
	}
	var got []string
	for _, list := range []any{item["parameters"], op["parameters"]} {
		ps, _ := list.([]any)
		for _, p := range ps {
			pm, _ := p.(map[string]any)
			if ref, ok := pm["$ref"].(string); ok {
				r, err := resolve(doc, ref)
				if err != nil {
					continue // reported by the $ref walk
				}
				pm, _ = r.(map[string]any)
			}
			if pm["in"] == "path" {
				got = append(got, pm["name"].(string))
				if pm["required"] != true {
					t.Errorf("%s: path parameter %v not required", name, pm["name"])
				}
			}
		}
	}
	slices.Sort(want)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("%s: path parameters %v, want %v", name, got, want)
	}
	// Responses: a success and, behind auth, the auth problems.
	resps, _ := op["responses"].(map[string]any)
	var success bool
	for code := range resps {
		success = success || strings.HasPrefix(code, "2") || code == "302" // 302: a browser navigation (single sign-on)
	}
	if !success {
		t.Errorf("%s: no success response", name)
	}
	sec, hasSec := op["security"].([]any)
	public := hasSec && len(sec) == 0
	if public != (rt.role == rolePublic) {
		t.Errorf("%s: documented public=%v, routed role %q", name, public, rt.role)
	}
	if !public {
		for _, code := range []string{"401", "500"} {
			if _, ok := resps[code]; !ok {
				t.Errorf("%s: no %s response", name, code)
			}
		}
		if rt.role != roleView {
			if _, ok := resps["403"]; !ok {
				t.Errorf("%s: no 403 response", name)
			}
		}
		if op["x-mote-role"] != rt.role {
			t.Errorf("%s: x-mote-role %v, routed %q", name, op["x-mote-role"], rt.role)
		}
	}
	// A handler that decodes a body documents it (and vice versa).
	if _, ok := op["requestBody"]; ok {
		for _, code := range []string{"400", "413", "415"} {
			if _, ok := resps[code]; !ok {
				t.Errorf("%s: has a body but no %s response", name, code)
			}
		}
	}
}

func walkRefs(v any, fn func(string)) {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if s, ok := x.(string); ok && k == "$ref" {
				fn(s)
				continue
			}
			walkRefs(x, fn)
		}
	case []any:
		for _, x := range v {
			walkRefs(x, fn)
		}
	}
}

// resolve follows a local JSON pointer ref ("#/a/b").
func resolve(doc map[string]any, ref string) (any, error) {
	p, ok := strings.CutPrefix(ref, "#/")
	if !ok {
		return nil, fmt.Errorf("not a local reference")
	}
	var cur any = doc
	for tok := range strings.SplitSeq(p, "/") {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%q: not an object", tok)
		}
		if cur, ok = m[tok]; !ok {
			return nil, fmt.Errorf("%q not found", tok)
		}
	}
	return cur, nil
}
