package console_test

import (
	"context"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/moteiot/mote/internal/console"
	"github.com/moteiot/mote/internal/daemontest"
	"github.com/moteiot/mote/internal/store"
)

// TestThingsFleetQuery: the query box on the Things page lists the things
// that match a fleet query, and shows a syntax error with its line and
// column, with the caret put there.
func TestThingsFleetQuery(t *testing.T) {
	if !console.Built() {
		t.Skip("the console is not built (npm --prefix web ci && npm --prefix web run build); skipping the browser test")
	}
	s := daemontest.Start(t)
	ctx := context.Background()
	for _, th := range []store.Thing{
		{Name: "ams-1", Enabled: true, Attributes: map[string]string{"site": "ams"}},
		{Name: "ams-2", Enabled: true, Attributes: map[string]string{"site": "ams"}},
		{Name: "rtm-1", Enabled: true, Attributes: map[string]string{"site": "rtm"}},
	} {
		if _, err := s.Registry().CreateThing(ctx, th); err != nil {
			t.Fatal(err)
		}
	}
	se := openBrowser(t)
	se.signIn(s.API, s.InitialPassword())
	se.run("open the things page", chromedp.Navigate(s.API+"/things"), chromedp.WaitVisible(`tr[data-thing="rtm-1"]`))
	se.accessible("things with the query box")

	se.run("query the Amsterdam things",
		chromedp.SetValue(`[data-testid=fleet-query]`, "attributes.site = 'ams' AND name LIKE 'ams-*'"),
		chromedp.SendKeys(`[data-testid=fleet-query]`, kb.Enter),
		chromedp.WaitNotPresent(`tr[data-thing="rtm-1"]`),
		chromedp.WaitVisible(`tr[data-thing="ams-2"]`),
	)
	var total, url string
	se.run("read the count", chromedp.Text(`[data-testid=things-count]`, &total), chromedp.Location(&url))
	if !strings.Contains(total, "2 things") || !strings.Contains(url, "q=") {
		t.Errorf("count %q at %s; want 2 things and the query in the URL", total, url)
	}

	se.run("a query with an error on its second line",
		chromedp.SetValue(`[data-testid=fleet-query]`, "attributes.site = 'ams' AND\nconnected = 'yes'"),
		chromedp.SendKeys(`[data-testid=fleet-query]`, kb.Enter),
		chromedp.WaitVisible(`[data-testid=query-error]`),
	)
	var msg, value string
	var caret int
	se.run("read the error", chromedp.Text(`[data-testid=query-error]`, &msg),
		chromedp.Evaluate(`document.querySelector('[data-testid=fleet-query]').selectionStart`, &caret),
		chromedp.Evaluate(`document.querySelector('[data-testid=fleet-query]').value`, &value))
	if !strings.HasPrefix(msg, "at 2:13:") || !strings.Contains(msg, "connected is true or false") {
		t.Errorf("error shown = %q; want it at 2:13", msg)
	}
	// Enter searched and put no line break into the box.
	if value != "attributes.site = 'ams' AND\nconnected = 'yes'" {
		t.Errorf("the box holds %q after Enter; want the query as typed", value)
	}
	// Line 2, column 13 of what the box holds.
	if i := strings.Index(value, "connected"); i < 0 || caret != i+12 {
		t.Errorf("caret at %d in %q; want line 2, column 13 (offset %d)", caret, value, i+12)
	}
	se.screenshot("things-fleet-query-error")
}
