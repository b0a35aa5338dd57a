package httpapi

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/moteiot/mote/internal/core"
)

// problemTypeBase prefixes the "type" of every problem; the kind follows.
const problemTypeBase = "https://mote.dev/problems/"

// problemContentType is the media type of error responses (RFC 9457).
const problemContentType = "application/problem+json"

// Problem is the body of every error response (RFC 9457).
type Problem struct {
	Type    string `json:"type"`
	Title   string `json:"title"`
	Status  int    `json:"status"`
	Detail  string `json:"detail,omitempty"`
	Field   string `json:"field,omitempty"`
	ErrorID string `json:"errorId,omitempty"`
}

// httpError is an error that only the HTTP edge knows: the core kinds have
// no method_not_allowed or unsupported_media_type. Its message is safe to
// show.
type httpError struct {
	status int
	kind   string
	field  string
	msg    string
	allow  string // Allow header of a 405
}

func (e *httpError) Error() string { return e.msg }

func errMethodNotAllowed(method, path, allow string) error {
	return &httpError{status: http.StatusMethodNotAllowed, kind: "method_not_allowed",
		msg: "method " + method + " is not allowed on " + path + " (allowed: " + allow + ")", allow: allow}
}

func errUnsupportedMediaType(got string) error {
	msg := "request body must be application/json"
	if got != "" {
		msg += ", not " + strconv.Quote(got)
	}
	return &httpError{status: http.StatusUnsupportedMediaType, kind: "unsupported_media_type", msg: msg}
}

func errTooLarge(limit int64) error {
	return core.Errorf(core.KindTooLarge, "request body is larger than %d bytes", limit)
}

// kindStatus maps a core error kind to its HTTP status (core.HTTPStatus:
// provisioning's audit entries record the same status for the same error).
func kindStatus(k core.Kind) int { return core.HTTPStatus(k) }

// problemFor turns an error into the problem to send. Internal errors get
// a fresh error id and a detail that reveals nothing but that id; the
// caller logs the error under the id.
func problemFor(err error) Problem {
	var he *httpError
	if errors.As(err, &he) {
		return Problem{
			Type:   problemTypeBase + he.kind,
			Title:  http.StatusText(he.status),
			Status: he.status,
			Detail: he.msg,
			Field:  he.field,
		}
	}
	kind := core.KindOf(err)
	status := kindStatus(kind)
	if kind == core.KindInternal {
		id := newErrorID()
		return Problem{
			Type:    problemTypeBase + core.KindInternal.String(),
			Title:   http.StatusText(status),
			Status:  status,
			Detail:  "internal error, id " + id,
			ErrorID: id,
		}
	}
	p := Problem{
		Type:   problemTypeBase + kind.String(),
		Title:  http.StatusText(status),
		Status: status,
		Field:  core.FieldOf(err),
	}
	// Only the message of the *core.Error is meant for the caller; its
	// cause (Err) is for the logs.
	var ce *core.Error
	if errors.As(err, &ce) {
		p.Detail = ce.Msg
		if p.Detail == "" && ce.Field != "" {
			p.Detail = "invalid " + ce.Field
		}
	}
	if p.Detail == "" {
		p.Detail = http.StatusText(status)
	}
	return p
}

// writeError sends err as application/problem+json and logs it: internal
// errors at error level with their id, the rest at debug level.
func writeError(log *slog.Logger, w http.ResponseWriter, r *http.Request, err error) {
	p := problemFor(err)
	if t, ok := tokenFrom(r.Context()); ok {
		log = log.With("token", t.ID)
	}
	switch {
	case p.ErrorID != "":
		log.ErrorContext(r.Context(), "http: internal error", "errorId", p.ErrorID,
			"method", r.Method, "path", r.URL.Path, "err", err)
	default:
		log.DebugContext(r.Context(), "http: request failed", "status", p.Status,
			"method", r.Method, "path", r.URL.Path, "err", err)
	}
	writeProblem(w, p, err)
}

func writeProblem(w http.ResponseWriter, p Problem, err error) {
	h := w.Header()
	switch p.Status {
	case http.StatusUnauthorized:
		h.Set("WWW-Authenticate", `Bearer realm="mote"`)
	case http.StatusMethodNotAllowed:
		var he *httpError
		if errors.As(err, &he) && he.allow != "" {
			h.Set("Allow", he.allow)
		}
	}
	body, _ := marshal(p) // cannot fail: strings and ints
	h.Set("Content-Type", problemContentType)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("X-Content-Type-Options", "nosniff")
	h.Del("Content-Encoding")
	w.WriteHeader(p.Status)
	w.Write(body)
}

// newErrorID returns a random id that ties a 500 response to its log line.
func newErrorID() string {
	b := make([]byte, 8)
	rand.Read(b) // never fails (crypto/rand panics instead)
	return hex.EncodeToString(b)
}
