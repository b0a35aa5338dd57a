package broker_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/config"
	"github.com/moteiot/mote/internal/daemon"
	"github.com/moteiot/mote/internal/daemontest"
)

// syncBuffer collects log output from many goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *syncBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// startLogged starts a server like daemontest.Start whose log (debug
// level and up, JSON as in production) goes to w.
func startLogged(t *testing.T, w io.Writer, opts ...daemontest.Option) *daemontest.Server {
	t.Helper()
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.MQTTAddr, cfg.MQTTSAddr = "127.0.0.1:0", ""
	cfg.HTTPAddr, cfg.HTTPSAddr = "127.0.0.1:0", ""
	cfg.CoAPAddr, cfg.CoAPSAddr = "", ""
	cfg.DeviceRateLimit = 0
	for _, o := range opts {
		o(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	d := daemon.New(cfg, slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err := d.Start(context.Background()); err != nil {
		t.Fatalf("start mote: %v", err)
	}
	t.Cleanup(func() { _ = d.Close() })
	a := d.Addrs()
	return &daemontest.Server{Daemon: d, Dir: cfg.DataDir, Config: cfg, API: "http://" + a.HTTP, MQTT: a.MQTT}
}

// Raw MQTT packets, for what a well-behaved client library will not send.

func mqttString(s string) []byte { return append([]byte{byte(len(s) >> 8), byte(len(s))}, s...) }

func mqttPacket(header byte, body []byte) []byte {
	out := []byte{header}
	n := len(body)
	for {
		b := byte(n % 128)
		n /= 128
		if n > 0 {
			b |= 0x80
		}
		out = append(out, b)
		if n == 0 {
			break
		}
	}
	return append(out, body...)
}

// rawConnect is a CONNECT (clean start) for MQTT 3.1.1 (version 4) or 5.
// willTopic != "" adds a QoS 0 will.
func rawConnect(version byte, clientID, user, pass, willTopic, willPayload string) []byte {
	flags := byte(0x02)
	if user != "" {
		flags |= 0x80
	}
	if pass != "" {
		flags |= 0x40
	}
	if willTopic != "" {
		flags |= 0x04
	}
	body := append(mqttString("MQTT"), version, flags, 0, 30)
	if version == 5 {
		body = append(body, 0) // no properties
	}
	body = append(body, mqttString(clientID)...)
	if willTopic != "" {
		if version == 5 {
			body = append(body, 0)
		}
		body = append(body, mqttString(willTopic)...)
		body = append(body, mqttString(willPayload)...)
	}
	if user != "" {
		body = append(body, mqttString(user)...)
	}
	if pass != "" {
		body = append(body, mqttString(pass)...)
	}
	return mqttPacket(0x10, body)
}

// rawPublish is a QoS 1 PUBLISH with packet id 1.
func rawPublish(version byte, topic string, payload []byte) []byte {
	body := append(mqttString(topic), 0, 1)
	if version == 5 {
		body = append(body, 0)
	}
	return mqttPacket(0x32, append(body, payload...))
}

// exchange dials the MQTT listener, writes each packet in turn (pausing
// until the server has answered the first, the CONNECT) and reads until
// the server closes the connection or a second passes.
func exchange(t *testing.T, s *daemontest.Server, pkts ...[]byte) []byte {
	t.Helper()
	conn, err := net.Dial("tcp", s.MQTT)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(time.Second))
	var got []byte
	buf := make([]byte, 4096)
	for i, p := range pkts {
		if _, err := conn.Write(p); err != nil {
			break // closed by the server
		}
		if i == 0 && len(pkts) > 1 { // wait for the CONNACK
			n, err := conn.Read(buf)
			got = append(got, buf[:n]...)
			if err != nil {
				return got
			}
		}
	}
	rest, _ := io.ReadAll(conn)
	return append(got, rest...)
}

// leaks reports whether log holds s, in plain text or as the JSON (base64),
// hex or Go (%v) rendering of its bytes.
func leaks(log, s string) string {
	whole := len(s) / 3 * 3 // a base64 prefix that does not depend on what follows
	forms := map[string]string{
		"plain":  s,
		"base64": base64.StdEncoding.EncodeToString([]byte(s[:whole])),
		"hex":    hex.EncodeToString([]byte(s)),
		"%v":     strings.Trim(fmt.Sprint([]byte(s)), "[]"),
	}
	for name, f := range forms {
		if strings.Contains(log, f) {
			return name
		}
	}
	return ""
}

// Neither a device's secret nor a payload reaches the log, whatever the
// device sends: a second CONNECT on a live connection (mochi logs the
// packet at WARN), a malformed PUBLISH, a PUBLISH the policy refuses, an
// oversized packet, a bad password, a will the policy refuses.
func TestLogHasNoSecretsOrPayloads(t *testing.T) {
	var logs syncBuffer
	s := startLogged(t, &logs, func(c *config.Config) { c.MaxPacketSize = 1024 })
	secret := s.Device(t, "dev")
	const marker = "PAYLOAD-MARKER-0123456789-ABCDEF-xyz" // 36 bytes: whole base64 groups
	payload := []byte(marker)

	// step sends pkts on a new connection until a log record holds every
	// one of want: mochi's records go through a rate limiter (5 a second),
	// so a try may be suppressed, and the next second's first one passes.
	step := func(want []string, pkts ...[]byte) {
		t.Helper()
		daemontest.WaitFor(t, 10*time.Second, func() error {
			exchange(t, s, pkts...)
			for _, line := range strings.Split(logs.String(), "\n") {
				all := true
				for _, w := range want {
					all = all && strings.Contains(line, w)
				}
				if all {
					return nil
				}
			}
			return fmt.Errorf("no log record with %q", want)
		})
	}
	for _, v := range []byte{4, 5} {
		client := fmt.Sprintf(`"client":"dev-%d"`, v)
		connect := rawConnect(v, fmt.Sprintf("dev-%d", v), "dev", secret, "", "")
		// A second CONNECT, with the password, on a live connection.
		step([]string{"error processing packet", "second connect", client},
			connect, rawConnect(v, "again", "dev", secret, "", ""))
		// A malformed PUBLISH: a wildcard in the topic name.
		step([]string{"error processing packet", "wildcards", client},
			connect, rawPublish(v, "things/dev/+", payload))
		// A PUBLISH the policy refuses (MQTT 5: mochi logs the rejected
		// packet; 3.1.1: acknowledged and dropped, only Mote logs it).
		denied := []string{"publish packet rejected", `things/other/x`}
		if v == 4 {
			denied = []string{"publish denied by policy", client, `"topic":"things/other/x"`}
		}
		step(denied, connect, rawPublish(v, "things/other/x", payload))
		// An oversized PUBLISH.
		step([]string{"packet too large", client}, connect, rawPublish(v, "things/dev/big", bytes.Repeat(payload, 100)))
		// A bad password: another thing's name with this secret.
		bad := fmt.Sprintf("bad-%d", v)
		step([]string{"connection refused", "bad_credentials", bad}, rawConnect(v, bad, "nobody", secret, "", ""))
		// A will the policy refuses, carrying the marker.
		will := fmt.Sprintf("will-%d", v)
		step([]string{"connection refused", "will_denied", will}, rawConnect(v, will, "dev", secret, "things/other/will", marker))
	}

	log := logs.String()
	if form := leaks(log, secret); form != "" {
		t.Errorf("the log holds the secret (%s):\n%s", form, log)
	}
	if form := leaks(log, marker); form != "" {
		t.Errorf("the log holds the payload (%s):\n%s", form, log)
	}
	// The packets are still described, without their contents.
	for _, want := range []string{`"pk":{"type":"Connect"`, `"pk":{"type":"Publish","id":1,"qos":1,"topic":"things/dev/+","payload_bytes":36}`} {
		if !strings.Contains(log, want) {
			t.Errorf("the log lacks the packet summary %s:\n%s", want, log)
		}
	}
}
