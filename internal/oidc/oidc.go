// Package oidc signs people in to the web console through an OpenID
// Connect provider (single sign-on; docs/users.md). It is the relying
// party of the authorization code flow with PKCE (S256):
//
//  1. GET /api/v1/auth/oidc/login (Begin) sends the browser to the
//     provider's authorization endpoint with a random state, nonce and
//     PKCE challenge. The state, nonce, PKCE verifier and redirect URL
//     travel in a short-lived cookie (mote_oidc: HttpOnly, SameSite=Lax,
//     limited to /api/v1/auth/oidc/) signed with a key made at start, so
//     the server keeps nothing per sign-in and a flood of sign-ins holds
//     no memory. The cookie binds the sign-in to the browser that began
//     it: a callback URL opened in another browser is refused.
//  2. GET /api/v1/auth/oidc/callback (Finish) checks the state against the
//     cookie, exchanges the code with the verifier, validates the ID token
//     (signature by the provider's JWKS, iss, aud, exp — github.com/coreos/go-oidc)
//     and its nonce, maps a claim to a role (--oidc-role-map) and opens
//     the same console session as POST /auth/login, for the user
//     "oidc:<sub>" (internal/users.ExternalLogin).
//
// The provider is discovered (/.well-known/openid-configuration) at Start,
// in the background; when it cannot be reached then, discovery is retried
// at the next sign-in (at most every few seconds), and password sign-in
// keeps working meanwhile. Every call to the provider has a deadline.
package oidc

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
	"unicode"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/oauth2"
	"golang.org/x/time/rate"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/oidc/rolemap"
	"github.com/moteiot/mote/internal/store"
	"github.com/moteiot/mote/internal/users"
)

// Paths of the routes (internal/httpapi serves them).
const (
	LoginPath    = "/api/v1/auth/oidc/login"
	CallbackPath = "/api/v1/auth/oidc/callback"
	cookiePath   = "/api/v1/auth/oidc/"
)

// CookieName is the cookie that carries a sign-in in progress.
const CookieName = "mote_oidc"

// UserPrefix starts the name of every single sign-on user.
const UserPrefix = "oidc:"

// Defaults.
const (
	DefaultDiscoveryTimeout = 10 * time.Second
	DefaultLoginTimeout     = 10 * time.Minute
	DefaultButtonLabel      = "Sign in with SSO"
	DefaultMaxSpent         = 10_000
	// retryEvery: after a failed discovery, sign-ins answer the same
	// error for this long before the provider is asked again.
	retryEvery = 5 * time.Second
	// maxCookie bounds the sign-in cookie read back.
	maxCookie = 4096
	// maxClaimValues bounds the values of a role or groups claim looked at.
	maxClaimValues = 1000
)

// Options configure an RP.
type Options struct {
	// Issuer is the provider's issuer URL; ClientID and ClientSecret
	// the client registered there (the secret is never logged).
	Issuer       string
	ClientID     string
	ClientSecret string
	// RedirectURL is the callback URL registered at the provider ("":
	// derived from each request: http(s)://<Host>/api/v1/auth/oidc/callback).
	RedirectURL string
	// Scopes are requested besides "openid" (nil: profile).
	Scopes []string
	// RoleClaim names the claim of the ID token whose values RoleMap
	// maps to a role; DefaultRole is the role of a user no entry matches
	// ("": such a sign-in is refused).
	RoleClaim   string
	RoleMap     rolemap.Map
	DefaultRole string
	// GroupsClaim names a claim whose values become the user's group
	// scope ("": users are not scoped); a sign-in without it is refused.
	GroupsClaim string
	// ButtonLabel is what the console's sign-in button says.
	ButtonLabel string
	// DiscoveryTimeout bounds each call to the provider (discovery, JWKS,
	// token exchange); LoginTimeout how long a begun sign-in may take.
	DiscoveryTimeout time.Duration
	LoginTimeout     time.Duration
	// MaxSpent bounds the states of finished callbacks remembered (until
	// their sign-in would have expired) so that each callback is used
	// once; when that many live ones are held, callbacks are answered
	// 429 (0: DefaultMaxSpent).
	MaxSpent int
	Users    *users.Service
	Logger   *slog.Logger
	Metrics  prometheus.Registerer // may be nil
	// HTTPClient calls the provider (nil: a client with DiscoveryTimeout).
	HTTPClient *http.Client
	Now        func() time.Time // for tests; nil: time.Now
}

// Results of a sign-in, the label of mote_oidc_logins_total.
const (
	ResultOK                  = "ok"
	ResultInvalidRequest      = "invalid_request"      // no or a tampered state, a foreign cookie, a malformed callback
	ResultProviderRefused     = "provider_refused"     // the provider said no, or refused the code
	ResultProviderUnavailable = "provider_unavailable" // the provider cannot be reached
	ResultInvalidToken        = "invalid_token"        // the ID token failed validation (signature, iss, aud, exp, nonce)
	ResultNoRole              = "no_role"              // no role for this user
	ResultError               = "error"                // the user cannot be stored, or something unexpected
)

var results = []string{ResultOK, ResultInvalidRequest, ResultProviderRefused, ResultProviderUnavailable, ResultInvalidToken, ResultNoRole, ResultError}

// RP is the relying party.
type RP struct {
	o       Options
	client  *http.Client
	key     []byte // signs the sign-in cookie
	log     *slog.Logger
	logSome rate.Sometimes
	logins  *prometheus.CounterVec

	mu       sync.Mutex // held while discovering
	provider *gooidc.Provider
	lastErr  error
	lastTry  time.Time
	retry    time.Duration

	spentMu sync.Mutex
	spent   map[string]int64 // state of a used callback → when its sign-in expires (unix s)

	cancel context.CancelFunc
	done   chan struct{}
}

// New returns an RP; Start discovers the provider.
func New(o Options) (*RP, error) {
	if o.Issuer == "" || o.ClientID == "" {
		return nil, errors.New("oidc: issuer and client id are required")
	}
	if o.Users == nil {
		return nil, errors.New("oidc: a user service is required")
	}
	if o.DiscoveryTimeout <= 0 {
		o.DiscoveryTimeout = DefaultDiscoveryTimeout
	}
	if o.LoginTimeout <= 0 {
		o.LoginTimeout = DefaultLoginTimeout
	}
	if o.ButtonLabel == "" {
		o.ButtonLabel = DefaultButtonLabel
	}
	if o.Scopes == nil {
		o.Scopes = []string{"profile"}
	}
	if o.MaxSpent <= 0 {
		o.MaxSpent = DefaultMaxSpent
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	rp := &RP{o: o, client: o.HTTPClient, log: o.Logger, logSome: rate.Sometimes{Interval: time.Second}, retry: retryEvery,
		spent: map[string]int64{}}
	if rp.client == nil {
		rp.client = &http.Client{Timeout: o.DiscoveryTimeout}
	}
	rp.key = make([]byte, 32)
	if _, err := rand.Read(rp.key); err != nil {
		return nil, fmt.Errorf("oidc: %w", err)
	}
	rp.logins = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mote_oidc_logins_total",
		Help: "Console sign-ins through the OpenID Connect provider, by result (ok, invalid_request, provider_refused, provider_unavailable, invalid_token, no_role, error).",
	}, []string{"result"})
	for _, r := range results {
		rp.logins.WithLabelValues(r)
	}
	if o.Metrics != nil {
		if err := o.Metrics.Register(rp.logins); err != nil {
			return nil, fmt.Errorf("oidc: metrics: %w", err)
		}
	}
	return rp, nil
}

// Start discovers the provider in the background: a provider that cannot
// be reached now is asked again at the next sign-in.
func (rp *RP) Start(ctx context.Context) error {
	ctx, rp.cancel = context.WithCancel(ctx)
	rp.done = make(chan struct{})
	go func() {
		defer close(rp.done)
		if _, err := rp.discover(ctx); err != nil && ctx.Err() == nil {
			rp.log.Warn("single sign-on provider cannot be reached; discovery is retried at the next sign-in", "issuer", rp.o.Issuer, "err", err)
			return
		}
		if ctx.Err() == nil {
			rp.log.Info("single sign-on provider discovered", "issuer", rp.o.Issuer)
		}
	}()
	return nil
}

// Close stops a discovery in progress.
func (rp *RP) Close() error {
	if rp.cancel != nil {
		rp.cancel()
		<-rp.done
	}
	return nil
}

// ButtonLabel is what the console's sign-in button says.
func (rp *RP) ButtonLabel() string { return rp.o.ButtonLabel }

// Logins is the counter of sign-ins by result (for tests).
func (rp *RP) Logins() *prometheus.CounterVec { return rp.logins }

// discover returns the provider, discovering it when it is not yet.
func (rp *RP) discover(ctx context.Context) (*gooidc.Provider, error) {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	if rp.provider != nil {
		return rp.provider, nil
	}
	if rp.lastErr != nil && time.Since(rp.lastTry) < rp.retry {
		return nil, rp.lastErr
	}
	dctx, cancel := context.WithTimeout(ctx, rp.o.DiscoveryTimeout)
	defer cancel()
	p, err := gooidc.NewProvider(gooidc.ClientContext(dctx, rp.client), rp.o.Issuer)
	rp.lastTry = time.Now()
	if err != nil {
		rp.lastErr = core.Errorf(core.KindUnavailable, "the single sign-on provider %s cannot be reached: %v; sign in with a password or try again later", rp.o.Issuer, short(err))
		return nil, rp.lastErr
	}
	rp.provider, rp.lastErr = p, nil
	return p, nil
}

// flow is a sign-in in progress, carried by the signed cookie.
type flow struct {
	State       string `json:"s"`
	Nonce       string `json:"n"`
	Verifier    string `json:"v"`
	RedirectURL string `json:"r"`
	Expires     int64  `json:"e"` // unix seconds
}

// Begin starts a sign-in: it returns the provider URL to send the browser
// to and the cookie that binds the sign-in to it.
func (rp *RP) Begin(ctx context.Context, r *http.Request) (authURL string, cookie *http.Cookie, err error) {
	p, err := rp.discover(ctx)
	if err != nil {
		rp.count(ResultProviderUnavailable, err, r)
		return "", nil, err
	}
	f := flow{
		State:       randomString(),
		Nonce:       randomString(),
		Verifier:    oauth2.GenerateVerifier(),
		RedirectURL: rp.redirectURL(r),
		Expires:     rp.o.Now().Add(rp.o.LoginTimeout).Unix(),
	}
	conf := rp.config(p, f.RedirectURL)
	authURL = conf.AuthCodeURL(f.State, gooidc.Nonce(f.Nonce), oauth2.S256ChallengeOption(f.Verifier))
	return authURL, rp.cookie(r, rp.seal(f), rp.o.LoginTimeout), nil
}

// ClearCookie deletes the sign-in cookie (after a callback, whatever its
// outcome).
func (rp *RP) ClearCookie(r *http.Request) *http.Cookie { return rp.cookie(r, "", -1) }

func (rp *RP) cookie(r *http.Request, value string, ttl time.Duration) *http.Cookie {
	c := &http.Cookie{Name: CookieName, Value: value, Path: cookiePath, HttpOnly: true,
		// Lax: the callback is a top-level navigation from the provider's site.
		SameSite: http.SameSiteLaxMode, Secure: r.TLS != nil}
	if ttl < 0 {
		c.MaxAge = -1
	} else {
		c.MaxAge = int(ttl.Seconds())
	}
	return c
}

func (rp *RP) config(p *gooidc.Provider, redirect string) *oauth2.Config {
	return &oauth2.Config{
		ClientID:     rp.o.ClientID,
		ClientSecret: rp.o.ClientSecret,
		Endpoint:     p.Endpoint(),
		RedirectURL:  redirect,
		Scopes:       append([]string{gooidc.ScopeOpenID}, rp.o.Scopes...),
	}
}

// redirectURL is the configured callback URL, else this server's as the
// request reached it.
func (rp *RP) redirectURL(r *http.Request) string {
	if rp.o.RedirectURL != "" {
		return rp.o.RedirectURL
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return (&url.URL{Scheme: scheme, Host: r.Host, Path: CallbackPath}).String()
}

// Callback is the query of a callback, as parsed by ParseCallback.
type Callback struct {
	Code, State string
	// Error and ErrorDescription are the provider's refusal (RFC 6749
	// §4.1.2.1); Issuer its iss parameter (RFC 9207), when sent.
	Error, ErrorDescription string
	Issuer                  string
}

// ParseCallback reads the query of a callback. Parameters it does not
// know (session_state, scope, …) are ignored, as providers add them; the
// ones it knows must appear at most once and be of sane size.
func ParseCallback(q url.Values) (Callback, error) {
	var c Callback
	for _, p := range []struct {
		name string
		v    *string
		max  int
	}{{"code", &c.Code, 2048}, {"state", &c.State, 256}, {"error", &c.Error, 256}, {"error_description", &c.ErrorDescription, 1024}, {"iss", &c.Issuer, 2048}} {
		vs := q[p.name]
		if len(vs) > 1 {
			return Callback{}, core.Invalid(p.name, "%s appears more than once", p.name)
		}
		if len(vs) == 0 {
			continue
		}
		if len(vs[0]) > p.max {
			return Callback{}, core.Invalid(p.name, "%s is longer than %d bytes", p.name, p.max)
		}
		*p.v = vs[0]
	}
	if c.Error != "" {
		return c, nil
	}
	if c.State == "" {
		return Callback{}, core.Invalid("state", "the sign-in callback has no state")
	}
	if c.Code == "" {
		return Callback{}, core.Invalid("code", "the sign-in callback has no code")
	}
	return c, nil
}

// Finish completes a sign-in at the callback: it checks the state against
// the cookie, exchanges the code, validates the ID token, maps the role
// and opens a console session. It returns the session id for the session
// cookie and the user. Every refusal is a core error with a message fit to
// show; none opens a session.
func (rp *RP) Finish(ctx context.Context, r *http.Request) (sessionID string, u store.User, err error) {
	sessionID, u, result, err := rp.finish(ctx, r)
	rp.count(result, err, r)
	if err == nil {
		rp.log.Info("single sign-on", "user", u.Name, "role", u.Role, "addr", clientAddr(r))
	}
	return sessionID, u, err
}

func (rp *RP) count(result string, err error, r *http.Request) {
	rp.logins.WithLabelValues(result).Inc()
	if err != nil {
		rp.logSome.Do(func() {
			rp.log.Warn("single sign-on refused", "result", result, "addr", clientAddr(r), "err", err)
		})
	}
}

func (rp *RP) finish(ctx context.Context, r *http.Request) (string, store.User, string, error) {
	cb, err := ParseCallback(r.URL.Query())
	if err != nil {
		return "", store.User{}, ResultInvalidRequest, err
	}
	if cb.Error != "" {
		msg := "the single sign-on provider refused the sign-in: " + printable(cb.Error)
		if cb.ErrorDescription != "" {
			msg += " (" + printable(cb.ErrorDescription) + ")"
		}
		return "", store.User{}, ResultProviderRefused, core.Errorf(core.KindUnauthorized, "%s", msg)
	}
	f, err := rp.flowOf(r)
	if err != nil {
		return "", store.User{}, ResultInvalidRequest, err
	}
	if subtle.ConstantTimeCompare([]byte(cb.State), []byte(f.State)) != 1 {
		return "", store.User{}, ResultInvalidRequest, core.Errorf(core.KindUnauthorized, "the sign-in state does not match the one this browser began; start the sign-in again")
	}
	if cb.Issuer != "" && cb.Issuer != rp.o.Issuer {
		return "", store.User{}, ResultInvalidRequest, core.Errorf(core.KindUnauthorized, "the sign-in came back from issuer %q, not %q", printable(cb.Issuer), rp.o.Issuer)
	}
	if err := rp.spend(f); err != nil {
		return "", store.User{}, ResultInvalidRequest, err
	}
	p, err := rp.discover(ctx)
	if err != nil {
		return "", store.User{}, ResultProviderUnavailable, err
	}
	xctx, cancel := context.WithTimeout(ctx, rp.o.DiscoveryTimeout)
	defer cancel()
	xctx = context.WithValue(xctx, oauth2.HTTPClient, rp.client)
	tok, err := rp.config(p, f.RedirectURL).Exchange(xctx, cb.Code, oauth2.VerifierOption(f.Verifier))
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) {
			return "", store.User{}, ResultProviderRefused, core.Errorf(core.KindUnauthorized, "the single sign-on provider refused the sign-in code (used already, expired or not issued to this browser): %s", printable(re.ErrorCode))
		}
		return "", store.User{}, ResultProviderUnavailable, core.Errorf(core.KindUnavailable, "the single sign-on provider cannot be reached: %v; try again later", short(err))
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return "", store.User{}, ResultInvalidToken, core.Errorf(core.KindUnauthorized, "the single sign-on provider returned no ID token")
	}
	idt, err := p.Verifier(&gooidc.Config{ClientID: rp.o.ClientID, Now: rp.o.Now}).Verify(gooidc.ClientContext(xctx, rp.client), raw)
	if err != nil {
		return "", store.User{}, ResultInvalidToken, core.Errorf(core.KindUnauthorized, "the ID token from the single sign-on provider is not valid: %v", short(err))
	}
	if subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(f.Nonce)) != 1 {
		return "", store.User{}, ResultInvalidToken, core.Errorf(core.KindUnauthorized, "the ID token was not issued for this sign-in (nonce mismatch)")
	}
	var claims map[string]any
	if err := idt.Claims(&claims); err != nil {
		return "", store.User{}, ResultInvalidToken, core.Errorf(core.KindUnauthorized, "the ID token's claims cannot be read: %v", short(err))
	}
	name := UserName(idt.Subject)
	role, err := rp.role(name, claims)
	if err != nil {
		return "", store.User{}, ResultNoRole, err
	}
	var groups []string
	if rp.o.GroupsClaim != "" {
		groups = claimValues(claims, rp.o.GroupsClaim)
		if len(groups) == 0 {
			return "", store.User{}, ResultNoRole, core.Errorf(core.KindForbidden, "%s may not sign in: the ID token has no %q claim to scope it to groups (--oidc-groups-claim)", name, rp.o.GroupsClaim)
		}
	}
	id, u, err := rp.o.Users.ExternalLogin(ctx, name, role, groups, clientAddr(r))
	if err != nil {
		return "", store.User{}, ResultError, err
	}
	return id, u, ResultOK, nil
}

// spend marks a sign-in's callback used: a second callback with the same
// cookie (a replay) is refused before anything is asked of the provider.
func (rp *RP) spend(f flow) error {
	now := rp.o.Now().Unix()
	rp.spentMu.Lock()
	defer rp.spentMu.Unlock()
	if _, used := rp.spent[f.State]; used {
		return core.Errorf(core.KindUnauthorized, "this sign-in was finished already; start the sign-in again")
	}
	if len(rp.spent) >= rp.o.MaxSpent {
		for s, exp := range rp.spent {
			if now > exp {
				delete(rp.spent, s)
			}
		}
		if len(rp.spent) >= rp.o.MaxSpent {
			return core.Errorf(core.KindRateLimited, "too many single sign-ons in a short time (--oidc-max-callbacks); try again in a minute")
		}
	}
	rp.spent[f.State] = f.Expires
	return nil
}

// role maps the role claim to a role.
func (rp *RP) role(name string, claims map[string]any) (string, error) {
	var values []string
	if rp.o.RoleClaim != "" {
		values = claimValues(claims, rp.o.RoleClaim)
	}
	if role, ok := rp.o.RoleMap.Role(values); ok {
		return role, nil
	}
	if rp.o.DefaultRole != "" {
		return rp.o.DefaultRole, nil
	}
	return "", core.Errorf(core.KindForbidden, "%s has no role on this server: no value of its %q claim is mapped by --oidc-role-map and --oidc-default-role is not set; ask an administrator", name, rp.o.RoleClaim)
}

// UserName is the Mote user of a provider's subject: "oidc:<sub>", or
// "oidc:sha256:<hex>" when the subject is too long or holds spaces or
// control characters.
func UserName(sub string) string {
	ok := sub != "" && len(UserPrefix)+len(sub) <= 128
	for _, r := range sub {
		if unicode.IsSpace(r) || unicode.IsControl(r) || r == unicode.ReplacementChar {
			ok = false
		}
	}
	if ok {
		return UserPrefix + sub
	}
	h := sha256.Sum256([]byte(sub))
	return UserPrefix + "sha256:" + hex.EncodeToString(h[:16])
}

// claimValues returns a claim's string values: a string, or the strings
// of an array (at most maxClaimValues).
func claimValues(claims map[string]any, name string) []string {
	switch v := claims[name].(type) {
	case string:
		if v != "" {
			return []string{v}
		}
	case []any:
		var out []string
		for _, e := range v {
			if s, ok := e.(string); ok && s != "" {
				out = append(out, s)
			}
			if len(out) == maxClaimValues {
				break
			}
		}
		return out
	}
	return nil
}

// seal signs a flow into a cookie value.
func (rp *RP) seal(f flow) string {
	b, _ := json.Marshal(f)
	body := base64.RawURLEncoding.EncodeToString(b)
	return body + "." + base64.RawURLEncoding.EncodeToString(rp.mac(body))
}

func (rp *RP) mac(body string) []byte {
	m := hmac.New(sha256.New, rp.key)
	m.Write([]byte(body))
	return m.Sum(nil)
}

// flowOf reads and checks the sign-in cookie.
func (rp *RP) flowOf(r *http.Request) (flow, error) {
	c, err := r.Cookie(CookieName)
	if err != nil || c.Value == "" {
		return flow{}, core.Errorf(core.KindUnauthorized, "this browser has no sign-in in progress (it began elsewhere, was finished already, or cookies are blocked); start the sign-in again")
	}
	bad := core.Errorf(core.KindUnauthorized, "the sign-in cookie is not valid (tampered with, or from before a restart); start the sign-in again")
	if len(c.Value) > maxCookie {
		return flow{}, bad
	}
	body, sig, ok := strings.Cut(c.Value, ".")
	if !ok {
		return flow{}, bad
	}
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil || !hmac.Equal(got, rp.mac(body)) {
		return flow{}, bad
	}
	b, err := base64.RawURLEncoding.DecodeString(body)
	if err != nil {
		return flow{}, bad
	}
	var f flow
	if err := json.Unmarshal(b, &f); err != nil || f.State == "" {
		return flow{}, bad
	}
	if rp.o.Now().Unix() > f.Expires {
		return flow{}, core.Errorf(core.KindUnauthorized, "the sign-in took longer than %s; start it again (--oidc-login-timeout)", rp.o.LoginTimeout)
	}
	return f, nil
}

func randomString() string {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		panic("oidc: crypto/rand failed: " + err.Error())
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// printable keeps what a provider or a callback says fit for a page and a
// log line: printable characters, at most 200 bytes.
func printable(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsPrint(r) {
			return r
		}
		return '?'
	}, s)
	if len(s) > 200 {
		s = strings.ToValidUTF8(s[:200], "") + "…"
	}
	return s
}

func short(err error) string { return printable(err.Error()) }

func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
