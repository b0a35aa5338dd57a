package httpapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/httpapi/openapitest"
	"github.com/moteiot/mote/internal/store"
)

// specValidator checks every response of every handler New builds in this
// package's tests against openapi.json (loaded and compiled once).
var specValidator *openapitest.Validator

func init() {
	v, err := openapitest.Load(openAPIDoc)
	if err != nil {
		panic(err)
	}
	specValidator = v
	wrapForTest = v.Handler
}

// TestMain fails the run when any response did not match openapi.json,
// even one whose test did not look at the status.
func TestMain(m *testing.M) {
	code := m.Run()
	if testing.Verbose() {
		fmt.Fprintf(os.Stderr, "openapi.json: %d responses checked\n", specValidator.Checked())
	}
	if f := specValidator.Failures(); len(f) > 0 {
		fmt.Fprintf(os.Stderr, "%d responses do not match openapi.json:\n", len(f))
		for _, s := range f {
			fmt.Fprintln(os.Stderr, "  "+s)
		}
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

// TestOpenAPIValidatorCatchesWrongResponses: the validator is not a
// rubber stamp — a body that breaks the documented schema, an undocumented
// status and an undocumented content type are each refused, by the
// handler wrapper (599 with the reason) and by the client transport.
func TestOpenAPIValidatorCatchesWrongResponses(t *testing.T) {
	cases := []struct {
		name, path, ctype string
		status            int
		body              string
		want              string
	}{
		{"good thing", "/things/a", "application/json", 200,
			`{"name":"a","attributes":{},"tags":[],"groups":[],"policies":[],"enabled":true,"connected":false,"createdAt":"2026-01-01T00:00:00Z","updatedAt":"2026-01-01T00:00:00Z"}`, ""},
		{"missing required field", "/things/a", "application/json", 200,
			`{"name":"a","attributes":{},"tags":[],"groups":[],"policies":[],"connected":false,"createdAt":"2026-01-01T00:00:00Z","updatedAt":"2026-01-01T00:00:00Z"}`, "enabled"},
		{"wrong type", "/things/a", "application/json", 200,
			`{"name":"a","attributes":{},"tags":"x","groups":[],"policies":[],"enabled":true,"connected":false,"createdAt":"2026-01-01T00:00:00Z","updatedAt":"2026-01-01T00:00:00Z"}`, "tags"},
		{"undocumented field", "/things/a", "application/json", 200,
			`{"name":"a","hash":"c2VjcmV0","attributes":{},"tags":[],"groups":[],"policies":[],"enabled":true,"connected":false,"createdAt":"2026-01-01T00:00:00Z","updatedAt":"2026-01-01T00:00:00Z"}`, "hash"},
		{"undocumented field in a list item", "/things", "application/json", 200,
			`{"items":[{"name":"a","attributes":{},"tags":[],"groups":[],"policies":[],"enabled":true,"connected":false,"createdAt":"2026-01-01T00:00:00Z","updatedAt":"2026-01-01T00:00:00Z","Stats":{}}],"total":1}`, "stats"},
		{"undocumented status", "/things/a", "application/json", 418, `{}`, "status"},
		{"undocumented content type", "/things/a", "text/html", 200, `<p>hi</p>`, "content"},
		{"problem without title", "/things/a", "application/problem+json", 404, `{"status":"404"}`, "schema"},
		{"null where any value is allowed", "/profiles/p/compliance", "application/json", 200,
			`{"profile":"p","things":1,"compliant":0,"nonCompliant":1,"items":[{"thing":"t","compliant":false,"keys":1,"differing":[{"key":"a","desired":1,"reported":null}]}]}`, ""},
		{"null where a type is required", "/profiles/p/compliance", "application/json", 200,
			`{"profile":"p","things":1,"compliant":0,"nonCompliant":1,"items":[{"thing":null,"compliant":false,"keys":1,"differing":[]}]}`, "thing"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v := specValidator.Fork()
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", c.ctype)
				w.WriteHeader(c.status)
				w.Write([]byte(c.body))
			})
			srv := httptest.NewServer(v.Handler(h))
			defer srv.Close()
			res, err := srv.Client().Get(srv.URL + BasePath + c.path)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if c.want == "" {
				if res.StatusCode != c.status || len(v.Failures()) != 0 || v.Checked() != 1 {
					t.Fatalf("a valid response: status %d, failures %q, checked %d", res.StatusCode, v.Failures(), v.Checked())
				}
			} else {
				if res.StatusCode != openapitest.StatusInvalid {
					t.Errorf("handler wrapper: status %d; want %d", res.StatusCode, openapitest.StatusInvalid)
				}
				if f := v.Failures(); len(f) != 1 || !strings.Contains(strings.ToLower(f[0]), c.want) {
					t.Errorf("handler wrapper failures = %q; want one naming %q", f, c.want)
				}
			}

			// The same response through the client-side transport.
			v2 := specValidator.Fork()
			plain := httptest.NewServer(h)
			defer plain.Close()
			cl := &http.Client{Transport: v2.Transport(plain.Client().Transport)}
			res, err = cl.Get(plain.URL + BasePath + c.path)
			if res != nil {
				res.Body.Close()
			}
			if (err != nil) != (c.want != "") {
				t.Errorf("transport: err = %v; want an error: %v", err, c.want != "")
			}
		})
	}
}

// TestOpenAPIIsValidOpenAPI: openapi.json loads and passes kin-openapi's
// document validation (OpenAPI 3.1, every $ref resolved). The package's
// init loaded it into specValidator (and panics if it does not load):
// loading it a second time here took seconds under the race detector.
func TestOpenAPIIsValidOpenAPI(t *testing.T) {
	if specValidator == nil {
		t.Fatal("openapi.json was not loaded")
	}
	if _, err := openapitest.Load([]byte(`{"openapi":"3.1.0","paths":{}}`)); err == nil {
		t.Error("a document without info loaded; the check is not checking")
	}
}

// BenchmarkOpenAPICheck is what checking one response costs the tests: a
// page of 100 things against openapi.json.
func BenchmarkOpenAPICheck(b *testing.B) {
	benchThings := 100
	if s := os.Getenv("BENCH_THINGS"); s != "" {
		fmt.Sscan(s, &benchThings)
	}
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	page := thingList{Items: make([]thingJSON, benchThings), Total: benchThings}
	for i := range page.Items {
		page.Items[i] = thingOut(store.Thing{Name: fmt.Sprintf("t%d", i), Attributes: map[string]string{"site": "ams"}, CreatedAt: at, UpdatedAt: at})
	}
	body, err := json.Marshal(page)
	if err != nil {
		b.Fatal(err)
	}
	req := httptest.NewRequest("GET", BasePath+"/things", nil)
	h := http.Header{"Content-Type": {"application/json"}}
	v := specValidator.Fork()
	b.ResetTimer()
	for b.Loop() {
		if err := v.Check(req, 200, h, body, false); err != nil {
			b.Fatal(err)
		}
	}
}
