package console_test

import (
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/moteiot/mote/internal/apiclient"
	"github.com/moteiot/mote/internal/console"
	"github.com/moteiot/mote/internal/daemontest"
)

// TestConsoleAuditPage: an admin sees the Audit page in the navigation;
// it lists the changes made through the API, filters them by target and
// pages to older entries.
func TestConsoleAuditPage(t *testing.T) {
	if !console.Built() {
		t.Skip("the console is not built (npm --prefix web ci && npm --prefix web run build); skipping the browser test")
	}
	s := daemontest.Start(t)
	c := apiclient.New(s.API, s.Token)
	for _, name := range []string{"pump-1", "pump-2"} {
		if _, err := c.CreateThing(t.Context(), apiclient.NewThing{Name: name}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 55 { // more than a page of 50
		if _, err := c.UpdateThing(t.Context(), "pump-2", apiclient.ThingPatch{Attributes: map[string]string{"n": strings.Repeat("x", i+1)}}); err != nil {
			t.Fatal(err)
		}
	}
	se := openBrowser(t)
	se.signIn(s.API, s.InitialPassword())
	se.run("the audit page lists the changes",
		chromedp.Click(`nav a[href="/audit"]`),
		chromedp.WaitVisible(`//tbody[@data-testid="audit-rows"]//code[text()="thing.update"]`, chromedp.BySearch),
		chromedp.WaitVisible(`//button[text()="Older entries"]`, chromedp.BySearch),
	)
	se.screenshot("audit-01-list")
	se.accessible("audit")
	var rows int
	se.run("older entries are appended",
		chromedp.Click(`//button[text()="Older entries"]`, chromedp.BySearch),
		chromedp.WaitVisible(`//tbody[@data-testid="audit-rows"]//td[text()="thing: pump-1"]`, chromedp.BySearch),
		chromedp.Evaluate(`document.querySelectorAll("[data-testid=audit-rows] tr").length`, &rows),
	)
	if rows < 57 {
		t.Errorf("after paging: %d rows; want at least 57 (2 creates, 55 updates)", rows)
	}
	se.run("filter by target",
		chromedp.SetValue(`input[name=target]`, "thing:pump-1"),
		chromedp.Click(`//button[text()="Filter"]`, chromedp.BySearch),
		chromedp.WaitNotPresent(`//tbody[@data-testid="audit-rows"]//td[text()="thing: pump-2"]`, chromedp.BySearch),
		chromedp.Evaluate(`document.querySelectorAll("[data-testid=audit-rows] tr").length`, &rows),
	)
	if rows != 1 {
		t.Errorf("filtered by thing:pump-1: %d rows; want 1", rows)
	}
	se.run("a thing's page links to its audit trail",
		chromedp.Navigate(s.API+"/things/pump-2"),
		chromedp.WaitVisible(`[data-testid=audit-trail]`),
		chromedp.Click(`[data-testid=audit-trail]`),
		chromedp.WaitVisible(`//tbody[@data-testid="audit-rows"]//td[text()="thing: pump-2"]`, chromedp.BySearch),
		chromedp.Evaluate(`[...document.querySelectorAll("[data-testid=audit-rows] tr td:nth-child(4)")].filter((td) => td.textContent !== "thing: pump-2").length`, &rows),
	)
	if rows != 0 {
		t.Errorf("pump-2's trail shows %d rows of other targets", rows)
	}
	se.b.check(t)
}
