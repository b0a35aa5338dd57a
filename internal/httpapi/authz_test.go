package httpapi_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/daemontest"
	"github.com/moteiot/mote/internal/httpapi"
	"github.com/moteiot/mote/internal/registry"
	"github.com/moteiot/mote/internal/store"
)

// principal is one kind of caller of the authorization matrix.
type principal struct {
	name   string
	role   string // effective role; "" for anonymous and the device
	device bool
	scoped bool   // to plant-3 (and, for the user, dyn-3)
	user   string // whose account /users/{name} names
	authz  string // Authorization header
	cookie string // session cookie
}

// authzFixture is one server with users, tokens, groups and things.
type authzFixture struct {
	s      *daemontest.Server
	client *http.Client
	secret string // of thing in-1
}

func (f *authzFixture) do(t *testing.T, p principal, method, path string, body any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, f.s.API+httpapi.BasePath+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	switch {
	case p.device: // its secret changes when a matrix call deleted in-1
		req.SetBasicAuth("in-1", f.secret)
	case p.authz != "":
		req.Header.Set("Authorization", p.authz)
	}
	if p.cookie != "" {
		req.AddCookie(&http.Cookie{Name: httpapi.SessionCookie, Value: p.cookie})
		req.Header.Set(httpapi.CSRFHeader, "1")
	}
	res, err := f.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s as %s: %v", method, path, p.name, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	return res.StatusCode, b
}

func (f *authzFixture) must(t *testing.T, p principal, method, path string, body any, want int) []byte {
	t.Helper()
	code, b := f.do(t, p, method, path, body)
	if code != want {
		t.Fatalf("%s %s as %s: %d %s; want %d", method, path, p.name, code, b, want)
	}
	return b
}

// things puts the fixture things back (a matrix call may delete one).
func (f *authzFixture) things(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	reg := f.s.Registry()
	for _, th := range []store.Thing{
		{Name: "in-1", Enabled: true, Groups: []string{"plant-3"}, Policies: []string{registry.DefaultPolicy}},
		{Name: "in-2", Enabled: true, Attributes: map[string]string{"site": "p3"}},
		{Name: "out-1", Enabled: true, Policies: []string{registry.DefaultPolicy}},
	} {
		if _, err := reg.GetThing(ctx, th.Name); err == nil {
			continue
		}
		if _, err := reg.CreateThing(ctx, th); err != nil {
			t.Fatal(err)
		}
		if th.Name == "in-1" {
			c, err := reg.CreateSecret(ctx, "in-1", nil)
			if err != nil {
				t.Fatal(err)
			}
			f.secret = c.Secret
		}
	}
}

func (f *authzFixture) login(t *testing.T, user, password string) string {
	t.Helper()
	req, _ := http.NewRequest("POST", f.s.API+httpapi.BasePath+"/auth/login", strings.NewReader(`{"user":"`+user+`","password":"`+password+`"}`))
	req.Header.Set("Content-Type", "application/json")
	res, err := f.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	for _, c := range res.Cookies() {
		if c.Name == httpapi.SessionCookie && c.Value != "" {
			return c.Value
		}
	}
	t.Fatalf("login %s: %d, no session cookie", user, res.StatusCode)
	return ""
}

// newAuthzFixture starts the server: groups plant-3 (static: in-1) and
// dyn-3 (dynamic: in-2), thing out-1 in neither; users root (admin), op,
// vw, sc (operator scoped to plant-3 and dyn-3) and adm2; tokens of root
// with each role and one operator token scoped to plant-3.
func newAuthzFixture(t *testing.T) (*authzFixture, []principal) {
	t.Helper()
	s := daemontest.Start(t)
	f := &authzFixture{s: s, client: &http.Client{Timeout: 10 * time.Second}}
	ctx := context.Background()
	if _, err := s.Registry().CreateGroup(ctx, store.Group{Name: "plant-3"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Registry().CreateGroup(ctx, store.Group{Name: "dyn-3", Query: "attributes.site = 'p3'"}); err != nil {
		t.Fatal(err)
	}
	f.things(t)
	boot := principal{name: "bootstrap token", role: "admin", authz: "Bearer " + s.Token}
	const pw = "a good password"
	for _, u := range []struct {
		name, role string
		groups     []string
	}{{"root", "admin", nil}, {"adm2", "admin", nil}, {"op", "operator", nil}, {"vw", "viewer", nil}, {"sc", "operator", []string{"plant-3", "dyn-3"}}} {
		body := map[string]any{"name": u.name, "password": pw, "role": u.role}
		if u.groups != nil {
			body["groups"] = u.groups
		}
		f.must(t, boot, "POST", "/users", body, 201)
	}
	ps := []principal{
		{name: "anonymous"},
		{name: "device in-1", device: true},
		{name: "admin session", role: "admin", user: "root", cookie: f.login(t, "root", pw)},
		{name: "operator session", role: "operator", user: "op", cookie: f.login(t, "op", pw)},
		{name: "viewer session", role: "viewer", user: "vw", cookie: f.login(t, "vw", pw)},
		{name: "scoped operator session", role: "operator", user: "sc", scoped: true, cookie: f.login(t, "sc", pw)},
	}
	root := ps[2]
	for _, tok := range []struct {
		role   string
		groups []string
	}{{"admin", nil}, {"operator", nil}, {"viewer", nil}, {"operator", []string{"plant-3"}}} {
		body := map[string]any{"name": "t-" + tok.role, "role": tok.role}
		name := tok.role + " token"
		if tok.groups != nil {
			body["groups"] = tok.groups
			name = "scoped operator token"
		}
		var nt struct{ Token string }
		if err := json.Unmarshal(f.must(t, root, "POST", "/tokens", body, 201), &nt); err != nil {
			t.Fatal(err)
		}
		ps = append(ps, principal{name: name, role: tok.role, user: "root", scoped: tok.groups != nil, authz: "Bearer " + nt.Token})
	}
	return f, ps
}

// fill puts values into a route's path: the thing for /things/{name},
// the caller's own account for reading /users/{name}, names of nothing
// elsewhere (so that no fixture is deleted).
func fill(rt httpapi.RouteInfo, p principal, thing string) string {
	path := rt.Path
	switch {
	case strings.HasPrefix(path, "/things/{name}"):
		path = strings.Replace(path, "{name}", thing, 1)
	case strings.HasPrefix(path, "/users/{name}") && (rt.Method == "GET" || strings.HasSuffix(path, "/password")) && p.user != "":
		path = strings.Replace(path, "{name}", p.user, 1)
	}
	r := strings.NewReplacer("{name}", "nothing-here", "{thing}", "in-1", "{id}", "x1", "{policy}", "nopolicy",
		"{shadow}", "s1", "{method}", "m1", "{file}", "f1", "{version}", "1.0.0", "{jobId}", "j1")
	return r.Replace(path)
}

// expectation is what a principal should get from a route.
type expectation int

const (
	allowed expectation = iota // anything but 401 and 403 (the request may still be wrong)
	refused                    // 401 or 403
	hidden                     // 404: the thing is outside the scope
)

func expect(rt httpapi.RouteInfo, p principal, thing string) expectation {
	switch {
	case rt.Path == "/artifacts/{name}/{version}/download":
		return refused // public, but the signature in its URL is the credential: none here
	case rt.Path == "/auth/me" && p.device:
		return refused // it authenticates what it is given: a device secret is no API token
	case rt.Path == "/devices/{thing}/certificate" && p.device:
		return refused // a certificate is rotated over a connection authenticated with it, not with a secret
	case rt.Role == "":
		return allowed
	case rt.Role == "device":
		if p.device {
			return allowed
		}
		return refused
	case p.device || p.role == "":
		return refused
	case !httpapi.RoleAllows(p.role, rt.Role):
		return refused
	case !p.scoped:
		return allowed
	}
	switch rt.Scope {
	case "fleet":
		return refused
	case "thing":
		if thing == "out-1" {
			return hidden
		}
	}
	return allowed
}

// TestAuthorizationMatrix calls every route of the route table (so a new
// route cannot skip it) as every kind of principal and checks allowed
// against refused by the route's declared role and scope rule; for the
// scoped principals, with a thing inside and one outside the scope.
func TestAuthorizationMatrix(t *testing.T) {
	f, ps := newAuthzFixture(t)
	counts := map[expectation]int{}
	for _, rt := range httpapi.RouteTable() {
		things := []string{"in-1"}
		if strings.HasPrefix(rt.Path, "/things/{name}") {
			things = append(things, "out-1")
		}
		for _, p := range ps {
			if p.cookie != "" && rt.Path == "/auth/logout" {
				continue // would end the session the next calls use
			}
			for _, thing := range things {
				path := fill(rt, p, thing)
				want := expect(rt, p, thing)
				code, body := f.do(t, p, rt.Method, path, nil)
				counts[want]++
				switch want {
				case allowed:
					if code == 401 || code == 403 || bytes.Contains(body, []byte(`thing \"`+thing+`\" not found`)) {
						t.Errorf("%s %s as %s: %d %s; want it allowed (scope %s, role %q)", rt.Method, path, p.name, code, body, rt.Scope, rt.Role)
					}
				case refused:
					if code != 401 && code != 403 {
						t.Errorf("%s %s as %s: %d %.200s; want 401 or 403 (scope %s, role %q)", rt.Method, path, p.name, code, body, rt.Scope, rt.Role)
					}
				case hidden:
					if code != 404 || !bytes.Contains(body, []byte(`thing \"out-1\" not found`)) {
						t.Errorf("%s %s as %s: %d %.200s; want 404 thing not found", rt.Method, path, p.name, code, body)
					}
				}
				if code/100 == 2 && rt.Method == "DELETE" && rt.Path == "/things/{name}" {
					f.things(t) // it deleted a fixture
				}
			}
		}
	}
	if counts[allowed] == 0 || counts[refused] == 0 || counts[hidden] == 0 {
		t.Errorf("the matrix checked %v (allowed, refused, hidden); want some of each", counts)
	}
}

// sseStream reads Server-Sent Events in the background.
type sseStream struct {
	events chan string // "event: data" lines
	close  func()
}

func (f *authzFixture) stream(t *testing.T, p principal, path string) *sseStream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", f.s.API+httpapi.BasePath+path, nil)
	if p.cookie != "" {
		req.AddCookie(&http.Cookie{Name: httpapi.SessionCookie, Value: p.cookie})
	}
	if p.authz != "" {
		req.Header.Set("Authorization", p.authz)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if res.StatusCode != 200 {
		cancel()
		b, _ := io.ReadAll(res.Body)
		t.Fatalf("GET %s as %s: %d %s", path, p.name, res.StatusCode, b)
	}
	st := &sseStream{events: make(chan string, 1000), close: func() { cancel(); res.Body.Close() }}
	t.Cleanup(st.close)
	go func() {
		defer close(st.events)
		sc := bufio.NewScanner(res.Body)
		event := ""
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "event: "):
				event = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				select {
				case st.events <- event + ": " + strings.TrimPrefix(line, "data: "):
				default:
				}
			}
		}
	}()
	return st
}

// waitFor reads events until one contains want (within 10 s) and
// returns those read before it.
func (st *sseStream) waitFor(t *testing.T, want string) []string {
	t.Helper()
	var seen []string
	deadline := time.After(10 * time.Second)
	for {
		select {
		case e, ok := <-st.events:
			if !ok {
				t.Fatalf("the stream ended before %q; read %q", want, seen)
			}
			if strings.Contains(e, want) {
				return seen
			}
			seen = append(seen, e)
		case <-deadline:
			t.Fatalf("no event with %q within 10 s; read %q", want, seen)
		}
	}
}

// TestScopedUser: what a user scoped to groups sees and cannot reach,
// through the API and the live event stream.
func TestScopedUser(t *testing.T) {
	f, ps := newAuthzFixture(t)
	root, sc, scTok := ps[2], ps[5], ps[9]
	if sc.name != "scoped operator session" || scTok.name != "scoped operator token" {
		t.Fatalf("fixture principals moved: %s, %s", sc.name, scTok.name)
	}
	names := func(b []byte) string {
		var l struct{ Items []struct{ Name string } }
		if err := json.Unmarshal(b, &l); err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		var out []string
		for _, it := range l.Items {
			out = append(out, it.Name)
		}
		return strings.Join(out, ",")
	}
	// The user sees its static (in-1) and dynamic (in-2) group's things;
	// its token narrowed to plant-3 sees in-1 only.
	for _, c := range []struct {
		p          principal
		path, want string
	}{
		{sc, "/things", "in-1,in-2"},
		{scTok, "/things", "in-1"},
		{root, "/things", "in-1,in-2,out-1"},
		{sc, "/things?q=" + urlQuery("name = 'out-1' OR name = 'in-2'"), "in-2"},
		{sc, "/things?prefix=out", ""},
		{sc, "/things?attr.site=p3", "in-2"},
		{sc, "/groups/plant-3/things", "in-1"},
	} {
		if got := names(f.must(t, c.p, "GET", c.path, nil, 200)); got != c.want {
			t.Errorf("GET %s as %s = %q; want %q", c.path, c.p.name, got, c.want)
		}
	}
	// A query cannot break out of the scope's parentheses.
	if code, b := f.do(t, sc, "GET", "/things?q="+urlQuery("name = 'in-1') OR (name = 'out-1'"), nil); code != 400 {
		t.Errorf("GET /things?q=<unbalanced> as the scoped user: %d %s; want 400", code, b)
	}
	if b := f.must(t, sc, "GET", "/things:count?q="+urlQuery("enabled = true"), nil, 200); !bytes.Contains(b, []byte(`"count":2`)) {
		t.Errorf("count as the scoped user = %s; want 2", b)
	}
	// An outside thing by name: 404, as if it did not exist, on every
	// kind of route.
	for _, path := range []string{"/things/out-1", "/things/out-1/shadows", "/things/out-1/telemetry/latest", "/telemetry?things=in-1,out-1", "/events?thing=out-1"} {
		if code, b := f.do(t, sc, "GET", path, nil); code != 404 || !bytes.Contains(b, []byte(`thing \"out-1\" not found`)) {
			t.Errorf("GET %s as the scoped user: %d %s; want 404 thing not found", path, code, b)
		}
	}
	// Jobs: targets within the scope only.
	doc := map[string]any{"op": "x"}
	if code, b := f.do(t, sc, "POST", "/jobs", map[string]any{"jobId": "j-out", "targets": map[string]any{"things": []string{"out-1"}}, "document": doc}); code != 404 {
		t.Errorf("a job on an outside thing: %d %s; want 404", code, b)
	}
	if code, b := f.do(t, sc, "POST", "/jobs", map[string]any{"jobId": "j-grp", "targets": map[string]any{"groups": []string{"other"}}, "document": doc}); code != 403 {
		t.Errorf("a job on another group: %d %s; want 403", code, b)
	}
	f.must(t, sc, "POST", "/jobs", map[string]any{"jobId": "j-in", "targets": map[string]any{"query": "enabled = true"}, "document": doc}, 201)
	f.must(t, root, "POST", "/jobs", map[string]any{"jobId": "j-root", "targets": map[string]any{"things": []string{"out-1"}}, "document": doc}, 201)
	var execs struct{ Items []struct{ ThingName string } }
	json.Unmarshal(f.must(t, sc, "GET", "/jobs/j-in/executions", nil, 200), &execs)
	for _, e := range execs.Items {
		if e.ThingName == "out-1" {
			t.Errorf("the scoped user's query job reached out-1")
		}
	}
	if len(execs.Items) != 2 {
		t.Errorf("the scoped user's query job has %d executions; want 2 (in-1, in-2)", len(execs.Items))
	}
	if b := f.must(t, sc, "GET", "/jobs", nil, 200); bytes.Contains(b, []byte("j-root")) || !bytes.Contains(b, []byte("j-in")) {
		t.Errorf("GET /jobs as the scoped user = %s; want j-in and not j-root", b)
	}
	if code, _ := f.do(t, sc, "GET", "/jobs/j-root", nil); code != 404 {
		t.Errorf("GET /jobs/j-root as the scoped user: %d; want 404", code)
	}
	// Fleet-wide changes are refused.
	if code, _ := f.do(t, sc, "POST", "/types", map[string]any{"name": "ty"}); code != 403 {
		t.Errorf("POST /types as the scoped user: %d; want 403", code)
	}

	// The event stream carries only the scope's things.
	_, outSecret := f.s.Secret(t, "out-1")
	scoped := f.stream(t, sc, "/events?presence=1")
	all := f.stream(t, root, "/events?presence=1")
	f.s.V3(t, "out-1", outSecret)
	f.s.V3(t, "in-1", f.secret)
	for _, e := range scoped.waitFor(t, `"thing":"in-1"`) {
		if strings.Contains(e, "out-1") {
			t.Errorf("the scoped user's stream delivered %s", e)
		}
	}
	all.waitFor(t, `"thing":"out-1"`) // or the filter proved nothing
}

func urlQuery(s string) string {
	return strings.NewReplacer("%", "%25", " ", "%20", "'", "%27", "=", "%3D", "(", "%28", ")", "%29", "&", "%26", "+", "%2B").Replace(s)
}

// TestTokensAndUsersUnderAttack: a viewer cannot mint an admin token, a
// token cannot be wider than its user, guessed tokens are refused and
// counted, a deleted user's token and session stop working, a token's
// rate limit answers 429 with Retry-After, and the last admin stays.
func TestTokensAndUsersUnderAttack(t *testing.T) {
	f, ps := newAuthzFixture(t)
	boot := principal{name: "bootstrap token", role: "admin", authz: "Bearer " + f.s.Token}
	root, vw, sc := ps[2], ps[4], ps[5]

	if code, b := f.do(t, vw, "POST", "/tokens", map[string]any{"name": "up", "role": "admin"}); code != 403 {
		t.Errorf("viewer creating an admin token: %d %s; want 403", code, b)
	}
	if code, b := f.do(t, vw, "POST", "/tokens", map[string]any{"name": "other", "user": "root"}); code != 403 {
		t.Errorf("viewer creating a token for root: %d %s; want 403", code, b)
	}
	if code, b := f.do(t, sc, "POST", "/tokens", map[string]any{"name": "wide", "groups": []string{"plant-3", "other"}}); code != 400 && code != 403 {
		t.Errorf("scoped user creating a wider token: %d %s; want 403", code, b)
	}
	f.must(t, boot, "POST", "/groups", map[string]any{"name": "plant-4"}, 201)
	if code, b := f.do(t, sc, "POST", "/tokens", map[string]any{"name": "wide", "groups": []string{"plant-4"}}); code != 403 {
		t.Errorf("scoped user creating a token of another group: %d %s; want 403", code, b)
	}
	if code, b := f.do(t, vw, "PATCH", "/users/vw", map[string]any{"role": "admin"}); code != 403 {
		t.Errorf("viewer promoting itself: %d %s; want 403", code, b)
	}
	if code, b := f.do(t, vw, "GET", "/users/root", nil); code != 403 {
		t.Errorf("viewer reading another user: %d %s; want 403", code, b)
	}

	// The viewer's own token works, with the viewer's role at most, and
	// is listed to it without the secret.
	var nt struct{ ID, Token string }
	json.Unmarshal(f.must(t, vw, "POST", "/tokens", map[string]any{"name": "mine", "rateLimit": 30}, 201), &nt)
	mine := principal{name: "viewer's token", role: "viewer", authz: "Bearer " + nt.Token}
	if b := f.must(t, mine, "GET", "/auth/me", nil, 200); !bytes.Contains(b, []byte(`"role":"viewer"`)) {
		t.Errorf("the viewer's token: %s", b)
	}
	if b := f.must(t, vw, "GET", "/tokens", nil, 200); !bytes.Contains(b, []byte(nt.ID)) || bytes.Contains(b, []byte(nt.Token)) || bytes.Contains(b, []byte("t-admin")) {
		t.Errorf("the viewer's token list = %s; want its own token, without the secret", b)
	}
	// Rate limit: 30 a minute, a burst of 3.
	limited := false
	for range 10 {
		req, _ := http.NewRequest("GET", f.s.API+httpapi.BasePath+"/auth/me", nil)
		req.Header.Set("Authorization", mine.authz)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode == 429 {
			if ra := res.Header.Get("Retry-After"); ra == "" || ra == "0" {
				t.Errorf("429 without a Retry-After: %q", ra)
			}
			limited = true
			break
		}
	}
	if !limited {
		t.Errorf("10 quick requests on a token limited to 30/min were all let through")
	}

	// Guessed tokens: 401, counted.
	for _, guess := range []string{"mote.tok_x.y", "mote." + nt.ID + ".wrong", "garbage"} {
		if code, _ := f.do(t, principal{name: "guesser", authz: "Bearer " + guess}, "GET", "/things", nil); code != 401 {
			t.Errorf("guessed token %q: %d; want 401", guess, code)
		}
	}
	if b := metrics(t, f); !strings.Contains(b, `mote_api_requests_refused_total{reason="unauthenticated"}`) || !strings.Contains(b, `mote_api_requests_refused_total{reason="rate_limited"}`) {
		t.Errorf("refusals are not counted:\n%s", grepLines(b, "refused"))
	}

	// Deleting the viewer ends its token and its session.
	f.must(t, root, "DELETE", "/users/vw", nil, 204)
	if code, _ := f.do(t, mine, "GET", "/things", nil); code != 401 {
		t.Errorf("a deleted user's token: %d; want 401", code)
	}
	if code, _ := f.do(t, vw, "GET", "/things", nil); code != 401 {
		t.Errorf("a deleted user's session: %d; want 401", code)
	}

	// The last admin stays: admin (made on first start), root and adm2
	// are admins; the bootstrap token is of no user.
	f.must(t, root, "DELETE", "/users/adm2", nil, 204)
	f.must(t, root, "DELETE", "/users/admin", nil, 204)
	if code, b := f.do(t, boot, "DELETE", "/users/root", nil); code != 409 {
		t.Errorf("deleting the last admin: %d %s; want 409", code, b)
	}
	if code, b := f.do(t, boot, "PATCH", "/users/root", map[string]any{"role": "viewer"}); code != 409 {
		t.Errorf("demoting the last admin: %d %s; want 409", code, b)
	}
	// Password: oneself with the old one, an admin resets.
	if code, _ := f.do(t, sc, "POST", "/users/sc/password", map[string]any{"password": "a new password"}); code != 400 {
		t.Errorf("own password change without the old one: %d; want 400", code)
	}
	if code, _ := f.do(t, sc, "POST", "/users/sc/password", map[string]any{"oldPassword": "wrong one", "password": "a new password"}); code != 403 {
		t.Errorf("own password change with a wrong old one: %d; want 403", code)
	}
	f.must(t, boot, "POST", "/users/sc/password", map[string]any{"password": "reset by root"}, 204)
	if code, _ := f.do(t, sc, "GET", "/things", nil); code != 401 {
		t.Errorf("a session after its password was reset: %d; want 401", code)
	}
	f.login(t, "sc", "reset by root")
}

func metrics(t *testing.T, f *authzFixture) string {
	t.Helper()
	res, err := http.Get(f.s.API + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return string(b)
}

func grepLines(s, sub string) string {
	var out []string
	for l := range strings.SplitSeq(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
