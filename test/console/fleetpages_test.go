package console_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"

	"github.com/moteiot/mote/internal/apiclient"
	"github.com/moteiot/mote/internal/console"
	"github.com/moteiot/mote/internal/daemontest"
)

// TestConsoleFleetPages: an admin works the Groups, Types, Policies,
// Enrollment groups and Claim tokens pages, and every change lands in the
// API; the policy editor refuses a wrong document with its position
// before saving; a claim's QR code prints alone; a thing's page shows its
// audit trail.
func TestConsoleFleetPages(t *testing.T) {
	if !console.Built() {
		t.Skip("the console is not built (npm --prefix web ci && npm --prefix web run build); skipping the browser test")
	}
	s := daemontest.Start(t)
	ctx := context.Background()
	c := apiclient.New(s.API, s.Token)
	if _, err := c.CreateGroup(ctx, apiclient.NewGroup{Name: "plant"}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"pump-1", "pump-2"} {
		if _, err := c.CreateThing(ctx, apiclient.NewThing{Name: n, Groups: []string{"plant"}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.CreateThing(ctx, apiclient.NewThing{Name: "valve-9"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateType(ctx, apiclient.NewType{Name: "thermo", Model: json.RawMessage(`{"telemetry":{"temp":{"unit":"°C","type":"number"}}}`)}); err != nil {
		t.Fatal(err)
	}
	se := openBrowser(t)
	se.signIn(s.API, s.InitialPassword())
	se.run("no confirmation dialogs", chromedp.Evaluate(`window.confirm = () => true`, nil))

	// Groups: member counts; a dynamic group; a member added by hand.
	var count string
	se.run("open the groups page", chromedp.Navigate(s.API+"/groups"),
		chromedp.Evaluate(`window.confirm = () => true`, nil),
		chromedp.WaitVisible(`tr[data-group="plant"] [data-testid=member-count]`),
		chromedp.Text(`tr[data-group="plant"] [data-testid=member-count]`, &count))
	if count != "2" {
		t.Errorf("plant's member count = %q; want 2", count)
	}
	se.run("create a dynamic group",
		chromedp.Click(`//button[text()="New group"]`, chromedp.BySearch),
		chromedp.SendKeys(`form[aria-label="New group"] input[name=name]`, "pumps"),
		chromedp.SendKeys(`form[aria-label="New group"] input[name=query]`, "name LIKE 'pump-*'"),
		chromedp.Click(`form[aria-label="New group"] button[type=submit]`),
		chromedp.WaitVisible(`tr[data-group="pumps"]`))
	se.run("add valve-9 to plant",
		chromedp.Click(`button[aria-label="Members of plant"]`),
		chromedp.WaitVisible(`[data-testid=members] li[data-member="pump-1"]`),
		chromedp.SendKeys(`[data-testid=members] input[name=member]`, "valve-9"),
		chromedp.Click(`[data-testid=members] form button[type=submit]`),
		chromedp.WaitVisible(`[data-testid=members] li[data-member="valve-9"]`))
	se.accessible("groups")
	se.screenshot("groups")
	g, err := c.GetGroup(ctx, "pumps")
	if err != nil || g.Query == "" {
		t.Errorf("the group created on the page: %+v, %v; want a dynamic group", g, err)
	}
	daemontest.WaitFor(t, 10*time.Second, func() error {
		th, err := c.GetThing(ctx, "valve-9")
		if err != nil || len(th.Groups) != 1 || th.Groups[0] != "plant" {
			return fmt.Errorf("valve-9 = %+v, %v; want in plant", th, err)
		}
		return nil
	})

	// Types: create, edit the description, the device model read-only.
	se.run("open the types page", chromedp.Navigate(s.API+"/types"), chromedp.WaitVisible(`tr[data-type="thermo"]`),
		chromedp.Click(`//button[text()="New type"]`, chromedp.BySearch),
		chromedp.SendKeys(`form[aria-label="New type"] input[name=name]`, "valve"),
		chromedp.SendKeys(`form[aria-label="New type"] input[name=description]`, "A valve"),
		chromedp.Click(`form[aria-label="New type"] button[type=submit]`),
		chromedp.WaitVisible(`tr[data-type="valve"]`),
		chromedp.Click(`button[aria-label="Edit type valve"]`),
		chromedp.SetValue(`form[aria-label="Edit type valve"] input[name=description]`, "A water valve"),
		chromedp.Click(`form[aria-label="Edit type valve"] button[type=submit]`),
		chromedp.WaitVisible(`//tr[@data-type="valve"]//small[contains(., "A water valve")]`, chromedp.BySearch),
		chromedp.Click(`button[aria-label="Device model of thermo"]`),
		chromedp.WaitVisible(`[data-testid=type-model] pre`))
	var model string
	se.run("read the model", chromedp.Text(`[data-testid=type-model] pre`, &model))
	if !strings.Contains(model, "°C") {
		t.Errorf("the model shown = %q; want thermo's", model)
	}
	se.accessible("types")
	se.screenshot("types")
	if ty, err := c.GetType(ctx, "valve"); err != nil || ty.Description != "A water valve" {
		t.Errorf("type valve = %+v, %v; want the edited description", ty, err)
	}

	// Policies: a wrong document is pointed at and not saved; a right one is.
	bad := "{\n  \"statements\": [\n    {\"effect\": \"allow\", \"actions\": [\"publish\"], \"topics\": [\"sensors/#/x\"]}\n  ]\n}"
	broken := "{\n  \"statements\": [\n    {\"effect\": \"allow\",, }\n  ]\n}"
	good := "{\n  \"statements\": [\n    {\"effect\": \"allow\", \"actions\": [\"publish\"], \"topics\": [\"sensors/${thing}/#\"]}\n  ]\n}"
	var verdict string
	var caret int
	se.run("open the policies page", chromedp.Navigate(s.API+"/policies"), chromedp.WaitVisible(`tr[data-policy="default"]`),
		chromedp.Click(`//button[text()="New policy"]`, chromedp.BySearch),
		chromedp.SendKeys(`form[aria-label="New policy"] input[name=name]`, "sensors"),
		chromedp.SetValue(`form[aria-label="New policy"] textarea[name=document]`, broken),
		chromedp.Click(`form[aria-label="New policy"] button[type=submit]`),
		chromedp.WaitVisible(`[data-testid=policy-validation].error`),
		chromedp.Text(`[data-testid=policy-validation]`, &verdict),
		chromedp.Evaluate(`document.querySelector('textarea[name=document]').selectionStart`, &caret))
	if !strings.Contains(verdict, "line 3, column 24") || caret != strings.Index(broken, ",,")+1 {
		t.Errorf("a syntax error: %q, caret at %d; want line 3, column 24 and the caret on the second comma (%d)", verdict, caret, strings.Index(broken, ",,")+1)
	}
	se.run("a wrong topic", chromedp.SetValue(`form[aria-label="New policy"] textarea[name=document]`, bad),
		chromedp.Click(`//form[@aria-label="New policy"]//button[text()="Validate"]`, chromedp.BySearch),
		chromedp.WaitVisible(`//*[@data-testid="policy-validation"][contains(., "statements[0].topics[0]")]`, chromedp.BySearch))
	se.accessible("policies with the editor")
	se.screenshot("policies-invalid")
	if _, err := c.GetPolicy(ctx, "sensors"); err == nil {
		t.Errorf("a policy with a wrong document was saved")
	}
	se.run("save a right one", chromedp.SetValue(`form[aria-label="New policy"] textarea[name=document]`, good),
		chromedp.Click(`form[aria-label="New policy"] button[type=submit]`),
		chromedp.WaitVisible(`tr[data-policy="sensors"]`))
	if p, err := c.GetPolicy(ctx, "sensors"); err != nil || !strings.Contains(string(p.Document), "sensors/${thing}/#") {
		t.Errorf("policy sensors = %+v, %v; want the document typed", p, err)
	}
	se.screenshot("policies")
	se.b.forget("status of 400 (Bad Request) " + s.API + "/api/v1/policies:validate") // the refusals the editor showed

	// Enrollment groups: a symmetric-key group's key shown once; disable.
	var key string
	se.run("open the enrollments page", chromedp.Navigate(s.API+"/enrollments"),
		chromedp.Evaluate(`window.confirm = () => true`, nil),
		chromedp.WaitVisible(`//button[text()="New enrollment group"]`, chromedp.BySearch),
		chromedp.Click(`//button[text()="New enrollment group"]`, chromedp.BySearch),
		chromedp.SendKeys(`form[aria-label="New enrollment group"] input[name=name]`, "factory"),
		chromedp.SendKeys(`form[aria-label="New enrollment group"] input[name=groups]`, "plant"),
		chromedp.Click(`form[aria-label="New enrollment group"] button[type=submit]`),
		chromedp.WaitVisible(`[data-testid=primary-key]`),
		chromedp.Value(`[data-testid=primary-key]`, &key),
		chromedp.WaitVisible(`tr[data-enrollment="factory"]`))
	if len(key) < 32 {
		t.Errorf("primary key shown = %q; want the base64 key", key)
	}
	se.accessible("enrollments")
	se.screenshot("enrollments")
	se.run("disable it", chromedp.Click(`button[aria-label="Disable factory"]`), chromedp.WaitVisible(`button[aria-label="Enable factory"]`))
	if e, err := c.GetEnrollment(ctx, "factory"); err != nil || e.Enabled == nil || *e.Enabled {
		t.Errorf("enrollment factory = %+v, %v; want disabled", e, err)
	}

	// Claim tokens: the token and its QR once; printing shows the QR alone.
	var token, qrSrc string
	var navVisible, qrVisible string
	se.run("open the claims page", chromedp.Navigate(s.API+"/claims"),
		chromedp.Evaluate(`window.confirm = () => true`, nil),
		chromedp.WaitVisible(`form[aria-label="New claim token"]`),
		chromedp.SendKeys(`form[aria-label="New claim token"] input[name=thing]`, "kiosk-7"),
		chromedp.SendKeys(`form[aria-label="New claim token"] input[name=ttl]`, "72h"),
		chromedp.Click(`form[aria-label="New claim token"] button[type=submit]`),
		chromedp.WaitVisible(`[data-testid=claim-qr] img`),
		chromedp.Value(`[data-testid=claim-token]`, &token),
		chromedp.AttributeValue(`[data-testid=claim-qr] img`, "src", &qrSrc, nil),
		chromedp.WaitVisible(`tr[data-claim]`))
	if !strings.HasPrefix(token, "mclaim_") || !strings.HasPrefix(qrSrc, "data:image/png;base64,") {
		t.Errorf("claim shown: token %q, QR %.40q; want an mclaim_ token and a PNG", token, qrSrc)
	}
	se.accessible("claims")
	se.screenshot("claims")
	se.run("print", emulation.SetEmulatedMedia().WithMedia("print"),
		chromedp.Evaluate(`getComputedStyle(document.querySelector('nav')).visibility`, &navVisible),
		chromedp.Evaluate(`getComputedStyle(document.querySelector('[data-testid=claim-qr] img')).visibility`, &qrVisible),
		emulation.SetEmulatedMedia().WithMedia(""))
	if navVisible != "hidden" || qrVisible != "visible" {
		t.Errorf("printed: nav %s, QR %s; want the QR alone", navVisible, qrVisible)
	}
	claims, _, err := c.ListClaims(ctx, apiclient.ListOptions{})
	if err != nil || len(claims) != 1 || claims[0].Thing != "kiosk-7" {
		t.Fatalf("claims = %+v, %v; want kiosk-7's", claims, err)
	}
	se.run("revoke it", chromedp.Click(`button[aria-label="Revoke claim `+claims[0].ID+`"]`),
		chromedp.WaitVisible(`//td[contains(., "No claim tokens")]`, chromedp.BySearch))
	if claims, _, _ = c.ListClaims(ctx, apiclient.ListOptions{}); len(claims) != 0 {
		t.Errorf("claims after revoking = %+v; want none", claims)
	}

	// The thing's audit trail: valve-9 was added to plant on the page.
	var trail string
	se.run("open valve-9", chromedp.Navigate(s.API+"/things/valve-9"),
		chromedp.WaitVisible(`[data-testid=thing-audit] table`),
		chromedp.Text(`[data-testid=thing-audit]`, &trail))
	if !strings.Contains(trail, "thing.update") || !strings.Contains(trail, "thing.create") {
		t.Errorf("valve-9's audit trail = %q; want its creation and the update from the groups page", trail)
	}
	se.screenshot("thing-audit")
	se.b.check(t)
}

// forget drops the browser's logged errors that contain substr: the ones
// a test caused on purpose.
func (b *browser) forget(substr string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	kept := b.errors[:0]
	for _, e := range b.errors {
		if !strings.Contains(e, substr) {
			kept = append(kept, e)
		}
	}
	b.errors = kept
}
