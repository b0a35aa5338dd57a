package console_test

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/moteiot/mote/internal/console"
	"github.com/moteiot/mote/internal/daemontest"
	"github.com/moteiot/mote/internal/store"
)

// TestUsersScopedOperator: the admin creates an operator scoped to a
// group on the Users page; signed in as that operator, the Things page
// lists only the group's things, and the Tokens page shows a new token's
// secret once.
func TestUsersScopedOperator(t *testing.T) {
	if !console.Built() {
		t.Skip("the console is not built (npm --prefix web ci && npm --prefix web run build); skipping the browser test")
	}
	s := daemontest.Start(t)
	ctx := context.Background()
	if _, err := s.Registry().CreateGroup(ctx, store.Group{Name: "plant-3"}); err != nil {
		t.Fatal(err)
	}
	for _, th := range []store.Thing{
		{Name: "p3-a", Enabled: true, Groups: []string{"plant-3"}},
		{Name: "p3-b", Enabled: true, Groups: []string{"plant-3"}},
		{Name: "elsewhere", Enabled: true},
	} {
		if _, err := s.Registry().CreateThing(ctx, th); err != nil {
			t.Fatal(err)
		}
	}
	se := openBrowser(t)
	se.signIn(s.API, s.InitialPassword())
	se.run("open the users page", chromedp.Navigate(s.API+"/users"), chromedp.WaitVisible(`tr[data-user="admin"]`))
	se.accessible("users")
	se.run("create a scoped operator",
		chromedp.Click(`//button[text()="New user"]`, chromedp.BySearch),
		chromedp.WaitVisible(`form[aria-label="New user"]`),
		chromedp.SendKeys(`form[aria-label="New user"] input[name=name]`, "ops3"),
		chromedp.SendKeys(`form[aria-label="New user"] input[name=password]`, "plant three pw"),
		chromedp.SetValue(`form[aria-label="New user"] select[name=role]`, "operator"),
		chromedp.SendKeys(`form[aria-label="New user"] input[name=groups]`, "plant-3"),
		chromedp.Click(`form[aria-label="New user"] button[type=submit]`),
		chromedp.WaitVisible(`tr[data-user="ops3"]`),
	)
	se.accessible("users with the form")
	se.screenshot("users")

	// The API agrees: an operator scoped to plant-3.
	req, _ := http.NewRequest("GET", s.API+"/api/v1/users/ops3", nil)
	req.Header.Set("Authorization", "Bearer "+s.Token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var u struct {
		Role   string
		Groups []string
	}
	json.NewDecoder(res.Body).Decode(&u)
	res.Body.Close()
	if u.Role != "operator" || !slices.Equal(u.Groups, []string{"plant-3"}) {
		t.Fatalf("created user = %+v; want an operator scoped to plant-3", u)
	}

	se.run("sign out", chromedp.Click(`//button[text()="Sign out"]`, chromedp.BySearch), chromedp.WaitVisible(`input[name=password]`))
	se.run("sign in as the operator",
		chromedp.SetValue(`input[name=user]`, "ops3"),
		chromedp.SendKeys(`input[name=password]`, "plant three pw"),
		chromedp.Click(`form.login button[type=submit]`),
		chromedp.WaitVisible(`//a[text()="Tokens"]`, chromedp.BySearch),
	)
	var usersLinks int
	se.run("no users page for an operator", chromedp.Evaluate(`document.querySelectorAll('nav a[href="/users"]').length`, &usersLinks))
	if usersLinks != 0 {
		t.Errorf("an operator is offered the Users page")
	}
	se.run("open the things page", chromedp.Navigate(s.API+"/things"), chromedp.WaitVisible(`tr[data-thing="p3-b"]`))
	var rows []string
	se.run("read the things", chromedp.Evaluate(`[...document.querySelectorAll('tr[data-thing]')].map(r => r.dataset.thing)`, &rows))
	if !slices.Equal(rows, []string{"p3-a", "p3-b"}) {
		t.Errorf("the scoped operator's things page lists %q; want only p3-a, p3-b", rows)
	}
	se.screenshot("things-scoped")

	se.run("open the tokens page", chromedp.Navigate(s.API+"/tokens"), chromedp.WaitVisible(`form[aria-label="New API token"]`))
	se.accessible("tokens")
	se.run("create a token",
		chromedp.SendKeys(`form[aria-label="New API token"] input[name=name]`, "ci"),
		chromedp.Click(`form[aria-label="New API token"] button[type=submit]`),
		chromedp.WaitVisible(`[data-testid=token-secret]`),
	)
	var secret string
	se.run("read the secret", chromedp.Value(`[data-testid=token-secret]`, &secret))
	// The token works, as the operator, within the scope.
	req, _ = http.NewRequest("GET", s.API+"/api/v1/things/elsewhere", nil)
	req.Header.Set("Authorization", "Bearer "+secret)
	res, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 404 {
		t.Errorf("the new token on a thing outside the scope: %d; want 404", res.StatusCode)
	}
	var revoke int
	se.run("the token is listed", chromedp.WaitVisible(`tr[data-token]`), chromedp.Evaluate(`document.querySelectorAll('tr[data-token] button').length`, &revoke))
	if revoke != 1 {
		t.Errorf("token rows with a revoke button: %d; want 1", revoke)
	}
}
