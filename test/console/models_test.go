package console_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/moteiot/mote/internal/apiclient"
	"github.com/moteiot/mote/internal/console"
	"github.com/moteiot/mote/internal/daemontest"
)

// TestConsoleDeviceModel: a thing whose type has a device model shows its
// telemetry with the unit, its reported state labelled, and a form per
// command; submitting the setLed form creates the command the API lists.
func TestConsoleDeviceModel(t *testing.T) {
	if !console.Built() {
		t.Skip("the console is not built (npm --prefix web ci && npm --prefix web run build); skipping the browser test")
	}
	s := daemontest.Start(t)
	ctx := context.Background()
	c := apiclient.New(s.API, s.Token)
	model := `{"telemetry": {"temperature": {"label": "Temperature", "unit": "°C", "min": -40, "max": 125}},
		"properties": {"reported": {"type": "object", "properties": {"firmware": {"type": "string", "title": "Firmware version"}}}},
		"commands": {"reboot": {"description": "restart"},
			"setLed": {"payload": {"type": "object", "required": ["state"], "properties": {
				"state": {"type": "string", "enum": ["on", "off"], "title": "LED"},
				"seconds": {"type": "integer", "minimum": 1, "title": "Seconds"}}}}}}`
	if _, err := c.CreateType(ctx, apiclient.NewType{Name: "lamp", Model: json.RawMessage(model)}); err != nil {
		t.Fatal(err)
	}
	secret := s.Device(t, "lamp-1")
	if _, err := c.UpdateThing(ctx, "lamp-1", apiclient.ThingPatch{Type: new("lamp")}); err != nil {
		t.Fatal(err)
	}
	dev := s.V5(t, "lamp-1", secret)
	dev.Pub(t, "$aws/things/lamp-1/shadow/update", 1, false, `{"state": {"reported": {"firmware": "2.1.0"}}}`)

	se := openBrowser(t)
	se.signIn(s.API, s.InitialPassword())
	se.run("the thing page of a modelled device",
		chromedp.Navigate(s.API+"/things/lamp-1"),
		chromedp.WaitVisible(`form[data-command=setLed]`),
		chromedp.WaitVisible(`//dl[@data-testid="reported-fields"]/dt[text()="Firmware version"]`, chromedp.BySearch),
	)
	// The chart appears with the first value; publish until the page,
	// whose event stream may open after a message, shows one.
	daemontest.WaitFor(t, 15*time.Second, func() error {
		dev.Pub(t, "things/lamp-1/telemetry", 1, false, `{"temperature": 21.5}`)
		var last string
		sctx, cancel := context.WithTimeout(se.ctx, 2*time.Second)
		defer cancel()
		err := chromedp.Run(sctx, chromedp.WaitVisible(`//span[@data-testid="last-temperature" and string-length(text()) > 0]`, chromedp.BySearch),
			chromedp.Text(`[data-testid=last-temperature]`, &last))
		if err != nil {
			return err
		}
		if last != "21.5 °C" {
			return fmt.Errorf("last temperature = %q; want 21.5 °C", last)
		}
		return nil
	})
	var cap string
	se.run("the chart caption has the label and unit", chromedp.Text(`figure[data-key=temperature] figcaption`, &cap))
	if !strings.HasPrefix(cap, "Temperature (°C)") {
		t.Errorf("caption = %q; want Temperature (°C)", cap)
	}
	// Out of range: delivered, and counted on the thing page.
	dev.Pub(t, "things/lamp-1/telemetry", 1, false, `{"temperature": 300}`)
	daemontest.WaitFor(t, 15*time.Second, func() error {
		var n string
		sctx, cancel := context.WithTimeout(se.ctx, 2*time.Second)
		defer cancel()
		// The page reads the thing again on presence; reload it.
		if err := chromedp.Run(sctx, chromedp.Reload(), chromedp.WaitVisible(`[data-testid=model-violations]`), chromedp.Text(`[data-testid=model-violations]`, &n)); err != nil {
			return err
		}
		if !strings.HasPrefix(n, "1") || !strings.Contains(n, "temperature") {
			return fmt.Errorf("model violations shown = %q; want 1, temperature", n)
		}
		return nil
	})
	se.accessible("thing with a model")
	se.screenshot("model-01-thing")

	se.run("send setLed from its form",
		chromedp.SetValue(`form[data-command=setLed] select[name=state]`, `"on"`),
		chromedp.SendKeys(`form[data-command=setLed] input[name=seconds]`, "5"),
		chromedp.Click(`form[data-command=setLed] button[type=submit]`),
		chromedp.WaitVisible(`//tbody[@data-testid="commands"]/tr/td[text()="setLed"]`, chromedp.BySearch),
	)
	cmds, _, err := c.ListCommands(ctx, "lamp-1", "", apiclient.ListOptions{})
	var payload struct {
		State   string
		Seconds int
	}
	if err != nil || len(cmds) != 1 || cmds[0].Name != "setLed" || json.Unmarshal(cmds[0].Payload, &payload) != nil || payload.State != "on" || payload.Seconds != 5 {
		t.Fatalf("commands = %+v, %v; want one setLed {state on, seconds 5}", cmds, err)
	}
	se.b.check(t)
}
