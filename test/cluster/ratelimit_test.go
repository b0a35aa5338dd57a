package cluster_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/config"
	"github.com/moteiot/mote/internal/daemontest"
)

// devicePost publishes one message over the HTTP device API of node n and
// returns the status.
func devicePost(t *testing.T, n *daemontest.Server, thing, secret string) int {
	t.Helper()
	req, err := http.NewRequest("POST", n.API+"/api/v1/devices/"+thing+"/messages?topic=things/"+thing+"/telemetry", strings.NewReader(`{"v":1}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.SetBasicAuth(thing, secret)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res.StatusCode
}

// metricsOf returns node n's /metrics text.
func metricsOf(t *testing.T, n *daemontest.Server) string {
	t.Helper()
	res, err := http.Get(n.API + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return string(b)
}

// TestClusterRateLimit: a thing's rate limit holds across nodes. The
// thing spends its whole burst through node A's HTTP device API; once
// node B has been told (the usage announcement), B refuses the thing's
// next message, where alone it would have given the thing a fresh burst.
func TestClusterRateLimit(t *testing.T) {
	const burst = 5
	c := startCluster(t, func(cfg *config.Config) {
		cfg.DeviceRateLimit = 0.05 // one token in 20 s: no refill during the test
		cfg.DeviceRateBurst = burst
	})
	a, b := c.nodes[0], c.nodes[1]
	secret := a.Device(t, "chatty")
	for i := range burst {
		if code := devicePost(t, a, "chatty", secret); code != 204 {
			t.Fatalf("message %d through node A: %d; want 204", i, code)
		}
	}
	if code := devicePost(t, a, "chatty", secret); code != 429 {
		t.Fatalf("message past the burst on node A: %d; want 429", code)
	}
	want := fmt.Sprintf("mote_cluster_rate_usage_charged_total %d", burst)
	daemontest.WaitFor(t, 10*time.Second, func() error {
		if m := metricsOf(t, b); !strings.Contains(m, want) {
			return fmt.Errorf("node B has not charged the thing's %d messages on node A yet", burst)
		}
		return nil
	})
	if code := devicePost(t, b, "chatty", secret); code != 429 {
		t.Fatalf("message through node B after the burst was spent on node A: %d; want 429 (the limit is per node)", code)
	}
	// Another thing is not charged.
	if code := devicePost(t, b, "quiet", a.Device(t, "quiet")); code != 204 {
		t.Errorf("another thing through node B: %d; want 204", code)
	}
}
