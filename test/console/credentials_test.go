package console_test

import (
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/moteiot/mote/internal/apiclient"
	"github.com/moteiot/mote/internal/console"
	"github.com/moteiot/mote/internal/daemontest"
)

// TestConsoleThingCredentials: on a thing's page an admin adds a secret
// (shown once), rotates it with a window (the old one gets an expiry, the
// new secret is shown once) and revokes the new one; the API agrees.
func TestConsoleThingCredentials(t *testing.T) {
	if !console.Built() {
		t.Skip("the console is not built (npm --prefix web ci && npm --prefix web run build); skipping the browser test")
	}
	s := daemontest.Start(t)
	c := apiclient.New(s.API, s.Token)
	if _, err := c.CreateThing(t.Context(), apiclient.NewThing{Name: "valve-1"}); err != nil {
		t.Fatal(err)
	}
	se := openBrowser(t)
	se.signIn(s.API, s.InitialPassword())
	var secret, rotated string
	se.run("add a secret",
		chromedp.Navigate(s.API+"/things/valve-1"),
		chromedp.WaitVisible(`//h2[text()="Credentials"]`, chromedp.BySearch),
		chromedp.WaitVisible(`//form[@aria-label="Add a credential"]//button[text()="Add credential"]`, chromedp.BySearch),
		chromedp.Click(`//form[@aria-label="Add a credential"]//button[text()="Add credential"]`, chromedp.BySearch),
		chromedp.WaitVisible(`[data-testid=cred-once-secret]`),
		chromedp.Text(`[data-testid=cred-once-secret]`, &secret),
		chromedp.WaitVisible(`//tbody[@data-testid="credentials"]//td[text()="active"]`, chromedp.BySearch),
	)
	se.accessible("thing credentials")
	creds, err := c.ListCredentials(t.Context(), "valve-1")
	if err != nil || len(creds) != 1 || secret == "" {
		t.Fatalf("after adding: credentials %+v, %v, secret %q; want one and its secret shown", creds, err, secret)
	}
	old := creds[0].ID
	se.run("rotate it with a one-hour window",
		chromedp.Evaluate(`window.confirm = () => true`, nil),
		chromedp.SetValue(`select[name=rotation-window]`, "1h"),
		chromedp.Click(`button[aria-label="Rotate credential `+old+`"]`),
		chromedp.WaitVisible(`//div[@data-testid="cred-once"]//p[contains(., "replaces `+old+`")]`, chromedp.BySearch),
		chromedp.Text(`[data-testid=cred-once-secret]`, &rotated),
	)
	se.screenshot("thing-credentials-rotated")
	creds, err = c.ListCredentials(t.Context(), "valve-1")
	if err != nil || len(creds) != 2 || rotated == "" || rotated == secret {
		t.Fatalf("after rotating: credentials %+v, %v; want two and a new secret shown (%q, was %q)", creds, err, rotated, secret)
	}
	var newID string
	for _, cr := range creds {
		switch {
		case cr.ID == old && cr.NotAfter == nil:
			t.Errorf("the rotated credential has no expiry: %+v", cr)
		case cr.ID != old:
			newID = cr.ID
		}
	}
	se.run("revoke the new one",
		chromedp.Click(`button[aria-label="Revoke credential `+newID+`"]`),
		chromedp.WaitVisible(`//tr[@data-id="`+newID+`"]//td[starts-with(., "revoked")]`, chromedp.BySearch),
	)
	cr, err := c.GetCredential(t.Context(), "valve-1", newID)
	if err != nil || !cr.Revoked {
		t.Errorf("after revoking in the console: %+v, %v; want it revoked", cr, err)
	}
	se.b.check(t)
}
