package console_test

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/moteiot/mote/internal/apiclient"
	"github.com/moteiot/mote/internal/config"
	"github.com/moteiot/mote/internal/console"
	"github.com/moteiot/mote/internal/daemontest"
)

// TestDashboardsAndHistory builds a dashboard as a user would: two
// widgets (a time-series of temp over two things fed by real MQTT
// devices, and a latest-values table), saves it, reloads the page and
// finds both with data; full screen hides the navigation; the overview's
// history charts show points (a fast --stats-history-interval).
func TestDashboardsAndHistory(t *testing.T) {
	if !console.Built() {
		t.Skip("the console is not built (npm --prefix web ci && npm --prefix web run build); skipping the browser test")
	}
	s := daemontest.Start(t, func(c *config.Config) { c.StatsHistoryInterval = 200 * time.Millisecond })
	devs := map[string]*daemontest.V5{}
	for _, n := range []string{"dev1", "dev2"} {
		devs[n] = s.V5(t, n, s.Device(t, n))
	}
	publish := func(base int) {
		for i := range 3 {
			for j, n := range []string{"dev1", "dev2"} {
				if rc := devs[n].Pub(t, "things/"+n+"/telemetry", 1, false, fmt.Sprintf(`{"temp": %d}`, base+10*j+i)); rc >= 0x80 {
					t.Fatalf("publish: reason %#x", rc)
				}
			}
			// A point is stamped with the millisecond the server took it
			// in, and a chart draws one point per thing and millisecond:
			// on a fast disk three rounds fit in one millisecond.
			for t0 := time.Now().UnixMilli(); time.Now().UnixMilli() == t0; {
				runtime.Gosched()
			}
		}
	}
	publish(20) // dev1 ends at 22, dev2 at 32

	se := openBrowser(t)
	run := se.run
	se.signIn(s.API, s.InitialPassword())

	run("create a dashboard from the Dashboards page",
		chromedp.Click(`//nav//a[text()="Dashboards"]`, chromedp.BySearch),
		chromedp.WaitVisible(`input[name=name]`),
		chromedp.SendKeys(`input[name=name]`, "plant"),
		chromedp.SendKeys(`input[name=title]`, "Plant floor"),
		chromedp.Click(`//button[text()="Create dashboard"]`, chromedp.BySearch),
		chromedp.WaitVisible(`[data-testid=add-widget]`),
	)
	se.accessible("dashboard editor")
	addWidget := func(typ string) {
		t.Helper()
		run("add a "+typ+" widget",
			chromedp.SetValue(`select[name=type]`, typ),
			chromedp.Evaluate(`document.querySelector("select[name=type]").dispatchEvent(new Event("change"))`, nil),
			chromedp.SetValue(`input[name=things]`, "dev1, dev2"),
			chromedp.SetValue(`input[name=keys]`, "temp"),
			chromedp.Click(`//button[text()="Add widget"]`, chromedp.BySearch),
			chromedp.WaitVisible(`[data-widget=`+typ+`1]`),
		)
	}
	addWidget("timeseries")
	addWidget("latest")
	run("make the chart narrower, move the table up a row and save",
		chromedp.Click(`button[aria-label="Narrower timeseries1"]`),
		chromedp.Click(`button[aria-label="Move up latest1"]`),
		chromedp.Click(`[data-testid=save]`),
		chromedp.WaitVisible(`//span[@data-testid="save-status" and starts-with(text(), "Saved")]`, chromedp.BySearch),
	)
	se.screenshot("dashboard-01-edit")

	// Saved on the server: both widgets, version 2.
	c := &apiclient.Client{BaseURL: s.API, Token: s.Token}
	d, err := c.GetDashboard(context.Background(), "plant")
	if err != nil || d.Version != 2 || strings.Count(string(d.Widgets), `"id"`) != 2 || !strings.Contains(string(d.Widgets), `"w":5`) || !strings.Contains(string(d.Widgets), `"y":3`) {
		t.Fatalf("saved dashboard: %+v %s %v", d, d.Widgets, err)
	}

	publish(40) // dev1 ends at 42, dev2 at 52
	// Acknowledged is not yet stored: the telemetry store writes in
	// batches. The page reads history when it opens and then follows the
	// live stream, which carries only what is published after it, so
	// the reload comes once the points are stored.
	daemontest.WaitFor(t, 20*time.Second, func() error {
		for n, want := range map[string]float64{"dev1": 42, "dev2": 52} {
			pts, err := c.TelemetryLatest(context.Background(), n, []string{"temp"})
			if err != nil || len(pts) != 1 || pts[0].Value.Float() != want {
				return fmt.Errorf("%s: latest temp %v (%v); want %v", n, pts, err, want)
			}
		}
		return nil
	})
	run("reload: both widgets are there, with the data of both things",
		chromedp.Navigate(s.API+"/dashboards/plant"),
		chromedp.WaitVisible(`[data-testid=chart-timeseries1]`),
		chromedp.Poll(`(() => { const u = document.querySelector("[data-testid=chart-timeseries1]").uplot;
			return u && u.series.length === 3 && u.data[1].filter(v => v !== null).length >= 6 && u.data[2].filter(v => v !== null).length >= 6; })()`,
			nil, chromedp.WithPollingTimeout(15*time.Second)),
		chromedp.WaitVisible(`//td[@data-thing="dev1" and @data-key="temp" and text()="42"]`, chromedp.BySearch),
		chromedp.WaitVisible(`//td[@data-thing="dev2" and @data-key="temp" and text()="52"]`, chromedp.BySearch),
	)
	se.screenshot("dashboard-02-view")
	se.accessible("dashboard")

	var navShown, widgets bool
	run("full screen hides the navigation",
		chromedp.Click(`[data-testid=fullscreen]`),
		chromedp.WaitVisible(`[data-testid=exit-fullscreen]`),
		chromedp.WaitVisible(`[data-testid=chart-timeseries1]`),
		chromedp.Evaluate(`getComputedStyle(document.querySelector("header")).display !== "none"`, &navShown),
		chromedp.Evaluate(`!!document.querySelector("[data-widget=latest1] td[data-thing=dev1]")`, &widgets),
	)
	if navShown || !widgets {
		t.Errorf("full screen: navigation shown %v, widgets shown %v; want the widgets without the navigation", navShown, widgets)
	}
	se.screenshot("dashboard-03-fullscreen")
	run("leaving full screen brings the navigation back",
		chromedp.Click(`[data-testid=exit-fullscreen]`),
		chromedp.WaitVisible(`header nav`),
	)

	// The overview's history: points of messages, connected things.
	daemontest.WaitFor(t, 10*time.Second, func() error {
		h, err := c.GetStatsHistory(context.Background(), "1h")
		if err != nil {
			return err
		}
		for _, p := range h.Points {
			if p.Connected == 2 {
				return nil
			}
		}
		return fmt.Errorf("no history point with both devices connected yet (%d points)", len(h.Points))
	})
	run("the overview shows the history",
		chromedp.Navigate(s.API+"/"),
		chromedp.WaitVisible(`[data-testid=history-connected]`),
		chromedp.Poll(`(() => { const u = document.querySelector("[data-testid=history-connected]").uplot;
			const m = document.querySelector("[data-testid=history-messages]").uplot;
			return u && m && u.data[0].length > 0 && Math.max(...u.data[1]) === 2 && m.data[1].some(v => v > 0); })()`,
			nil, chromedp.WithPollingTimeout(15*time.Second)),
	)
	se.screenshot("overview-history")
	se.accessible("overview with history")
	se.b.check(t)
}
