package broker_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/moteiot/mote/internal/config"
	"github.com/moteiot/mote/internal/daemontest"
	"github.com/moteiot/mote/internal/telemetry"
)

// QoS 1 telemetry is acknowledged after the journal's fsync, in order,
// with many publishes in flight; subscribers get every message in order
// and the telemetry store has each exactly once.
func TestDurablePublishesAreAcknowledgedInOrderAndStored(t *testing.T) {
	s := daemontest.Start(t)
	sec := s.Device(t, "dev")
	sub := s.V5(t, "dev", sec)
	if rc := sub.Sub(t, "things/dev/telemetry"); rc != 1 {
		t.Fatalf("SUBACK %#x", rc)
	}
	pubSec := sec
	pub, err := s.DialV5(t, daemontest.V5Options{ClientID: "dev-pub", Username: "dev", Password: pubSec, CleanStart: true})
	if err != nil {
		t.Fatal(err)
	}
	const n = 200
	var wg sync.WaitGroup
	codes := make([]byte, n)
	for i := range n {
		wg.Add(1)
		go func() { // paho keeps them all in flight; the server acks in order
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			r, err := pub.Publish(ctx, &paho.Publish{Topic: "things/dev/telemetry", QoS: 1, Payload: []byte(fmt.Sprintf(`{"n":%d}`, i))})
			if err != nil || r == nil {
				t.Errorf("publish %d: %v", i, err)
				return
			}
			codes[i] = r.ReasonCode
		}()
	}
	wg.Wait()
	for i, c := range codes {
		if c != 0 {
			t.Fatalf("publish %d: PUBACK %#x", i, c)
		}
	}
	daemontest.WaitFor(t, 10*time.Second, func() error {
		if got := len(sub.Inbox.All()); got != n {
			return fmt.Errorf("subscriber got %d of %d", got, n)
		}
		return nil
	})
	if err := s.TelemetryWriter().Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	points, _, err := s.Telemetry().Range(context.Background(), telemetry.RangeQuery{Things: []string{"dev"}, Keys: []string{"n"},
		From: time.Now().Add(-time.Hour).UnixMilli(), To: time.Now().Add(time.Minute).UnixMilli(), Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[float64]int{}
	for _, p := range points {
		seen[p.Value.Float()]++
	}
	if len(points) != n || len(seen) != n {
		t.Fatalf("stored %d points (%d distinct); want %d, each once", len(points), len(seen), n)
	}
	body := getMetrics(t, s)
	if !containsLine(body, "mote_ingest_appended_total") {
		t.Fatal("mote_ingest_appended_total is zero: the messages did not go through the journal")
	}
	// Each publish counts once, though mochi sees it twice (durable.go).
	if !strings.Contains(body, fmt.Sprintf("\nmote_mqtt_messages_received_total %d\n", n)) {
		t.Fatalf("messages received:\n%s", grep(body, "mote_mqtt_messages_received_total"))
	}
}

// A journal that cannot take messages refuses the publish instead of
// acknowledging what it did not store: MQTT 5 PUBACK 0x80, MQTT 3.1.1 a
// disconnect (no acknowledgement). Publishes no telemetry rule wants are
// not affected.
func TestDurablePublishRefusedWhenTheJournalFails(t *testing.T) {
	s := daemontest.Start(t)
	sec := s.Device(t, "dev")
	v5 := s.V5(t, "dev", sec)
	if rc := v5.Pub(t, "things/dev/telemetry", 1, false, `{"a":1}`); rc != 0 {
		t.Fatalf("before: PUBACK %#x", rc)
	}
	s.Journal().Drain() // closes the log: appends fail from now on
	if rc := v5.Pub(t, "things/dev/telemetry", 1, false, `{"a":2}`); rc != 0x80 {
		t.Fatalf("journal closed: PUBACK %#x; want 0x80", rc)
	}
	if rc := v5.Pub(t, "things/dev/status", 1, false, `online`); rc != 0 {
		t.Fatalf("a topic no telemetry rule wants: PUBACK %#x; want 0", rc)
	}
	if rc := v5.Pub(t, "things/dev/telemetry", 0, false, `{"a":3}`); rc != 0 {
		t.Fatalf("QoS 0 is not journaled: %#x", rc)
	}

	v3, _, err := s.DialV3(t, daemontest.V3Options{ClientID: "dev-v3", Username: "dev", Password: sec})
	if err != nil {
		t.Fatal(err)
	}
	tok := v3.Publish("things/dev/telemetry", 1, false, `{"a":4}`)
	select {
	case <-v3.Lost:
	case <-time.After(10 * time.Second):
		t.Fatal("MQTT 3.1.1 publisher not disconnected")
	}
	if tok.WaitTimeout(5*time.Second) && tok.Error() == nil {
		t.Fatal("MQTT 3.1.1 publish was acknowledged")
	}
	if !containsLine(getMetrics(t, s), `mote_mqtt_messages_dropped_total{reason="journal_unavailable"}`) {
		t.Fatal("refusals not counted")
	}
}

// An MQTT 3.1.1 QoS 1 publisher over its rate limit is slowed down, not
// acknowledged-and-dropped: every message arrives, later.
func TestRateLimitThrottlesMQTT311(t *testing.T) {
	s := daemontest.Start(t, func(c *config.Config) { c.DeviceRateLimit, c.DeviceRateBurst = 20, 1 })
	sec := s.Device(t, "dev")
	sub := s.V5(t, "dev", sec)
	sub.Sub(t, "things/dev/x")
	v3, _, err := s.DialV3(t, daemontest.V3Options{ClientID: "dev-v3", Username: "dev", Password: sec})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		v3.Pub(t, "things/dev/x", 1, false, fmt.Sprint(i))
	}
	daemontest.WaitFor(t, 5*time.Second, func() error {
		if n := len(sub.Inbox.All()); n != 5 {
			return fmt.Errorf("subscriber got %d of 5", n)
		}
		return nil
	})
	if !v3.IsConnected() {
		t.Fatal("throttled publisher disconnected")
	}
	if !containsLine(getMetrics(t, s), `mote_rate_limited_total{protocol="mqtt"}`) {
		t.Fatal("throttled publishes not counted")
	}
}

// QoS 2 telemetry takes the durable path too: PUBREC after the fsync, then
// the PUBREL/PUBCOMP exchange, delivered and stored exactly once.
func TestDurablePublishQoS2(t *testing.T) {
	s := daemontest.Start(t)
	sec := s.Device(t, "dev")
	sub := s.V5(t, "dev", sec)
	sub.Sub(t, "things/dev/telemetry")
	pub, err := s.DialV5(t, daemontest.V5Options{ClientID: "dev-pub", Username: "dev", Password: sec, CleanStart: true})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		if rc := pub.Pub(t, "things/dev/telemetry", 2, false, fmt.Sprintf(`{"q2":%d}`, i)); rc >= 0x80 {
			t.Fatalf("publish %d: %#x", i, rc)
		}
	}
	daemontest.WaitFor(t, 10*time.Second, func() error {
		if n := len(sub.Inbox.All()); n != 20 {
			return fmt.Errorf("subscriber got %d of 20", n)
		}
		return nil
	})
	// The rules engine reads durable messages from the journal on its own
	// goroutines: the last ones may reach the telemetry writer after the
	// subscriber got them. Wait for the store to hold all 20 (not more).
	var points []telemetry.Point
	daemontest.WaitFor(t, 10*time.Second, func() error {
		if err := s.TelemetryWriter().Flush(context.Background()); err != nil {
			return err
		}
		var err error
		points, _, err = s.Telemetry().Range(context.Background(), telemetry.RangeQuery{Things: []string{"dev"}, Keys: []string{"q2"},
			From: time.Now().Add(-time.Hour).UnixMilli(), To: time.Now().Add(time.Minute).UnixMilli(), Limit: 100})
		if err == nil && len(points) < 20 {
			err = fmt.Errorf("stored %d points of 20", len(points))
		}
		return err
	})
	if len(points) != 20 {
		t.Fatalf("stored %d points; want 20, each once", len(points))
	}
}

// A full disk refuses durable publishes — MQTT 5 PUBACK 0x80, MQTT 3.1.1
// a closed connection without a DISCONNECT packet, HTTP 507 — and reports
// not ready; once the disk takes writes again the journal recovers by
// itself: publishes are acknowledged and stored, /readyz answers 200.
func TestFullDiskRefusesThenRecovers(t *testing.T) {
	s := daemontest.Start(t)
	sec := s.Device(t, "dev")
	v5 := s.V5(t, "dev", sec)
	if rc := v5.Pub(t, "things/dev/telemetry", 1, false, `{"n":1}`); rc != 0 {
		t.Fatalf("before: PUBACK %#x", rc)
	}
	readyz := func() int {
		resp, err := http.Get(s.API + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	restPublish := func(payload string) (int, string, string) {
		req, _ := http.NewRequest("POST", s.API+"/api/v1/devices/dev/messages?topic=things/dev/telemetry", strings.NewReader(payload))
		req.SetBasicAuth("dev", sec)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("Content-Type"), string(b)
	}
	if got := readyz(); got != 200 {
		t.Fatalf("/readyz before = %d", got)
	}

	var full atomic.Bool
	full.Store(true)
	s.Journal().SetFault(func(string) error {
		if full.Load() {
			return syscall.ENOSPC
		}
		return nil
	})
	if rc := v5.Pub(t, "things/dev/telemetry", 1, false, `{"n":2}`); rc != 0x80 {
		t.Fatalf("disk full: MQTT 5 PUBACK %#x; want 0x80", rc)
	}
	if got := readyz(); got != http.StatusServiceUnavailable {
		t.Fatalf("/readyz while the journal cannot write = %d; want 503", got)
	}
	if st, ct, body := restPublish(`{"n":3}`); st != http.StatusInsufficientStorage || ct != "application/problem+json" ||
		!strings.Contains(body, "insufficient_storage") {
		t.Fatalf("disk full: REST publish = %d %s %s; want 507 problem+json", st, ct, body)
	}

	// MQTT 3.1.1: no PUBACK, and no DISCONNECT (a v5-only packet for a
	// server to send): the connection just closes.
	conn, err := net.Dial("tcp", s.MQTT)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	r := bufio.NewReader(conn)
	conn.Write(connectPacket("dev-raw", "dev", sec, 60))
	if typ, _, err := readPacket(r); err != nil || typ != 2 {
		t.Fatalf("CONNACK: type %d, %v", typ, err)
	}
	topic, payload := "things/dev/telemetry", `{"n":4}`
	pub := append([]byte{byte(len(topic) >> 8), byte(len(topic))}, topic...)
	pub = append(pub, 0, 7) // packet id
	pub = append(pub, payload...)
	conn.Write(append([]byte{0x32, byte(len(pub))}, pub...))
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	rest, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("MQTT 3.1.1 publisher not disconnected: %v", err)
	}
	if len(rest) != 0 {
		t.Fatalf("MQTT 3.1.1 publisher got % x before EOF; want nothing (0xe0 is a DISCONNECT)", rest)
	}

	full.Store(false)
	daemontest.WaitFor(t, 15*time.Second, func() error {
		if got := readyz(); got != 200 {
			return fmt.Errorf("/readyz = %d", got)
		}
		return nil
	})
	if rc := v5.Pub(t, "things/dev/telemetry", 1, false, `{"n":5}`); rc != 0 {
		t.Fatalf("after recovery: PUBACK %#x", rc)
	}
	if st, _, body := restPublish(`{"n":6}`); st != http.StatusNoContent {
		t.Fatalf("after recovery: REST publish = %d %s", st, body)
	}
	if err := s.TelemetryWriter().Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	daemontest.WaitFor(t, 10*time.Second, func() error {
		points, _, err := s.Telemetry().Range(context.Background(), telemetry.RangeQuery{Things: []string{"dev"}, Keys: []string{"n"},
			From: time.Now().Add(-time.Hour).UnixMilli(), To: time.Now().Add(time.Minute).UnixMilli(), Limit: 100})
		if err != nil {
			return err
		}
		var got []float64
		for _, p := range points {
			got = append(got, p.Value.Float())
		}
		slices.Sort(got)
		if fmt.Sprint(got) != "[1 5 6]" {
			return fmt.Errorf("stored n = %v; want [1 5 6] (the acknowledged ones)", got)
		}
		return nil
	})
	body := getMetrics(t, s)
	for _, m := range []string{"mote_ingest_write_errors_total", "mote_ingest_write_recoveries_total",
		`mote_mqtt_messages_dropped_total{reason="journal_unavailable"}`} {
		if !containsLine(body, m) {
			t.Fatalf("%s not counted:\n%s", m, grep(body, "mote_ingest"))
		}
	}
}
