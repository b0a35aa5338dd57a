package httpapi

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/moteiot/mote/internal/audit"
	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/store"
)

// The audit edge (docs/audit.md): every state-changing route of the table
// is recorded here, in one place, so that a new route cannot skip it.
// What a route records is derived from its method and path (auditAction,
// auditTarget); auditOverrides names the few that read better otherwise.

// auditCapture is how much of a request or response body is looked at to
// find a target's name; documents are kept only up to --audit-max-document.
const auditCapture = 64 << 10

// auditActions overrides the derived action of a route ("" : not audited).
var auditActions = map[string]string{
	"POST /auth/login":                        "auth.login",
	"GET /auth/oidc/callback":                 "auth.oidc.login", // single sign-on (oidc.go)
	"PUT /things/{name}/policies/{policy}":    "thing.policy.attach",
	"DELETE /things/{name}/policies/{policy}": "thing.policy.detach",
	"POST /things/{name}/methods/{method}":    "thing.method.invoke",
	"POST /things/{name}/c2d":                 "thing.c2d.send",
	"POST /things/{name}/shadows/{shadow}":    "thing.shadow.update",
	"POST /artifacts/{name}/{version}/url":    "artifact.url.create",
	"POST /users/{name}/password":             "user.password.change",
	"POST /provisioning/register":             "provisioning.register", // public: the derived key is the credential
	"POST /provisioning/claim":                "provisioning.claim",    // public: the claim token is the credential
	"POST /rules/test":                        "",                      // evaluates; changes nothing
}

// auditNoDocuments are routes whose bodies are never kept: device
// payloads, binary uploads, passwords and signed URLs.
var auditNoDocuments = map[string]bool{
	"POST /auth/login":                     true,
	"GET /auth/oidc/callback":              true,
	"POST /things/{name}/methods/{method}": true,
	"POST /things/{name}/c2d":              true,
	"POST /things/{name}/commands":         true,
	"POST /artifacts":                      true,
	"POST /artifacts/{name}/{version}/url": true,
	"POST /users/{name}/password":          true,
	"POST /provisioning/register":          true,
	"POST /provisioning/claim":             true,
}

// audited reports whether a route is recorded: every unsafe method on a
// route that needs a signed-in principal (a viewer changes its own tokens
// and password), sign-in and device provisioning. Device routes (their
// own data plane) and read-only POSTs (/rules/test) are not.
func audited(rt route) bool {
	if a, ok := auditActions[rt.method+" "+rt.path]; ok {
		return a != ""
	}
	if safeMethod(rt.method) || rt.method == "" {
		return false
	}
	return rt.role == roleView || rt.role == roleWrite || rt.role == roleAdmin
}

// auditAction derives a route's action: the singular literal segments of
// its path and a verb (thing.create, thing.credential.revoke, job.cancel).
// A POST to a last literal segment after a parameter that has no GET
// route (/jobs/{id}/cancel) names its verb; one with a GET is a
// collection (/things/{name}/credentials: create).
func auditAction(rt route, gets map[string]bool) string {
	if a, ok := auditActions[rt.method+" "+rt.path]; ok {
		return a
	}
	segs := strings.Split(strings.Trim(rt.path, "/"), "/")
	var nouns []string
	verb := ""
	for i, sg := range segs {
		if strings.HasPrefix(sg, "{") {
			continue
		}
		if n, v, ok := strings.Cut(sg, ":"); ok { // /things:import
			nouns = append(nouns, singular(n))
			verb = v
			continue
		}
		if i == len(segs)-1 && i > 0 && strings.HasPrefix(segs[i-1], "{") && rt.method == http.MethodPost && !gets[rt.path] {
			verb = sg // /jobs/{id}/cancel, /alarms/{id}/ack
			continue
		}
		nouns = append(nouns, singular(sg))
	}
	if verb == "" {
		switch rt.method {
		case http.MethodPost:
			verb = "create"
		case http.MethodPut:
			verb = "replace"
		case http.MethodPatch:
			verb = "update"
		case http.MethodDelete:
			verb = "delete"
		default:
			verb = strings.ToLower(rt.method)
		}
	}
	return strings.Join(append(nouns, verb), ".")
}

func singular(s string) string {
	switch {
	case s == "analytics":
		return s
	case strings.HasSuffix(s, "ies"):
		return strings.TrimSuffix(s, "ies") + "y"
	case strings.HasSuffix(s, "s"):
		return strings.TrimSuffix(s, "s")
	}
	return s
}

// auditTarget derives the target: the literal segments before the first
// parameter (thing, analytics.rule) and the values of the parameters that
// follow them (t1, fw/1.2.0). Nested resources belong to their parent, so
// a thing's trail shows its credentials and shadows.
func auditTarget(rt route, r *http.Request) (kind, name string) {
	segs := strings.Split(strings.Trim(rt.path, "/"), "/")
	var nouns, vals []string
	for _, sg := range segs {
		if strings.HasPrefix(sg, "{") {
			vals = append(vals, r.PathValue(strings.Trim(sg, "{}")))
			continue
		}
		if len(vals) > 0 {
			break
		}
		n, _, _ := strings.Cut(sg, ":")
		nouns = append(nouns, singular(n))
	}
	return strings.Join(nouns, "."), strings.Join(vals, "/")
}

// auditRoute is what the audit edge knows of one route, computed once.
type auditRoute struct {
	action   string
	keepDocs bool
	before   *route // the GET route that reads the target before a change
}

// auditRoutes prepares the audited routes of a table.
func auditRoutes(table []route) map[string]auditRoute {
	gets := map[string]*route{}
	getPaths := map[string]bool{}
	for i := range table {
		if table[i].method == http.MethodGet {
			gets[table[i].path] = &table[i]
			getPaths[table[i].path] = true
		}
	}
	out := map[string]auditRoute{}
	for _, rt := range table {
		if !audited(rt) {
			continue
		}
		key := rt.method + " " + rt.path
		ar := auditRoute{action: auditAction(rt, getPaths), keepDocs: !auditNoDocuments[key]}
		segs := strings.Split(strings.Trim(rt.path, "/"), "/")
		last := segs[len(segs)-1]
		switch {
		case rt.method != http.MethodPost:
			ar.before = gets[rt.path] // PUT, PATCH, DELETE of an item
		case strings.HasPrefix(last, "{"):
			ar.before = gets[rt.path] // POST to an item (a shadow update)
		case len(segs) > 1 && strings.HasPrefix(segs[len(segs)-2], "{") && !getPaths[rt.path]:
			ar.before = gets[rt.path[:strings.LastIndex(rt.path, "/")]] // POST /x/{id}/verb
		}
		out[key] = ar
	}
	return out
}

// auditNote lets a handler adjust its entry (the import names no single
// thing and keeps its own summary).
type auditNote struct {
	targetName string
	after      any
	set        bool

	// A public route's caller has no token: the handler names it
	// (provisioning: the device, and what admitted it).
	actorKind, actorName, actorID string
	targetKind                    string // with actorKind: replaces the derived one when set
}

type auditNoteKey struct{}

// noteAudit replaces the target name and after document of the request's
// audit entry.
func noteAudit(r *http.Request, targetName string, after any) {
	if n, ok := r.Context().Value(auditNoteKey{}).(*auditNote); ok {
		n.targetName, n.after, n.set = targetName, after, true
	}
}

// noteAuditActor names the actor of a request that carries no token (a
// device provisioning itself), and the target kind and name when known.
func noteAuditActor(r *http.Request, kind, name, id, targetKind, targetName string) {
	if n, ok := r.Context().Value(auditNoteKey{}).(*auditNote); ok {
		n.actorKind, n.actorName, n.actorID = kind, clip(name, 200), clip(id, 200)
		n.targetKind, n.targetName = targetKind, clip(targetName, 200)
	}
}

// captureWriter keeps the start of a response body.
type captureWriter struct {
	http.ResponseWriter
	buf bytes.Buffer
}

func (w *captureWriter) Write(b []byte) (int, error) {
	if room := auditCapture + 1 - w.buf.Len(); room > 0 {
		w.buf.Write(b[:min(len(b), room)])
	}
	return w.ResponseWriter.Write(b)
}

func (w *captureWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// captureBody keeps the start of a request body as it is read.
type captureBody struct {
	io.ReadCloser
	buf bytes.Buffer
}

func (b *captureBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if room := auditCapture - b.buf.Len(); room > 0 && n > 0 {
		b.buf.Write(p[:min(n, room)])
	}
	return n, err
}

// requestID is the request's X-Request-Id when it is a sane one, else a
// new one; it is sent back in the response.
func requestID(w http.ResponseWriter, r *http.Request) string {
	id := r.Header.Get("X-Request-Id")
	ok := id != "" && len(id) <= 64
	for _, c := range id {
		if c <= ' ' || c > '~' {
			ok = false
		}
	}
	if !ok {
		var b [8]byte
		_, _ = rand.Read(b[:])
		id = hex.EncodeToString(b[:])
	}
	w.Header().Set("X-Request-Id", id)
	return id
}

// serveAudited runs an authorized request's handler, recording it when
// the route is audited: a queue slot is reserved first (no slot: 503 and
// nothing changes), the target's document is read before the change
// (through the route's GET twin), and the entry is committed after.
func (s *server) serveAudited(rt route, w *statusWriter, r *http.Request) error {
	ar, ok := s.auditRoutes[rt.method+" "+rt.path]
	if s.audit == nil || !ok {
		return rt.h(w, r)
	}
	slot, err := s.audit.Reserve(r.Context())
	if err != nil {
		w.Header().Set("Retry-After", "1")
		return err
	}
	key := rt.method + " " + rt.path
	keepDocs := ar.keepDocs
	e := store.AuditEntry{
		Time:      time.Now(),
		Action:    ar.action,
		Source:    clientAddr(r),
		RequestID: requestID(w, r),
	}
	e.TargetKind, e.TargetName = auditTarget(rt, r)
	if t, ok := tokenFrom(r.Context()); ok {
		if id, isUser := strings.CutPrefix(t.ID, "@"); isUser {
			e.ActorKind, e.ActorName = audit.ActorUser, id
		} else {
			e.ActorKind, e.ActorName, e.ActorID = audit.ActorToken, t.Name, t.ID
		}
	}
	max := s.audit.MaxDocument()
	var before []byte
	if keepDocs && ar.before != nil {
		before = auditBefore(*ar.before, r)
	}
	note := &auditNote{}
	r = r.WithContext(context.WithValue(r.Context(), auditNoteKey{}, note))
	reqBody := &captureBody{ReadCloser: r.Body}
	if r.Body != nil && r.Body != http.NoBody {
		r.Body = reqBody
	}
	cw := &captureWriter{ResponseWriter: w}
	herr := rt.h(cw, r)

	e.Status = w.status
	if herr != nil && w.status == 0 {
		e.Status = problemFor(herr).Status
	}
	if key == "POST /auth/login" {
		var in struct {
			User string `json:"user"`
		}
		_ = json.Unmarshal(reqBody.buf.Bytes(), &in)
		e.ActorKind, e.ActorName = audit.ActorUser, clip(in.User, 200)
	}
	ok = e.Status >= 200 && e.Status < 300
	if e.TargetName == "" && ok {
		e.TargetName = nameIn(cw.buf.Bytes())
	}
	if e.TargetName == "" {
		e.TargetName = nameIn(reqBody.buf.Bytes())
	}
	if keepDocs {
		var omitted1, omitted2 bool
		if before != nil {
			e.Before, omitted1 = audit.Document(before, max)
		}
		if ok && isJSONResponse(cw) {
			if cw.buf.Len() > auditCapture {
				omitted2 = true
			} else {
				e.After, omitted2 = audit.Document(cw.buf.Bytes(), max)
			}
		}
		e.Omitted = omitted1 || omitted2
	}
	if note.actorKind != "" && e.ActorKind == "" {
		e.ActorKind, e.ActorName, e.ActorID = note.actorKind, note.actorName, note.actorID
		if note.targetKind != "" {
			e.TargetKind, e.TargetName = note.targetKind, note.targetName
		}
	}
	if note.set {
		e.TargetName = note.targetName
		e.After, e.Omitted = nil, false
		if note.after != nil {
			if b, err := json.Marshal(note.after); err == nil {
				e.After, e.Omitted = audit.Document(b, max)
			}
		}
	}
	slot.Commit(e)
	return herr
}

func isJSONResponse(w http.ResponseWriter) bool {
	mt, _, _ := mime.ParseMediaType(w.Header().Get("Content-Type"))
	return isJSONType(mt)
}

// nameIn returns the "name" (else "id") of a JSON object, for a target
// created without its name in the path.
func nameIn(b []byte) string {
	var v struct {
		Name string `json:"name"`
		ID   string `json:"id"`
	}
	if json.Unmarshal(b, &v) != nil {
		return ""
	}
	if v.Name != "" {
		return clip(v.Name, 200)
	}
	return clip(v.ID, 200)
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// auditBefore reads the target's document before the change through its
// GET route, with the caller's own authorization; nil when it cannot.
func auditBefore(get route, r *http.Request) []byte {
	if !roleAllows(tokenRole(r), get.role) {
		return nil
	}
	r2 := r.Clone(r.Context())
	r2.Method = http.MethodGet
	r2.Body = http.NoBody
	r2.ContentLength = 0
	r2.URL.RawQuery = ""
	bw := &bufferWriter{h: http.Header{}}
	if err := get.h(bw, r2); err != nil || bw.status != http.StatusOK || bw.buf.Len() > auditCapture {
		return nil
	}
	return bw.buf.Bytes()
}

func tokenRole(r *http.Request) string {
	t, _ := tokenFrom(r.Context())
	return t.Role
}

// bufferWriter is a ResponseWriter into memory (the before read).
type bufferWriter struct {
	h      http.Header
	status int
	buf    bytes.Buffer
}

func (w *bufferWriter) Header() http.Header { return w.h }
func (w *bufferWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
}
func (w *bufferWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if w.buf.Len() <= auditCapture {
		w.buf.Write(b)
	}
	return len(b), nil
}

// --- GET /audit, GET /audit/export ---

// AuditEntry is an audit entry on the wire.
type AuditEntry struct {
	ID        string          `json:"id"`
	Time      time.Time       `json:"time"`
	Actor     AuditActor      `json:"actor"`
	Action    string          `json:"action"`
	Target    AuditTarget     `json:"target"`
	Status    int             `json:"status"`
	Source    string          `json:"source"`
	RequestID string          `json:"requestId"`
	Before    json.RawMessage `json:"before,omitempty"`
	After     json.RawMessage `json:"after,omitempty"`
	// DocumentsOmitted is set when a before or after document was larger
	// than --audit-max-document and left out.
	DocumentsOmitted bool `json:"documentsOmitted,omitempty"`
}

// AuditActor is who made a change.
type AuditActor struct {
	Kind string `json:"kind"` // user, token, device, system
	Name string `json:"name"`
	ID   string `json:"id,omitempty"`
}

// AuditTarget is what a change was made to.
type AuditTarget struct {
	Kind string `json:"kind"`
	Name string `json:"name"`
}

func auditOut(e store.AuditEntry) AuditEntry {
	return AuditEntry{
		ID: e.ID, Time: e.Time, Action: e.Action, Status: e.Status, Source: e.Source, RequestID: e.RequestID,
		Actor:  AuditActor{Kind: e.ActorKind, Name: e.ActorName, ID: e.ActorID},
		Target: AuditTarget{Kind: e.TargetKind, Name: e.TargetName},
		Before: e.Before, After: e.After, DocumentsOmitted: e.Omitted,
	}
}

// auditFilter parses the query of the audit routes.
func auditFilter(r *http.Request, extra ...string) (store.AuditFilter, query, error) {
	q, err := parseQuery(r, "", append([]string{"actor", "action", "target", "since", "until", "cursor", "limit"}, extra...)...)
	if err != nil {
		return store.AuditFilter{}, q, err
	}
	f := store.AuditFilter{Actor: q.vals["actor"], Action: q.vals["action"], After: q.vals["cursor"]}
	if t := q.vals["target"]; t != "" {
		// kind:name, or a bare name of any kind
		if k, n, ok := strings.Cut(t, ":"); ok {
			f.TargetKind, f.TargetName = k, n
		} else {
			f.TargetName = t
		}
	}
	for _, p := range []struct {
		name string
		dst  *time.Time
	}{{"since", &f.Since}, {"until", &f.Until}} {
		if v, ok := q.vals[p.name]; ok {
			t, err := time.Parse(time.RFC3339, v)
			if err != nil {
				return f, q, core.Invalid(p.name, "%s must be an RFC 3339 time such as 2030-01-02T15:04:05Z", p.name)
			}
			*p.dst = t
		}
	}
	if f.After != "" && (len(f.After) > 64 || strings.Trim(f.After, "0123456789abcdef") != "") {
		return f, q, core.Invalid("cursor", "cursor is not a nextCursor of this list")
	}
	f.Limit, err = q.limit()
	return f, q, err
}

func (s *server) listAudit(w http.ResponseWriter, r *http.Request) error {
	if s.audit == nil {
		return core.Errorf(core.KindUnavailable, "the audit log is not enabled on this server")
	}
	f, _, err := auditFilter(r)
	if err != nil {
		return err
	}
	es, next, err := s.audit.List(r.Context(), f)
	if err != nil {
		return err
	}
	out := make([]AuditEntry, len(es))
	for i, e := range es {
		out[i] = auditOut(e)
	}
	return writeJSON(w, http.StatusOK, newList(out, next))
}

// exportAudit streams every matching entry, newest first, as JSON lines,
// reading the store a page at a time.
func (s *server) exportAudit(w http.ResponseWriter, r *http.Request) error {
	if s.audit == nil {
		return core.Errorf(core.KindUnavailable, "the audit log is not enabled on this server")
	}
	f, q, err := auditFilter(r)
	if err != nil {
		return err
	}
	if _, ok := q.vals["limit"]; ok {
		return core.Invalid("limit", "the export takes no limit: it streams every matching entry")
	}
	f.Limit = 1000
	es, next, err := s.audit.List(r.Context(), f)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	rc := http.NewResponseController(w)
	for {
		for _, e := range es {
			if err := enc.Encode(auditOut(e)); err != nil {
				return nil // the client went away
			}
		}
		_ = rc.Flush()
		if next == "" {
			return nil
		}
		f.After = next
		if es, next, err = s.audit.List(r.Context(), f); err != nil {
			return err // logged: the response has started
		}
	}
}
