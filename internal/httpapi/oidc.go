package httpapi

import (
	"fmt"
	"html"
	"net/http"
	"strings"

	"github.com/moteiot/mote/internal/audit"
	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/oidc"
)

// Single sign-on (internal/oidc, docs/users.md): GET /auth/oidc tells the
// console whether to offer it, /auth/oidc/login sends the browser to the
// provider, and /auth/oidc/callback comes back from it with the same
// session cookie POST /auth/login sets. The last two are browser
// navigations: a refusal is a small HTML page when the browser asks for
// HTML, else a problem.

// OIDCInfo is the answer of GET /auth/oidc.
type OIDCInfo struct {
	Enabled  bool   `json:"enabled"`
	Label    string `json:"label,omitempty"`
	LoginURL string `json:"loginUrl,omitempty"`
}

func (s *server) oidcInfo(w http.ResponseWriter, r *http.Request) error {
	if err := noParams(r); err != nil {
		return err
	}
	if s.oidc == nil {
		return writeJSON(w, http.StatusOK, OIDCInfo{})
	}
	return writeJSON(w, http.StatusOK, OIDCInfo{Enabled: true, Label: s.oidc.ButtonLabel(), LoginURL: oidc.LoginPath})
}

func errNoSSO() error {
	return core.Errorf(core.KindNotFound, "single sign-on is not configured on this server (--oidc-issuer)")
}

func (s *server) oidcLogin(w http.ResponseWriter, r *http.Request) error {
	if s.oidc == nil {
		return ssoPage(w, r, errNoSSO())
	}
	if err := noParams(r); err != nil {
		return ssoPage(w, r, err)
	}
	to, c, err := s.oidc.Begin(r.Context(), r)
	if err != nil {
		return ssoPage(w, r, err)
	}
	http.SetCookie(w, c)
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, to, http.StatusFound)
	return nil
}

func (s *server) oidcCallback(w http.ResponseWriter, r *http.Request) error {
	if s.oidc == nil {
		return ssoPage(w, r, errNoSSO())
	}
	// The sign-in cookie is spent whatever happens.
	http.SetCookie(w, s.oidc.ClearCookie(r))
	w.Header().Set("Cache-Control", "no-store")
	id, u, err := s.oidc.Finish(r.Context(), r)
	if err != nil {
		return ssoPage(w, r, err)
	}
	noteAuditActor(r, audit.ActorUser, u.Name, "", "", "")
	noteAudit(r, u.Name, nil)
	http.SetCookie(w, sessionCookie(r, id, s.users.SessionTTL()))
	http.Redirect(w, r, "/", http.StatusFound) // the console
	return nil
}

// ssoPage answers a refused single sign-on: an HTML page for a browser
// (with a way back to the console's sign-in), else the problem.
func ssoPage(w http.ResponseWriter, r *http.Request, err error) error {
	if !strings.Contains(r.Header.Get("Accept"), "text/html") || core.KindOf(err) == core.KindInternal {
		return err
	}
	p := problemFor(err)
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", "default-src 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(p.Status)
	_, werr := fmt.Fprintf(w, `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Sign-in refused — Mote</title></head>
<body><main><h1>Single sign-on failed</h1>
<p role="alert">%s</p>
<p><a href="/">Back to the sign-in page</a></p></main></body></html>
`, html.EscapeString(p.Detail))
	return werr
}
