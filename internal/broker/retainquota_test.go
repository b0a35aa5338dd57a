package broker_test

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/config"
	"github.com/moteiot/mote/internal/daemontest"
)

func waitMetric(t *testing.T, s *daemontest.Server, name string, want float64) {
	t.Helper()
	daemontest.WaitFor(t, 5*time.Second, func() error {
		if got := metricValue(t, s, name); got != want {
			return errorf("%s = %v; want %v", name, got, want)
		}
		return nil
	})
}

// Retained messages are limited per thing (count and bytes) and for the
// server (bytes): beyond a limit a retained publish is refused (MQTT 5:
// PUBACK 0x97; QoS 0: dropped; MQTT 3.1.1 QoS 1: the connection is closed
// without PUBACK; HTTP: 507), replacing one is charged the difference,
// clearing always works, and the accounting survives a restart.
func TestRetainedQuota(t *testing.T) {
	s := daemontest.Start(t, func(c *config.Config) {
		c.MaxRetainedPerThing = 3
		c.MaxRetainedBytesPerThing = 1000
		c.MaxRetainedBytes = 1500
	})
	sec := s.Device(t, "dev")
	otherSec := s.Device(t, "other")
	dev := s.V5(t, "dev", sec)
	b := func(n int) string { return strings.Repeat("x", n) }
	steps := []struct {
		c              *daemontest.V5
		topic, payload string
		want           byte
	}{
		{dev, "things/dev/a", b(100), 0},
		{dev, "things/dev/b", b(100), 0},
		{dev, "things/dev/c", b(100), 0},
		{dev, "things/dev/d", b(100), 0x97}, // a fourth message (thing_count)
		{dev, "things/dev/a", b(100), 0},    // replacing: same count
		{dev, "things/dev/a", b(800), 0},    // 1000 bytes in all
		{dev, "things/dev/b", b(200), 0x97}, // 1100 bytes (thing_bytes)
		{dev, "things/dev/c", "", 0},        // clearing always works
		{dev, "things/dev/d", b(100), 0},    // 1000 bytes, 3 messages again
	}
	for i, st := range steps {
		if rc := st.c.Pub(t, st.topic, 1, true, st.payload); rc != st.want {
			t.Fatalf("step %d: retained publish of %d bytes on %s: PUBACK %#x; want %#x", i, len(st.payload), st.topic, rc, st.want)
		}
	}
	other := s.V5(t, "other", otherSec)
	if rc := other.Pub(t, "things/other/x", 1, true, b(600)); rc != 0x97 { // the server holds 1000 + 600 > 1500
		t.Fatalf("server budget: PUBACK %#x; want 0x97", rc)
	}
	if rc := other.Pub(t, "things/other/x", 1, true, b(500)); rc != 0 {
		t.Fatalf("within the server budget: PUBACK %#x; want 0", rc)
	}
	// Not retained: the quota does not apply.
	if rc := dev.Pub(t, "things/dev/e", 1, false, b(100)); rc != 0 {
		t.Fatalf("plain publish: PUBACK %#x", rc)
	}
	dev.Pub(t, "things/dev/e", 0, true, b(10)) // QoS 0 over the count: dropped, counted
	waitMetric(t, s, `mote_mqtt_retained_refused_total{reason="thing_count"}`, 2)

	// HTTP device API: 507.
	req, _ := http.NewRequest("POST", s.API+"/api/v1/devices/dev/messages?topic=things/dev/f&retain=true", strings.NewReader("v"))
	req.SetBasicAuth("dev", sec)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 507 || !strings.Contains(string(body), "quota_exceeded") {
		t.Fatalf("HTTP retained publish over the quota: %d %s; want 507 quota_exceeded", res.StatusCode, body)
	}

	// MQTT 3.1.1 QoS 1: closed without PUBACK (and without DISCONNECT).
	conn, err := net.Dial("tcp", s.MQTT)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	r := bufio.NewReader(conn)
	conn.Write(connectPacket("dev-v3", "dev", sec, 60))
	if typ, _, err := readPacket(r); err != nil || typ != 2 {
		t.Fatalf("CONNACK: type %d, %v", typ, err)
	}
	topic := "things/dev/g"
	pub := append([]byte{0, byte(len(topic))}, topic...)
	pub = append(pub, 0, 7, 'v')                             // packet id 7, payload "v"
	conn.Write(append([]byte{0x33, byte(len(pub))}, pub...)) // PUBLISH QoS 1 retain
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if typ, _, err := readPacket(r); !errors.Is(err, io.EOF) {
		t.Fatalf("MQTT 3.1.1 retained publish over the quota: read packet type %d, %v; want the connection closed", typ, err)
	}

	waitMetric(t, s, `mote_mqtt_retained_refused_total{reason="thing_count"}`, 4)
	waitMetric(t, s, `mote_mqtt_retained_refused_total{reason="thing_bytes"}`, 1)
	waitMetric(t, s, `mote_mqtt_retained_refused_total{reason="server_bytes"}`, 1)
	waitMetric(t, s, "mote_mqtt_retained_bytes", 1500)

	// The accounting is rebuilt from the store at start.
	s.Restart(t)
	waitMetric(t, s, "mote_mqtt_retained_bytes", 1500)
	dev = s.V5(t, "dev", sec)
	if rc := dev.Pub(t, "things/dev/h", 1, true, "v"); rc != 0x97 {
		t.Fatalf("after restart, a fourth retained message: PUBACK %#x; want 0x97", rc)
	}
	if rc := dev.Pub(t, "things/dev/a", 1, true, ""); rc != 0 {
		t.Fatalf("after restart, clearing: PUBACK %#x", rc)
	}
	if rc := dev.Pub(t, "things/dev/h", 1, true, "v"); rc != 0 {
		t.Fatalf("after restart and a clear: PUBACK %#x; want 0", rc)
	}
	waitMetric(t, s, "mote_mqtt_retained_bytes", 701)
}
