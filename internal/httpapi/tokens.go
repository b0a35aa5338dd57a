package httpapi

import (
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/httpapi/wire"
	"github.com/moteiot/mote/internal/registry"
	"github.com/moteiot/mote/internal/store"
)

// API tokens (docs/users.md): every signed-in principal may create
// tokens for itself, with a role no higher and a scope no wider than its
// own; an admin may create them for another user (no higher and no wider
// than that user) and sees and revokes every token.

// tokenCreate is the body of POST /tokens.
type tokenCreate struct {
	Name      string   `json:"name"`
	Role      string   `json:"role"`      // absent: the owner's role
	User      *string  `json:"user"`      // absent: the caller's user
	Groups    []string `json:"groups"`    // absent: the owner's scope
	ExpiresAt *string  `json:"expiresAt"` // RFC 3339
	RateLimit int      `json:"rateLimit"` // requests per minute, 0: none
}

// tokenJSON is a token on the wire, without its secret.
type tokenJSON = wire.Token

func tokenOut(t store.Token) tokenJSON {
	return tokenJSON{ID: t.ID, Name: t.Name, Role: t.Role, User: t.User, Groups: t.Groups, RateLimit: t.RateLimit,
		CreatedAt: t.CreatedAt, ExpiresAt: t.ExpiresAt, LastUsedAt: t.LastUsedAt}
}

// newToken is a created token with its secret, shown once.
type newToken = wire.NewToken

func (s *server) createToken(w http.ResponseWriter, r *http.Request) error {
	if err := noParams(r); err != nil {
		return err
	}
	var in tokenCreate
	if err := decodeJSON(w, r, &in); err != nil {
		return err
	}
	expires, err := parseTime("expiresAt", in.ExpiresAt)
	if err != nil {
		return err
	}
	caller, _ := tokenFrom(r.Context())
	// The owner: the caller's user unless an admin names another.
	owner, ownerRole, ownerGroups := caller.User, caller.Role, caller.Groups
	if in.User != nil && *in.User != caller.User {
		if caller.Role != roleAdmin || caller.Groups != nil {
			s.metrics.refused("role")
			return &core.Error{Kind: core.KindForbidden, Field: "user", Msg: "only an unscoped admin may create a token for another user"}
		}
		if *in.User != "" {
			if s.users == nil {
				return core.Errorf(core.KindUnavailable, "users are not available on this server")
			}
			u, err := s.users.Get(r.Context(), *in.User)
			if core.IsNotFound(err) {
				return core.Invalid("user", "user: there is no user %q", *in.User)
			}
			if err != nil {
				return err
			}
			owner, ownerRole, ownerGroups = u.Name, u.Role, u.Groups
		} else {
			owner, ownerRole, ownerGroups = "", roleAdmin, nil
		}
	}
	role := in.Role
	if role == "" {
		role = ownerRole
	}
	if !registry.ValidRole(role) {
		return core.Invalid("role", "role must be admin, operator or viewer")
	}
	if !roleAllows(ownerRole, role) || !roleAllows(caller.Role, role) {
		s.metrics.refused("role")
		return &core.Error{Kind: core.KindForbidden, Field: "role", Msg: "a token's role may be no higher than its user's (" + ownerRole + ") and yours (" + caller.Role + ")"}
	}
	groups := in.Groups
	if groups != nil && len(groups) == 0 {
		groups = nil
	}
	if groups == nil && caller.Groups != nil && owner == caller.User {
		groups = caller.Groups // no wider than the caller (a narrowed token of the same user)
	}
	if s.users != nil && len(groups) > s.users.MaxScopeGroups() {
		return core.Invalid("groups", "at most %d groups (--scope-max-groups)", s.users.MaxScopeGroups())
	}
	if groups != nil {
		slices.Sort(groups)
		groups = slices.Compact(groups)
		if err := s.checkGroups(r.Context(), "groups", groups); err != nil {
			return err
		}
		if !scopeWithin(groups, ownerGroups) || !scopeWithin(groups, caller.Groups) {
			s.metrics.refused("out_of_scope")
			return &core.Error{Kind: core.KindForbidden, Field: "groups", Msg: "a token's groups must be within its user's scope and yours"}
		}
	}
	t, secret, err := s.reg.CreateTokenSpec(r.Context(), registry.TokenSpec{Name: in.Name, Role: role, User: owner, Groups: groups,
		ExpiresAt: expires, RateLimit: in.RateLimit})
	if err != nil {
		return err
	}
	s.log.Info("API token created", "token", t.ID, "role", t.Role, "user", t.User, "by", principalName(r))
	return created(w, "/tokens/"+t.ID, newToken{Token: tokenOut(t), Secret: secret})
}

// ownsToken reports whether the caller may see and revoke token t: an
// unscoped admin any, anyone else the tokens of its own user (or, for a
// token of no user, only itself).
func ownsToken(caller, t store.Token) bool {
	switch {
	case caller.Role == roleAdmin && caller.Groups == nil:
		return true
	case caller.User != "":
		return t.User == caller.User
	}
	return t.ID == caller.ID
}

func (s *server) listTokens(w http.ResponseWriter, r *http.Request) error {
	after, limit, err := pageParams(r)
	if err != nil {
		return err
	}
	ts, err := s.reg.ListTokens(r.Context())
	if err != nil {
		return err
	}
	caller, _ := tokenFrom(r.Context())
	ts = slices.DeleteFunc(ts, func(t store.Token) bool { return !ownsToken(caller, t) })
	ts, next, err := pageByCreation(ts, after, limit, func(t store.Token) (time.Time, string) { return t.CreatedAt, t.ID })
	if err != nil {
		return err
	}
	out := make([]tokenJSON, len(ts))
	for i := range ts {
		out[i] = tokenOut(ts[i])
	}
	return writeJSON(w, http.StatusOK, newList(out, next))
}

func (s *server) deleteToken(w http.ResponseWriter, r *http.Request) error {
	if err := noParams(r); err != nil {
		return err
	}
	id := r.PathValue("id")
	if id == "" || strings.HasPrefix(id, "@") {
		return core.NotFound("token", id)
	}
	caller, _ := tokenFrom(r.Context())
	if !(caller.Role == roleAdmin && caller.Groups == nil) {
		t, err := s.reg.GetToken(r.Context(), id)
		if err != nil {
			return err
		}
		if !ownsToken(caller, t) {
			return core.NotFound("token", id) // another's token is not there
		}
	}
	if err := s.reg.DeleteToken(r.Context(), id); err != nil {
		return err
	}
	s.log.Info("API token revoked", "token", id, "by", principalName(r))
	return noContent(w)
}
