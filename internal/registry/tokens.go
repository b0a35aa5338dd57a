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

// CreateToken creates an API token. The returned string is the whole token,
// shown once.
func (r *Registry) CreateToken(ctx context.Context, name, role string, expires *time.Time) (store.Token, string, error) {
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
	id := auth.NewID("tok")
	secret := auth.NewSecret()
	t, err := r.st.Tokens().Create(ctx, store.Token{ID: id, Name: name, Role: role, Hash: r.hasher.Hash(secret), ExpiresAt: expires})
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
	if t.ExpiresAt != nil && !t.ExpiresAt.After(r.now()) {
		return store.Token{}, bad
	}
	return t, nil
}

// ListTokens lists API tokens (never their secrets).
func (r *Registry) ListTokens(ctx context.Context) ([]store.Token, error) {
	return r.st.Tokens().List(ctx)
}

// DeleteToken deletes an API token; it stops working at once.
func (r *Registry) DeleteToken(ctx context.Context, id string) error {
	return r.st.Tokens().Delete(ctx, id)
}
