// Package daemontest starts a whole Mote server for end-to-end tests: real
// listeners on 127.0.0.1 port 0, a temporary data directory, an admin token,
// and helpers that create things and connect real MQTT clients (paho, both
// MQTT 3.1.1 and 5.0).
package daemontest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/config"
	"github.com/moteiot/mote/internal/daemon"
	"github.com/moteiot/mote/internal/datadir"
	"github.com/moteiot/mote/internal/registry"
	"github.com/moteiot/mote/internal/store"
	"github.com/moteiot/mote/internal/store/sqlite"
	telemetrysqlite "github.com/moteiot/mote/internal/telemetry/sqlite"
)

// Server is a running Mote server.
type Server struct {
	*daemon.Daemon
	Dir    string        // data directory
	Config config.Config // what it was started with
	Token  string        // admin API token
	API    string        // http://127.0.0.1:port
	HTTPS  string        // https://127.0.0.1:port (the API over TLS; client certificates)
	MQTT   string        // 127.0.0.1:port
	MQTTS  string
	WS     string // ws://127.0.0.1:port/mqtt
}

// Option changes the configuration before start.
type Option func(*config.Config)

// WithStore runs the server on the PostgreSQL database at url (see
// internal/pgtest for a throw-away one) instead of SQLite in its data
// directory.
func WithStore(url string) Option {
	return func(c *config.Config) { c.Store = url }
}

// Start starts a server in a fresh temporary directory and stops it when
// the test ends.
func Start(tb testing.TB, opts ...Option) *Server {
	tb.Helper()
	cfg := config.Default()
	fresh := tb.TempDir()
	cfg.DataDir = fresh
	cfg.MQTTAddr = "127.0.0.1:0"
	cfg.MQTTSAddr = "127.0.0.1:0"
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.HTTPSAddr = "127.0.0.1:0"
	cfg.CoAPAddr = "127.0.0.1:0"
	cfg.CoAPSAddr = "127.0.0.1:0"
	// No per-device rate limit unless a test asks for one: tests and
	// benchmarks publish faster than a real device.
	cfg.DeviceRateLimit = 0
	cfg.PresenceFlush = 20 * time.Millisecond
	// bcrypt's cheapest cost: the admin's first password and the users
	// service's dummy hash took about 0.6 s of CPU at every start under
	// the race detector at the default 10, most of a start. Sign-in still
	// checks a real bcrypt hash; users' own tests check the cost.
	cfg.PasswordCost = 4
	// Tests need no internet: the console's maps draw without tiles.
	cfg.MapTileURL = ""
	for _, o := range opts {
		o(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		tb.Fatalf("config: %v", err)
	}
	if cfg.Store == "" && cfg.DataDir == fresh {
		seedDatabases(tb, fresh)
	}
	s := &Server{Dir: cfg.DataDir, Config: cfg}
	s.start(tb)
	tb.Cleanup(func() {
		if err := s.Daemon.Close(); err != nil {
			tb.Errorf("shut down mote: %v", err)
		}
		checkAPIResponses(tb, strings.TrimPrefix(s.API, "http://"))
	})
	ctx := context.Background()
	if s.Token = s.InitialToken(); s.Token == "" {
		var err error
		if _, s.Token, err = s.Registry().CreateToken(ctx, "test", registry.RoleAdmin, nil); err != nil {
			tb.Fatalf("create token: %v", err)
		}
	}
	return s
}

// The SQLite databases of a fresh data directory, migrated once per test
// process: applying every migration was about 0.3 s of CPU of each start
// under the race detector. A server started on them starts as it would on
// its own data directory the second time; the migrations themselves are
// still applied here once and checked by the stores' own tests.
var (
	templateOnce sync.Once
	templateDBs  map[string][]byte // file name in the data directory → content
	templateErr  error
)

// seedDatabases writes the migrated, empty databases into dir.
func seedDatabases(tb testing.TB, dir string) {
	tb.Helper()
	templateOnce.Do(func() { templateDBs, templateErr = migratedDatabases() })
	if templateErr != nil {
		tb.Fatalf("migrate the template databases: %v", templateErr)
	}
	for name, b := range templateDBs {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			tb.Fatalf("seed %s: %v", name, err)
		}
	}
}

// migratedDatabases creates both SQLite stores in a temporary directory,
// closes them (which checkpoints their write-ahead logs into the files)
// and returns the files' contents.
func migratedDatabases() (map[string][]byte, error) {
	dir, err := os.MkdirTemp("", "mote-daemontest-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	st, err := sqlite.Open(datadir.DB(dir))
	if err != nil {
		return nil, err
	}
	if err := st.Close(); err != nil {
		return nil, err
	}
	ts, err := telemetrysqlite.Open(datadir.Telemetry(dir))
	if err != nil {
		return nil, err
	}
	if err := ts.Close(); err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	dbs := map[string][]byte{}
	for _, e := range entries {
		name := e.Name()
		if name != filepath.Base(datadir.DB(dir)) && name != filepath.Base(datadir.Telemetry(dir)) {
			// A -wal or -shm file left behind would mean the close did
			// not checkpoint: start from nothing rather than half a copy.
			return nil, fmt.Errorf("unexpected file %s after closing the stores", name)
		}
		if dbs[name], err = os.ReadFile(filepath.Join(dir, name)); err != nil {
			return nil, err
		}
	}
	return dbs, nil
}

func (s *Server) start(tb testing.TB) {
	tb.Helper()
	d := daemon.New(s.Config, Logger(tb))
	if err := d.Start(context.Background()); err != nil {
		tb.Fatalf("start mote: %v", err)
	}
	s.Daemon = d
	a := d.Addrs()
	s.API, s.MQTT, s.MQTTS, s.WS = "http://"+a.HTTP, a.MQTT, a.MQTTS, "ws://"+a.HTTP+"/mqtt"
	watchAPI(a.HTTP)
	if a.HTTPS != "" {
		s.HTTPS = "https://" + a.HTTPS
	}
}

// Restart stops the server and starts it again on the same data directory
// (on new ports).
func (s *Server) Restart(tb testing.TB) {
	tb.Helper()
	if err := s.Daemon.Close(); err != nil {
		tb.Fatalf("close: %v", err)
	}
	checkAPIResponses(tb, strings.TrimPrefix(s.API, "http://"))
	s.start(tb)
}

// Logger returns a logger for tests: silent unless MOTE_TEST_LOG=1.
func Logger(tb testing.TB) *slog.Logger {
	if os.Getenv("MOTE_TEST_LOG") == "1" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// Thing creates an enabled thing with the given policies attached.
func (s *Server) Thing(tb testing.TB, name string, policies ...string) store.Thing {
	tb.Helper()
	t, err := s.Registry().CreateThing(context.Background(), store.Thing{Name: name, Enabled: true, Policies: policies})
	if err != nil {
		tb.Fatalf("create thing %s: %v", name, err)
	}
	return t
}

// Secret creates a secret credential for a thing and returns its id and
// the secret.
func (s *Server) Secret(tb testing.TB, thing string) (id, secret string) {
	tb.Helper()
	c, err := s.Registry().CreateSecret(context.Background(), thing, nil)
	if err != nil {
		tb.Fatalf("create secret for %s: %v", thing, err)
	}
	return c.ID, c.Secret
}

// Device creates a thing with a secret and returns the secret.
func (s *Server) Device(tb testing.TB, name string, policies ...string) string {
	tb.Helper()
	s.Thing(tb, name, policies...)
	_, secret := s.Secret(tb, name)
	return secret
}

// ClientCert issues an X.509 credential for a thing and returns its id and
// a TLS certificate to present.
func (s *Server) ClientCert(tb testing.TB, thing string) (string, tls.Certificate) {
	tb.Helper()
	c, err := s.Registry().IssueCertificate(context.Background(), thing, 0)
	if err != nil {
		tb.Fatalf("issue certificate for %s: %v", thing, err)
	}
	pair, err := tls.X509KeyPair([]byte(c.CertPEM), []byte(c.PrivateKey))
	if err != nil {
		tb.Fatalf("key pair: %v", err)
	}
	return c.ID, pair
}

// TLSConfig returns a client TLS configuration that trusts the server's CA
// and presents cert if it is non-nil.
func (s *Server) TLSConfig(cert *tls.Certificate) *tls.Config {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(s.CACertPEM())
	c := &tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS12}
	if cert != nil {
		c.Certificates = []tls.Certificate{*cert}
	}
	return c
}

// WaitFor polls cond every 10ms until it returns nil or timeout passes,
// then fails the test with cond's last error.
func WaitFor(tb testing.TB, timeout time.Duration, cond func() error) {
	tb.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		err := cond()
		if err == nil {
			return
		}
		select {
		case <-deadline.C:
			if err = cond(); err != nil {
				tb.Fatalf("after %v: %v", timeout, err)
			}
			return
		case <-tick.C:
		}
	}
}
