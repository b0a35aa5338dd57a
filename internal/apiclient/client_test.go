package apiclient_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/apiclient"
	"github.com/moteiot/mote/internal/auth"
	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/httpapi"
	"github.com/moteiot/mote/internal/httpapi/wire"
	"github.com/moteiot/mote/internal/pki"
	"github.com/moteiot/mote/internal/registry"
	"github.com/moteiot/mote/internal/store"
	"github.com/moteiot/mote/internal/store/sqlite"
	"github.com/moteiot/mote/internal/store/sqlite/sqlitetest"
)

// newServer starts the real API handler over a real registry on a SQLite
// store in a temporary directory and returns a client with an admin token.
func newServer(t *testing.T) (*apiclient.Client, *registry.Registry) {
	t.Helper()
	dir := t.TempDir()
	sqlitetest.Seed(t, filepath.Join(dir, "mote.db"))
	st, err := sqlite.Open(filepath.Join(dir, "mote.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	h, err := auth.LoadOrCreateHasher(filepath.Join(dir, "secret.key"))
	if err != nil {
		t.Fatal(err)
	}
	ca, err := pki.LoadOrCreateCA(filepath.Join(dir, "pki"))
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	reg := registry.New(registry.Options{Store: st, Hasher: h, CA: ca, Logger: log})
	if err := reg.Bootstrap(context.Background()); err != nil {
		t.Fatal(err)
	}
	_, tok, err := reg.CreateToken(context.Background(), "test", registry.RoleAdmin, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(httpapi.New(httpapi.Options{Registry: reg, Logger: log}))
	t.Cleanup(srv.Close)
	return apiclient.New(srv.URL, tok), reg
}

// must(f())(t) returns the value of f or fails the test with its error.
func must[T any](v T, err error) func(*testing.T) T {
	return func(t *testing.T) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func apiError(t *testing.T, err error) *apiclient.Error {
	t.Helper()
	var ae *apiclient.Error
	if !errors.As(err, &ae) {
		t.Fatalf("error %v (%T) is not an *apiclient.Error", err, err)
	}
	return ae
}

func TestThings(t *testing.T) {
	c, _ := newServer(t)
	ctx := context.Background()

	must(c.CreateType(ctx, apiclient.NewType{Name: "sensor"}))(t)
	must(c.CreateGroup(ctx, apiclient.NewGroup{Name: "floor-1"}))(t)
	off := false
	th := must(c.CreateThing(ctx, apiclient.NewThing{
		Name: "sensor-1", Type: "sensor", Attributes: map[string]string{"site": "ams"},
		Tags: []string{"lab"}, Groups: []string{"floor-1"}, Enabled: &off,
	}))(t)
	if th.Name != "sensor-1" || th.Type != "sensor" || th.Attributes["site"] != "ams" || th.Enabled || th.CreatedAt.IsZero() {
		t.Fatalf("created %+v", th)
	}
	must(c.CreateThing(ctx, apiclient.NewThing{Name: "sensor-2", Type: "sensor", Attributes: map[string]string{"site": "ber"}}))(t)
	must(c.CreateThing(ctx, apiclient.NewThing{Name: "gw-1"}))(t)

	got := must(c.GetThing(ctx, "sensor-1"))(t)
	if got.Name != "sensor-1" || !slices.Equal(got.Tags, []string{"lab"}) || got.Connected {
		t.Fatalf("get %+v", got)
	}

	// Filters.
	items, next, err := c.ListThings(ctx, apiclient.ThingQuery{Type: "sensor", Attributes: map[string]string{"site": "ber"}})
	if err != nil || next != "" || len(items) != 1 || items[0].Name != "sensor-2" {
		t.Fatalf("list by type+attr: %v %q %v", items, next, err)
	}
	no := false
	items, _, err = c.ListThings(ctx, apiclient.ThingQuery{Prefix: "sensor", Group: "floor-1", Tag: "lab", Connected: &no})
	if err != nil || len(items) != 1 || items[0].Name != "sensor-1" {
		t.Fatalf("list by prefix+group+tag: %v %v", items, err)
	}
	// Paging and All.
	items, next, err = c.ListThings(ctx, apiclient.ThingQuery{Limit: 2})
	if err != nil || len(items) != 2 || next == "" {
		t.Fatalf("page 1: %v %q %v", items, next, err)
	}
	all, err := apiclient.All(ctx, func(cur string) ([]wire.Thing, string, error) {
		return c.ListThings(ctx, apiclient.ThingQuery{Limit: 1, Cursor: cur})
	})
	if err != nil || len(all) != 3 || all[0].Name != "gw-1" || all[2].Name != "sensor-2" {
		t.Fatalf("all: %v %v", all, err)
	}

	// A patch sends only the fields that are set; an empty set clears.
	on := true
	upd := must(c.UpdateThing(ctx, "sensor-1", apiclient.ThingPatch{Enabled: &on, Tags: []string{}}))(t)
	if !upd.Enabled || len(upd.Tags) != 0 || upd.Attributes["site"] != "ams" || upd.Type != "sensor" {
		t.Fatalf("update: %+v", upd)
	}
	none := ""
	upd = must(c.UpdateThing(ctx, "sensor-1", apiclient.ThingPatch{Type: &none, Attributes: map[string]string{"a": "b"}}))(t)
	if upd.Type != "" || len(upd.Attributes) != 1 || upd.Attributes["a"] != "b" || !slices.Equal(upd.Groups, []string{"floor-1"}) {
		t.Fatalf("update 2: %+v", upd)
	}

	// Policies on a thing.
	must(c.CreatePolicy(ctx, apiclient.NewPolicy{Name: "p1", Document: apiclient.PolicyDocument{
		Statements: []apiclient.PolicyStatement{{Effect: "allow", Actions: []string{"publish"}, Topics: []string{"x/${thing}"}}},
	}.JSON()}))(t)
	upd = must(c.AttachPolicy(ctx, "sensor-1", "p1"))(t)
	if !slices.Equal(upd.Policies, []string{"p1"}) {
		t.Fatalf("attach: %v", upd.Policies)
	}
	upd = must(c.DetachPolicy(ctx, "sensor-1", "p1"))(t)
	if len(upd.Policies) != 0 {
		t.Fatalf("detach: %v", upd.Policies)
	}

	if err := c.DeleteThing(ctx, "sensor-1"); err != nil {
		t.Fatal(err)
	}
	_, err = c.GetThing(ctx, "sensor-1")
	if ae := apiError(t, err); ae.Kind() != core.KindNotFound || ae.Status != 404 || !strings.Contains(ae.Detail, `"sensor-1"`) ||
		!apiclient.IsNotFound(err) || apiclient.KindOf(err) != core.KindNotFound {
		t.Fatalf("get deleted: %#v", ae)
	}
}

func TestThingPatchMarshal(t *testing.T) {
	b, _ := json.Marshal(apiclient.ThingPatch{})
	if string(b) != "{}" {
		t.Errorf("empty patch = %s", b)
	}
	f := false
	b, _ = json.Marshal(apiclient.ThingPatch{Enabled: &f, Groups: []string{}})
	if string(b) != `{"enabled":false,"groups":[]}` {
		t.Errorf("patch = %s", b)
	}
	d := "x"
	b, _ = json.Marshal(apiclient.TypePatch{Description: &d})
	if string(b) != `{"description":"x"}` {
		t.Errorf("type patch = %s", b)
	}
}

func TestErrors(t *testing.T) {
	c, _ := newServer(t)
	ctx := context.Background()

	// 404 with the detail.
	_, err := c.GetThing(ctx, "nope")
	ae := apiError(t, err)
	if ae.Kind() != core.KindNotFound || ae.Detail != `thing "nope" not found` || ae.Type != "https://mote.dev/problems/not_found" ||
		ae.Title == "" || err.Error() != `thing "nope" not found` {
		t.Fatalf("404: %#v %q", ae, err)
	}
	// 400 with the field.
	_, err = c.CreateThing(ctx, apiclient.NewThing{Name: "bad/name"})
	ae = apiError(t, err)
	if ae.Kind() != core.KindInvalid || ae.Field != "name" || !strings.HasSuffix(err.Error(), " (field: name)") {
		t.Fatalf("400: %#v %q", ae, err)
	}
	// 409.
	must(c.CreateThing(ctx, apiclient.NewThing{Name: "dup"}))(t)
	_, err = c.CreateThing(ctx, apiclient.NewThing{Name: "dup"})
	if ae = apiError(t, err); ae.Kind() != core.KindConflict {
		t.Fatalf("409: %#v", ae)
	}
	// 401: a wrong token; 403: a viewer may not write.
	bad := apiclient.New(c.BaseURL, "mote.tok_x.y")
	_, _, err = bad.ListThings(ctx, apiclient.ThingQuery{})
	if ae = apiError(t, err); ae.Kind() != core.KindUnauthorized || ae.Status != 401 {
		t.Fatalf("401: %#v", ae)
	}
	viewer := must(c.CreateToken(ctx, "v", registry.RoleViewer, nil))(t)
	_, err = apiclient.New(c.BaseURL, viewer.Secret).CreateThing(ctx, apiclient.NewThing{Name: "x"})
	if ae = apiError(t, err); ae.Kind() != core.KindForbidden {
		t.Fatalf("403: %#v", ae)
	}
	// Unreachable: a closed port.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, err = apiclient.New("http://"+addr, "t").GetThing(ctx, "x")
	var ue *apiclient.UnreachableError
	if !errors.As(err, &ue) || !apiclient.IsUnreachable(err) || !strings.Contains(err.Error(), "could not reach the Mote server at http://"+addr) {
		t.Fatalf("unreachable: %T %v", err, err)
	}
	if apiclient.KindOf(err) != core.KindUnavailable {
		t.Errorf("unreachable kind = %v", apiclient.KindOf(err))
	}
	// A cancelled context is not "unreachable".
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, err = c.GetThing(cctx, "dup")
	if !errors.Is(err, context.Canceled) || apiclient.IsUnreachable(err) {
		t.Fatalf("cancelled: %v", err)
	}
}

func TestErrorNotProblem(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/api/v1/things/html":
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(http.StatusBadGateway)
			w.Write([]byte("<html><body>bad gateway</body></html>"))
		default:
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(http.StatusInternalServerError)
			w.Write([]byte(`{"type":"https://mote.dev/problems/internal","title":"Internal Server Error","status":500,"detail":"internal error, id abc","errorId":"abc"}`))
		}
	}))
	defer srv.Close()
	c := apiclient.New(srv.URL+"/", "t")
	_, err := c.GetThing(context.Background(), "html")
	ae := apiError(t, err)
	if ae.Status != 502 || ae.Kind() != core.KindUnavailable || !strings.Contains(err.Error(), "502 Bad Gateway") {
		t.Fatalf("html: %#v %q", ae, err)
	}
	_, err = c.GetThing(context.Background(), "x")
	ae = apiError(t, err)
	if ae.ErrorID != "abc" || ae.Kind() != core.KindInternal || err.Error() != "internal error, id abc" {
		t.Fatalf("500: %#v %q", ae, err)
	}
}

func TestCredentials(t *testing.T) {
	c, _ := newServer(t)
	ctx := context.Background()
	must(c.CreateThing(ctx, apiclient.NewThing{Name: "dev"}))(t)

	exp := time.Now().Add(time.Hour)
	sec := must(c.CreateSecret(ctx, "dev", &exp))(t)
	if sec.Secret == "" || sec.Type != store.CredentialSecret || sec.Thing != "dev" || sec.NotAfter == nil || !strings.HasPrefix(sec.ID, "cred") {
		t.Fatalf("secret: %+v", sec)
	}
	crt := must(c.IssueCertificate(ctx, "dev", 30))(t)
	if !strings.Contains(crt.CertPEM, "BEGIN CERTIFICATE") || !strings.Contains(crt.PrivateKey, "PRIVATE KEY") ||
		!strings.Contains(crt.CACert, "BEGIN CERTIFICATE") || crt.Fingerprint == "" {
		t.Fatalf("cert: %+v", crt)
	}
	if d := time.Until(*crt.NotAfter); d < 29*24*time.Hour || d > 31*24*time.Hour {
		t.Errorf("validity %v, want ~30 days", d)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "whatever"}}, key)
	if err != nil {
		t.Fatal(err)
	}
	signed := must(c.SignCSR(ctx, "dev", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), 0))(t)
	if signed.PrivateKey != "" || !strings.Contains(signed.CertPEM, "BEGIN CERTIFICATE") {
		t.Fatalf("csr: %+v", signed)
	}
	blk, _ := pem.Decode([]byte(signed.CertPEM))
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil || cert.Subject.CommonName != "dev" {
		t.Fatalf("signed cert subject: %v %v", cert.Subject, err)
	}

	list := must(c.ListCredentials(ctx, "dev"))(t)
	if len(list) != 3 {
		t.Fatalf("list: %+v", list)
	}
	one := must(c.GetCredential(ctx, "dev", sec.ID))(t)
	if one.ID != sec.ID || one.Revoked {
		t.Fatalf("get: %+v", one)
	}
	rev := must(c.RevokeCredential(ctx, "dev", sec.ID))(t)
	if !rev.Revoked || rev.RevokedAt == nil {
		t.Fatalf("revoke: %+v", rev)
	}
	if err := c.DeleteCredential(ctx, "dev", crt.ID); err != nil {
		t.Fatal(err)
	}
	_, err = c.GetCredential(ctx, "dev", crt.ID)
	if apiError(t, err).Kind() != core.KindNotFound {
		t.Fatalf("deleted credential: %v", err)
	}
	_, err = c.CreateSecret(ctx, "ghost", nil)
	if apiError(t, err).Kind() != core.KindNotFound {
		t.Fatalf("secret for unknown thing: %v", err)
	}

	ca := must(apiclient.New(c.BaseURL, "").CACert(ctx))(t) // no token needed
	if !strings.Contains(string(ca), "BEGIN CERTIFICATE") || strings.TrimSpace(string(ca)) != strings.TrimSpace(crt.CACert) {
		t.Fatalf("ca.pem: %q", ca)
	}
	doc := must(apiclient.New(c.BaseURL, "").OpenAPI(ctx))(t)
	if !strings.Contains(string(doc), `"openapi"`) {
		t.Fatalf("openapi: %.100s", doc)
	}
}

func TestTypesGroupsPolicies(t *testing.T) {
	c, _ := newServer(t)
	ctx := context.Background()

	doc := json.RawMessage(`{"statements":[{"effect":"allow","actions":["publish"],"topics":["things/${thing}/telemetry"]}]}`)
	p := must(c.CreatePolicy(ctx, apiclient.NewPolicy{Name: "telemetry", Description: "d", Document: doc}))(t)
	if p.Name != "telemetry" || p.Builtin {
		t.Fatalf("policy: %+v", p)
	}
	d := must(p.Decode())(t)
	if len(d.Statements) != 1 || d.Statements[0].Effect != "allow" || d.Statements[0].Topics[0] != "things/${thing}/telemetry" {
		t.Fatalf("document: %+v", d)
	}
	got := must(c.GetPolicy(ctx, "default"))(t)
	if !got.Builtin {
		t.Fatalf("default: %+v", got)
	}
	ps, next, err := c.ListPolicies(ctx, apiclient.ListOptions{})
	if err != nil || next != "" || len(ps) != 2 {
		t.Fatalf("policies: %v %v", ps, err)
	}
	p = must(c.UpdatePolicy(ctx, "telemetry", "new", apiclient.PolicyDocument{Statements: []apiclient.PolicyStatement{
		{Effect: "deny", Actions: []string{"subscribe"}, Topics: []string{"#"}},
	}}.JSON()))(t)
	if d = must(p.Decode())(t); p.Description != "new" || d.Statements[0].Effect != "deny" {
		t.Fatalf("updated: %+v", p)
	}
	_, err = c.CreatePolicy(ctx, apiclient.NewPolicy{Name: "typo", Document: json.RawMessage(`{"statments":[]}`)})
	if ae := apiError(t, err); ae.Kind() != core.KindInvalid {
		t.Fatalf("unknown field: %#v", ae)
	}
	if err := c.DeletePolicy(ctx, "default"); apiError(t, err).Kind() != core.KindConflict {
		t.Fatalf("delete default: %v", err)
	}

	tt := must(c.CreateType(ctx, apiclient.NewType{Name: "sensor", Description: "s", Policies: []string{"telemetry"}}))(t)
	if !slices.Equal(tt.Policies, []string{"telemetry"}) {
		t.Fatalf("type: %+v", tt)
	}
	must(c.GetType(ctx, "sensor"))(t)
	types, _, err := c.ListTypes(ctx, apiclient.ListOptions{Limit: 10})
	if err != nil || len(types) != 1 {
		t.Fatalf("types: %v %v", types, err)
	}
	tt = must(c.UpdateType(ctx, "sensor", apiclient.TypePatch{Policies: []string{}}))(t)
	if len(tt.Policies) != 0 || tt.Description != "s" {
		t.Fatalf("type update: %+v", tt)
	}
	must(c.CreateThing(ctx, apiclient.NewThing{Name: "s1", Type: "sensor"}))(t)
	if err := c.DeleteType(ctx, "sensor"); apiError(t, err).Kind() != core.KindConflict {
		t.Fatalf("delete used type: %v", err)
	}
	must(c.CreateType(ctx, apiclient.NewType{Name: "unused"}))(t)
	if err := c.DeleteType(ctx, "unused"); err != nil {
		t.Fatal(err)
	}
	if err := c.DeletePolicy(ctx, "telemetry"); err != nil {
		t.Fatal(err)
	}

	g := must(c.CreateGroup(ctx, apiclient.NewGroup{Name: "floor-1"}))(t)
	if g.Name != "floor-1" {
		t.Fatalf("group: %+v", g)
	}
	g = must(c.UpdateGroup(ctx, "floor-1", "first floor"))(t)
	if g.Description != "first floor" {
		t.Fatalf("group update: %+v", g)
	}
	if g = must(c.GetGroup(ctx, "floor-1"))(t); g.Description != "first floor" {
		t.Fatalf("group get: %+v", g)
	}
	groups, _, err := c.ListGroups(ctx, apiclient.ListOptions{})
	if err != nil || len(groups) != 1 {
		t.Fatalf("groups: %v %v", groups, err)
	}
	if err := c.DeleteGroup(ctx, "floor-1"); err != nil {
		t.Fatal(err)
	}
}

func TestTokens(t *testing.T) {
	c, _ := newServer(t)
	ctx := context.Background()
	exp := time.Now().Add(24 * time.Hour)
	nt := must(c.CreateToken(ctx, "ci", registry.RoleOperator, &exp))(t)
	if !strings.HasPrefix(nt.Secret, "mote.tok_") || nt.Role != registry.RoleOperator || nt.ExpiresAt == nil || nt.Name != "ci" {
		t.Fatalf("token: %+v", nt)
	}
	// The new token works (operator may create things).
	op := apiclient.New(c.BaseURL, nt.Secret)
	must(op.CreateThing(ctx, apiclient.NewThing{Name: "by-op"}))(t)

	toks := must(c.ListTokens(ctx))(t)
	if len(toks) != 2 {
		t.Fatalf("tokens: %+v", toks)
	}
	if err := c.DeleteToken(ctx, nt.ID); err != nil {
		t.Fatal(err)
	}
	_, err := op.GetThing(ctx, "by-op")
	if apiError(t, err).Kind() != core.KindUnauthorized {
		t.Fatalf("deleted token: %v", err)
	}
}

func TestErrorKindOfStatus(t *testing.T) {
	for _, tc := range []struct {
		status int
		want   core.Kind
	}{
		{400, core.KindInvalid}, {401, core.KindUnauthorized}, {403, core.KindForbidden},
		{404, core.KindNotFound}, {409, core.KindConflict}, {413, core.KindTooLarge},
		{429, core.KindRateLimited}, {503, core.KindUnavailable},
		{507, core.KindInsufficientStorage}, {500, core.KindInternal},
	} {
		if got := (&apiclient.Error{Status: tc.status}).Kind(); got != tc.want {
			t.Errorf("(&apiclient.Error{Status: %d}).Kind() = %v; want %v", tc.status, got, tc.want)
		}
	}
}
