// Package daemontest starts a whole Mote server for end-to-end tests: real
// listeners on 127.0.0.1 port 0, a temporary data directory, an admin token,
// and helpers that create things and connect real MQTT clients (paho, both
// MQTT 3.1.1 and 5.0).
package daemontest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/config"
	"github.com/moteiot/mote/internal/daemon"
	"github.com/moteiot/mote/internal/registry"
	"github.com/moteiot/mote/internal/store"
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
	cfg.DataDir = tb.TempDir()
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
	// Tests need no internet: the console's maps draw without tiles.
	cfg.MapTileURL = ""
	for _, o := range opts {
		o(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		tb.Fatalf("config: %v", err)
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
