package httpapi

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/moteiot/mote/internal/registry"
	"github.com/moteiot/mote/internal/store"
)

func TestShadowRoutes(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if _, err := e.reg.CreateThing(ctx, store.Thing{Name: "dev", Enabled: true}); err != nil {
		t.Fatal(err)
	}
	_, viewer, err := e.reg.CreateToken(ctx, "viewer", registry.RoleViewer, nil)
	if err != nil {
		t.Fatal(err)
	}

	acc := e.obj(t, "POST", "/things/dev/shadows/classic", `{"state":{"desired":{"a":1}},"clientToken":"x"}`, 200)
	if acc["version"] != 1.0 || acc["clientToken"] != "x" {
		t.Errorf("accepted: %v", acc)
	}
	got := e.obj(t, "GET", "/things/dev/shadows/classic", nil, 200)
	if d, _ := got["state"].(map[string]any)["delta"].(map[string]any); d["a"] != 1.0 {
		t.Errorf("get: %v", got)
	}

	// Viewers read but do not write.
	if r := e.req(t, "GET", "/things/dev/shadows/classic", viewer, nil); r.status != 200 {
		t.Errorf("viewer GET: %d", r.status)
	}
	wantProblem(t, e.req(t, "POST", "/things/dev/shadows/classic", viewer, `{"state":{}}`), 403, "forbidden", "")
	wantProblem(t, e.req(t, "DELETE", "/things/dev/shadows/classic", viewer, nil), 403, "forbidden", "")

	// Shadow errors keep their AWS code as the status.
	wantProblem(t, e.req(t, "POST", "/things/dev/shadows/classic", e.admin, `{"state":{},"version":5}`), 409, "conflict", "")
	wantProblem(t, e.req(t, "POST", "/things/dev/shadows/classic", e.admin, `[]`), 400, "invalid", "")
	wantProblem(t, e.req(t, "POST", "/things/dev/shadows/classic", e.admin, "{\"state\":{\"desired\":{\"a\":\"\xff\"}}}"), 415, "unsupported_media_type", "")
	wantProblem(t, e.req(t, "POST", "/things/dev/shadows/classic", e.admin, `{"state":{}}`, "Content-Type", "text/plain"), 415, "unsupported_media_type", "")
	wantProblem(t, e.req(t, "POST", "/things/dev/shadows/classic", e.admin, ``), 400, "invalid", "")
	wantProblem(t, e.req(t, "GET", "/things/dev/shadows/nope", e.admin, nil), 404, "not_found", "")
	wantProblem(t, e.req(t, "GET", "/things/dev/shadows/"+strings.Repeat("n", 65), e.admin, nil), 400, "invalid", "shadow")
	wantProblem(t, e.req(t, "GET", "/things/dev/shadows/classic?x=1", e.admin, nil), 400, "invalid", "x")
	wantProblem(t, e.req(t, "GET", "/things/no-such/shadows", e.admin, nil), 404, "not_found", "")
	wantProblem(t, e.req(t, "PUT", "/things/dev/shadows/classic", e.admin, `{}`), 405, "method_not_allowed", "")

	del := e.obj(t, "DELETE", "/things/dev/shadows/classic", nil, 200)
	if del["version"] != 1.0 {
		t.Errorf("delete: %v", del)
	}
	items, next := e.items(t, "/things/dev/shadows")
	if len(items) != 0 || next != "" {
		t.Errorf("list after delete: %v", items)
	}
	acc = e.obj(t, "POST", "/things/dev/shadows/classic", `{"state":{"reported":{"b":true}}}`, 200)
	if acc["version"] != 2.0 {
		t.Errorf("re-created: %v", acc)
	}
	var raw json.RawMessage
	e.ok(t, "GET", "/things/dev/shadows", nil, 200, &raw)
	if !strings.Contains(string(raw), `"name":"classic","version":2`) {
		t.Errorf("list: %s", raw)
	}
}

func TestShadowRoutesDisabled(t *testing.T) {
	e := newEnv(t)
	h := New(Options{Registry: e.reg})
	req := httptest.NewRequest("GET", BasePath+"/things/dev/shadows/classic", nil)
	req.Header.Set("Authorization", "Bearer "+e.admin)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	if w.Code != 503 {
		t.Errorf("without a shadow service: %d %s", w.Code, w.Body)
	}
}
