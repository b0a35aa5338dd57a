package console_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/moteiot/mote/internal/apiclient"
	"github.com/moteiot/mote/internal/console"
	"github.com/moteiot/mote/internal/daemontest"
	"github.com/moteiot/mote/internal/sim"
	"github.com/moteiot/mote/internal/store"
)

// TestNewUserGeofenceScenario is issue 15's new user: the simulator runs
// in-process with the geofence scenario (at 4× speed: the van leaves its
// fence about 6 s after the start); in Chromium the user sees the van
// move on the map, the geofence alarm appear on the Alarms page with its
// badge, acknowledges it, builds a dashboard with two widgets through the
// editor, saves it, reloads it and sees both widgets with the van's data.
func TestNewUserGeofenceScenario(t *testing.T) {
	if !console.Built() {
		t.Skip("the console is not built (npm --prefix web ci && npm --prefix web run build); skipping the browser test")
	}
	s := daemontest.Start(t)
	ctx, stop := context.WithCancel(context.Background())
	c := apiclient.New(s.API, s.Token)
	ids, _, err := sim.Provision(ctx, c, sim.ProvisionOptions{Devices: 1, Prefix: "van"})
	if err != nil {
		t.Fatal(err)
	}
	van := ids[0].Thing
	sc, err := sim.NewScenario(sim.ScenarioGeofence, 4, 2, ids[0])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sc.EnsureRule(ctx, c, sim.DefaultType); err != nil {
		t.Fatal(err)
	}
	fleet, err := sim.NewFleet(ids, sim.Options{MQTTAddr: s.MQTT, Rate: 2, Scenario: sc, APIBase: s.API, HTTPClient: &http.Client{Timeout: 10 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- fleet.Run(ctx) }()
	t.Cleanup(func() { stop(); <-done })

	se := openBrowser(t)
	run := se.run
	se.signIn(s.API, s.InitialPassword())

	var first []any
	run("the van is on the map",
		chromedp.Click(`nav a[href="/map"]`),
		chromedp.WaitVisible(`[data-testid=fleet-map] .map-pin[title="`+van+`"]`),
		chromedp.Evaluate(markerJS("[data-testid=fleet-map]", van), &first),
	)
	se.screenshot("newuser-01-map")
	if len(first) < 2 {
		t.Fatalf("marker of %s: %v", van, first)
	}
	var moved bool
	run("the van's marker moves",
		chromedp.Poll(`(() => { const m = `+markerJS("[data-testid=fleet-map]", van)+`;
			return !!m && (m[0] !== `+jsNum(first[0])+` || m[1] !== `+jsNum(first[1])+`); })()`,
			&moved, chromedp.WithPollingTimeout(15*time.Second)),
	)
	se.screenshot("newuser-02-moved")

	var id string
	run("the geofence alarm appears on the Alarms page, with its badge",
		chromedp.Click(`nav a[href="/alarms"]`),
		chromedp.WaitVisible(`tr[data-thing="`+van+`"][data-type="`+sc.AlarmType()+`"][data-status=active]`),
		chromedp.WaitVisible(`[data-testid=alarms-major]`),
		chromedp.AttributeValue(`tr[data-thing="`+van+`"][data-type="`+sc.AlarmType()+`"]`, "data-alarm", &id, nil),
	)
	se.screenshot("newuser-03-alarm")
	run("acknowledge it",
		chromedp.Click(`tr[data-alarm="`+id+`"] button[aria-label^="Acknowledge"]`),
		chromedp.WaitVisible(`//p[@data-testid="alarm-notice" and contains(text(), "acknowledged")]`, chromedp.BySearch),
	)
	if a, err := c.GetAlarm(ctx, id); err != nil || a.Status != store.AlarmAcknowledged {
		t.Fatalf("after Acknowledge in the console: %+v, %v; want it acknowledged", a, err)
	}

	run("create a dashboard",
		chromedp.Click(`//nav//a[text()="Dashboards"]`, chromedp.BySearch),
		chromedp.WaitVisible(`input[name=name]`),
		chromedp.SendKeys(`input[name=name]`, "vans"),
		chromedp.SendKeys(`input[name=title]`, "My vans"),
		chromedp.Click(`//button[text()="Create dashboard"]`, chromedp.BySearch),
		chromedp.WaitVisible(`[data-testid=add-widget]`),
	)
	for _, w := range []struct{ typ, keys string }{{"timeseries", "lat"}, {"latest", "lat, speed"}} {
		run("add a "+w.typ+" widget",
			chromedp.SetValue(`select[name=type]`, w.typ),
			chromedp.Evaluate(`document.querySelector("select[name=type]").dispatchEvent(new Event("change"))`, nil),
			chromedp.SetValue(`input[name=things]`, van),
			chromedp.SetValue(`input[name=keys]`, w.keys),
			chromedp.Click(`//button[text()="Add widget"]`, chromedp.BySearch),
			chromedp.WaitVisible(`[data-widget=`+w.typ+`1]`),
		)
	}
	run("save it",
		chromedp.Click(`[data-testid=save]`),
		chromedp.WaitVisible(`//span[@data-testid="save-status" and starts-with(text(), "Saved")]`, chromedp.BySearch),
	)
	se.screenshot("newuser-04-dashboard-edit")
	run("reload: both widgets, with the van's data",
		chromedp.Navigate(s.API+"/dashboards/vans"),
		chromedp.WaitVisible(`[data-testid=chart-timeseries1]`),
		chromedp.Poll(`(() => { const u = document.querySelector("[data-testid=chart-timeseries1]").uplot;
			return !!u && u.series.length === 2 && u.data[1].filter(v => v !== null).length >= 2; })()`,
			nil, chromedp.WithPollingTimeout(15*time.Second)),
		chromedp.Poll(`(() => { const tds = [...document.querySelectorAll("[data-widget=latest1] td[data-thing]")];
			return tds.length === 2 && tds.every(td => /^-?[0-9.]+$/.test(td.textContent)); })()`,
			nil, chromedp.WithPollingTimeout(15*time.Second)),
	)
	se.screenshot("newuser-05-dashboard")
	se.accessible("the new user's dashboard")
	d, err := c.GetDashboard(ctx, "vans")
	if err != nil || d.Title != "My vans" {
		t.Fatalf("the saved dashboard: %+v, %v", d, err)
	}
	se.b.check(t)
}

// jsNum writes a number read from the page back as JavaScript.
func jsNum(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
