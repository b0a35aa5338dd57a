package console_test

import (
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/moteiot/mote/internal/config"
	"github.com/moteiot/mote/internal/console"
	"github.com/moteiot/mote/internal/daemontest"
	"github.com/moteiot/mote/internal/oidc"
	"github.com/moteiot/mote/internal/oidc/oidctest"
)

// TestConsoleSingleSignOn: the sign-in page offers "Sign in with SSO"; it
// leads to the OpenID provider's login page (a real provider started
// here), and its credentials land back in the console signed in as
// oidc:<sub> with the role the role map gives — a viewer, who is not
// offered the Users page.
func TestConsoleSingleSignOn(t *testing.T) {
	if !console.Built() {
		t.Skip("the console is not built (npm --prefix web ci && npm --prefix web run build); skipping the browser test")
	}
	vera := oidctest.User{ID: "vera-5", Username: "vera", Password: "vera-pass", Groups: []string{"guests"}}
	p := oidctest.Start(t, []oidctest.Client{{ID: "mote", Secret: "mote-secret"}}, []oidctest.User{vera})
	s := daemontest.Start(t, func(c *config.Config) {
		c.OIDCIssuer, c.OIDCClientID, c.OIDCClientSecret = p.URL, "mote", "mote-secret"
		c.OIDCRoleMap = "mote-admins=admin,*=viewer"
	})
	p.AllowRedirect(s.API + oidc.CallbackPath)

	se := openBrowser(t)
	var label string
	se.run("the sign-in page offers single sign-on",
		chromedp.Navigate(s.API+"/"),
		chromedp.WaitVisible(`a[data-testid=sso]`),
		chromedp.Text(`a[data-testid=sso]`, &label),
	)
	if label != "Sign in with SSO" {
		t.Errorf("SSO button = %q; want %q", label, "Sign in with SSO")
	}
	se.accessible("sign-in with SSO")
	se.screenshot("sso-01-login")
	se.run("it leads to the provider's login page",
		chromedp.Click(`a[data-testid=sso]`),
		chromedp.WaitVisible(`input#username`),
	)
	se.run("the provider's credentials sign in to the console",
		chromedp.SendKeys(`input#username`, vera.Username),
		chromedp.SendKeys(`input#password`, vera.Password),
		chromedp.Click(`button[type=submit]`),
		chromedp.WaitVisible(`//div[@class="who"]/span[text()="oidc:vera-5 (viewer)"]`, chromedp.BySearch),
	)
	se.screenshot("sso-02-signed-in")
	var navText string
	se.run("a viewer is not offered the Users page", chromedp.Text(`nav`, &navText))
	if strings.Contains(navText, "Users") || !strings.Contains(navText, "Things") {
		t.Errorf("navigation of a viewer = %q; want Things and no Users", navText)
	}
}
