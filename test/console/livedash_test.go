package console_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/moteiot/mote/internal/apiclient"
	"github.com/moteiot/mote/internal/console"
	"github.com/moteiot/mote/internal/daemontest"
)

// TestDashboardWidgetsFollowTheStream: with the poll interval set to ten
// minutes (?refresh=600), a latest-values table, a gauge and an alarm
// list change when a real MQTT device publishes and an alarm is raised:
// they follow the event stream, not the poll.
func TestDashboardWidgetsFollowTheStream(t *testing.T) {
	if !console.Built() {
		t.Skip("the console is not built (npm --prefix web ci && npm --prefix web run build); skipping the browser test")
	}
	s := daemontest.Start(t)
	ctx := context.Background()
	dev := s.V5(t, "boiler", s.Device(t, "boiler"))
	dev.Pub(t, "things/boiler/telemetry", 1, false, `{"temp": 20}`)
	c := apiclient.New(s.API, s.Token)
	if _, err := c.CreateDashboard(ctx, json.RawMessage(`{"name":"live","title":"Live","widgets":[
		{"id":"latest1","type":"latest","grid":{"x":0,"y":0,"w":6,"h":3},"things":["boiler"],"keys":["temp"]},
		{"id":"gauge1","type":"gauge","grid":{"x":6,"y":0,"w":3,"h":3},"things":["boiler"],"keys":["temp"],"min":0,"max":100},
		{"id":"alarms1","type":"alarms","grid":{"x":0,"y":3,"w":6,"h":3}}]}`)); err != nil {
		t.Fatal(err)
	}

	se := openBrowser(t)
	se.signIn(s.API, s.InitialPassword())
	se.run("open the dashboard with a 10-minute poll",
		chromedp.Navigate(s.API+"/dashboards/live?refresh=600"),
		chromedp.WaitVisible(`[data-widget=latest1] table`),
		chromedp.WaitVisible(`//p[text()="No active alarms."]`, chromedp.BySearch),
	)
	// The stream is open once the page asked for it; publish until the
	// value shows (the first publish may precede the subscription).
	stop := make(chan struct{})
	go func() {
		tick := time.NewTicker(500 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				dev.Pub(t, "things/boiler/telemetry", 1, false, `{"temp": 87}`)
			}
		}
	}()
	se.run("the table and the gauge show the new value without a poll",
		chromedp.WaitVisible(`//td[@data-thing="boiler" and @data-key="temp" and text()="87"]`, chromedp.BySearch),
		chromedp.WaitVisible(`//p[@data-testid="gauge-gauge1" and starts-with(text(), "87")]`, chromedp.BySearch),
	)
	close(stop)
	if _, err := s.Alarms().Raise(ctx, "boiler", "overheat", "critical", nil); err != nil {
		t.Fatal(err)
	}
	se.run("the alarm list shows the new alarm without a poll",
		chromedp.WaitVisible(`//ul[@data-testid="alarms-alarms1"]/li[contains(., "overheat")]`, chromedp.BySearch),
	)
	se.screenshot("dashboard-live")
	se.accessible("live dashboard")
	se.b.check(t)
}
