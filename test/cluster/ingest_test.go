package cluster_test

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/moteiot/mote/internal/config"
	"github.com/moteiot/mote/internal/daemontest"
	"github.com/moteiot/mote/internal/pgtest"
)

// TestIngestWithoutJetStream: a cluster node whose JetStream stops
// answering refuses a durable QoS 1 publish within --cluster-ingest-timeout
// with MQTT 5 reason 0x80 (never a PUBACK for what was not stored), counts
// it in /metrics and answers /readyz 503; once JetStream is back, durable
// publishes are acknowledged again.
func TestIngestWithoutJetStream(t *testing.T) {
	url := pgtest.DB(t)
	ns, err := server.NewServer(&server.Options{ServerName: "solo", Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true,
		JetStream: true, StoreDir: filepath.Join(t.TempDir(), "js")})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	node := daemontest.Start(t, daemontest.WithStore(url), func(cfg *config.Config) {
		cfg.Cluster = ns.ClientURL()
		cfg.NodeID = "solo"
		cfg.ClusterReplicas = 1
		cfg.ClusterIngestTimeout = 500 * time.Millisecond
	})
	dev := node.V5(t, "dev", node.Device(t, "dev"))
	if rc := dev.Pub(t, "things/dev/telemetry", 1, false, `{"n":1}`); rc != 0 {
		t.Fatalf("QoS 1 publish with JetStream up = %#x; want 0", rc)
	}

	port := ns.Addr().(*net.TCPAddr).Port
	storeDir := ns.JetStreamConfig().StoreDir
	ns.Shutdown()
	ns.WaitForShutdown()
	start := time.Now()
	if rc := dev.Pub(t, "things/dev/telemetry", 1, false, `{"n":2}`); rc != 0x80 {
		t.Errorf("QoS 1 publish with JetStream gone = %#x; want 0x80 (unspecified error: not stored)", rc)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("the refusal took %s; want about --cluster-ingest-timeout (500ms)", took)
	}
	metrics := get(t, node.API+"/metrics")
	if !strings.Contains(metrics, `mote_mqtt_messages_dropped_total{reason="journal_unavailable"} 1`) {
		t.Errorf("/metrics does not count the refusal as journal_unavailable:\n%s", grepLines(metrics, "journal_unavailable", "mote_ingest_jetstream_refused"))
	}
	if code := status(t, node.API+"/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz = %d with JetStream gone; want 503", code)
	}

	// JetStream comes back (the same server, port and store): the node
	// reconnects and durable publishes are acknowledged again.
	ns2, err := server.NewServer(&server.Options{ServerName: "solo", Host: "127.0.0.1", Port: port, NoLog: true, NoSigs: true,
		JetStream: true, StoreDir: storeDir})
	if err != nil {
		t.Fatal(err)
	}
	go ns2.Start()
	t.Cleanup(func() { ns2.Shutdown(); ns2.WaitForShutdown() })
	if !ns2.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready again")
	}
	daemontest.WaitFor(t, 20*time.Second, func() error {
		if rc := dev.Pub(t, "things/dev/telemetry", 1, false, `{"n":3}`); rc != 0 {
			return fmt.Errorf("QoS 1 publish after JetStream came back = %#x", rc)
		}
		return nil
	})
	// The node closes before the server (cleanups run last first and
	// the server's was registered after the node's).
	if err := node.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
}

func get(t *testing.T, u string) string {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return b.String()
}

func status(t *testing.T, u string) int {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func grepLines(s string, words ...string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		for _, w := range words {
			if strings.Contains(l, w) {
				out = append(out, l)
				break
			}
		}
	}
	return strings.Join(out, "\n")
}
