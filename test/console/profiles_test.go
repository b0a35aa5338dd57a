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

// TestProfilesCompliance: the Profiles page shows each profile's
// compliance, and lists the thing that does not report the profile's
// value with the key, the desired and the reported value.
func TestProfilesCompliance(t *testing.T) {
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
	if _, err := c.CreateProfile(ctx, apiclient.ProfileInput{Name: "reporting", Desired: json.RawMessage(`{"interval":60}`),
		Target: apiclient.ProfileTarget{Group: "plant"}, Priority: 10}); err != nil {
		t.Fatal(err)
	}
	// pump-1 reports the profile's value, pump-2 an older one.
	for n, v := range map[string]string{"pump-1": "60", "pump-2": "300"} {
		if _, err := c.UpdateShadow(ctx, n, "", json.RawMessage(`{"state":{"reported":{"interval":`+v+`}}}`)); err != nil {
			t.Fatal(err)
		}
	}
	// The profile is applied off the request path.
	daemontest.WaitFor(t, 20*time.Second, func() error {
		out, err := c.GetProfileCompliance(ctx, "reporting", apiclient.ListOptions{})
		if err != nil || out.Things != 2 || out.Compliant != 1 {
			return fmt.Errorf("compliance %+v, %v; want 1 of 2", out, err)
		}
		return nil
	})
	se := openBrowser(t)
	se.signIn(s.API, s.InitialPassword())
	var summary, rows string
	se.run("open the profiles page", chromedp.Navigate(s.API+"/profiles"),
		chromedp.WaitVisible(`tr[data-profile="reporting"] [data-testid=compliance]`),
		chromedp.Text(`tr[data-profile="reporting"] [data-testid=compliance]`, &summary))
	if !strings.Contains(summary, "1 of 2 compliant") {
		t.Errorf("compliance shown = %q; want 1 of 2 compliant", summary)
	}
	se.accessible("profiles")
	se.run("list the non-compliant things", chromedp.Click(`tr[data-profile="reporting"] button`),
		chromedp.WaitVisible(`[data-testid=noncompliant] tr[data-thing="pump-2"]`),
		chromedp.Text(`[data-testid=noncompliant]`, &rows))
	if !strings.Contains(rows, "interval") || !strings.Contains(rows, "60") || !strings.Contains(rows, "300") || strings.Contains(rows, "pump-1") {
		t.Errorf("non-compliant list = %q; want pump-2's interval, desired 60, reported 300, and not pump-1", rows)
	}
	se.screenshot("profiles-compliance")
}
