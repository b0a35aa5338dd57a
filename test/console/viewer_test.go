package console_test

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/moteiot/mote/internal/apiclient"
	"github.com/moteiot/mote/internal/console"
	"github.com/moteiot/mote/internal/daemontest"
)

// writeControls lists, on the current page, the controls that would
// change something: buttons and links whose text or label starts with a
// verb of change, and forms that are not search or filter forms.
const writeControls = `(() => {
  const verb = /^(new|create|add|delete|remove|edit|save|disable|enable|ack|acknowledge|clear|cancel|upload|send|invoke|set|verify|revoke|draw|apply|reset|print|validate|done editing)\b/i;
  const found = [];
  for (const e of document.querySelectorAll('main button, main a.button, main input[type=checkbox], main input[type=submit]')) {
    const name = (e.getAttribute('aria-label') || e.textContent || e.name || '').trim();
    if (verb.test(name)) found.push(name);
    if (e.type === 'checkbox') found.push('checkbox ' + (e.name || e.getAttribute('aria-label') || ''));
  }
  for (const f of document.querySelectorAll('main form')) {
    if (f.getAttribute('role') === 'search' || f.classList.contains('filters')) continue;
    found.push('form ' + (f.getAttribute('aria-label') || f.querySelector('h2')?.textContent || ''));
  }
  return found;
})()`

// TestConsoleViewerAndScoped: a viewer is offered nothing it may not do
// on any page, and the server still refuses it if it asks directly; a
// user scoped to a group sees an overview of its own things, without
// errors.
func TestConsoleViewerAndScoped(t *testing.T) {
	if !console.Built() {
		t.Skip("the console is not built (npm --prefix web ci && npm --prefix web run build); skipping the browser test")
	}
	s := daemontest.Start(t)
	ctx := context.Background()
	c := apiclient.New(s.API, s.Token)
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(c.CreateGroup(ctx, apiclient.NewGroup{Name: "plant-3"}))
	must(c.CreateThing(ctx, apiclient.NewThing{Name: "p3-a", Groups: []string{"plant-3"}}))
	must(c.CreateThing(ctx, apiclient.NewThing{Name: "p3-b", Groups: []string{"plant-3"}}))
	must(c.CreateThing(ctx, apiclient.NewThing{Name: "elsewhere"}))
	must(c.UpdateThing(ctx, "p3-b", apiclient.ThingPatch{Enabled: new(bool)}))
	must(c.CreateType(ctx, apiclient.NewType{Name: "thermo"}))
	must(c.CreateRule(ctx, apiclient.RuleInput{Name: "temp-high", SQL: "SELECT temp FROM 'things/+/telemetry' WHERE temp > 50"}))
	must(c.CreateJob(ctx, json.RawMessage(`{"jobId": "reboot-1", "targets": {"things": ["p3-a"]}, "document": {"op": "reboot"}}`)))
	must(c.CreateDashboard(ctx, json.RawMessage(`{"name": "floor", "title": "Floor", "widgets": []}`)))
	must(c.CreateEnrollment(ctx, apiclient.Enrollment{Name: "factory", Attestation: apiclient.Attestation{Type: "symmetricKey"}}))
	must(c.CreateClaim(ctx, apiclient.NewClaim{Thing: "kiosk-1"}))
	must(c.CreateUser(ctx, "vw", "viewer password", "viewer", nil))
	must(c.CreateUser(ctx, "sc", "scoped password", "viewer", []string{"plant-3"}))

	se := openBrowser(t)
	signInAs := func(user, password string) {
		t.Helper()
		se.run("sign in as "+user, chromedp.Navigate(s.API+"/"), chromedp.WaitVisible(`input[name=password]`),
			chromedp.SetValue(`input[name=user]`, user),
			chromedp.SendKeys(`input[name=password]`, password),
			chromedp.Click(`form.login button[type=submit]`),
			chromedp.WaitVisible(`[data-testid=things-total]`))
	}
	signInAs("vw", "viewer password")
	pages := []struct{ path, ready string }{
		{"/", `//*[@data-testid="things-total"][text()="3"]`},
		{"/things", `//tr[@data-thing="p3-a"]`},
		{"/things/p3-a", `//*[@data-testid="state"]`},
		{"/rules", `//td[contains(., "temp-high")]`},
		{"/jobs", `//tr[@data-job="reboot-1"]`},
		{"/jobs/reboot-1", `//td[contains(., "p3-a")]`},
		{"/alarms", `//h1[contains(., "Alarms")]`},
		{"/map", `//h2[@id="fences-h"]`},
		{"/dashboards", `//a[text()="floor"]`},
		{"/dashboards/floor", `//*[@data-testid="dashboard-grid"]`},
		{"/profiles", `//td[contains(., "No profiles yet")]`},
		{"/groups", `//tr[@data-group="plant-3"]//td[@data-testid="member-count"][text()="2"]`},
		{"/types", `//tr[@data-type="thermo"]`},
		{"/policies", `//tr[@data-policy="default"]`},
		{"/enrollments", `//tr[@data-enrollment="factory"]`},
		{"/claims", `//tr[@data-claim]`},
		{"/users", `//p[contains(., "Only admins manage users")]`},
	}
	for _, p := range pages {
		var found []string
		// In the app, as its links do: a full load per page can outwait
		// the event streams of the page before.
		se.run("open "+p.path+" as a viewer", chromedp.Evaluate(`history.pushState(null, "", `+strconv.Quote(p.path)+`); dispatchEvent(new PopStateEvent("popstate"))`, nil),
			chromedp.WaitVisible(p.ready, chromedp.BySearch),
			chromedp.Evaluate(writeControls, &found))
		if len(found) > 0 {
			t.Errorf("%s offers a viewer %q", p.path, found)
		}
	}
	se.screenshot("viewer-thing")
	var navUsers int
	se.run("no users page in the nav", chromedp.Evaluate(`document.querySelectorAll('nav a[href="/users"], nav a[href="/audit"]').length`, &navUsers))
	if navUsers != 0 {
		t.Errorf("a viewer is offered the users or audit page")
	}

	// The server refuses the viewer all the same, asked directly with its
	// session and the console's header.
	claims, _, err := c.ListClaims(ctx, apiclient.ListOptions{})
	if err != nil || len(claims) != 1 {
		t.Fatalf("claims %v, %v", claims, err)
	}
	for _, call := range [][3]string{
		{"POST", "/things", `{"name": "sneaky"}`},
		{"PATCH", "/things/p3-a", `{"enabled": false}`},
		{"DELETE", "/things/p3-a", ``},
		{"POST", "/groups", `{"name": "g2"}`},
		{"POST", "/types", `{"name": "t2"}`},
		{"POST", "/policies", `{"name": "p2", "document": {"statements": []}}`},
		{"PATCH", "/enrollments/factory", `{"enabled": false}`},
		{"DELETE", "/claims/" + claims[0].ID, ``},
		{"POST", "/rules", `{"name": "r2", "sql": "SELECT * FROM 'a'"}`},
		{"POST", "/jobs/reboot-1/cancel", `{}`},
		{"POST", "/dashboards", `{"name": "d2", "widgets": []}`},
		{"POST", "/users", `{"name": "u2", "password": "long enough pw", "role": "admin"}`},
	} {
		var status int
		js := `fetch("/api/v1` + call[1] + `", {method: "` + call[0] + `", credentials: "same-origin", headers: {"X-Mote-Console": "1", "Content-Type": "application/json"}` +
			map[bool]string{true: ``, false: `, body: ` + "`" + call[2] + "`"}[call[2] == ""] + `}).then(r => r.status)`
		se.run("call "+call[0]+" "+call[1]+" as the viewer", chromedp.Evaluate(js, &status, func(p *runtime.EvaluateParams) *runtime.EvaluateParams { return p.WithAwaitPromise(true) }))
		if status != 403 {
			t.Errorf("%s %s as a viewer: %d; want 403", call[0], call[1], status)
		}
	}
	se.b.forget("status of 403 (Forbidden)") // the refusals asked for
	if th, err := c.GetThing(ctx, "p3-a"); err != nil || !th.Enabled {
		t.Errorf("p3-a after the viewer's calls: %+v, %v; want it unchanged", th, err)
	}

	// A viewer scoped to plant-3: the overview counts its two things, one
	// disabled, and shows no error; the fleet-wide pages are not offered.
	se.run("sign out", chromedp.Click(`//button[text()="Sign out"]`, chromedp.BySearch), chromedp.WaitVisible(`input[name=password]`))
	signInAs("sc", "scoped password")
	var total, disabled string
	var alerts, fleetLinks int
	se.run("the scoped overview",
		chromedp.WaitVisible(`//*[@data-testid="things-total"][text()="2"]`, chromedp.BySearch),
		chromedp.WaitVisible(`[data-testid=scoped-note]`),
		chromedp.Text(`[data-testid=things-total]`, &total),
		chromedp.Text(`[data-testid=things-disabled]`, &disabled),
		chromedp.Evaluate(`[...document.querySelectorAll('main [role=alert]')].filter(e => !e.hidden).length`, &alerts),
		chromedp.Evaluate(`document.querySelectorAll('nav a[href="/policies"], nav a[href="/enrollments"], nav a[href="/claims"], nav a[href="/rules"], nav a[href="/profiles"], nav a[href="/map"]').length`, &fleetLinks))
	if total != "2" || !strings.Contains(disabled, "1 disabled") || alerts != 0 || fleetLinks != 0 {
		t.Errorf("scoped overview: total %q, %q, %d errors shown, %d fleet-wide links; want 2, 1 disabled, none, none", total, disabled, alerts, fleetLinks)
	}
	se.accessible("scoped overview")
	se.screenshot("overview-scoped")
	se.b.check(t)
}
