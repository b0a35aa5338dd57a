package oidc_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/config"
	"github.com/moteiot/mote/internal/daemontest"
	"github.com/moteiot/mote/internal/oidc"
	"github.com/moteiot/mote/internal/oidc/oidctest"
)

// The users of the test provider and what Mote makes of them.
var (
	alice = oidctest.User{ID: "alice-1", Username: "alice", Password: "alice-pass", Groups: []string{"staff", "mote-admins"}}
	bob   = oidctest.User{ID: "bob-2", Username: "bob", Password: "bob-pass", Groups: []string{"ops"}}
	carol = oidctest.User{ID: "carol-3", Username: "carol", Password: "carol-pass", Groups: []string{"guests"}}
	dave  = oidctest.User{ID: "dave-4", Username: "dave", Password: "dave-pass", Groups: []string{"ops"}}
)

// ssoServer starts a provider with the clients "mote" and "other" and a
// Mote server signing in through it as "mote".
func ssoServer(t *testing.T, opts ...daemontest.Option) (*oidctest.Provider, *daemontest.Server) {
	t.Helper()
	p := oidctest.Start(t, []oidctest.Client{{ID: "mote", Secret: "mote-secret"}, {ID: "other", Secret: "other-secret"}},
		[]oidctest.User{alice, bob, carol, dave})
	s := daemontest.Start(t, append([]daemontest.Option{func(c *config.Config) {
		c.OIDCIssuer, c.OIDCClientID, c.OIDCClientSecret = p.URL, "mote", "mote-secret"
		c.OIDCRoleMap = "mote-admins=admin,ops=operator"
	}}, opts...)...)
	p.AllowRedirect(s.API + oidc.CallbackPath)
	return p, s
}

// browser is an HTTP client with a cookie jar that follows redirects but
// stops at the console ("/") or, with stopAtCallback, before Mote's
// callback.
func browser(t *testing.T, stopAtCallback bool) *http.Client {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, Timeout: 10 * time.Second, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if req.URL.Path == "/" || (stopAtCallback && req.URL.Path == oidc.CallbackPath) {
			return http.ErrUseLastResponse
		}
		return nil
	}}
}

// me asks Mote who the browser is.
func me(t *testing.T, c *http.Client, api string) (user, role, via string) {
	t.Helper()
	res, err := c.Get(api + "/api/v1/auth/me")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var m struct{ User, Role, Via string }
	if err := json.NewDecoder(res.Body).Decode(&m); err != nil {
		t.Fatal(err)
	}
	return m.User, m.Role, m.Via
}

// callbackURL signs u in at the provider and returns the callback URL it
// sends the browser back to (not yet opened).
func callbackURL(t *testing.T, c *http.Client, api string, u oidctest.User) string {
	t.Helper()
	res, _ := oidctest.SignIn(t, c, api+oidc.LoginPath, u.Username, u.Password)
	loc := res.Header.Get("Location")
	if res.StatusCode != http.StatusFound || !strings.Contains(loc, oidc.CallbackPath) {
		t.Fatalf("sign-in at the provider ended in %d to %q; want 302 to the callback", res.StatusCode, loc)
	}
	return loc
}

// open GETs a callback URL as a browser does and returns the status and
// body.
func open(t *testing.T, c *http.Client, u string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	req.Header.Set("Accept", "text/html,application/xhtml+xml")
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// counted reads mote_oidc_logins_total{result} from /metrics.
func counted(t *testing.T, s *daemontest.Server, result string) float64 {
	t.Helper()
	res, err := http.Get(s.API + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	prefix := `mote_oidc_logins_total{result="` + result + `"} `
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, prefix); ok {
			n, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("metric line %q: %v", line, err)
			}
			return n
		}
	}
	t.Fatalf("no %s in /metrics", prefix)
	return 0
}

func TestSingleSignOn(t *testing.T) {
	p, s := ssoServer(t)

	t.Run("info", func(t *testing.T) {
		res, err := http.Get(s.API + "/api/v1/auth/oidc")
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var info struct {
			Enabled  bool
			Label    string
			LoginURL string
		}
		_ = json.NewDecoder(res.Body).Decode(&info)
		if !info.Enabled || info.Label != "Sign in with SSO" || info.LoginURL != oidc.LoginPath {
			t.Errorf("GET /auth/oidc = %+v; want enabled, the default label and %s", info, oidc.LoginPath)
		}
	})

	t.Run("roles are mapped from the groups claim", func(t *testing.T) {
		for _, tc := range []struct {
			u        oidctest.User
			wantRole string
		}{{alice, "admin"}, {bob, "operator"}} {
			c := browser(t, false)
			res, _ := oidctest.SignIn(t, c, s.API+oidc.LoginPath, tc.u.Username, tc.u.Password)
			if res.StatusCode != http.StatusFound || res.Header.Get("Location") != "/" {
				t.Fatalf("%s: sign-in ended in %d to %q; want 302 to the console", tc.u.Username, res.StatusCode, res.Header.Get("Location"))
			}
			user, role, via := me(t, c, s.API)
			if user != "oidc:"+tc.u.ID || role != tc.wantRole || via != "session" {
				t.Errorf("%s: /auth/me = %q %q %q; want oidc:%s %s session", tc.u.Username, user, role, via, tc.u.ID, tc.wantRole)
			}
		}
		// The session is the console's: it may do what its role allows.
		c := browser(t, false)
		oidctest.SignIn(t, c, s.API+oidc.LoginPath, bob.Username, bob.Password)
		req, _ := http.NewRequest(http.MethodGet, s.API+"/api/v1/users", nil)
		res, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusForbidden {
			t.Errorf("GET /users as operator bob = %d; want 403", res.StatusCode)
		}
		if n := counted(t, s, oidc.ResultOK); n != 3 {
			t.Errorf("mote_oidc_logins_total{result=ok} = %v; want 3", n)
		}
	})

	t.Run("the sign-in is audited with the user as actor", func(t *testing.T) {
		var list struct {
			Items []struct {
				Actor struct {
					Kind, Name string
				}
				Action string
				Status int
			}
		}
		daemontest.WaitFor(t, 5*time.Second, func() error {
			req, _ := http.NewRequest(http.MethodGet, s.API+"/api/v1/audit?action=auth.oidc.login", nil)
			req.Header.Set("Authorization", "Bearer "+s.Token)
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				return err
			}
			defer res.Body.Close()
			if err := json.NewDecoder(res.Body).Decode(&list); err != nil {
				return err
			}
			for _, e := range list.Items {
				if e.Actor.Name == "oidc:"+alice.ID && e.Status == http.StatusFound {
					return nil
				}
			}
			return errAudit
		})
	})

	t.Run("no role: refused with a page, no session", func(t *testing.T) {
		c := browser(t, true)
		status, body := open(t, c, callbackURL(t, c, s.API, carol))
		if status != http.StatusForbidden || !strings.Contains(body, "no role on this server") {
			t.Errorf("callback for carol = %d %q; want 403 naming the missing role", status, body)
		}
		if _, _, via := me(t, c, s.API); via != "none" {
			t.Errorf("after a refused sign-in /auth/me via = %q; want none", via)
		}
		if n := counted(t, s, oidc.ResultNoRole); n != 1 {
			t.Errorf("mote_oidc_logins_total{result=no_role} = %v; want 1", n)
		}
	})

	t.Run("tampered state", func(t *testing.T) {
		c := browser(t, true)
		cb := callbackURL(t, c, s.API, alice)
		u, _ := url.Parse(cb)
		q := u.Query()
		q.Set("state", q.Get("state")+"x")
		u.RawQuery = q.Encode()
		if status, body := open(t, c, u.String()); status != http.StatusUnauthorized || !strings.Contains(body, "state does not match") {
			t.Errorf("callback with a tampered state = %d %q; want 401", status, body)
		}
		if _, _, via := me(t, c, s.API); via != "none" {
			t.Errorf("after a tampered state /auth/me via = %q; want none", via)
		}
	})

	t.Run("callback in another browser", func(t *testing.T) {
		cb := callbackURL(t, browser(t, true), s.API, alice)
		other := browser(t, true)
		if status, _ := open(t, other, cb); status != http.StatusUnauthorized {
			t.Errorf("callback opened in another browser = %d; want 401", status)
		}
		if _, _, via := me(t, other, s.API); via != "none" {
			t.Errorf("the other browser got a session (%s)", via)
		}
	})

	t.Run("replayed code", func(t *testing.T) {
		c := browser(t, true)
		cb := callbackURL(t, c, s.API, alice)
		if status, _ := open(t, c, cb); status != http.StatusFound {
			t.Fatalf("first callback = %d; want 302", status)
		}
		// The same URL again: its sign-in is spent.
		if status, _ := open(t, c, cb); status != http.StatusUnauthorized {
			t.Errorf("the callback replayed = %d; want 401", status)
		}
		// The old code with the state of a fresh sign-in of this browser:
		// the provider refuses the code.
		fresh := browser(t, true)
		fresh.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		res, err := fresh.Get(s.API + oidc.LoginPath)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		authz, _ := url.Parse(res.Header.Get("Location"))
		old, _ := url.Parse(cb)
		q := old.Query()
		q.Set("state", authz.Query().Get("state"))
		old.RawQuery = q.Encode()
		before := counted(t, s, oidc.ResultProviderRefused)
		if status, body := open(t, fresh, old.String()); status != http.StatusUnauthorized || !strings.Contains(body, "refused the sign-in code") {
			t.Errorf("an old code with a fresh state = %d %q; want 401 from the provider's refusal", status, body)
		}
		if _, _, via := me(t, fresh, s.API); via != "none" {
			t.Errorf("a replayed code opened a session")
		}
		if n := counted(t, s, oidc.ResultProviderRefused); n != before+1 {
			t.Errorf("provider_refused = %v; want %v", n, before+1)
		}
	})

	t.Run("an ID token of an earlier sign-in (nonce mismatch)", func(t *testing.T) {
		tokens := p.IDTokens()
		if len(tokens) == 0 {
			t.Fatal("no ID token issued yet")
		}
		old := tokens[0] // alice's, valid but for another sign-in
		p.SwapIDToken(func(string) string { return old })
		defer p.SwapIDToken(nil)
		c := browser(t, true)
		if status, body := open(t, c, callbackURL(t, c, s.API, alice)); status != http.StatusUnauthorized || !strings.Contains(body, "nonce mismatch") {
			t.Errorf("callback with a replayed ID token = %d %q; want 401 nonce mismatch", status, body)
		}
		if _, _, via := me(t, c, s.API); via != "none" {
			t.Errorf("a replayed ID token opened a session")
		}
	})

	t.Run("an ID token for another client (audience)", func(t *testing.T) {
		foreign := tokenFor(t, p, "other", "other-secret", alice)
		p.SwapIDToken(func(string) string { return foreign })
		defer p.SwapIDToken(nil)
		c := browser(t, true)
		if status, body := open(t, c, callbackURL(t, c, s.API, alice)); status != http.StatusUnauthorized || !strings.Contains(body, "audience") {
			t.Errorf("callback with another client's ID token = %d %q; want 401 naming the audience", status, body)
		}
		if _, _, via := me(t, c, s.API); via != "none" {
			t.Errorf("another client's ID token opened a session")
		}
	})

	t.Run("a forged signature", func(t *testing.T) {
		p.SwapIDToken(func(tok string) string {
			parts := strings.Split(tok, ".")
			sig := []byte(parts[2])
			sig[5] ^= 1
			return parts[0] + "." + parts[1] + "." + string(sig)
		})
		defer p.SwapIDToken(nil)
		c := browser(t, true)
		if status, body := open(t, c, callbackURL(t, c, s.API, alice)); status != http.StatusUnauthorized || !strings.Contains(body, "not valid") {
			t.Errorf("callback with a forged ID token = %d %q; want 401", status, body)
		}
	})

	t.Run("the provider refuses", func(t *testing.T) {
		c := browser(t, true)
		cb, _ := url.Parse(callbackURL(t, c, s.API, alice))
		q := cb.Query()
		q.Del("code")
		q.Set("error", "access_denied")
		q.Set("error_description", "<script>alert(1)</script>")
		cb.RawQuery = q.Encode()
		status, body := open(t, c, cb.String())
		if status != http.StatusUnauthorized || !strings.Contains(body, "access_denied") || strings.Contains(body, "<script>") {
			t.Errorf("callback with error=access_denied = %d %q; want 401 with the error, escaped", status, body)
		}
	})

	t.Run("a local user is not taken over", func(t *testing.T) {
		// An administrator made a user with a password under the name
		// dave's subject gets: single sign-on does not sign in as it.
		if _, err := s.Users().Create(context.Background(), "oidc:"+dave.ID, "a-long-password", "admin"); err != nil {
			t.Fatal(err)
		}
		c := browser(t, true)
		if status, body := open(t, c, callbackURL(t, c, s.API, dave)); status != http.StatusConflict || !strings.Contains(body, "exists with a password") {
			t.Errorf("sign-in as a local user's name = %d %q; want 409", status, body)
		}
		if _, _, via := me(t, c, s.API); via != "none" {
			t.Errorf("single sign-on took over a local user")
		}
	})

	t.Run("the provider is down at sign-in", func(t *testing.T) {
		c := browser(t, true)
		cb := callbackURL(t, c, s.API, alice)
		p.Close()
		status, body := open(t, c, cb)
		if status != http.StatusServiceUnavailable || !strings.Contains(body, "cannot be reached") {
			t.Errorf("callback while the provider is down = %d %q; want 503", status, body)
		}
		if _, _, via := me(t, c, s.API); via != "none" {
			t.Errorf("a sign-in without the provider opened a session")
		}
		// Passwords still work.
		if code := passwordLogin(t, s); code != http.StatusOK {
			t.Errorf("password sign-in with the provider down = %d; want 200", code)
		}
	})
}

// TestProviderDownAtStart: the server starts, answers the single sign-on
// with 503, and signs in with passwords.
func TestProviderDownAtStart(t *testing.T) {
	s := daemontest.Start(t, func(c *config.Config) {
		c.OIDCIssuer, c.OIDCClientID, c.OIDCDefaultRole = "http://127.0.0.1:1", "mote", "viewer"
		c.OIDCDiscoveryTimeout = time.Second
	})
	c := browser(t, true)
	status, body := open(t, c, s.API+oidc.LoginPath)
	if status != http.StatusServiceUnavailable || !strings.Contains(body, "cannot be reached") {
		t.Errorf("GET /auth/oidc/login with the provider down = %d %q; want 503", status, body)
	}
	if code := passwordLogin(t, s); code != http.StatusOK {
		t.Errorf("password sign-in with the provider down = %d; want 200", code)
	}
	if n := counted(t, s, oidc.ResultProviderUnavailable); n != 1 {
		t.Errorf("provider_unavailable = %v; want 1", n)
	}
}

func passwordLogin(t *testing.T, s *daemontest.Server) int {
	t.Helper()
	body := `{"user":"admin","password":"` + s.InitialPassword() + `"}`
	res, err := http.Post(s.API+"/api/v1/auth/login", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	return res.StatusCode
}

type auditErr struct{}

func (auditErr) Error() string { return "no auth.oidc.login entry for alice yet" }

var errAudit = auditErr{}

// tokenFor runs the authorization code flow for another client by hand
// and returns the ID token the provider issued to it.
func tokenFor(t *testing.T, p *oidctest.Provider, client, secret string, u oidctest.User) string {
	t.Helper()
	redirect := "http://127.0.0.1:1/elsewhere"
	p.AllowRedirect(redirect)
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 10 * time.Second, CheckRedirect: func(req *http.Request, _ []*http.Request) error {
		if req.URL.Host == "127.0.0.1:1" {
			return http.ErrUseLastResponse
		}
		return nil
	}}
	q := url.Values{"client_id": {client}, "redirect_uri": {redirect}, "response_type": {"code"},
		"scope": {"openid"}, "state": {"s"}, "nonce": {"n"}}
	res, _ := oidctest.SignIn(t, c, p.URL+"/auth?"+q.Encode(), u.Username, u.Password)
	back, err := url.Parse(res.Header.Get("Location"))
	if err != nil || back.Query().Get("code") == "" {
		t.Fatalf("flow for %s ended in %d to %q", client, res.StatusCode, res.Header.Get("Location"))
	}
	form := url.Values{"grant_type": {"authorization_code"}, "code": {back.Query().Get("code")}, "redirect_uri": {redirect}}
	req, _ := http.NewRequest(http.MethodPost, p.URL+"/oauth/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(client, secret)
	tr, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Body.Close()
	var tok struct {
		IDToken string `json:"id_token"`
	}
	if err := json.NewDecoder(tr.Body).Decode(&tok); err != nil || tok.IDToken == "" {
		t.Fatalf("token exchange for %s: %d %v", client, tr.StatusCode, err)
	}
	return tok.IDToken
}
