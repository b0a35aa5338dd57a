package broker_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/moteiot/mote/internal/config"
	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/daemontest"
	"github.com/moteiot/mote/internal/store"
)

func TestWebSocket(t *testing.T) {
	s := daemontest.Start(t)
	sec := s.Device(t, "dev")
	ws, _, err := s.DialV3(t, daemontest.V3Options{ClientID: "ws", Username: "dev", Password: sec, Broker: s.WSURL()})
	if err != nil {
		t.Fatalf("connect over WebSocket: %v", err)
	}
	tcp := s.V3(t, "dev", sec)
	if rc := ws.Sub(t, "things/dev/#", 1); rc != 1 {
		t.Fatalf("subscribe over WebSocket = %#x", rc)
	}
	tcp.Pub(t, "things/dev/t", 1, false, "over tcp")
	if m := ws.Inbox.Wait(t, "things/dev/t", 2*time.Second); m.Payload != "over tcp" {
		t.Fatalf("WebSocket client got %q", m.Payload)
	}
	body := getMetrics(t, s)
	if !containsLine(body, `mote_mqtt_connects_total{listener="ws"}`) {
		t.Fatalf("no ws connect counted:\n%s", body)
	}

	// A browser page from another origin is refused.
	h := http.Header{"Origin": {"http://evil.example"}}
	_, resp, err := websocket.DefaultDialer.Dial(s.WS, h)
	if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-origin WebSocket = %v, %v; want 403", resp, err)
	}
}

func TestConnectTimeout(t *testing.T) {
	s := daemontest.Start(t, func(c *config.Config) { c.ConnectTimeout = 300 * time.Millisecond })
	conn, err := net.Dial("tcp", s.MQTT)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	start := time.Now()
	_, err = bufio.NewReader(conn).ReadByte()
	if err == nil {
		t.Fatal("server sent data to a client that never sent CONNECT")
	}
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("connection without CONNECT still open after %v", time.Since(start))
	}
}

func TestMetricsAndHealth(t *testing.T) {
	s := daemontest.Start(t)
	sec := s.Device(t, "dev")
	c := s.V5(t, "dev", sec)
	c.Pub(t, "things/dev/t", 1, false, "x")
	c.Pub(t, "things/other/t", 1, false, "x")
	body := getMetrics(t, s)
	for _, want := range []string{
		`mote_mqtt_connections{listener="tcp"}`,
		`mote_mqtt_connects_total{listener="tcp"}`,
		`mote_mqtt_messages_received_total`,
		`mote_mqtt_bytes_received_total`,
		`mote_mqtt_bytes_sent_total`,
		`mote_mqtt_policy_denied_total{action="publish"}`,
	} {
		if !containsLine(body, want) {
			t.Errorf("metrics: no non-zero %s", want)
		}
	}
	for path, want := range map[string]string{"/healthz": "ok", "/readyz": "ready"} {
		resp, err := http.Get(s.API + path)
		if err != nil {
			t.Fatal(err)
		}
		b := make([]byte, 64)
		n, _ := resp.Body.Read(b)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.HasPrefix(string(b[:n]), want) {
			t.Errorf("GET %s = %d %q; want 200 %q", path, resp.StatusCode, b[:n], want)
		}
	}
}

func TestRestartKeepsRegistry(t *testing.T) {
	s := daemontest.Start(t)
	sec := s.Device(t, "dev")
	if _, err := s.Registry().UpdateThing(context.Background(), "dev", store.ThingPatch{Attributes: map[string]string{"site": "ams"}}); err != nil {
		t.Fatal(err)
	}
	s.V5(t, "dev", sec)
	s.Restart(t)
	th, err := s.Registry().GetThing(context.Background(), "dev")
	if err != nil {
		t.Fatalf("thing after restart: %v", err)
	}
	if th.Attributes["site"] != "ams" || th.Connected {
		t.Fatalf("thing after restart = %+v; want site=ams, not connected", th)
	}
	s.V5(t, "dev", sec) // the secret still works
}

// Accepted device messages reach the bus with the publishing thing; denied
// ones do not.
func TestMessagesReachBus(t *testing.T) {
	s := daemontest.Start(t)
	got := make(chan core.Message, 10)
	s.Bus().Subscribe("things/#", func(m core.Message) { got <- m })
	c := s.V5(t, "dev", s.Device(t, "dev"))
	c.Pub(t, "things/dev/telemetry", 1, false, `{"t":1}`)
	c.Pub(t, "things/other/telemetry", 1, false, `{"t":2}`) // denied
	select {
	case m := <-got:
		if m.Topic != "things/dev/telemetry" || m.Thing != "dev" || m.ClientID != "dev" || string(m.Payload) != `{"t":1}` || m.QoS != 1 || m.Protocol != "mqtt" || m.Received.IsZero() {
			t.Fatalf("bus message = %+v", m)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("no message on the bus")
	}
	select {
	case m := <-got:
		t.Fatalf("denied publish reached the bus: %+v", m)
	case <-time.After(200 * time.Millisecond):
	}
}

// GET /api/v1/server tells clients (the CLI's hints) where devices connect.
func TestServerInfo(t *testing.T) {
	s := daemontest.Start(t)
	req, _ := http.NewRequest("GET", s.API+"/api/v1/server", nil)
	req.Header.Set("Authorization", "Bearer "+s.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var info struct{ Version, MQTT, MQTTS, WebSocket string }
	if err := json.NewDecoder(resp.Body).Decode(&info); err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /server = %d, %v", resp.StatusCode, err)
	}
	if info.MQTT != s.MQTT || info.MQTTS != s.MQTTS || info.WebSocket != "/mqtt" || info.Version == "" {
		t.Fatalf("server info = %+v; want mqtt %s, mqtts %s", info, s.MQTT, s.MQTTS)
	}
}

func TestPprofOnlyWhenAsked(t *testing.T) {
	s := daemontest.Start(t, func(c *config.Config) { c.PprofAddr = "127.0.0.1:0" })
	resp, err := http.Get("http://" + s.Addrs().Pprof + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("pprof = %d", resp.StatusCode)
	}
	// Not on the API port (where unknown paths get the console's page),
	// and not at all by default.
	resp, err = http.Get(s.API + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if strings.Contains(string(body), "goroutine profile") {
		t.Fatalf("pprof on the API port: %d %.200s", resp.StatusCode, body)
	}
	if a := daemontest.Start(t).Addrs().Pprof; a != "" {
		t.Fatalf("pprof listening at %s by default", a)
	}
}
