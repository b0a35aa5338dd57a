package oidc

import (
	"context"
	"errors"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/oidc/oidctest"
	"github.com/moteiot/mote/internal/oidc/rolemap"
	"github.com/moteiot/mote/internal/store/sqlite"
	"github.com/moteiot/mote/internal/store/sqlite/sqlitetest"
	"github.com/moteiot/mote/internal/users"
)

// rig is an RP behind a minimal HTTP front (what internal/httpapi does)
// on a real provider and a real user store.
type rig struct {
	p     *oidctest.Provider
	rp    *RP
	users *users.Service
	url   string
	now   atomic.Int64 // offset of the RP's clock, in seconds
	last  struct {
		err     error
		session string
	}
}

var (
	ann = oidctest.User{ID: "ann", Username: "ann", Password: "ann-pass", Groups: []string{"plant-3", "ops"}}
	ned = oidctest.User{ID: "ned", Username: "ned", Password: "ned-pass"} // no groups claim
)

func newRig(t *testing.T, o Options) *rig {
	t.Helper()
	r := &rig{p: oidctest.Start(t, []oidctest.Client{{ID: "mote", Secret: "s"}}, []oidctest.User{ann, ned})}
	st, err := sqlite.Open(sqlitetest.Path(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	r.users = users.New(users.Options{Store: st.Users(), Cost: 4})
	o.Issuer, o.ClientID, o.ClientSecret, o.Users = r.p.URL, "mote", "s", r.users
	o.Now = func() time.Time { return time.Now().Add(time.Duration(r.now.Load()) * time.Second) }
	if r.rp, err = New(o); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+LoginPath, func(w http.ResponseWriter, req *http.Request) {
		to, c, err := r.rp.Begin(req.Context(), req)
		if err != nil {
			r.last.err = err
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		http.SetCookie(w, c)
		http.Redirect(w, req, to, http.StatusFound)
	})
	mux.HandleFunc("GET "+CallbackPath, func(w http.ResponseWriter, req *http.Request) {
		http.SetCookie(w, r.rp.ClearCookie(req))
		r.last.session, _, r.last.err = r.rp.Finish(req.Context(), req)
		if r.last.err != nil {
			http.Error(w, r.last.err.Error(), http.StatusUnauthorized)
			return
		}
		http.Redirect(w, req, "/", http.StatusFound)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	r.url = srv.URL
	r.p.AllowRedirect(srv.URL + CallbackPath)
	if err := r.rp.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.rp.Close() })
	return r
}

func (r *rig) client() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, Timeout: 10 * time.Second, CheckRedirect: func(req *http.Request, _ []*http.Request) error {
		if req.URL.Path == "/" || req.URL.Path == CallbackPath {
			return http.ErrUseLastResponse
		}
		return nil
	}}
}

// signIn signs u in at the provider and opens the callback; it returns the
// error of Finish (nil: signed in).
func (r *rig) signIn(t *testing.T, u oidctest.User) error {
	t.Helper()
	c := r.client()
	res, _ := oidctest.SignIn(t, c, r.url+LoginPath, u.Username, u.Password)
	cb := res.Header.Get("Location")
	if !strings.Contains(cb, CallbackPath) {
		t.Fatalf("sign-in at the provider ended in %d %q", res.StatusCode, cb)
	}
	r.last.err, r.last.session = nil, ""
	res, err := c.Get(cb)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	return r.last.err
}

func TestExpiredIDToken(t *testing.T) {
	r := newRig(t, Options{DefaultRole: users.RoleViewer})
	if err := r.signIn(t, ann); err != nil {
		t.Fatalf("sign-in with the clock right = %v", err)
	}
	// The example provider's ID tokens live an hour; two hours on, the
	// one the provider returns has expired for the RP (the sign-in
	// cookie itself is checked against the same clock: give it room).
	r.rp.o.LoginTimeout = 3 * time.Hour
	c := r.client()
	res, _ := oidctest.SignIn(t, c, r.url+LoginPath, ann.Username, ann.Password)
	r.now.Store(int64((2 * time.Hour).Seconds()))
	res, err := c.Get(res.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if r.last.err == nil || !strings.Contains(r.last.err.Error(), "expired") || r.last.session != "" {
		t.Errorf("Finish with an expired ID token = %v (session %q); want an expiry error and no session", r.last.err, r.last.session)
	}
}

func TestLoginCookieExpires(t *testing.T) {
	r := newRig(t, Options{DefaultRole: users.RoleViewer, LoginTimeout: time.Minute})
	c := r.client()
	res, _ := oidctest.SignIn(t, c, r.url+LoginPath, ann.Username, ann.Password)
	r.now.Store(61)
	res, err := c.Get(res.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if r.last.err == nil || !strings.Contains(r.last.err.Error(), "--oidc-login-timeout") {
		t.Errorf("Finish after the login timeout = %v; want refused naming --oidc-login-timeout", r.last.err)
	}
}

func TestTamperedCookie(t *testing.T) {
	r := newRig(t, Options{DefaultRole: users.RoleViewer})
	c := r.client()
	res, _ := oidctest.SignIn(t, c, r.url+LoginPath, ann.Username, ann.Password)
	cb, _ := url.Parse(res.Header.Get("Location"))
	u, _ := url.Parse(r.url + "/api/v1/auth/oidc/")
	cookie := c.Jar.Cookies(u)[0]
	body, sig, _ := strings.Cut(cookie.Value, ".")
	// A cookie re-signed with another key, and one whose body changed.
	other, _ := New(Options{Issuer: r.p.URL, ClientID: "mote", Users: r.users})
	f, _ := r.rp.flowOf(&http.Request{Header: http.Header{"Cookie": {CookieName + "=" + cookie.Value}}})
	for _, v := range []string{other.seal(f), body + "x." + sig, body, strings.Repeat("a", maxCookie+1)} {
		req, _ := http.NewRequest(http.MethodGet, cb.String(), nil)
		req.AddCookie(&http.Cookie{Name: CookieName, Value: v})
		if _, _, err := r.rp.Finish(context.Background(), req); core.KindOf(err) != core.KindUnauthorized {
			t.Errorf("Finish with cookie %.40q = %v; want unauthorized", v, err)
		}
	}
}

func TestGroupsClaimScopesTheUser(t *testing.T) {
	roles, _ := rolemap.Parse("ops=operator")
	r := newRig(t, Options{RoleClaim: "groups", RoleMap: roles, DefaultRole: users.RoleViewer, GroupsClaim: "groups"})
	if err := r.signIn(t, ann); err != nil {
		t.Fatalf("sign-in of ann = %v", err)
	}
	u, err := r.users.Authenticate(context.Background(), r.last.session)
	if err != nil {
		t.Fatal(err)
	}
	if u.Name != "oidc:ann" || u.Role != users.RoleOperator || strings.Join(u.Groups, ",") != "ops,plant-3" {
		t.Errorf("ann = %s %s %v; want oidc:ann operator [ops plant-3]", u.Name, u.Role, u.Groups)
	}
	// Without the claim, a scoped server does not let a user see all.
	if err := r.signIn(t, ned); core.KindOf(err) != core.KindForbidden || !strings.Contains(err.Error(), "--oidc-groups-claim") {
		t.Errorf("sign-in without the groups claim = %v; want forbidden naming --oidc-groups-claim", err)
	}
	if _, err := r.users.Get(context.Background(), "oidc:ned"); !core.IsNotFound(err) {
		t.Errorf("a refused sign-in created the user: %v", err)
	}
}

func TestRoleFollowsTheProvider(t *testing.T) {
	roles, _ := rolemap.Parse("ops=admin")
	r := newRig(t, Options{RoleClaim: "groups", RoleMap: roles, DefaultRole: users.RoleViewer})
	if _, err := r.users.Create(context.Background(), "admin", "a-long-password", users.RoleAdmin); err != nil {
		t.Fatal(err)
	}
	if err := r.signIn(t, ann); err != nil {
		t.Fatal(err)
	}
	if u, _ := r.users.Get(context.Background(), "oidc:ann"); u.Role != users.RoleAdmin {
		t.Fatalf("role of ann = %s; want admin", u.Role)
	}
	// The provider's groups change: the next sign-in sets the new role.
	r.rp.o.RoleMap, _ = rolemap.Parse("plant-3=operator")
	if err := r.signIn(t, ann); err != nil {
		t.Fatal(err)
	}
	u, _ := r.users.Get(context.Background(), "oidc:ann")
	if u.Role != users.RoleOperator {
		t.Errorf("role after the map changed = %s; want operator", u.Role)
	}
	if _, _, err := r.users.ExternalLogin(context.Background(), "oidc:ann", "root", nil, ""); err == nil {
		t.Error("ExternalLogin with role root = nil error")
	}
}

// TestProviderComesUp: discovery failed at start; once the provider
// answers, the next sign-in (after the retry pause) discovers it.
func TestProviderComesUp(t *testing.T) {
	var up atomic.Bool
	p := oidctest.Start(t, []oidctest.Client{{ID: "mote", Secret: "s"}}, []oidctest.User{ann})
	st, err := sqlite.Open(sqlitetest.Path(t))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	gate := &http.Client{Timeout: time.Second, Transport: roundTripper(func(req *http.Request) (*http.Response, error) {
		if !up.Load() {
			return nil, errors.New("connection refused (test)")
		}
		return http.DefaultTransport.RoundTrip(req)
	})}
	rp, err := New(Options{Issuer: p.URL, ClientID: "mote", Users: users.New(users.Options{Store: st.Users()}), DefaultRole: "viewer", HTTPClient: gate})
	if err != nil {
		t.Fatal(err)
	}
	rp.retry = 0
	if err := rp.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer rp.Close()
	req := httptest.NewRequest(http.MethodGet, "http://mote.test"+LoginPath, nil)
	if _, _, err := rp.Begin(context.Background(), req); core.KindOf(err) != core.KindUnavailable {
		t.Fatalf("Begin with the provider down = %v; want unavailable", err)
	}
	up.Store(true)
	to, c, err := rp.Begin(context.Background(), req)
	if err != nil {
		t.Fatalf("Begin with the provider up = %v", err)
	}
	u, _ := url.Parse(to)
	q := u.Query()
	if q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "" || q.Get("nonce") == "" || q.Get("state") == "" ||
		q.Get("redirect_uri") != "http://mote.test"+CallbackPath || !strings.Contains(q.Get("scope"), "openid") {
		t.Errorf("authorization URL %s lacks PKCE S256, nonce, state, the derived redirect or openid", to)
	}
	if c.Path != "/api/v1/auth/oidc/" || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode {
		t.Errorf("sign-in cookie %+v; want HttpOnly, SameSite=Lax, path /api/v1/auth/oidc/", c)
	}
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestUserName(t *testing.T) {
	for _, tc := range []struct{ sub, want string }{
		{"248289761001", "oidc:248289761001"},
		{"auth0|abc", "oidc:auth0|abc"},
	} {
		if got := UserName(tc.sub); got != tc.want {
			t.Errorf("UserName(%q) = %q; want %q", tc.sub, got, tc.want)
		}
	}
	for _, sub := range []string{"a b", strings.Repeat("x", 200), "a\x00", ""} {
		if got := UserName(sub); !strings.HasPrefix(got, "oidc:sha256:") || len(got) > 128 {
			t.Errorf("UserName(%.20q) = %q; want oidc:sha256:<hex>", sub, got)
		}
	}
}

func FuzzParseCallback(f *testing.F) {
	for _, s := range []string{
		"code=abc&state=xyz", "code=abc&state=xyz&iss=http%3A%2F%2Fidp&session_state=1",
		"error=access_denied&error_description=no", "state=a&state=b&code=c", "code=&state=",
		"code=" + strings.Repeat("a", 3000) + "&state=s", "%zz", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		c, err := ParseCallback(q)
		if err != nil {
			if core.KindOf(err) != core.KindInvalid {
				t.Fatalf("ParseCallback(%q) = %v; want a KindInvalid error", raw, err)
			}
			return
		}
		if c.Error == "" && (c.Code == "" || c.State == "") {
			t.Fatalf("ParseCallback(%q) = %+v without code or state and no error", raw, c)
		}
		if len(c.Code) > 2048 || len(c.State) > 256 || len(c.ErrorDescription) > 1024 {
			t.Fatalf("ParseCallback(%q) kept an oversized parameter", raw)
		}
		if got := printable(c.ErrorDescription); strings.ContainsAny(got, "\x00\n\r") {
			t.Fatalf("printable(%q) = %q keeps control characters", c.ErrorDescription, got)
		}
	})
}

// TestCallbackUsedOnce: a callback replayed with the cookie kept (the
// browser deletes it; an attacker need not) is refused before the
// provider is asked; and the memory of used callbacks is bounded.
func TestCallbackUsedOnce(t *testing.T) {
	r := newRig(t, Options{DefaultRole: users.RoleViewer, MaxSpent: 2})
	c := r.client()
	res, _ := oidctest.SignIn(t, c, r.url+LoginPath, ann.Username, ann.Password)
	cb := res.Header.Get("Location")
	u, _ := url.Parse(r.url + "/api/v1/auth/oidc/")
	cookie := c.Jar.Cookies(u)[0]
	finish := func() error {
		req, _ := http.NewRequest(http.MethodGet, cb, nil)
		req.AddCookie(&http.Cookie{Name: CookieName, Value: cookie.Value})
		_, _, err := r.rp.Finish(context.Background(), req)
		return err
	}
	if err := finish(); err != nil {
		t.Fatalf("first callback = %v", err)
	}
	issued := len(r.p.IDTokens())
	if err := finish(); core.KindOf(err) != core.KindUnauthorized || !strings.Contains(err.Error(), "finished already") {
		t.Errorf("replayed callback = %v; want 401 finished already", err)
	}
	if n := len(r.p.IDTokens()); n != issued {
		t.Errorf("the replay reached the provider's token endpoint (%d tokens, was %d)", n, issued)
	}
	// MaxSpent 2: one more sign-in fits, the third is refused with 429.
	if err := r.signIn(t, ann); err != nil {
		t.Fatalf("second sign-in = %v", err)
	}
	if err := r.signIn(t, ann); core.KindOf(err) != core.KindRateLimited {
		t.Errorf("third sign-in with 2 remembered = %v; want rate limited", err)
	}
	// Once their sign-ins would have expired, they are forgotten.
	r.now.Store(int64((DefaultLoginTimeout + time.Minute).Seconds()))
	r.rp.o.LoginTimeout = 2 * DefaultLoginTimeout
	if err := r.signIn(t, ann); err != nil {
		t.Errorf("sign-in after the remembered ones expired = %v; want accepted", err)
	}
}
