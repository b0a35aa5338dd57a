package cli_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"log/slog"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/apiclient"
	"github.com/moteiot/mote/internal/auth"
	"github.com/moteiot/mote/internal/cli"
	"github.com/moteiot/mote/internal/datadir"
	"github.com/moteiot/mote/internal/fleetindex"
	"github.com/moteiot/mote/internal/httpapi"
	"github.com/moteiot/mote/internal/httpapi/wire"
	"github.com/moteiot/mote/internal/pgtest"
	"github.com/moteiot/mote/internal/pki"
	"github.com/moteiot/mote/internal/registry"
	"github.com/moteiot/mote/internal/ruleengine"
	"github.com/moteiot/mote/internal/seal"
	"github.com/moteiot/mote/internal/shadow"
	"github.com/moteiot/mote/internal/store"
	"github.com/moteiot/mote/internal/store/sqlite"
	telemetrysqlite "github.com/moteiot/mote/internal/telemetry/sqlite"
	"github.com/moteiot/mote/internal/users"
)

// TestMain keeps the caller's MOTE_* variables away from the tests.
func TestMain(m *testing.M) {
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "MOTE_") && k != pgtest.EnvURL {
			os.Unsetenv(k)
		}
	}
	os.Exit(pgtest.Main(m))
}

// run runs the real command tree in-process.
func run(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return runIn(t, "", args...)
}

func runIn(t *testing.T, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	code = cli.Main(args, strings.NewReader(stdin), &out, &errb)
	return out.String(), errb.String(), code
}

// server is a real API server over a real registry on SQLite in a data
// directory laid out like the daemon's.
type server struct {
	url   string
	token string // admin
	dir   string
	reg   *registry.Registry
	st    *sqlite.Store
	h     *auth.Hasher
	ca    *pki.CA
	ts    *telemetrysqlite.Store
}

func newServer(t *testing.T) *server {
	t.Helper()
	s := openDataDir(t, t.TempDir())
	_, tok, err := s.reg.CreateToken(context.Background(), "test", registry.RoleAdmin, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.token = tok
	return s
}

// openDataDir opens (creating if needed) a data directory the way the
// daemon does and serves the API over it.
func openDataDir(t *testing.T, dir string) *server {
	t.Helper()
	st, err := sqlite.Open(datadir.DB(dir))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	h, err := auth.LoadOrCreateHasher(datadir.HashKey(dir))
	if err != nil {
		t.Fatal(err)
	}
	ca, err := pki.LoadOrCreateCA(datadir.PKI(dir))
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	sealer, err := seal.LoadOrCreate(datadir.SealKey(dir))
	if err != nil {
		t.Fatal(err)
	}
	reg := registry.New(registry.Options{Store: st, Hasher: h, CA: ca, Logger: log, Sealer: sealer})
	if err := reg.Bootstrap(context.Background()); err != nil {
		t.Fatal(err)
	}
	fleet := fleetindex.New(fleetindex.Options{Store: st, Logger: log})
	reg.Listen(fleet.OnRegistry)
	fleet.Start()
	t.Cleanup(func() { fleet.Close() })
	shadows := shadow.New(shadow.Options{Store: st.Shadows(), Logger: log, OnChange: fleet.OnShadowChange})
	engine := ruleengine.New(ruleengine.Options{Store: st.Rules(), Logger: log})
	if err := engine.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { engine.Close() })
	ts, err := telemetrysqlite.Open(datadir.Telemetry(dir))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ts.Close() })
	srv := httptest.NewServer(httpapi.New(httpapi.Options{Registry: reg, Shadows: shadows, Rules: engine, Telemetry: ts, Devices: auth.NewDevices(st, h, ca), Fleet: fleet, Logger: log,
		Users: users.New(users.Options{Store: st.Users(), Cost: 4, Logger: log})}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { shadows.Close() })
	return &server{url: srv.URL, dir: dir, reg: reg, st: st, h: h, ca: ca, ts: ts}
}

// run runs mote against the server with its admin token.
func (s *server) run(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return run(t, append([]string{"--server", s.url, "--token", s.token}, args...)...)
}

// ok runs mote against the server and fails the test unless it succeeds.
func (s *server) ok(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, code := s.run(t, args...)
	if code != 0 {
		t.Fatalf("mote %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

func decode[T any](t *testing.T, s string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("decode %q: %v", s, err)
	}
	return v
}

func closedPortURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr
}

func TestThingLifecycle(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	s.ok(t, "type", "create", "sensor", "--description", "sensors")
	s.ok(t, "group", "create", "floor-1")

	out := s.ok(t, "thing", "create", "sensor-1", "--type", "sensor", "--attr", "site=ams", "--attr", "room=a,b",
		"--tag", "lab", "--group", "floor-1", "--disabled")
	for _, want := range []string{"Name:", "sensor-1", "Enabled:", "no", "room=a,b, site=ams", "floor-1"} {
		if !strings.Contains(out, want) {
			t.Errorf("create output lacks %q:\n%s", want, out)
		}
	}
	out = s.ok(t, "thing", "create", "gw-1", "-o", "json")
	gw := decode[wire.Thing](t, out)
	if gw.Name != "gw-1" || !gw.Enabled {
		t.Errorf("json create: %+v", gw)
	}

	// Table list.
	out = s.ok(t, "thing", "list")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !regexp.MustCompile(`^NAME\s+TYPE\s+ENABLED\s+CONNECTED\s+LAST SEEN\s+GROUPS$`).MatchString(lines[0]) {
		t.Fatalf("list table:\n%s", out)
	}
	if !regexp.MustCompile(`^sensor-1\s+sensor\s+no\s+no\s+-\s+floor-1$`).MatchString(lines[2]) ||
		!regexp.MustCompile(`^gw-1\s+-\s+yes\s+no\s+-\s+-$`).MatchString(lines[1]) {
		t.Errorf("list rows:\n%s", out)
	}
	// JSON list with filters.
	things := decode[[]wire.Thing](t, s.ok(t, "thing", "list", "-o", "json", "--type", "sensor", "--attr", "site=ams", "--connected", "false", "--group", "floor-1", "--tag", "lab", "--prefix", "sens"))
	if len(things) != 1 || things[0].Name != "sensor-1" {
		t.Errorf("filtered list: %+v", things)
	}
	if out := s.ok(t, "thing", "list", "-o", "json", "--type", "nothing"); strings.TrimSpace(out) != "[]" {
		t.Errorf("empty json list = %q", out)
	}

	// Get.
	th := decode[wire.Thing](t, s.ok(t, "thing", "get", "sensor-1", "--output", "json"))
	if th.Type != "sensor" || th.Attributes["room"] != "a,b" || !slices.Equal(th.Tags, []string{"lab"}) {
		t.Errorf("get json: %+v", th)
	}
	if out := s.ok(t, "thing", "get", "sensor-1"); !strings.Contains(out, "Type:") || !strings.Contains(out, "sensor") {
		t.Errorf("get table:\n%s", out)
	}

	// Update: sets replace; --tags "" clears.
	th = decode[wire.Thing](t, s.ok(t, "thing", "update", "sensor-1", "-o", "json", "--enable", "--attr", "site=ber", "--tags", "", "--groups", ""))
	if !th.Enabled || len(th.Attributes) != 1 || th.Attributes["site"] != "ber" || len(th.Tags) != 0 || len(th.Groups) != 0 || th.Type != "sensor" {
		t.Errorf("update: %+v", th)
	}
	th = decode[wire.Thing](t, s.ok(t, "thing", "update", "sensor-1", "-o", "json", "--disable", "--tags", "a,b", "--type", "", "--clear-attrs"))
	if th.Enabled || !slices.Equal(th.Tags, []string{"a", "b"}) || th.Type != "" || len(th.Attributes) != 0 {
		t.Errorf("update 2: %+v", th)
	}
	if out := s.ok(t, "thing", "update", "sensor-1", "--enable"); !strings.Contains(out, "Enabled:") {
		t.Errorf("update table:\n%s", out)
	}
	if _, errOut, code := s.run(t, "thing", "update", "sensor-1"); code != 2 || !strings.Contains(errOut, "nothing to update") {
		t.Errorf("empty update: exit %d, %s", code, errOut)
	}
	if _, _, code := s.run(t, "thing", "update", "sensor-1", "--enable", "--disable"); code != 2 {
		t.Errorf("--enable --disable: exit %d", code)
	}

	// Delete.
	if out := s.ok(t, "thing", "delete", "sensor-1"); !strings.Contains(out, `Deleted thing "sensor-1"`) {
		t.Errorf("delete: %q", out)
	}
	out, errOut, code := s.run(t, "thing", "get", "sensor-1")
	if code != 3 || out != "" || errOut != "mote: thing \"sensor-1\" not found\n" {
		t.Errorf("get deleted: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

func TestListPaging(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	for _, n := range []string{"a", "b", "c"} {
		s.ok(t, "thing", "create", n)
	}
	out, errOut, code := s.run(t, "thing", "list", "--limit", "2")
	if code != 0 || strings.Count(out, "\n") != 3 || !strings.Contains(errOut, "--cursor b") {
		t.Errorf("page: exit %d\n%s\n%s", code, out, errOut)
	}
	out, errOut, _ = s.run(t, "thing", "list", "--limit", "2", "--cursor", "b")
	if !strings.Contains(out, "c") || strings.Contains(out, "\na ") || errOut != "" {
		t.Errorf("page 2:\n%s\n%s", out, errOut)
	}
	all := decode[[]wire.Thing](t, s.ok(t, "thing", "list", "--limit", "1", "--all", "-o", "json"))
	if len(all) != 3 || all[2].Name != "c" {
		t.Errorf("--all: %+v", all)
	}
	if _, _, code := s.run(t, "thing", "list", "--limit", "5000"); code != 2 {
		t.Errorf("bad limit: exit %d", code)
	}
	if _, _, code := s.run(t, "thing", "list", "--connected", "maybe"); code != 2 {
		t.Errorf("bad --connected: exit %d", code)
	}
}

func TestCredSecret(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	s.ok(t, "thing", "create", "dev")
	out := s.ok(t, "cred", "create", "dev", "--type", "secret")
	m := regexp.MustCompile(`(?m)^Secret: (\S+)$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no secret in:\n%s", out)
	}
	secret := m[1]
	if !strings.Contains(out, "shown only this once") ||
		!strings.Contains(out, "mosquitto_pub -h 127.0.0.1 -p 1883 -u dev -P "+secret+" -t things/dev/telemetry -m '{\"temp\":21}'") {
		t.Errorf("secret output:\n%s", out)
	}
	// The printed secret authenticates the device.
	id, err := auth.NewDevices(s.st, s.h, s.ca).Secret(context.Background(), "dev", secret)
	if err != nil || id.Thing != "dev" {
		t.Fatalf("secret does not authenticate: %v", err)
	}

	// JSON.
	nc := decode[registry.NewCredential](t, s.ok(t, "cred", "create", "dev", "--type", "secret", "--expires", "30d", "-o", "json"))
	if nc.Secret == "" || nc.NotAfter == nil || nc.Type != "secret" {
		t.Errorf("json secret: %+v", nc)
	}

	// list, get, revoke, delete.
	out = s.ok(t, "cred", "list", "dev")
	if !regexp.MustCompile(`^ID\s+TYPE\s+STATUS\s+EXPIRES\s+CREATED\s+FINGERPRINT\n`).MatchString(out) || strings.Count(out, "active") != 2 {
		t.Errorf("cred list:\n%s", out)
	}
	list := decode[[]store.Credential](t, s.ok(t, "cred", "list", "dev", "-o", "json"))
	if len(list) != 2 {
		t.Fatalf("cred list json: %+v", list)
	}
	if out := s.ok(t, "cred", "get", "dev", nc.ID); !strings.Contains(out, nc.ID) {
		t.Errorf("cred get:\n%s", out)
	}
	if psk := decode[apiclient.CredentialPSK](t, s.ok(t, "cred", "psk", "dev", nc.ID, "-o", "json")); psk.Identity != "dev" || len(psk.PSK) != 64 {
		t.Errorf("cred psk: %+v; want identity dev and 32 hex bytes", psk)
	}
	rot := decode[apiclient.RotatedCredential](t, s.ok(t, "cred", "rotate", "dev", list[0].ID, "--window", "1h", "-o", "json"))
	if rot.Secret == "" || rot.ID == list[0].ID || rot.Previous.ID != list[0].ID || rot.Previous.NotAfter == nil || time.Until(*rot.Previous.NotAfter) > time.Hour {
		t.Errorf("cred rotate --window 1h: %+v; want a new secret and the old one ending within the hour", rot)
	}
	rev := decode[store.Credential](t, s.ok(t, "cred", "revoke", "dev", nc.ID, "-o", "json"))
	if !rev.Revoked {
		t.Errorf("revoke: %+v", rev)
	}
	if out := s.ok(t, "cred", "list", "dev"); !strings.Contains(out, "revoked") {
		t.Errorf("list after revoke:\n%s", out)
	}
	s.ok(t, "cred", "delete", "dev", nc.ID)
	if _, _, code := s.run(t, "cred", "delete", "dev", nc.ID); code != 3 {
		t.Errorf("delete twice: exit %d", code)
	}

	// Usage errors.
	for _, args := range [][]string{
		{"cred", "create", "dev"},                                             // --type missing
		{"cred", "create", "dev", "--type", "password"},                       // bad type
		{"cred", "create", "dev", "--type", "secret", "--validity-days", "3"}, // x509 flag
		{"cred", "create", "dev", "--type", "x509", "--expires", "1d"},        // secret flag
		{"cred", "create", "dev", "--type", "secret", "--expires", "soon"},
	} {
		if _, errOut, code := s.run(t, args...); code != 2 || !strings.HasPrefix(errOut, "mote: ") || !strings.Contains(errOut, "Usage:") {
			t.Errorf("%v: exit %d\n%s", args, code, errOut)
		}
	}
}

func TestCredX509OutDir(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	s.ok(t, "thing", "create", "dev")
	dir := filepath.Join(t.TempDir(), "certs")
	out := s.ok(t, "cred", "create", "dev", "--type", "x509", "--out-dir", dir, "--validity-days", "10")
	if !strings.Contains(out, filepath.Join(dir, "dev.key")) || strings.Contains(out, "PRIVATE KEY") {
		t.Errorf("output:\n%s", out)
	}
	modes := map[string]os.FileMode{"dev.crt": 0o644, "dev.key": 0o600, "ca.crt": 0o644}
	for name, mode := range modes {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != mode {
			t.Errorf("%s: mode %v, want %v", name, fi.Mode().Perm(), mode)
		}
	}
	if _, err := tls.LoadX509KeyPair(filepath.Join(dir, "dev.crt"), filepath.Join(dir, "dev.key")); err != nil {
		t.Errorf("key pair: %v", err)
	}
	caPEM, _ := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if !bytes.Equal(bytes.TrimSpace(caPEM), bytes.TrimSpace(s.ca.CertPEM())) {
		t.Errorf("ca.crt is not the CA certificate")
	}
	certPEM, _ := os.ReadFile(filepath.Join(dir, "dev.crt"))
	blk, _ := pem.Decode(certPEM)
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := auth.NewDevices(s.st, s.h, s.ca).Certificate(context.Background(), cert); err != nil {
		t.Errorf("certificate does not authenticate: %v", err)
	}

	// The files exist: refused before a credential is created.
	_, errOut, code := s.run(t, "cred", "create", "dev", "--type", "x509", "--out-dir", dir)
	if code != 4 || !strings.Contains(errOut, "exists") {
		t.Errorf("overwrite: exit %d %s", code, errOut)
	}
	if list, _ := s.reg.ListCredentials(context.Background(), "dev"); len(list) != 1 {
		t.Errorf("%d credentials after refused create, want 1", len(list))
	}

	// Without --out-dir the PEMs are printed; with -o json the API's JSON.
	out = s.ok(t, "cred", "create", "dev", "--type", "x509")
	for _, want := range []string{"# dev.crt", "# dev.key", "# ca.crt", "PRIVATE KEY", "shown only this once"} {
		if !strings.Contains(out, want) {
			t.Errorf("printed x509 lacks %q", want)
		}
	}
	nc := decode[registry.NewCredential](t, s.ok(t, "cred", "create", "dev", "--type", "x509", "-o", "json"))
	if nc.PrivateKey == "" || nc.CertPEM == "" || nc.CACert == "" {
		t.Errorf("json x509: %+v", nc)
	}

	// A CSR from stdin into another directory: no key file.
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "x"}}, key)
	csr := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
	dir2 := t.TempDir()
	out, errOut, code = runIn(t, csr, "--server", s.url, "--token", s.token, "cred", "create", "dev", "--type", "x509", "--csr", "-", "--out-dir", dir2)
	if code != 0 {
		t.Fatalf("csr: exit %d %s", code, errOut)
	}
	if _, err := os.Stat(filepath.Join(dir2, "dev.key")); !os.IsNotExist(err) {
		t.Errorf("a key file was written for a CSR")
	}
	if _, err := os.Stat(filepath.Join(dir2, "dev.crt")); err != nil {
		t.Errorf("no certificate: %v (output %s)", err, out)
	}
}

func TestExitCodes(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	s.ok(t, "thing", "create", "dup")
	viewer := decode[apiclient.NewToken](t, s.ok(t, "token", "create", "v", "--role", "viewer", "-o", "json"))

	cases := []struct {
		name   string
		args   []string
		code   int
		stderr string // a part of stderr
	}{
		{"not found", []string{"--server", s.url, "--token", s.token, "thing", "get", "nope"}, 3, `mote: thing "nope" not found`},
		{"conflict", []string{"--server", s.url, "--token", s.token, "thing", "create", "dup"}, 4, "mote: "},
		{"invalid input (400)", []string{"--server", s.url, "--token", s.token, "thing", "create", "bad/name"}, 2, "(field: name)"},
		{"bad token", []string{"--server", s.url, "--token", "mote.tok_x.y", "thing", "list"}, 5, "invalid or expired API token"},
		{"forbidden", []string{"--server", s.url, "--token", viewer.Secret, "thing", "create", "x"}, 5, "viewer"},
		{"no token", []string{"--server", s.url, "thing", "list"}, 5, "--token"},
		{"unreachable", []string{"--server", closedPortURL(t), "--token", s.token, "thing", "list"}, 6, "could not reach the Mote server"},
		{"unknown flag", []string{"thing", "list", "--bogus"}, 2, "unknown flag: --bogus"},
		{"missing argument", []string{"thing", "get"}, 2, "NAME"},
		{"too many arguments", []string{"thing", "get", "a", "b"}, 2, "NAME"},
		{"unknown command", []string{"thingz"}, 2, `unknown command "thingz"`},
		{"unknown subcommand", []string{"thing", "lst"}, 2, `unknown command "lst" for "mote thing"`},
		{"bad output", []string{"--output", "yaml", "thing", "list"}, 2, "--output must be table or json"},
		{"bad server", []string{"--server", "ftp://x", "--token", "t", "thing", "list"}, 2, "--server"},
		{"bad attr", []string{"--token", "t", "thing", "create", "x", "--attr", "novalue"}, 2, "KEY=VALUE"},
		{"policy file missing", []string{"--token", "t", "policy", "create", "p", "--file", "/nonexistent/doc.json"}, 2, "--file"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, errOut, code := run(t, c.args...)
			if code != c.code || !strings.Contains(errOut, c.stderr) {
				t.Errorf("exit %d (want %d)\nstdout: %s\nstderr: %s", code, c.code, out, errOut)
			}
			if !strings.HasPrefix(errOut, "mote: ") {
				t.Errorf("stderr does not start with \"mote: \": %q", errOut)
			}
			usage := strings.Contains(errOut, "Usage:")
			if wantUsage := c.code == 2 && !strings.Contains(c.name, "400") && c.name != "policy file missing"; usage != wantUsage {
				t.Errorf("usage shown = %v, want %v:\n%s", usage, wantUsage, errOut)
			}
		})
	}

	// The missing-token message says how to get one.
	_, errOut, _ := run(t, "--server", s.url, "thing", "list")
	for _, want := range []string{"--token", "MOTE_TOKEN", "mote admin token"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("no-token message lacks %q: %s", want, errOut)
		}
	}
}

func TestHelp(t *testing.T) {
	t.Parallel()
	out, _, code := run(t, "--help")
	if code != 0 || !strings.Contains(out, "Exit codes:") || !strings.Contains(out, "6  the server could not be reached") {
		t.Errorf("help: exit %d\n%s", code, out)
	}
	out, _, code = run(t, "thing")
	if code != 0 || !strings.Contains(out, "Available Commands:") {
		t.Errorf("mote thing: exit %d\n%s", code, out)
	}
	if _, _, code := run(t); code != 0 {
		t.Errorf("mote: exit %d", code)
	}
	if out, _, code := run(t, "serve", "--help"); code != 0 || !strings.Contains(out, "serve") {
		t.Errorf("serve --help: exit %d\n%s", code, out)
	}
}

func TestEnvironment(t *testing.T) {
	s := newServer(t)
	s.ok(t, "thing", "create", "t1")

	t.Setenv("MOTE_SERVER", s.url)
	t.Setenv("MOTE_TOKEN", s.token)
	t.Setenv("MOTE_OUTPUT", "json")
	out, errOut, code := run(t, "thing", "list")
	if code != 0 || len(decode[[]wire.Thing](t, out)) != 1 {
		t.Fatalf("env: exit %d %s %s", code, out, errOut)
	}
	// Flags win over the environment.
	out, _, _ = run(t, "thing", "list", "--output", "table")
	if !strings.HasPrefix(out, "NAME") {
		t.Errorf("--output table did not win over MOTE_OUTPUT:\n%s", out)
	}
	if _, _, code := run(t, "thing", "list", "--token", "mote.tok_x.y"); code != 5 {
		t.Errorf("--token did not win over MOTE_TOKEN: exit %d", code)
	}
	t.Setenv("MOTE_SERVER", closedPortURL(t))
	if _, _, code := run(t, "thing", "list"); code != 6 {
		t.Errorf("MOTE_SERVER unreachable: exit %d", code)
	}
	if _, errOut, code := run(t, "thing", "list", "--server", s.url); code != 0 {
		t.Errorf("--server did not win over MOTE_SERVER: exit %d %s", code, errOut)
	}
	// A server without a scheme is taken as http.
	if _, errOut, code := run(t, "thing", "list", "--server", strings.TrimPrefix(s.url, "http://")); code != 0 {
		t.Errorf("--server host:port: exit %d %s", code, errOut)
	}
}

func TestPoliciesTypesGroups(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	s.ok(t, "type", "create", "sensor")
	s.ok(t, "thing", "create", "dev", "--type", "sensor")

	doc := `{"statements":[{"effect":"allow","actions":["publish"],"topics":["things/${thing}/telemetry"]}]}`
	file := filepath.Join(t.TempDir(), "doc.json")
	os.WriteFile(file, []byte(doc), 0o644)
	out := s.ok(t, "policy", "create", "telemetry", "--file", file, "--description", "publish telemetry")
	if !strings.Contains(out, "Document:") || !strings.Contains(out, `"things/${thing}/telemetry"`) {
		t.Errorf("policy create:\n%s", out)
	}
	// From stdin, JSON output.
	out, errOut, code := runIn(t, doc, "--server", s.url, "--token", s.token, "-o", "json", "policy", "create", "p2", "-f", "-")
	if code != 0 {
		t.Fatalf("policy from stdin: exit %d %s", code, errOut)
	}
	if p := decode[apiclient.Policy](t, out); p.Name != "p2" || !strings.Contains(string(p.Document), "statements") {
		t.Errorf("policy json: %+v", p)
	}
	// Invalid documents: local JSON error and the server's unknown field.
	if _, errOut, code := runIn(t, "{", "--server", s.url, "--token", s.token, "policy", "create", "p3", "-f", "-"); code != 2 || !strings.Contains(errOut, "not valid JSON") {
		t.Errorf("bad JSON: exit %d %s", code, errOut)
	}
	if _, errOut, code := runIn(t, `{"statments":[]}`, "--server", s.url, "--token", s.token, "policy", "create", "p3", "-f", "-"); code != 2 || !strings.Contains(errOut, "statments") {
		t.Errorf("unknown field: exit %d %s", code, errOut)
	}

	// validate: the server's verdict, with the line and column of a syntax error.
	if out := s.ok(t, "policy", "validate", "--file", file); !strings.Contains(out, "valid: 1 statement") {
		t.Errorf("policy validate: %q", out)
	}
	if _, errOut, code := runIn(t, "{\n  \"statements\": [,]\n}", "--server", s.url, "--token", s.token, "policy", "validate", "-f", "-"); code != 2 || !strings.Contains(errOut, "line 2, column 18") {
		t.Errorf("policy validate of a syntax error: exit %d %s; want 2 and line 2, column 18", code, errOut)
	}

	out = s.ok(t, "policy", "list")
	if !regexp.MustCompile(`(?m)^default\s+yes\s+1\s+`).MatchString(out) || !regexp.MustCompile(`(?m)^telemetry\s+no\s+1\s+publish telemetry$`).MatchString(out) {
		t.Errorf("policy list:\n%s", out)
	}
	if ps := decode[[]apiclient.Policy](t, s.ok(t, "policy", "list", "-o", "json")); len(ps) != 3 {
		t.Errorf("policy list json: %d", len(ps))
	}
	// update: description only keeps the document; document only keeps the description.
	p := decode[apiclient.Policy](t, s.ok(t, "policy", "update", "telemetry", "--description", "new", "-o", "json"))
	if p.Description != "new" || !strings.Contains(string(p.Document), "telemetry") {
		t.Errorf("update description: %+v", p)
	}
	out, errOut, code = runIn(t, `{"statements":[{"effect":"deny","actions":["subscribe"],"topics":["#"]}]}`,
		"--server", s.url, "--token", s.token, "-o", "json", "policy", "update", "telemetry", "--file", "-")
	if p := decode[apiclient.Policy](t, out); code != 0 || p.Description != "new" || !strings.Contains(string(p.Document), "deny") {
		t.Errorf("update document: exit %d %+v %s", code, p, errOut)
	}

	// attach/detach to a thing and to a type.
	s.ok(t, "policy", "attach", "telemetry", "--thing", "dev")
	if th := decode[wire.Thing](t, s.ok(t, "thing", "get", "dev", "-o", "json")); !slices.Equal(th.Policies, []string{"telemetry"}) {
		t.Errorf("attached to thing: %v", th.Policies)
	}
	out = s.ok(t, "policy", "attach", "telemetry", "--type", "sensor")
	if !strings.Contains(out, `Attached policy "telemetry" to type "sensor"`) {
		t.Errorf("attach type: %s", out)
	}
	s.ok(t, "policy", "attach", "p2", "--type", "sensor")
	s.ok(t, "policy", "attach", "p2", "--type", "sensor") // again: no change
	tt := decode[wire.ThingType](t, s.ok(t, "type", "get", "sensor", "-o", "json"))
	if !slices.Equal(tt.Policies, []string{"telemetry", "p2"}) {
		t.Errorf("type policies: %v", tt.Policies)
	}
	if _, _, code := s.run(t, "policy", "attach", "nope", "--type", "sensor"); code != 3 {
		t.Errorf("attach unknown policy to type: exit %d", code)
	}
	tt = decode[wire.ThingType](t, s.ok(t, "policy", "detach", "telemetry", "--type", "sensor", "-o", "json"))
	if !slices.Equal(tt.Policies, []string{"p2"}) {
		t.Errorf("detach from type: %v", tt.Policies)
	}
	if _, _, code := s.run(t, "policy", "detach", "telemetry", "--type", "sensor"); code != 3 {
		t.Errorf("detach not attached: exit %d", code)
	}
	s.ok(t, "policy", "detach", "telemetry", "--thing", "dev")
	for _, args := range [][]string{{"policy", "attach", "p2"}, {"policy", "attach", "p2", "--thing", "dev", "--type", "sensor"}} {
		if _, _, code := s.run(t, args...); code != 2 {
			t.Errorf("%v: exit %d", args, code)
		}
	}
	if _, _, code := s.run(t, "policy", "delete", "default"); code != 4 {
		t.Errorf("delete default: exit %d", code)
	}
	s.ok(t, "policy", "delete", "p2")
	if out := s.ok(t, "policy", "get", "default"); !strings.Contains(out, "Builtin:") {
		t.Errorf("policy get:\n%s", out)
	}

	// Types.
	s.ok(t, "type", "create", "gateway", "--description", "gw", "--policy", "telemetry")
	out = s.ok(t, "type", "list")
	if !regexp.MustCompile(`(?m)^gateway\s+telemetry\s+gw$`).MatchString(out) {
		t.Errorf("type list:\n%s", out)
	}
	tt = decode[wire.ThingType](t, s.ok(t, "type", "update", "gateway", "--policies", "", "--description", "d2", "-o", "json"))
	if len(tt.Policies) != 0 || tt.Description != "d2" {
		t.Errorf("type update: %+v", tt)
	}
	if _, _, code := s.run(t, "type", "delete", "sensor"); code != 4 {
		t.Errorf("delete used type: exit %d", code)
	}
	s.ok(t, "type", "delete", "gateway")
	if types := decode[[]wire.ThingType](t, s.ok(t, "type", "list", "-o", "json")); len(types) != 1 {
		t.Errorf("types: %+v", types)
	}

	// Groups.
	s.ok(t, "group", "create", "floor-1", "--description", "first")
	if _, _, code := s.run(t, "group", "create", "floor-1"); code != 4 {
		t.Errorf("duplicate group: exit %d", code)
	}
	g := decode[wire.Group](t, s.ok(t, "group", "update", "floor-1", "--description", "ground", "-o", "json"))
	if g.Description != "ground" {
		t.Errorf("group update: %+v", g)
	}
	if out := s.ok(t, "group", "get", "floor-1"); !strings.Contains(out, "ground") {
		t.Errorf("group get:\n%s", out)
	}
	if out := s.ok(t, "group", "list"); !regexp.MustCompile(`(?m)^floor-1\s+ground\s+\S+$`).MatchString(out) {
		t.Errorf("group list:\n%s", out)
	}
	s.ok(t, "group", "delete", "floor-1")
	if _, _, code := s.run(t, "group", "get", "floor-1"); code != 3 {
		t.Errorf("deleted group: exit %d", code)
	}
}

func TestTokens(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	out := s.ok(t, "token", "create", "ci", "--role", "operator", "--expires", "720h")
	m := regexp.MustCompile(`(?m)^Token: (mote\.\S+)$`).FindStringSubmatch(out)
	if m == nil || !strings.Contains(out, "role operator") {
		t.Fatalf("token create:\n%s", out)
	}
	if _, _, code := run(t, "--server", s.url, "--token", m[1], "thing", "create", "x"); code != 0 {
		t.Errorf("operator token does not work: exit %d", code)
	}
	// An operator lists only its own tokens and mints none above itself.
	if out, _, code := run(t, "--server", s.url, "--token", m[1], "token", "list", "-o", "json"); code != 0 || len(decode[[]wire.Token](t, out)) != 1 {
		t.Errorf("operator token list: exit %d\n%s", code, out)
	}
	if _, _, code := run(t, "--server", s.url, "--token", m[1], "token", "create", "up", "--role", "admin"); code != 5 {
		t.Errorf("operator created an admin token: exit %d", code)
	}
	toks := decode[[]wire.Token](t, s.ok(t, "token", "list", "-o", "json"))
	if len(toks) != 2 {
		t.Fatalf("tokens: %+v", toks)
	}
	id := toks[0].ID
	if toks[0].Name != "ci" {
		id = toks[1].ID
	}
	if out := s.ok(t, "token", "list"); !regexp.MustCompile(`^ID\s+NAME\s+ROLE\s+USER\s+GROUPS\s+CREATED\s+EXPIRES\s+LAST USED\n`).MatchString(out) || !strings.Contains(out, id) {
		t.Errorf("token list:\n%s", out)
	}
	s.ok(t, "token", "delete", id)
	if _, _, code := run(t, "--server", s.url, "--token", m[1], "thing", "list"); code != 5 {
		t.Errorf("deleted token still works: exit %d", code)
	}
}

func TestAdminToken(t *testing.T) {
	t.Parallel()
	// A data directory as a first server start leaves it; the server keeps
	// running (its store stays open) while admin token works on the files.
	dir := t.TempDir()
	s := openDataDir(t, dir)

	out, errOut, code := run(t, "admin", "token", "--data-dir", dir)
	if code != 0 || errOut != "" {
		t.Fatalf("admin token: exit %d, stderr %q", code, errOut)
	}
	tok := strings.TrimSuffix(out, "\n")
	if !strings.HasPrefix(tok, "mote.tok_") || strings.ContainsAny(tok, " \n") {
		t.Fatalf("stdout is not just a token: %q", out)
	}
	// The token authenticates against the server on the same data dir.
	if _, errOut, code := run(t, "--server", s.url, "--token", tok, "token", "list"); code != 0 {
		t.Errorf("admin token rejected: exit %d %s", code, errOut)
	}
	// And against a registry opened afresh on the same directory.
	st2, err := sqlite.Open(datadir.DB(dir))
	if err != nil {
		t.Fatal(err)
	}
	defer st2.Close()
	h2, _ := auth.LoadOrCreateHasher(datadir.HashKey(dir))
	reg2 := registry.New(registry.Options{Store: st2, Hasher: h2, CA: s.ca})
	if tk, err := reg2.AuthenticateToken(context.Background(), tok); err != nil || tk.Role != registry.RoleAdmin {
		t.Errorf("token on a reopened registry: %v %+v", err, tk)
	}

	// --role, --name.
	out, _, code = run(t, "admin", "token", "--data-dir", dir, "--role", "viewer", "--name", "dash")
	if code != 0 {
		t.Fatalf("viewer: exit %d", code)
	}
	tk, err := reg2.AuthenticateToken(context.Background(), strings.TrimSpace(out))
	if err != nil || tk.Role != registry.RoleViewer || tk.Name != "dash" {
		t.Errorf("viewer token: %v %+v", err, tk)
	}
	if _, _, code := run(t, "admin", "token", "--data-dir", dir, "--role", "root"); code != 2 {
		t.Errorf("bad role: exit %d", code)
	}

	// No data there: a clear error, and nothing is created.
	missing := filepath.Join(t.TempDir(), "nothing")
	out, errOut, code = run(t, "admin", "token", "--data-dir", missing)
	if code != 3 || out != "" || !strings.Contains(errOut, "no Mote data in "+missing) || !strings.Contains(errOut, "mote serve --data-dir") {
		t.Errorf("missing dir: exit %d %q %q", code, out, errOut)
	}
	if _, err := os.Stat(missing); !os.IsNotExist(err) {
		t.Errorf("admin token created %s", missing)
	}
	empty := t.TempDir()
	if _, errOut, code := run(t, "admin", "token", "--data-dir", empty); code != 3 || !strings.Contains(errOut, "no Mote data") {
		t.Errorf("empty dir: exit %d %s", code, errOut)
	}
	if entries, _ := os.ReadDir(empty); len(entries) != 0 {
		t.Errorf("admin token wrote into an empty dir: %v", entries)
	}
}

func TestAdminTokenDataDirEnv(t *testing.T) {
	dir := t.TempDir()
	openDataDir(t, dir)
	t.Setenv("MOTE_DATA_DIR", dir)
	out, errOut, code := run(t, "admin", "token")
	if code != 0 || !strings.HasPrefix(out, "mote.") {
		t.Fatalf("MOTE_DATA_DIR: exit %d %q %q", code, out, errOut)
	}
	// The flag wins.
	if _, _, code := run(t, "admin", "token", "--data-dir", filepath.Join(dir, "nope")); code != 3 {
		t.Errorf("--data-dir did not win: exit %d", code)
	}
}

func TestCredSymmetricKey(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	s.ok(t, "thing", "create", "dev")
	out := s.ok(t, "cred", "create", "dev", "--type", "symmetricKey")
	m := regexp.MustCompile(`(?m)^Key: (\S+)$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no key in:\n%s", out)
	}
	if k, err := base64.StdEncoding.DecodeString(m[1]); err != nil || len(k) != 32 {
		t.Errorf("key %q: %d bytes, %v; want 32", m[1], len(k), err)
	}
	if !strings.Contains(out, "HostName=127.0.0.1;DeviceId=dev;SharedAccessKey="+m[1]+";GatewayHostName=127.0.0.1:") {
		t.Errorf("no connection string in:\n%s", out)
	}
	nc := decode[registry.NewCredential](t, s.ok(t, "cred", "create", "dev", "--type", "symmetricKey", "-o", "json"))
	if nc.Type != store.CredentialSymmetricKey || nc.Key == "" || nc.Key == m[1] {
		t.Errorf("json = %+v", nc)
	}
}

func TestUsers(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	s.ok(t, "group", "create", "plant-3")
	out := s.ok(t, "user", "create", "alice", "--role", "operator", "--group", "plant-3")
	pw := regexp.MustCompile(`(?m)^Password: (\S+)$`).FindStringSubmatch(out)
	if pw == nil || !strings.Contains(out, "groups plant-3") {
		t.Fatalf("user create:\n%s", out)
	}
	if out := s.ok(t, "user", "list"); !regexp.MustCompile(`(?m)^alice\s+operator\s+plant-3\s`).MatchString(out) {
		t.Errorf("user list:\n%s", out)
	}
	u := decode[apiclient.User](t, s.ok(t, "user", "update", "alice", "--role", "viewer", "--no-groups", "-o", "json"))
	if u.Role != "viewer" || len(u.Groups) != 0 {
		t.Errorf("user update: %+v", u)
	}
	if _, _, code := runIn(t, "a new password\n", "--server", s.url, "--token", s.token, "user", "password", "alice"); code != 0 {
		t.Errorf("user password: exit %d", code)
	}
	if _, _, code := s.run(t, "user", "update", "alice"); code != 2 {
		t.Errorf("user update with nothing to change: exit %d; want 2 (usage)", code)
	}
	s.ok(t, "user", "delete", "alice")
	if _, _, code := s.run(t, "user", "get", "alice"); code == 0 {
		t.Errorf("deleted user still there")
	}
}
