package daemon

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/config"
)

// testConfig is a whole server on loopback ports 0 in a temp dir.
func testConfig(t *testing.T, dir string) config.Config {
	t.Helper()
	cfg := config.Default()
	cfg.DataDir = dir
	cfg.MQTTAddr = "127.0.0.1:0"
	cfg.MQTTSAddr = "127.0.0.1:0"
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.HTTPSAddr = "127.0.0.1:0"
	cfg.PprofAddr = "127.0.0.1:0"
	cfg.CoAPAddr = "127.0.0.1:0"
	cfg.CoAPSAddr = "127.0.0.1:0"
	if err := cfg.Validate(); err != nil {
		t.Fatalf("config: %v", err)
	}
	return cfg
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// addrList names the non-empty addresses of a.
func addrList(a Addrs) map[string]string {
	m := map[string]string{}
	for name, addr := range map[string]string{"mqtt": a.MQTT, "mqtts": a.MQTTS, "http": a.HTTP, "https": a.HTTPS, "pprof": a.Pprof} {
		if addr != "" {
			m[name] = addr
		}
	}
	return m
}

// refused reports whether nothing accepts TCP connections at addr any more.
func refused(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return true
	}
	c.Close()
	return false
}

func TestLifecycle(t *testing.T) {
	dir := t.TempDir()
	d := New(testConfig(t, dir), quiet())
	if err := d.Start(t.Context()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			_ = d.Close()
		}
	})

	a := d.Addrs()
	addrs := addrList(a)
	if len(addrs) != 5 {
		t.Fatalf("Addrs() = %+v; want all five listeners", a)
	}
	for name, addr := range addrs {
		if _, port, err := net.SplitHostPort(addr); err != nil || port == "0" {
			t.Errorf("Addrs().%s = %q; want the bound port", name, addr)
		}
	}
	if d.InitialToken() == "" || d.InitialPassword() == "" {
		t.Errorf("first start: InitialToken %q, InitialPassword set %v; want both", d.InitialToken(), d.InitialPassword() != "")
	}

	// Every listener serves.
	resp, err := http.Get("http://" + a.HTTP + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "ready\n" {
		t.Errorf("GET /readyz = %d %q; want 200 ready", resp.StatusCode, body)
	}
	insecure := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err = insecure.Get("https://" + a.HTTPS + "/healthz")
	if err != nil {
		t.Fatalf("GET https /healthz: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET https /healthz = %d", resp.StatusCode)
	}
	if c, err := tls.Dial("tcp", a.MQTTS, &tls.Config{InsecureSkipVerify: true}); err != nil {
		t.Errorf("TLS handshake on mqtts: %v", err)
	} else {
		c.Close()
	}
	if refused(a.MQTT) || refused(a.Pprof) {
		t.Errorf("mqtt or pprof listener does not accept")
	}

	// Close stops everything and is safe to call again.
	closed = true
	if err := d.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for name, addr := range addrs {
		if !refused(addr) {
			t.Errorf("after Close the %s listener %s still accepts", name, addr)
		}
	}
	if err := d.Close(); err != nil {
		t.Errorf("second Close = %v; want nil", err)
	}

	// The data directory is released and kept: a second start on it is
	// not a first start.
	d2 := New(testConfig(t, dir), quiet())
	if err := d2.Start(t.Context()); err != nil {
		t.Fatalf("restart on the same data dir: %v", err)
	}
	defer d2.Close()
	if d2.InitialToken() != "" || d2.InitialPassword() != "" {
		t.Error("restart created a new initial token or admin password")
	}
}

// A listener whose port is taken makes Start fail with an error naming
// it, and stops what had already started.
func TestStartFailsOnPortInUse(t *testing.T) {
	for _, name := range []string{"mqtt", "mqtts", "http", "https", "pprof"} {
		t.Run(name, func(t *testing.T) {
			busy, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer busy.Close()
			dir := t.TempDir()
			cfg := testConfig(t, dir)
			switch name {
			case "mqtt":
				cfg.MQTTAddr = busy.Addr().String()
			case "mqtts":
				cfg.MQTTSAddr = busy.Addr().String()
			case "http":
				cfg.HTTPAddr = busy.Addr().String()
			case "https":
				cfg.HTTPSAddr = busy.Addr().String()
			case "pprof":
				cfg.PprofAddr = busy.Addr().String()
			}
			d := New(cfg, quiet())
			err = d.Start(context.Background())
			if err == nil {
				d.Close()
				t.Fatalf("Start with the %s port in use succeeded", name)
			}
			if !strings.Contains(err.Error(), busy.Addr().String()) {
				t.Errorf("Start error = %q; want it to name %s", err, busy.Addr())
			}
			// It names the flag and its environment variable, as a user types them.
			flag := name + "-addr"
			if want := "--" + flag + " (or " + config.EnvName(flag) + ")"; !strings.Contains(err.Error(), want) {
				t.Errorf("Start error = %q; want it to say %q", err, want)
			}
			// Listeners opened before the failure are closed again.
			for other, addr := range addrList(d.Addrs()) {
				if addr != busy.Addr().String() && !refused(addr) {
					t.Errorf("after the failed Start the %s listener %s still accepts", other, addr)
				}
			}
			if err := d.Close(); err != nil {
				t.Errorf("Close after a failed Start = %v; want nil", err)
			}
			if name != "mqtt" && name != "pprof" {
				return // the first and the last listener to open are enough for what follows (a start costs seconds under -race)
			}
			// The data directory is released: a server starts on it.
			d2 := New(testConfig(t, dir), quiet())
			if err := d2.Start(context.Background()); err != nil {
				t.Fatalf("start on the data dir of the failed server: %v", err)
			}
			if err := d2.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
	}
}
