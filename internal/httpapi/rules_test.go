package httpapi

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/moteiot/mote/internal/registry"
	"github.com/moteiot/mote/internal/ruleengine"
)

// newRulesEnv is newEnv with a rules engine behind /rules.
func newRulesEnv(t *testing.T) (*env, *ruleengine.Engine) {
	t.Helper()
	e := newEnv(t)
	log := slog.New(slog.NewTextHandler(e.logs, nil))
	eng := ruleengine.New(ruleengine.Options{Store: e.st.Rules(), Logger: log})
	if err := eng.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { eng.Close() })
	srv := httptest.NewServer(New(Options{Registry: e.reg, Rules: eng, Logger: log, Metrics: prometheus.NewRegistry()}))
	t.Cleanup(srv.Close)
	e.srv = srv
	return e, eng
}

// TestRuleSecrets: webhook header values and URL passwords are shown to
// admins only; a viewer and an operator get "***" in list and get; an
// update that sends "***" back keeps the stored value; "***" where no
// stored value exists is refused.
func TestRuleSecrets(t *testing.T) {
	e, eng := newRulesEnv(t)
	ctx := context.Background()
	_, viewer, err := e.reg.CreateToken(ctx, "viewer", registry.RoleViewer, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, operator, err := e.reg.CreateToken(ctx, "operator", registry.RoleOperator, nil)
	if err != nil {
		t.Fatal(err)
	}
	const (
		url      = "https://hooks:s3cr3t-pw@example.com/in?x=1"
		redacted = "https://hooks:***@example.com/in?x=1"
		auth     = "Bearer very-secret-token"
	)
	body := `{"name":"hook","sql":"SELECT * FROM 'things/+/events'",
		"actions":[{"type":"webhook","url":"` + url + `","headers":{"Authorization":"` + auth + `","X-Env":"prod"}}],
		"errorAction":{"type":"webhook","url":"https://errs:err-pw@example.com/e","headers":{"X-Key":"err-key"}}}`
	if r := e.req(t, "POST", "/rules", operator, body); r.status != 201 || strings.Contains(string(r.body), "s3cr3t") ||
		strings.Contains(string(r.body), "very-secret") {
		t.Fatalf("operator create: %d %s; want 201 with the secrets redacted", r.status, r.body)
	}

	type action struct {
		URL     string            `json:"url"`
		Headers map[string]string `json:"headers"`
	}
	type rule struct {
		Actions     []action `json:"actions"`
		ErrorAction action   `json:"errorAction"`
	}
	get := func(token, path string) rule {
		t.Helper()
		r := e.req(t, "GET", path, token, nil)
		if r.status != 200 {
			t.Fatalf("GET %s: %d %s", path, r.status, r.body)
		}
		var out rule
		if strings.HasPrefix(path, "/rules?") || path == "/rules" {
			var l struct{ Items []rule }
			if err := json.Unmarshal(r.body, &l); err != nil || len(l.Items) != 1 {
				t.Fatalf("GET %s: %v %s", path, err, r.body)
			}
			out = l.Items[0]
		} else if err := json.Unmarshal(r.body, &out); err != nil {
			t.Fatal(err)
		}
		return out
	}
	for _, tok := range []struct{ name, token string }{{"viewer", viewer}, {"operator", operator}} {
		for _, path := range []string{"/rules/hook", "/rules?limit=1&cursor=hoo"} {
			r := get(tok.token, path)
			a := r.Actions[0]
			if a.URL != redacted || a.Headers["Authorization"] != "***" || a.Headers["X-Env"] != "***" ||
				r.ErrorAction.URL != "https://errs:***@example.com/e" || r.ErrorAction.Headers["X-Key"] != "***" {
				t.Errorf("%s GET %s: %+v; want secrets redacted", tok.name, path, r)
			}
		}
	}
	r := get(e.admin, "/rules/hook")
	if a := r.Actions[0]; a.URL != url || a.Headers["Authorization"] != auth || r.ErrorAction.Headers["X-Key"] != "err-key" {
		t.Errorf("admin GET: %+v; want the secrets", r)
	}

	// The operator resends what it read, redacted, with a changed header:
	// the stored secrets stay, the change is taken.
	put := `{"sql":"SELECT * FROM 'things/+/events'",
		"actions":[{"type":"webhook","url":"` + redacted + `","headers":{"Authorization":"***","X-Env":"staging"}}],
		"errorAction":{"type":"webhook","url":"https://errs:***@example.com/e","headers":{"X-Key":"***"}}}`
	if r := e.req(t, "PUT", "/rules/hook", operator, put); r.status != 200 {
		t.Fatalf("PUT with placeholders: %d %s", r.status, r.body)
	}
	stored, err := eng.Get(ctx, "hook")
	if err != nil {
		t.Fatal(err)
	}
	if s := string(stored.Actions) + string(stored.ErrorAction); !strings.Contains(s, "s3cr3t-pw") || !strings.Contains(s, auth) ||
		!strings.Contains(s, `"X-Env":"staging"`) || !strings.Contains(s, "err-pw") || !strings.Contains(s, "err-key") || strings.Contains(s, "***") {
		t.Errorf("stored after PUT: %s %s; want the old secrets and the new X-Env", stored.Actions, stored.ErrorAction)
	}

	// A placeholder with nothing to keep: a new header, a new URL, a new rule.
	wantProblem(t, e.req(t, "PUT", "/rules/hook", operator, `{"sql":"SELECT * FROM 'a'",
		"actions":[{"type":"webhook","url":"`+redacted+`","headers":{"X-New":"***"}}]}`), 400, "invalid", "actions[0].headers")
	wantProblem(t, e.req(t, "PUT", "/rules/hook", operator, `{"sql":"SELECT * FROM 'a'",
		"actions":[{"type":"webhook","url":"https://hooks:***@other.example.com/"}]}`), 400, "invalid", "actions[0].url")
	wantProblem(t, e.req(t, "POST", "/rules", operator, `{"name":"copy","sql":"SELECT * FROM 'a'",
		"actions":[{"type":"webhook","url":"`+redacted+`"}]}`), 400, "invalid", "actions[0].url")

	// Secrets are not in the logs.
	if l := e.logs.String(); strings.Contains(l, "s3cr3t") || strings.Contains(l, "very-secret") || strings.Contains(l, "err-key") {
		t.Errorf("secrets in the logs:\n%s", l)
	}
}

// TestRuleMetricsInAPI: GET /rules/{name} carries the rule's counters.
func TestRuleMetricsInAPI(t *testing.T) {
	e, _ := newRulesEnv(t)
	m := e.obj(t, "GET", "/rules/telemetry", nil, 200)
	met, ok := m["metrics"].(map[string]any)
	if !ok {
		t.Fatalf("no metrics: %v", m)
	}
	for _, k := range []string{"matched", "errors", "actionsFailed", "actionsDropped", "dropped", "breakerOpen"} {
		if _, ok := met[k]; !ok {
			t.Errorf("metrics lack %s: %v", k, met)
		}
	}
}
