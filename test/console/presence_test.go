package console_test

import (
	"context"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/moteiot/mote/internal/config"
	"github.com/moteiot/mote/internal/console"
	"github.com/moteiot/mote/internal/daemontest"
)

// TestThingPagePresenceBeforeFlush: the registry records connection
// state in batches after the presence event. A thing page opened in
// between (its record still says offline) must show the device connected
// from the event, and keep showing it when it reads the record again.
// Before, the page only re-read the record on the event and stayed
// "offline" until some later event (CI hit this under load).
func TestThingPagePresenceBeforeFlush(t *testing.T) {
	if !console.Built() {
		t.Skip("the console is not built (npm --prefix web ci && npm --prefix web run build); skipping the browser test")
	}
	// The registry is not told within this test.
	s := daemontest.Start(t, func(c *config.Config) { c.PresenceFlush = time.Minute })
	secret := s.Device(t, "dev")
	s.V5(t, "dev", secret)

	th, err := s.Registry().GetThing(context.Background(), "dev")
	if err != nil {
		t.Fatal(err)
	}
	if th.Connected {
		t.Fatal("the registry already says connected: this test would prove nothing")
	}

	se := openBrowser(t)
	se.signIn(s.API, s.InitialPassword())
	se.run("open the thing page of a device connected since the last flush",
		chromedp.Navigate(s.API+"/things/dev"),
		chromedp.WaitVisible(`[data-testid=charts]`),
		chromedp.WaitVisible(`//span[@class="badge on" and text()="connected"]`, chromedp.BySearch),
	)
	// The page reads the record again a second after the event; the
	// stale record must not turn the badge back to offline.
	var reloaded bool
	se.run("the page reads the thing again",
		chromedp.Poll(`window.performance.getEntriesByType("resource").filter(e => e.name.endsWith("/api/v1/things/dev")).length >= 2`, &reloaded, chromedp.WithPollingTimeout(10*time.Second)),
		chromedp.WaitVisible(`//span[@class="badge on" and text()="connected"]`, chromedp.BySearch),
	)
	se.screenshot("presence-before-flush")
}
