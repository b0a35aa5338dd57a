package httpapi

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"golang.org/x/time/rate"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/jobs"
	"github.com/moteiot/mote/internal/store"
)

// Group scope (docs/users.md). A user, and a token, may be scoped to
// groups: it then sees and acts on only the things of those groups
// (static members, or members of a dynamic group by the fleet index).
//
// The scope is one mechanism at the edge. authorize works out the
// principal's effective scope (the user's, narrowed by the token's) and
// adapt puts it in the request's context; then, before any handler runs,
// checkScope applies the route's scope rule (scopeRuleOf):
//
//   - scopeThing: the route addresses one thing by {name}; a thing outside
//     the scope answers 404, exactly like a missing one, so that its
//     existence does not leak.
//   - scopeFiltered: the handler narrows what it reads to the scope with
//     the helpers below (s.inScope, s.scopeQuery, scopedFetch).
//   - scopeOpen: fleet-wide but read-only and harmless (types, groups,
//     artifacts), or about the principal itself (its tokens, its password).
//   - scopeFleet, the default of every route not named here: refused 403
//     for a scoped principal. A new route is thus closed to scoped
//     principals until someone decides otherwise; the authorization
//     matrix test walks the whole route table.

type scopeRule int

const (
	scopeFleet scopeRule = iota
	scopeThing
	scopeFiltered
	scopeOpen
)

func (r scopeRule) String() string {
	return [...]string{"fleet", "thing", "filtered", "open"}[r]
}

// scopeRules names the routes that are not thing-addressed (/things/{name}/...,
// always scopeThing) and not fleet-wide.
var scopeRules = map[string]scopeRule{
	"GET /ca.pem":       scopeOpen,
	"GET /openapi.json": scopeOpen,
	"GET /server":       scopeOpen,
	"POST /auth/login":  scopeOpen,
	"POST /auth/logout": scopeOpen,
	"GET /auth/me":      scopeOpen,

	"GET /events":               scopeFiltered,
	"GET /things":               scopeFiltered,
	"GET /things:count":         scopeFiltered,
	"GET /groups/{name}/things": scopeFiltered,
	"GET /alarms":               scopeFiltered,
	"GET /alarms/{id}":          scopeFiltered,
	"POST /alarms/{id}/ack":     scopeFiltered,
	"POST /alarms/{id}/clear":   scopeFiltered,
	"GET /telemetry":            scopeFiltered,
	"POST /jobs":                scopeFiltered,
	"GET /jobs":                 scopeFiltered,
	"GET /jobs/{id}":            scopeFiltered,
	"DELETE /jobs/{id}":         scopeFiltered,
	"POST /jobs/{id}/cancel":    scopeFiltered,
	"GET /jobs/{id}/executions": scopeFiltered,
	"GET /stats":                scopeFiltered, // the scope's thing counts only (stats.go)

	"GET /types":                               scopeOpen,
	"GET /types/{name}":                        scopeOpen,
	"GET /groups":                              scopeOpen,
	"GET /groups/{name}":                       scopeOpen,
	"POST /rules/test":                         scopeOpen, // evaluates a rule on a message given in the body
	"POST /policies:validate":                  scopeOpen, // checks the document given in the body
	"GET /artifacts":                           scopeOpen,
	"GET /artifacts/{name}/{version}":          scopeOpen,
	"GET /artifacts/{name}/{version}/content":  scopeOpen,
	"GET /artifacts/{name}/{version}/download": scopeOpen, // public, signed
	"GET /dashboards":                          scopeOpen, // layouts; their widgets read through scoped routes
	"GET /dashboards/{name}":                   scopeOpen,

	// The principal's own tokens and account.
	"POST /tokens":                scopeOpen,
	"GET /tokens":                 scopeOpen,
	"DELETE /tokens/{id}":         scopeOpen,
	"GET /users/{name}":           scopeOpen,
	"POST /users/{name}/password": scopeOpen,
}

// scopeRuleOf is the scope rule of a route.
func scopeRuleOf(rt route) scopeRule {
	if rt.role == rolePublic || rt.role == roleDevice {
		return scopeOpen // no principal
	}
	if r, ok := scopeRules[rt.method+" "+rt.path]; ok {
		return r
	}
	if strings.HasPrefix(rt.path, "/things/{name}") && rt.method+" "+rt.path != "POST /things" {
		if strings.HasPrefix(rt.path, "/things/{name}/policies/") {
			return scopeFleet // attaching a policy changes what a fleet-wide document applies to
		}
		return scopeThing
	}
	return scopeFleet
}

type scopeKey struct{}

// scope is a principal's group scope; a nil *scope is no scope (every
// thing). groups may be empty: a token narrowed to no group of its user
// sees nothing.
type scope struct {
	groups []string
}

// scopeFrom returns the request's scope (nil: unscoped).
func scopeFrom(ctx context.Context) *scope {
	sc, _ := ctx.Value(scopeKey{}).(*scope)
	return sc
}

// effectiveScope narrows a user's scope by a token's: nil means none.
func effectiveScope(user, token []string) []string {
	switch {
	case user == nil:
		return token
	case token == nil:
		return user
	}
	out := []string{}
	for _, g := range token {
		if slices.Contains(user, g) {
			out = append(out, g)
		}
	}
	return out
}

// scopeWithin reports whether scope inner is no wider than outer (nil is
// everything).
func scopeWithin(inner, outer []string) bool {
	if outer == nil {
		return true
	}
	if inner == nil {
		return false
	}
	for _, g := range inner {
		if !slices.Contains(outer, g) {
			return false
		}
	}
	return true
}

// lowerRole returns the less powerful of two roles.
func lowerRole(a, b string) string {
	if roleAllows(a, b) {
		return b
	}
	return a
}

// checkScope applies the route's scope rule before its handler runs.
func (s *server) checkScope(r *http.Request, rt route) error {
	sc := scopeFrom(r.Context())
	if sc == nil {
		return nil
	}
	switch scopeRuleOf(rt) {
	case scopeThing:
		name := r.PathValue("name")
		if core.ValidateName("name", name) != nil {
			return nil // the handler answers 400
		}
		ok, err := s.inScope(r.Context(), sc, name)
		if err != nil {
			return err
		}
		if !ok {
			s.metrics.refused("out_of_scope")
			return core.NotFound("thing", name)
		}
	case scopeFleet:
		s.metrics.refused("fleet_wide")
		return core.Errorf(core.KindForbidden, "a principal scoped to groups may not %s %s: it concerns the whole fleet", r.Method, rt.pattern())
	}
	return nil
}

// inScope reports whether thing exists and is in the scope (a missing
// thing is not).
func (s *server) inScope(ctx context.Context, sc *scope, thing string) (bool, error) {
	if sc == nil {
		return true, nil
	}
	t, err := s.reg.GetThing(ctx, thing)
	if core.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return s.thingInScope(sc, t), nil
}

// thingInScope reports whether a thing is in a static group of the scope
// or in one of its dynamic groups.
func (s *server) thingInScope(sc *scope, t store.Thing) bool {
	for _, g := range sc.groups {
		if slices.Contains(t.Groups, g) {
			return true
		}
		if s.fleet != nil && s.fleet.InGroup(g, t.Name) {
			return true
		}
	}
	return false
}

// needThingInScope is inScope as an error: 404 for a thing outside.
func (s *server) needThingInScope(ctx context.Context, thing string) error {
	sc := scopeFrom(ctx)
	if sc == nil {
		return nil
	}
	ok, err := s.inScope(ctx, sc, thing)
	if err != nil {
		return err
	}
	if !ok {
		s.metrics.refused("out_of_scope")
		return core.NotFound("thing", thing)
	}
	return nil
}

// scopeQuery is the fleet query that selects the scope's things: its
// static groups, or what its dynamic groups' queries select. A scope of
// no group selects nothing.
func (s *server) scopeQuery(ctx context.Context, sc *scope) (string, error) {
	var static, parts []string
	for _, g := range sc.groups {
		grp, err := s.reg.GetGroup(ctx, g)
		if core.IsNotFound(err) {
			continue // deleted since: selects nothing
		}
		if err != nil {
			return "", err
		}
		if grp.Query != "" {
			parts = append(parts, "("+grp.Query+")")
		} else {
			static = append(static, quoteFleet(g))
		}
	}
	if len(static) > 0 {
		parts = append([]string{"groups IN (" + strings.Join(static, ", ") + ")"}, parts...)
	}
	if len(parts) == 0 {
		return "name = '' AND name != ''", nil // nothing
	}
	return strings.Join(parts, " OR "), nil
}

// quoteFleet quotes a text literal of the fleet query language.
func quoteFleet(v string) string { return "'" + strings.ReplaceAll(v, "'", "''") + "'" }

// quoteField quotes a path segment of a fleet query field when needed.
func quoteField(v string) string {
	plain := v != "" && (v[0] == '_' || v[0] >= 'a' && v[0] <= 'z' || v[0] >= 'A' && v[0] <= 'Z')
	for _, c := range v {
		if !(c == '_' || c == '-' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			plain = false
		}
	}
	if plain {
		return v
	}
	return `"` + strings.ReplaceAll(v, `"`, `""`) + `"`
}

// andScope narrows a fleet query (possibly "") to the scope.
func (s *server) andScope(ctx context.Context, sc *scope, fq string) (string, error) {
	if err := s.needFleet(); err != nil {
		return "", err
	}
	if strings.TrimSpace(fq) != "" {
		// fq must parse on its own: then it is one balanced expression
		// and "(fq) AND (scope)" cannot be read any other way.
		if _, err := s.fleet.Parse(fq); err != nil {
			return "", err
		}
	}
	sq, err := s.scopeQuery(ctx, sc)
	if err != nil {
		return "", err
	}
	if strings.TrimSpace(fq) == "" {
		return sq, nil
	}
	return "(" + fq + ") AND (" + sq + ")", nil
}

// filtersQuery writes the plain filters of GET /things as a fleet query,
// so that a scoped listing can narrow them to the scope.
func filtersQuery(q query) (string, error) {
	for k, v := range q.vals {
		if !utf8.ValidString(v) {
			return "", core.Invalid(k, "%s must be UTF-8 text", k)
		}
	}
	for k, v := range q.prefixed {
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			return "", core.Invalid("attr."+k, "attr.KEY=VALUE must be UTF-8 text")
		}
	}
	var parts []string
	if v, ok := q.vals["prefix"]; ok && v != "" {
		if strings.ContainsAny(v, "*?") {
			return "", core.Invalid("prefix", "prefix must not contain * or ?")
		}
		parts = append(parts, "name LIKE "+quoteFleet(v+"*"))
	}
	for _, f := range []struct{ param, field string }{{"type", "type"}, {"group", "groups"}, {"tag", "tags"}} {
		if v, ok := q.vals[f.param]; ok && v != "" {
			parts = append(parts, f.field+" = "+quoteFleet(v))
		}
	}
	if v, ok := q.vals["connected"]; ok {
		if v != "true" && v != "false" {
			return "", core.Invalid("connected", "connected must be true or false")
		}
		parts = append(parts, "connected = "+v)
	}
	keys := make([]string, 0, len(q.prefixed))
	for k := range q.prefixed {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		parts = append(parts, "attributes."+quoteField(k)+" = "+quoteFleet(q.prefixed[k]))
	}
	return strings.Join(parts, " AND "), nil
}

// maxScopedScan bounds the rows a scoped list reads to fill one page.
const maxScopedScan = 20

// scopedFetch wraps a page fetcher so that it returns only the items keep
// accepts, reading on until it has n of them, the source ends, or it has
// read maxScopedScan batches (a page may then be short: follow its
// nextCursor).
func scopedFetch[T any](fetch func(after string, n int) ([]T, error), key func(T) string, keep func(T) (bool, error)) func(after string, n int) ([]T, error) {
	return func(after string, n int) ([]T, error) {
		var out []T
		for range maxScopedScan {
			rows, err := fetch(after, n)
			if err != nil {
				return nil, err
			}
			for _, it := range rows {
				ok, err := keep(it)
				if err != nil {
					return nil, err
				}
				if ok {
					out = append(out, it)
					if len(out) == n {
						return out, nil
					}
				}
			}
			if len(rows) < n {
				break
			}
			after = key(rows[len(rows)-1])
		}
		return out, nil
	}
}

// scopeCache answers inScope for one long-lived request (an event
// stream) with a short memory, so that a busy stream does not read the
// registry for every event.
type scopeCache struct {
	s   *server
	sc  *scope
	ttl time.Duration
	mu  sync.Mutex
	m   map[string]scopeCacheEntry
}

type scopeCacheEntry struct {
	in bool
	at time.Time
}

func newScopeCache(s *server, sc *scope) *scopeCache {
	return &scopeCache{s: s, sc: sc, ttl: 5 * time.Second, m: map[string]scopeCacheEntry{}}
}

func (c *scopeCache) in(ctx context.Context, thing string) bool {
	if c == nil || c.sc == nil {
		return true
	}
	now := time.Now()
	c.mu.Lock()
	e, ok := c.m[thing]
	c.mu.Unlock()
	if ok && now.Sub(e.at) < c.ttl {
		return e.in
	}
	in, err := c.s.inScope(ctx, c.sc, thing)
	if err != nil {
		return false // fail closed
	}
	c.mu.Lock()
	if len(c.m) > 10_000 {
		clear(c.m)
	}
	c.m[thing] = scopeCacheEntry{in: in, at: now}
	c.mu.Unlock()
	return in
}

// --- per-token request rate limit ---

// tokenLimits holds the rate limiters of the tokens that have one.
type tokenLimits struct {
	mu sync.Mutex
	m  map[string]*tokenLimiter
}

type tokenLimiter struct {
	perMinute int
	lim       *rate.Limiter
}

// maxTokenLimiters bounds the limiters kept; beyond it they are all
// forgotten (at worst a token gets a fresh burst).
const maxTokenLimiters = 100_000

// errRateLimited is a 429 that says when to retry.
type errRateLimited struct {
	err   *core.Error
	after time.Duration
}

func (e errRateLimited) Error() string             { return e.err.Error() }
func (e errRateLimited) RetryAfter() time.Duration { return e.after }
func (e errRateLimited) Unwrap() error             { return e.err }

// allow takes one request of token t from its limiter; a token without a
// limit always passes.
func (l *tokenLimits) allow(t store.Token, now time.Time) error {
	if t.RateLimit <= 0 {
		return nil
	}
	l.mu.Lock()
	if l.m == nil || len(l.m) > maxTokenLimiters {
		l.m = map[string]*tokenLimiter{}
	}
	tl := l.m[t.ID]
	if tl == nil || tl.perMinute != t.RateLimit {
		burst := max(1, t.RateLimit/10)
		tl = &tokenLimiter{perMinute: t.RateLimit, lim: rate.NewLimiter(rate.Limit(float64(t.RateLimit)/60), burst)}
		l.m[t.ID] = tl
	}
	l.mu.Unlock()
	res := tl.lim.ReserveN(now, 1)
	if d := res.DelayFrom(now); d > 0 {
		res.CancelAt(now)
		return errRateLimited{err: &core.Error{Kind: core.KindRateLimited,
			Msg: fmt.Sprintf("token %s is limited to %d requests per minute; retry later", t.ID, t.RateLimit)}, after: d}
	}
	return nil
}

// principalOf completes an authenticated token with its user: the
// effective role is the lower of the two, the scope (Groups) the user's
// narrowed by the token's; nil Groups is no scope, empty is a scope of
// nothing. A token whose user is gone is refused.
func (s *server) principalOf(ctx context.Context, t store.Token) (store.Token, error) {
	if t.User == "" {
		return t, nil
	}
	bad := core.Errorf(core.KindUnauthorized, "invalid or expired API token")
	if s.users == nil {
		return t, bad
	}
	u, err := s.users.Get(ctx, t.User)
	if core.IsNotFound(err) {
		return t, bad
	}
	if err != nil {
		return t, err
	}
	t.Role = lowerRole(t.Role, u.Role)
	t.Groups = effectiveScope(u.Groups, t.Groups)
	return t, nil
}

// scopedListThings is GET /things for a scoped principal: the plain
// filters, or q, narrowed to the scope by the fleet index.
func (s *server) scopedListThings(w http.ResponseWriter, r *http.Request, sc *scope, q query) error {
	fq, given := q.vals["q"]
	if !given {
		var err error
		if fq, err = filtersQuery(q); err != nil {
			return err
		}
		rest := query{vals: map[string]string{}}
		for _, k := range []string{"sort", "limit", "cursor"} {
			if v, ok := q.vals[k]; ok {
				rest.vals[k] = v
			}
		}
		q = rest
	}
	fq, err := s.andScope(r.Context(), sc, fq)
	if err != nil {
		return err
	}
	return s.queryThings(w, r, fq, q)
}

// scopedQueryThings answers a thing list of fleet query fq narrowed to
// the scope.
func (s *server) scopedQueryThings(w http.ResponseWriter, r *http.Request, sc *scope, fq, cursor string, limit int) error {
	if err := s.needFleet(); err != nil {
		return err
	}
	fq, err := s.andScope(r.Context(), sc, fq)
	if err != nil {
		return err
	}
	q := query{vals: map[string]string{}}
	if cursor != "" {
		q.vals["cursor"] = cursor
	}
	if limit > 0 {
		q.vals["limit"] = strconv.Itoa(limit)
	}
	return s.queryThings(w, r, fq, q)
}

// scopeJobTargets limits the targets of a job a scoped principal creates:
// its things must be in the scope (404 otherwise), its groups among the
// scope's (403), and its query is narrowed to the scope.
func (s *server) scopeJobTargets(ctx context.Context, t *jobs.Targets) error {
	sc := scopeFrom(ctx)
	if sc == nil {
		return nil
	}
	for _, name := range t.Things {
		if err := s.needThingInScope(ctx, name); err != nil {
			return err
		}
	}
	for _, g := range t.Groups {
		if !slices.Contains(sc.groups, g) {
			s.metrics.refused("out_of_scope")
			return &core.Error{Kind: core.KindForbidden, Field: "targets.groups", Msg: fmt.Sprintf("group %q is outside your scope (%s)", g, strings.Join(sc.groups, ", "))}
		}
	}
	if t.Query != "" {
		q, err := s.andScope(ctx, sc, t.Query)
		if err != nil {
			return err
		}
		t.Query = q
	}
	return nil
}

// jobInScope reports whether a job targets only the scope: its things in
// it, its groups among the scope's, its query narrowed to the scope (as
// scopeJobTargets writes it).
func (s *server) jobInScope(ctx context.Context, sc *scope, t jobs.Targets) (bool, error) {
	for _, g := range t.Groups {
		if !slices.Contains(sc.groups, g) {
			return false, nil
		}
	}
	if t.Query != "" {
		sq, err := s.scopeQuery(ctx, sc)
		if err != nil {
			return false, err
		}
		if !strings.HasSuffix(t.Query, ") AND ("+sq+")") {
			return false, nil
		}
	}
	for _, name := range t.Things {
		ok, err := s.inScope(ctx, sc, name)
		if err != nil || !ok {
			return false, err
		}
	}
	return true, nil
}

// needJobInScope answers 404 for a job outside the request's scope.
func (s *server) needJobInScope(ctx context.Context, svc *jobs.Service, id string) error {
	sc := scopeFrom(ctx)
	if sc == nil {
		return nil
	}
	info, err := svc.Get(ctx, id)
	if err != nil {
		return err
	}
	ok, err := s.jobInScope(ctx, sc, info.Targets)
	if err != nil {
		return err
	}
	if !ok {
		s.metrics.refused("out_of_scope")
		return core.NotFound("job", id)
	}
	return nil
}
