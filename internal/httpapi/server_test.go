package httpapi

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/moteiot/mote/internal/registry"
)

func TestAuthentication(t *testing.T) {
	e := newEnv(t)
	for _, auth := range []string{"", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", e.admin, "Bearer mote.tok_nope.nope",
		"Bearer " + e.admin + "x", "Bearer not-a-token"} {
		r := e.req(t, "GET", "/things", "", nil, "Authorization", auth)
		wantProblem(t, r, 401, "unauthorized", "")
		if h := r.header.Get("WWW-Authenticate"); !strings.HasPrefix(h, "Bearer") {
			t.Errorf("Authorization %q: WWW-Authenticate %q", auth, h)
		}
	}
	if r := e.req(t, "GET", "/things", "", nil, "Authorization", "bearer "+e.admin); r.status != 200 {
		t.Errorf("lower-case scheme: %d %s", r.status, r.body)
	}
	// Authentication comes before the input is looked at.
	wantProblem(t, e.req(t, "POST", "/things?bad=1", "", `{"bad"`), 401, "unauthorized", "")
}

func TestRoles(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	_, viewer, err := e.reg.CreateToken(ctx, "viewer", registry.RoleViewer, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, operator, err := e.reg.CreateToken(ctx, "operator", registry.RoleOperator, nil)
	if err != nil {
		t.Fatal(err)
	}
	e.ok(t, "POST", "/things", map[string]any{"name": "t"}, 201, nil)

	// viewer: reads only.
	for _, p := range []string{"/things", "/things/t", "/things/t/credentials", "/types", "/groups", "/policies", "/policies/default"} {
		if r := e.req(t, "GET", p, viewer, nil); r.status != 200 {
			t.Errorf("viewer GET %s: %d %s", p, r.status, r.body)
		}
	}
	wantProblem(t, e.req(t, "POST", "/things", viewer, `{"name":"v"}`), 403, "forbidden", "")
	wantProblem(t, e.req(t, "PATCH", "/things/t", viewer, `{"enabled":false}`), 403, "forbidden", "")
	wantProblem(t, e.req(t, "DELETE", "/things/t", viewer, nil), 403, "forbidden", "")
	wantProblem(t, e.req(t, "POST", "/things/t/credentials", viewer, `{"type":"secret"}`), 403, "forbidden", "")
	// A token of no user lists only itself (docs/users.md).
	if r := e.req(t, "GET", "/tokens", viewer, nil); r.status != 200 || strings.Count(string(r.body), `"id"`) != 1 || !strings.Contains(string(r.body), `"name":"viewer"`) {
		t.Errorf("viewer GET /tokens: %d %s; want only itself", r.status, r.body)
	}

	// operator: everything but other people's tokens, and no admin token.
	if r := e.req(t, "POST", "/things", operator, `{"name":"o"}`); r.status != 201 {
		t.Errorf("operator POST /things: %d %s", r.status, r.body)
	}
	if r := e.req(t, "DELETE", "/things/o", operator, nil); r.status != 204 {
		t.Errorf("operator DELETE /things/o: %d %s", r.status, r.body)
	}
	wantProblem(t, e.req(t, "POST", "/tokens", operator, `{"name":"x","role":"admin"}`), 403, "forbidden", "role")
	wantProblem(t, e.req(t, "DELETE", "/tokens/tok_x", operator, nil), 404, "not_found", "")
}

func TestRoutingProblems(t *testing.T) {
	e := newEnv(t)
	r := e.req(t, "PUT", "/things", e.admin, `{}`)
	wantProblem(t, r, 405, "method_not_allowed", "")
	if a := r.header.Get("Allow"); a != "GET, HEAD, POST" {
		t.Errorf("Allow %q", a)
	}
	r = e.req(t, "POST", "/things/x", e.admin, `{}`)
	wantProblem(t, r, 405, "method_not_allowed", "")
	if a := r.header.Get("Allow"); a != "DELETE, GET, HEAD, PATCH" {
		t.Errorf("Allow %q", a)
	}
	wantProblem(t, e.req(t, "GET", "/tokens/x", e.admin, nil), 405, "method_not_allowed", "")
	wantProblem(t, e.req(t, "DELETE", "/ca.pem", "", nil), 405, "method_not_allowed", "")
	for _, p := range []string{"/nope", "/things/x/nope", "/things/x/credentials/y/nope", "/", "/things/", "/thingsx"} {
		wantProblem(t, e.req(t, "GET", p, e.admin, nil), 404, "not_found", "")
	}
	// Outside /api/v1 too (the daemon mounts the handler at /api/v1/ only).
	res, err := http.Get(e.srv.URL + "/elsewhere")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 404 || res.Header.Get("Content-Type") != problemContentType {
		t.Errorf("GET /elsewhere: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
}

func TestBodyLimits(t *testing.T) {
	e := newEnv(t)
	big := `{"name":"big","attributes":{"a":"` + strings.Repeat("x", MaxBodyBytes) + `"}}`
	wantProblem(t, e.req(t, "POST", "/things", e.admin, big), 413, "too_large", "")
	// Just under the limit is fine as far as the body goes (the registry
	// then refuses the long attribute value).
	fits := `{"name":"big","attributes":{"a":"` + strings.Repeat("x", MaxBodyBytes-100) + `"}}`
	wantProblem(t, e.req(t, "POST", "/things", e.admin, fits), 400, "invalid", "attributes.a")
	// Chunked bodies are limited too.
	rq, _ := http.NewRequest("POST", e.srv.URL+"/api/v1/things", io.MultiReader(strings.NewReader(big)))
	rq.Header.Set("Content-Type", "application/json")
	rq.Header.Set("Authorization", "Bearer "+e.admin)
	rq.ContentLength = -1
	res, err := e.srv.Client().Do(rq)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 413 {
		t.Errorf("chunked: %d", res.StatusCode)
	}
}

func TestJSONContentTypes(t *testing.T) {
	e := newEnv(t)
	for i, ct := range []string{"application/json", "application/json; charset=utf-8", "Application/JSON", "application/merge-patch+json"} {
		body := `{"name":"t` + string(rune('0'+i)) + `"}`
		if r := e.req(t, "POST", "/things", e.admin, body, "Content-Type", ct); r.status != 201 {
			t.Errorf("Content-Type %q: %d %s", ct, r.status, r.body)
		}
	}
	for _, ct := range []string{"text/plain", "application/x-www-form-urlencoded", "multipart/form-data", "application/jsonx", "garbage;;"} {
		wantProblem(t, e.req(t, "POST", "/things", e.admin, `{"name":"u"}`, "Content-Type", ct), 415, "unsupported_media_type", "")
	}
}

// TestInternalErrors: a failing store gives a 500 whose detail reveals
// only an error id, and the id is in the log next to the real error.
func TestInternalErrors(t *testing.T) {
	e := newEnv(t)
	if err := e.st.Close(); err != nil {
		t.Fatal(err)
	}
	p := wantProblem(t, e.req(t, "GET", "/things", e.admin, nil), 500, "internal", "")
	if p.Detail != "internal error, id "+p.ErrorID || len(p.ErrorID) < 16 {
		t.Fatalf("problem %+v", p)
	}
	logs := e.logs.String()
	if !strings.Contains(logs, p.ErrorID) || !strings.Contains(logs, "level=ERROR") {
		t.Fatalf("error id %s not logged:\n%s", p.ErrorID, logs)
	}
}

func TestPanicsAndErrorsInHandlers(t *testing.T) {
	logs := &syncBuffer{}
	s := &server{log: slog.New(slog.NewTextHandler(logs, nil))}
	mux := http.NewServeMux()
	mux.Handle("GET /panic", s.adapt(route{"GET", "/panic", rolePublic, func(w http.ResponseWriter, r *http.Request) error {
		panic("boom: secret detail")
	}}))
	mux.Handle("GET /fail", s.adapt(route{"GET", "/fail", rolePublic, func(w http.ResponseWriter, r *http.Request) error {
		return errors.New("db password is hunter2")
	}}))
	for _, path := range []string{"/panic", "/fail"} {
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		r := resp{status: rec.Code, header: rec.Header(), body: rec.Body.Bytes()}
		p := wantProblem(t, r, 500, "internal", "")
		if strings.Contains(string(r.body), "secret") || strings.Contains(string(r.body), "hunter2") {
			t.Errorf("%s leaks: %s", path, r.body)
		}
		if !strings.Contains(logs.String(), p.ErrorID) {
			t.Errorf("%s: error id not logged: %s", path, logs)
		}
	}
	if !strings.Contains(logs.String(), "boom: secret detail") || !strings.Contains(logs.String(), "hunter2") {
		t.Errorf("the causes are not logged: %s", logs)
	}
}

func TestMetrics(t *testing.T) {
	e := newEnv(t)
	e.ok(t, "POST", "/things", map[string]any{"name": "m1"}, 201, nil)
	e.ok(t, "GET", "/things/m1", nil, 200, nil)
	e.req(t, "GET", "/things/m2", e.admin, nil)
	e.req(t, "GET", "/no/such/path/12345", e.admin, nil)
	mfs, err := e.metrics.Gather()
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]float64{}
	var sawDuration bool
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
				if strings.Contains(l.GetValue(), "m1") || strings.Contains(l.GetValue(), "12345") {
					t.Errorf("%s has a raw path label: %v", mf.GetName(), l)
				}
			}
			switch mf.GetName() {
			case "mote_http_requests_total":
				counts[labels["method"]+" "+labels["route"]+" "+labels["code"]] += m.GetCounter().GetValue()
			case "mote_http_request_duration_seconds":
				sawDuration = sawDuration || labels["route"] == "/api/v1/things/{name}" && m.GetHistogram().GetSampleCount() == 2
			}
		}
	}
	for k, want := range map[string]float64{
		"POST /api/v1/things 201":       1,
		"GET /api/v1/things/{name} 200": 1,
		"GET /api/v1/things/{name} 404": 1,
		"GET (unmatched) 404":           1,
	} {
		if counts[k] != want {
			t.Errorf("requests_total{%s} = %v, want %v (all: %v)", k, counts[k], want, counts)
		}
	}
	if !sawDuration {
		t.Error("no duration histogram for /api/v1/things/{name}")
	}
	// A second handler on the same registry shares the collectors.
	New(Options{Registry: e.reg, Metrics: e.metrics})
}
