package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/moteiot/mote/internal/auth"
	"github.com/moteiot/mote/internal/pki"
	"github.com/moteiot/mote/internal/registry"
	"github.com/moteiot/mote/internal/shadow"
	"github.com/moteiot/mote/internal/store/sqlite"
	"github.com/moteiot/mote/internal/store/sqlite/sqlitetest"
)

// env is a real API server over a real registry on a real SQLite store.
type env struct {
	srv     *httptest.Server
	handler http.Handler
	reg     *registry.Registry
	st      *sqlite.Store
	admin   string // an admin token
	metrics *prometheus.Registry
	logs    *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func newEnv(t testing.TB) *env {
	t.Helper()
	dir := t.TempDir()
	sqlitetest.Seed(t, filepath.Join(dir, "mote.db"))
	st, err := sqlite.Open(filepath.Join(dir, "mote.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	hasher, err := auth.LoadOrCreateHasher(filepath.Join(dir, "secret.key"))
	if err != nil {
		t.Fatal(err)
	}
	ca, err := pki.LoadOrCreateCA(filepath.Join(dir, "pki"))
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	reg := registry.New(registry.Options{Store: st, Hasher: hasher, CA: ca, Logger: log})
	ctx := context.Background()
	if err := reg.Bootstrap(ctx); err != nil {
		t.Fatal(err)
	}
	_, admin, err := reg.CreateToken(ctx, "test-admin", registry.RoleAdmin, nil)
	if err != nil {
		t.Fatal(err)
	}
	m := prometheus.NewRegistry()
	shadows := shadow.New(shadow.Options{Store: st.Shadows(), Logger: log})
	t.Cleanup(func() { shadows.Close() })
	h := New(Options{Registry: reg, Shadows: shadows, Logger: log, Metrics: m})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &env{srv: srv, handler: h, reg: reg, st: st, admin: admin, metrics: m, logs: logs}
}

// resp is a finished response.
type resp struct {
	status int
	header http.Header
	body   []byte
}

func (r resp) String() string { return string(r.body) }

// req sends a request. body may be nil (none), a string or []byte (sent
// as is, as application/json), or anything else (marshalled).
func (e *env) req(t testing.TB, method, path, token string, body any, header ...string) resp {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	r, err := http.NewRequest(method, e.srv.URL+BasePath+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if rd != nil {
		r.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(header); i += 2 {
		if header[i+1] == "" {
			r.Header.Del(header[i])
		} else {
			r.Header.Set(header[i], header[i+1])
		}
	}
	res, err := e.srv.Client().Do(r)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp{status: res.StatusCode, header: res.Header, body: b}
}

// ok sends an admin request, wants status and decodes the JSON answer into
// out (if not nil).
func (e *env) ok(t testing.TB, method, path string, body any, status int, out any) resp {
	t.Helper()
	r := e.req(t, method, path, e.admin, body)
	if r.status != status {
		t.Fatalf("%s %s: status %d, want %d: %s", method, path, r.status, status, r.body)
	}
	if status == http.StatusNoContent {
		if len(r.body) != 0 {
			t.Fatalf("%s %s: 204 with a body: %s", method, path, r.body)
		}
		return r
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("%s %s: Content-Type %q", method, path, ct)
	}
	if out != nil {
		if err := json.Unmarshal(r.body, out); err != nil {
			t.Fatalf("%s %s: %v: %s", method, path, err, r.body)
		}
	}
	return r
}

// obj sends an admin request and returns the JSON object answered.
func (e *env) obj(t testing.TB, method, path string, body any, status int) map[string]any {
	t.Helper()
	var m map[string]any
	e.ok(t, method, path, body, status, &m)
	return m
}

// items lists path and returns the items and nextCursor.
func (e *env) items(t testing.TB, path string) ([]map[string]any, string) {
	t.Helper()
	var l struct {
		Items      []map[string]any `json:"items"`
		NextCursor *string          `json:"nextCursor"`
	}
	r := e.ok(t, "GET", path, nil, 200, &l)
	if l.Items == nil {
		t.Fatalf("GET %s: no items array: %s", path, r.body)
	}
	if l.NextCursor != nil && *l.NextCursor == "" {
		t.Fatalf("GET %s: empty nextCursor must be absent: %s", path, r.body)
	}
	if l.NextCursor == nil {
		return l.Items, ""
	}
	return l.Items, *l.NextCursor
}

// wantProblem checks that r is a problem of the given status, kind and
// field ("" for none) and returns it.
func wantProblem(t testing.TB, r resp, status int, kind, field string) Problem {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d: %s", r.status, status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != problemContentType {
		t.Fatalf("Content-Type %q, want %s: %s", ct, problemContentType, r.body)
	}
	var p Problem
	dec := json.NewDecoder(bytes.NewReader(r.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		t.Fatalf("problem does not decode: %v: %s", err, r.body)
	}
	if p.Type != problemTypeBase+kind || p.Status != status || p.Title == "" || p.Detail == "" {
		t.Fatalf("problem %+v, want kind %s status %d", p, kind, status)
	}
	if p.Field != field {
		t.Fatalf("problem field %q, want %q: %+v", p.Field, field, p)
	}
	if (status == 500) != (p.ErrorID != "") {
		t.Fatalf("errorId %q on a %d", p.ErrorID, status)
	}
	return p
}

// keys returns the sorted keys of a JSON object.
func keys(m map[string]any) string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return strings.Join(ks, ",")
}
