// Package oidctest runs a real OpenID Connect provider for tests: the
// provider of github.com/zitadel/oidc (pkg/op) with its example storage and
// login page, on 127.0.0.1, serving discovery, JWKS, authorization (with a
// user name and password form), and the token endpoint. It adds what the
// example lacks for Mote's tests: redirect URIs registered after start (the
// server under test listens on port 0), a "groups" claim in the ID token,
// and a way to swap the ID token of the next token response (a provider
// turned hostile, or a token replayed).
package oidctest

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/zitadel/oidc/v3/example/server/exampleop"
	"github.com/zitadel/oidc/v3/example/server/storage"
	zoidc "github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
	"golang.org/x/text/language"
)

// User is an account at the provider; ID is its subject.
type User struct {
	ID, Username, Password string
	Groups                 []string
}

// Client is a client registered at the provider.
type Client struct{ ID, Secret string }

// Provider is a running provider.
type Provider struct {
	URL string // the issuer, http://127.0.0.1:port
	srv *httptest.Server

	mu        sync.Mutex
	redirects []string
	users     map[string]User
	swap      func(idToken string) string
	tokens    []string // ID tokens issued, in order
}

// Start starts a provider with these clients and users; it stops when the
// test ends.
func Start(tb testing.TB, clients []Client, users []User) *Provider {
	tb.Helper()
	p := &Provider{users: map[string]User{}}
	for _, u := range users {
		p.users[u.ID] = u
	}
	p.srv = httptest.NewUnstartedServer(nil)
	p.URL = "http://" + p.srv.Listener.Addr().String()
	cs := map[string]*storage.Client{}
	for _, c := range clients {
		cs[c.ID] = storage.WebClient(c.ID, c.Secret, "http://unused.invalid/")
	}
	st := &store{Storage: storage.NewStorageWithClients(userStore{p}, cs), p: p}
	h := exampleop.SetupServer(p.URL, st, nil, false)
	p.srv.Config.Handler = p.intercept(h)
	p.srv.Start()
	tb.Cleanup(p.srv.Close)
	return p
}

// Close stops the provider (a provider gone down).
func (p *Provider) Close() { p.srv.Close() }

// AllowRedirect registers a redirect URI for every client.
func (p *Provider) AllowRedirect(uri string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.redirects = append(p.redirects, uri)
}

// SwapIDToken makes the token endpoint replace the ID token of its
// responses with what f returns for it (nil: stop).
func (p *Provider) SwapIDToken(f func(idToken string) string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.swap = f
}

// IDTokens returns the ID tokens issued so far.
func (p *Provider) IDTokens() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.tokens)
}

// intercept records and, when asked, swaps the ID tokens of token
// responses.
func (p *Provider) intercept(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/oauth/token" {
			h.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		body := rec.Body.Bytes()
		var m map[string]any
		if rec.Code == http.StatusOK && json.Unmarshal(body, &m) == nil {
			if tok, ok := m["id_token"].(string); ok {
				p.mu.Lock()
				p.tokens = append(p.tokens, tok)
				swap := p.swap
				p.mu.Unlock()
				if swap != nil {
					m["id_token"] = swap(tok)
					body, _ = json.Marshal(m)
				}
			}
		}
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.Header().Del("Content-Length")
		w.WriteHeader(rec.Code)
		_, _ = io.Copy(w, bytes.NewReader(body))
	})
}

// store is the example storage with dynamic redirect URIs and a groups
// claim.
type store struct {
	*storage.Storage
	p *Provider
}

func (s *store) GetClientByClientID(ctx context.Context, id string) (op.Client, error) {
	c, err := s.Storage.GetClientByClientID(ctx, id)
	if err != nil {
		return nil, err
	}
	return client{Client: c, p: s.p}, nil
}

func (s *store) SetUserinfoFromRequest(ctx context.Context, ui *zoidc.UserInfo, req op.IDTokenRequest, scopes []string) error {
	if err := s.Storage.SetUserinfoFromRequest(ctx, ui, req, scopes); err != nil {
		return err
	}
	s.p.mu.Lock()
	u, ok := s.p.users[req.GetSubject()]
	s.p.mu.Unlock()
	if ok && u.Groups != nil {
		ui.AppendClaims("groups", u.Groups)
	}
	return nil
}

type client struct {
	op.Client
	p *Provider
}

func (c client) RedirectURIs() []string {
	c.p.mu.Lock()
	defer c.p.mu.Unlock()
	return slices.Clone(c.p.redirects)
}

// userStore serves the provider's users to the example storage.
type userStore struct{ p *Provider }

func (u userStore) GetUserByID(id string) *storage.User {
	u.p.mu.Lock()
	defer u.p.mu.Unlock()
	if x, ok := u.p.users[id]; ok {
		return exampleUser(x)
	}
	return nil
}

func (u userStore) GetUserByUsername(name string) *storage.User {
	u.p.mu.Lock()
	defer u.p.mu.Unlock()
	for _, x := range u.p.users {
		if x.Username == name {
			return exampleUser(x)
		}
	}
	return nil
}

func (userStore) ExampleClientID() string { return "service" }

func exampleUser(u User) *storage.User {
	return &storage.User{ID: u.ID, Username: u.Username, Password: u.Password, FirstName: u.Username,
		LastName: "Test", Email: u.Username + "@example.test", EmailVerified: true, PreferredLanguage: language.English}
}

var loginID = regexp.MustCompile(`name="id" value="([^"]+)"`)

// SignIn follows a sign-in with a browser-like client (a cookie jar,
// following redirects): it GETs start (Mote's /auth/oidc/login), posts
// the user name and password to the provider's login form, and returns
// the last response once the redirects end (the caller's CheckRedirect
// may stop them earlier). The body of the returned response is read into
// Body.
func SignIn(tb testing.TB, c *http.Client, start, username, password string) (*http.Response, string) {
	tb.Helper()
	res, err := c.Get(start)
	if err != nil {
		tb.Fatalf("GET %s: %v", start, err)
	}
	page, _ := io.ReadAll(res.Body)
	res.Body.Close()
	m := loginID.FindSubmatch(page)
	if m == nil {
		tb.Fatalf("GET %s ended at %s (%d), not the provider's login form: %.300s", start, res.Request.URL, res.StatusCode, page)
	}
	form := url.Values{"id": {string(m[1])}, "username": {username}, "password": {password}}
	u := *res.Request.URL
	u.Path, u.RawQuery = "/login/username", ""
	res, err = c.Post(u.String(), "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
	if err != nil {
		tb.Fatalf("POST %s: %v", u.String(), err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res, string(b)
}
