package daemon_test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/config"
	"github.com/moteiot/mote/internal/daemon"
	"github.com/moteiot/mote/internal/daemontest"
)

// A busy port on the very first start must not lose the secrets shown
// only once: the start fails naming the flag to change, and the next
// start (free ports) still prints the admin token and console password.
func TestFirstStartBusyPortKeepsSecrets(t *testing.T) {
	dir := t.TempDir()
	for _, flag := range []string{"https-addr", "mqtt-addr", "mqtts-addr", "http-addr"} {
		busy, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		cfg := testConfig(dir)
		switch flag {
		case "https-addr":
			cfg.HTTPSAddr = busy.Addr().String()
		case "mqtt-addr":
			cfg.MQTTAddr = busy.Addr().String()
		case "mqtts-addr":
			cfg.MQTTSAddr = busy.Addr().String()
		case "http-addr":
			cfg.HTTPAddr = busy.Addr().String()
		}
		d := daemon.New(cfg, daemontest.Logger(t))
		err = d.Start(context.Background())
		_ = busy.Close()
		if err == nil {
			_ = d.Close()
			t.Fatalf("start with %s busy: no error", flag)
		}
		if !strings.Contains(err.Error(), "--"+flag) {
			t.Errorf("start with %s busy: error %q does not name --%s", flag, err, flag)
		}
		if d.InitialToken() != "" || d.InitialPassword() != "" {
			t.Errorf("start with %s busy created the first-start secrets", flag)
		}
	}

	d := daemon.New(testConfig(dir), daemontest.Logger(t))
	if err := d.Start(context.Background()); err != nil {
		t.Fatalf("start with free ports: %v", err)
	}
	defer d.Close()
	if d.InitialToken() == "" {
		t.Error("the admin token of the first successful start is empty (lost)")
	}
	if d.InitialPassword() == "" {
		t.Error("the console password of the first successful start is empty (lost)")
	}
}

func testConfig(dir string) config.Config {
	cfg := config.Default()
	cfg.DataDir = dir
	cfg.MQTTAddr = "127.0.0.1:0"
	cfg.MQTTSAddr = "127.0.0.1:0"
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.HTTPSAddr = "127.0.0.1:0"
	cfg.PresenceFlush = 20 * time.Millisecond
	cfg.CoAPAddr = "127.0.0.1:0"
	cfg.CoAPSAddr = "127.0.0.1:0"
	return cfg
}
