package registry

import (
	"context"
	"crypto/subtle"
	"strings"
	"time"

	"github.com/moteiot/mote/internal/auth"
	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/store"
)

// API roles, from most to least powerful.
const (
	RoleAdmin    = "admin"    // everything, including tokens
	RoleOperator = "operator" // manage things, credentials, policies
	RoleViewer   = "viewer"   // read only
)

// ValidRole reports whether r is a known role.
func ValidRole(r string) bool { return r == RoleAdmin || r == RoleOperator || r == RoleViewer }

// tokenPrefix starts every API token: mote.<id>.<secret>.
const tokenPrefix = "mote."

// CreateToken creates an API token of no user. The returned string is
// the whole token, shown once.
func (r *Registry) CreateToken(ctx context.Context, name, role string, expires *time.Time) (store.Token, string, error) {
	return r.CreateTokenSpec(ctx, TokenSpec{Name: name, Role: role, ExpiresAt: expires})
}

// TokenSpec describes an API token to create.
type TokenSpec struct {
	Name      string
	Role      string // "": admin
	User      string // the owner ("": none); the caller checks it exists
	Groups    []string
	ExpiresAt *time.Time
	RateLimit int // requests per minute, 0: none
}

// MaxTokenRateLimit bounds TokenSpec.RateLimit.
const MaxTokenRateLimit = 1_000_000

// CreateTokenSpec creates an API token. The returned string is the whole
// token, shown once.
func (r *Registry) CreateTokenSpec(ctx context.Context, sp TokenSpec) (store.Token, string, error) {
	name, role, expires := sp.Name, sp.Role, sp.ExpiresAt
	if name == "" || len(name) > 128 || hasControl(name) {
		return store.Token{}, "", core.Invalid("name", "name must be 1 to 128 printable characters")
	}
	if role == "" {
		role = RoleAdmin
	}
	if !ValidRole(role) {
		return store.Token{}, "", core.Invalid("role", "role must be admin, operator or viewer")
	}
	if expires != nil && !expires.After(r.now()) {
		return store.Token{}, "", core.Invalid("expiresAt", "expiresAt must be in the future")
	}
	if sp.RateLimit < 0 || sp.RateLimit > MaxTokenRateLimit {
		return store.Token{}, "", core.Invalid("rateLimit", "rateLimit must be 0 (none) to %d requests per minute", MaxTokenRateLimit)
	}
	for _, g := range sp.Groups {
		if err := core.ValidateName("groups", g); err != nil {
			return store.Token{}, "", err
		}
	}
	id := auth.NewID("tok")
	secret := auth.NewSecret()
	t, err := r.st.Tokens().Create(ctx, store.Token{ID: id, Name: name, Role: role, Hash: r.hasher.Hash(secret), ExpiresAt: expires,
		User: sp.User, Groups: sp.Groups, RateLimit: sp.RateLimit})
	if err != nil {
		return store.Token{}, "", err
	}
	return t, tokenPrefix + id + "." + secret, nil
}

// AuthenticateToken checks a raw API token and returns it. Any failure is
// KindUnauthorized with a message that does not echo the token.
func (r *Registry) AuthenticateToken(ctx context.Context, raw string) (store.Token, error) {
	bad := core.Errorf(core.KindUnauthorized, "invalid or expired API token")
	rest, ok := strings.CutPrefix(raw, tokenPrefix)
	if !ok {
		return store.Token{}, bad
	}
	id, secret, ok := strings.Cut(rest, ".")
	if !ok || id == "" || secret == "" {
		return store.Token{}, bad
	}
	t, err := r.st.Tokens().Get(ctx, id)
	if err != nil {
		if core.IsNotFound(err) {
			return store.Token{}, bad
		}
		return store.Token{}, err
	}
	if subtle.ConstantTimeCompare(t.Hash, r.hasher.Hash(secret)) != 1 {
		return store.Token{}, bad
	}
	now := r.now()
	if t.ExpiresAt != nil && !t.ExpiresAt.After(now) {
		return store.Token{}, bad
	}
	r.touchToken(ctx, t.ID, now)
	return t, nil
}

// touchInterval is how often, at most, a token's LastUsedAt is written: a
// busy API client must not turn every request into a database write.
const touchInterval = time.Minute

// touchToken records that the token id was used at now, unless that was
// recorded less than touchInterval ago by this process. A failure is
// logged, never returned: it must not refuse a valid token.
func (r *Registry) touchToken(ctx context.Context, id string, now time.Time) {
	r.touchMu.Lock()
	last, seen := r.touched[id]
	due := !seen || now.Sub(last) >= touchInterval || now.Before(last) // also after the clock went back
	if due {
		if r.touched == nil {
			r.touched = make(map[string]time.Time)
		}
		r.touched[id] = now // before writing: concurrent requests do not all write
	}
	r.touchMu.Unlock()
	if !due {
		return
	}
	if err := r.st.Tokens().Touch(ctx, id, now); err != nil {
		r.log.Warn("cannot record the use of an API token", "token", id, "err", err)
	}
}

// forgetToken drops the in-memory use record of a deleted token.
func (r *Registry) forgetToken(id string) {
	r.touchMu.Lock()
	delete(r.touched, id)
	r.touchMu.Unlock()
}

// ListTokens lists API tokens (never their secrets).
func (r *Registry) ListTokens(ctx context.Context) ([]store.Token, error) {
	return r.st.Tokens().List(ctx)
}

// DeleteToken deletes an API token; it stops working at once.
func (r *Registry) DeleteToken(ctx context.Context, id string) error {
	if err := r.st.Tokens().Delete(ctx, id); err != nil {
		return err
	}
	r.forgetToken(id)
	return nil
}

// GetToken returns an API token (never its secret).
func (r *Registry) GetToken(ctx context.Context, id string) (store.Token, error) {
	return r.st.Tokens().Get(ctx, id)
}
