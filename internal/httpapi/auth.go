package httpapi

import (
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/store"
)

// Console sessions (docs/console.md): POST /auth/login sets the
// mote_session cookie, which the API then accepts in place of a bearer
// token. A request authenticated by the cookie that changes something
// must carry the header X-Mote-Console (the console sends it on every
// call; a cross-site form cannot, and a cross-site script cannot without a
// CORS preflight this API never grants), and when the browser says where
// it comes from (Origin, Sec-Fetch-Site) that must be this server.

// SessionCookie is the name of the console's session cookie.
const SessionCookie = "mote_session"

// CSRFHeader must be present on cookie-authenticated unsafe requests.
const CSRFHeader = "X-Mote-Console"

type loginRequest struct {
	User     string `json:"user"`
	Password string `json:"password"`
}

// Me describes who is signed in (GET /auth/me, POST /auth/login).
type Me struct {
	User string `json:"user,omitempty"`
	Role string `json:"role,omitempty"`
	Via  string `json:"via"` // "session", "token" or "none" (not signed in)
	// Groups is the principal's group scope (absent: every thing).
	Groups    []string   `json:"groups,omitempty"`
	ExpiresAt *time.Time `json:"expiresAt,omitempty"`
}

func (s *server) login(w http.ResponseWriter, r *http.Request) error {
	if s.users == nil {
		return core.Errorf(core.KindUnavailable, "console sign-in is not available on this server")
	}
	if err := sameOrigin(r); err != nil {
		return err
	}
	if err := noParams(r); err != nil {
		return err
	}
	var req loginRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	if req.User == "" {
		return core.Invalid("user", "user is required")
	}
	if req.Password == "" {
		return core.Invalid("password", "password is required")
	}
	id, u, err := s.users.Login(r.Context(), req.User, req.Password, clientAddr(r))
	if err != nil {
		return err
	}
	ttl := s.users.SessionTTL()
	http.SetCookie(w, sessionCookie(r, id, ttl))
	exp := time.Now().Add(ttl).UTC().Truncate(time.Second)
	return writeJSON(w, http.StatusOK, Me{User: u.Name, Role: u.Role, Via: "session", ExpiresAt: &exp, Groups: u.Groups})
}

func (s *server) logout(w http.ResponseWriter, r *http.Request) error {
	if err := noParams(r); err != nil {
		return err
	}
	c, err := r.Cookie(SessionCookie)
	if err == nil && c.Value != "" {
		if err := checkCSRF(r); err != nil {
			return err
		}
		if s.users != nil {
			if err := s.users.Logout(r.Context(), c.Value); err != nil {
				return err
			}
		}
	}
	http.SetCookie(w, sessionCookie(r, "", -1))
	return noContent(w)
}

func (s *server) me(w http.ResponseWriter, r *http.Request) error {
	if err := noParams(r); err != nil {
		return err
	}
	// Without an Authorization header this answers the console's "am I
	// signed in?" without an error: a missing, expired or ended session
	// is {"via": "none"} (and the stale cookie is cleared).
	if r.Header.Get("Authorization") == "" {
		t, ok, err := s.sessionAuth(r, route{method: r.Method, path: "/auth/me", role: roleView})
		if !ok || core.KindOf(err) == core.KindUnauthorized {
			if ok {
				http.SetCookie(w, sessionCookie(r, "", -1))
			}
			return writeJSON(w, http.StatusOK, Me{Via: "none"})
		}
		if err != nil {
			return err
		}
		// Renew the cookie's lifetime along with the session's.
		c, _ := r.Cookie(SessionCookie)
		ttl := s.users.SessionTTL()
		http.SetCookie(w, sessionCookie(r, c.Value, ttl))
		exp := time.Now().Add(ttl).UTC().Truncate(time.Second)
		return writeJSON(w, http.StatusOK, Me{User: t.Name, Role: t.Role, Via: "session", ExpiresAt: &exp, Groups: t.Groups})
	}
	t, err := s.authorize(r, route{method: r.Method, path: "/auth/me", role: roleView})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, Me{User: t.Name, Role: t.Role, Via: "token", ExpiresAt: t.ExpiresAt, Groups: t.Groups})
}

// sessionCookie builds the session cookie; maxAge < 0 deletes it.
func sessionCookie(r *http.Request, id string, ttl time.Duration) *http.Cookie {
	c := &http.Cookie{
		Name:     SessionCookie,
		Value:    id,
		Path:     "/",
		HttpOnly: true,
		SameSite: http.SameSiteStrictMode,
		Secure:   r.TLS != nil,
	}
	if ttl < 0 {
		c.MaxAge = -1
	} else {
		c.MaxAge = int(ttl.Seconds())
		c.Expires = time.Now().Add(ttl)
	}
	return c
}

// sessionAuth authenticates a request by its session cookie. ok is false
// when there is no cookie (or no user service).
func (s *server) sessionAuth(r *http.Request, rt route) (t *store.Token, ok bool, err error) {
	if s.users == nil {
		return nil, false, nil
	}
	c, cerr := r.Cookie(SessionCookie)
	if cerr != nil || c.Value == "" {
		return nil, false, nil
	}
	if !safeMethod(r.Method) {
		if err := checkCSRF(r); err != nil {
			return nil, true, err
		}
	}
	u, err := s.users.Authenticate(r.Context(), c.Value)
	if err != nil {
		return nil, true, err
	}
	if !roleAllows(u.Role, rt.role) {
		s.metrics.refused("role")
		return nil, true, core.Errorf(core.KindForbidden, "user %q (role %s) may not %s %s (needs %s)", u.Name, u.Role, r.Method, rt.pattern(), rt.role)
	}
	// Session users appear as a token whose id starts with "@".
	return &store.Token{ID: "@" + u.Name, Name: u.Name, Role: u.Role, User: u.Name, Groups: u.Groups}, true, nil
}

func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

// checkCSRF refuses a cookie-authenticated unsafe request that is not
// from the console itself.
func checkCSRF(r *http.Request) error {
	if r.Header.Get(CSRFHeader) == "" {
		return core.Errorf(core.KindForbidden, "a request authenticated by the session cookie that changes something must carry the %s header", CSRFHeader)
	}
	return sameOrigin(r)
}

// sameOrigin refuses a request the browser says comes from another site.
func sameOrigin(r *http.Request) error {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "", "same-origin", "none":
	default:
		return core.Errorf(core.KindForbidden, "cross-site request refused (Sec-Fetch-Site: %s)", r.Header.Get("Sec-Fetch-Site"))
	}
	if o := r.Header.Get("Origin"); o != "" {
		u, err := url.Parse(o)
		if err != nil || u.Host != r.Host {
			return core.Errorf(core.KindForbidden, "cross-origin request refused (Origin %s is not this server)", o)
		}
	}
	return nil
}

// clientAddr is the request's remote IP, for the login failure limit.
func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
