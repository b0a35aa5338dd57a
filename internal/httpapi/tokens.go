package httpapi

import (
	"net/http"
	"time"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/store"
)

// tokenCreate is the body of POST /tokens.
type tokenCreate struct {
	Name      string  `json:"name"`
	Role      string  `json:"role"`      // absent: admin
	ExpiresAt *string `json:"expiresAt"` // RFC 3339
}

// newToken is a created token with its secret, shown once.
type newToken struct {
	store.Token
	Secret string `json:"token"`
}

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
	t, secret, err := s.reg.CreateToken(r.Context(), in.Name, in.Role, expires)
	if err != nil {
		return err
	}
	return created(w, "/tokens/"+t.ID, newToken{Token: t, Secret: secret})
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
	ts, next, err := pageByCreation(ts, after, limit, func(t store.Token) (time.Time, string) { return t.CreatedAt, t.ID })
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, newList(ts, next))
}

func (s *server) deleteToken(w http.ResponseWriter, r *http.Request) error {
	if err := noParams(r); err != nil {
		return err
	}
	id := r.PathValue("id")
	if id == "" {
		return core.NotFound("token", id)
	}
	if err := s.reg.DeleteToken(r.Context(), id); err != nil {
		return err
	}
	return noContent(w)
}
