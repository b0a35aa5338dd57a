package daemon_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/config"
	"github.com/moteiot/mote/internal/daemontest"
)

const wait = 10 * time.Second

// rawRequest opens a TCP connection to addr and writes head (the request
// line and headers, without the blank line) plus the first body bytes.
func rawRequest(t *testing.T, addr, head, body string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, wait)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := io.WriteString(c, strings.ReplaceAll(head, "\n", "\r\n")+"\r\n\r\n"+body); err != nil {
		t.Fatal(err)
	}
	return c
}

// closedWithin reads c until the server closes it or d passes, and
// returns what was read and whether it was closed.
func closedWithin(c net.Conn, d time.Duration) (string, bool) {
	_ = c.SetReadDeadline(time.Now().Add(d))
	b, err := io.ReadAll(c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return string(b), false
	}
	return string(b), true
}

// metric reads one sample of the server's /metrics ("" if absent).
func metricValue(t *testing.T, s *daemontest.Server, series string) float64 {
	t.Helper()
	res, err := http.Get(s.API + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			v, _ := strconv.ParseFloat(rest, 64)
			return v
		}
	}
	return 0
}

// TestUnauthenticatedBodyIsNotRead: a POST without credentials and a body
// that trickles in (under 256 KiB, which net/http would otherwise try to
// read to reuse the connection) is answered 401 at once and the
// connection closed, long before the body timeout.
func TestUnauthenticatedBodyIsNotRead(t *testing.T) {
	t.Parallel()
	s := daemontest.Start(t, func(c *config.Config) { c.HTTPBodyTimeout = time.Hour })
	addr := strings.TrimPrefix(s.API, "http://")
	for _, path := range []string{"/api/v1/things", "/api/v1/devices/nobody/messages?topic=a"} {
		c := rawRequest(t, addr, "POST "+path+" HTTP/1.1\nHost: x\nContent-Type: application/json\nContent-Length: 200000", `{"name":`)
		out, closed := closedWithin(c, 5*time.Second)
		if !closed {
			t.Fatalf("POST %s without credentials: connection still open after 5s; read %q", path, out)
		}
		if !strings.HasPrefix(out, "HTTP/1.1 401 ") || !strings.Contains(out, "Connection: close") {
			t.Errorf("POST %s without credentials: %q; want 401 with Connection: close", path, out)
		}
	}
}

// TestBodyTimeout: an authenticated request whose body does not arrive
// within --http-body-timeout loses its connection; one that arrives in
// time is served on the same kind of connection.
func TestBodyTimeout(t *testing.T) {
	t.Parallel()
	s := daemontest.Start(t, func(c *config.Config) { c.HTTPBodyTimeout = 300 * time.Millisecond })
	addr := strings.TrimPrefix(s.API, "http://")
	head := "POST /api/v1/things HTTP/1.1\nHost: x\nAuthorization: Bearer " + s.Token + "\nContent-Type: application/json\nContent-Length: 100"
	start := time.Now()
	c := rawRequest(t, addr, head, `{"name":`)
	out, closed := closedWithin(c, 5*time.Second)
	if !closed {
		t.Fatalf("a body that never completes: connection still open after 5s; read %q", out)
	}
	if el := time.Since(start); el < 250*time.Millisecond {
		t.Errorf("closed after %v; want about the body timeout (300ms)", el)
	}
	if strings.HasPrefix(out, "HTTP/1.1 2") {
		t.Errorf("an incomplete body was accepted: %q", out)
	}

	body := `{"name":"in-time"}`
	c = rawRequest(t, addr, strings.Replace(head, "100", strconv.Itoa(len(body)), 1)+"\nConnection: close", body)
	out, closed = closedWithin(c, 5*time.Second)
	if !closed || !strings.HasPrefix(out, "HTTP/1.1 201 ") {
		t.Fatalf("a body in time: %q (closed %v); want 201", out, closed)
	}
}

// TestLongPollsPerDevice: a thing holding --max-long-polls-per-device
// command long polls gets 429 for one more (counted), and a slot is free
// again once a poll ends.
func TestLongPollsPerDevice(t *testing.T) {
	t.Parallel()
	s := daemontest.Start(t, func(c *config.Config) { c.MaxLongPollsPerDevice = 2; c.HTTPBodyTimeout = 200 * time.Millisecond })
	secret := s.Device(t, "dev")
	poll := func(ctx context.Context, wait string) (int, string, error) {
		req, _ := http.NewRequestWithContext(ctx, "GET", s.API+"/api/v1/devices/dev/commands?wait="+wait, nil)
		req.Header.Set("Authorization", "Bearer "+secret)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, res.Header.Get("Content-Type") + " " + string(b), nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	held := make(chan int, 2)
	for range 2 {
		go func() {
			code, _, _ := poll(ctx, "30s")
			held <- code
		}()
	}
	daemontest.WaitFor(t, wait, func() error {
		if n := metricValue(t, s, "mote_http_long_polls"); n != 2 {
			return fmt.Errorf("mote_http_long_polls = %v; want 2", n)
		}
		return nil
	})
	code, body, err := poll(context.Background(), "1s")
	if err != nil || code != http.StatusTooManyRequests {
		t.Fatalf("third poll: %d %v %s; want 429", code, err, body)
	}
	if !strings.HasPrefix(body, "application/problem+json") || !strings.Contains(body, "max-long-polls-per-device") {
		t.Errorf("429 body: %s; want a problem naming --max-long-polls-per-device", body)
	}
	if n := metricValue(t, s, "mote_http_long_polls_refused_total"); n < 1 {
		t.Errorf("mote_http_long_polls_refused_total = %v; want at least 1", n)
	}
	// Long polls outlive the body timeout (200ms): they have no body.
	select {
	case code := <-held:
		t.Fatalf("a held long poll ended early with %d", code)
	default:
	}
	cancel()
	for range 2 {
		<-held
	}
	daemontest.WaitFor(t, wait, func() error {
		code, b, err := poll(context.Background(), "10ms")
		if err != nil || code != http.StatusOK {
			return fmt.Errorf("poll after the others ended: %d %v %s; want 200", code, err, b)
		}
		return nil
	})
}

// dialFrom dials addr from the local address ip.
func dialFrom(ip, addr string) (net.Conn, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: wait}
	return d.Dial("tcp", addr)
}

// refusedBeforeTLS reports whether the server closes a connection from
// 127.0.0.2 without sending a byte (no TLS handshake, no HTTP answer),
// although the client sent nothing.
func refusedBeforeTLS(t *testing.T, addr string) bool {
	t.Helper()
	c, err := dialFrom("127.0.0.2", addr)
	if errors.Is(err, syscall.ECONNRESET) {
		return true
	}
	if err != nil {
		t.Skipf("cannot dial from 127.0.0.2: %v", err)
	}
	defer c.Close()
	out, closed := closedWithin(c, 3*time.Second)
	return closed && out == ""
}

// TestIPFilter: with 127.0.0.2 denied on the device listeners and the API
// port, a connection from it is closed on accept — before any TLS byte on
// MQTTS and HTTPS — while 127.0.0.1 is served; refusals are counted per
// listener. The device list also guards MQTT over WebSocket on the API
// port (403 on the upgrade).
func TestIPFilter(t *testing.T) {
	t.Parallel()
	s := daemontest.Start(t, func(c *config.Config) {
		c.DeviceIPDeny = []string{"127.0.0.2/32"}
		c.APIIPAllow = []string{"127.0.0.0/8"}
		c.APIIPDeny = []string{"127.0.0.2"}
	})
	for _, l := range []struct{ name, addr string }{
		{"tcp", s.MQTT},
		{"tls", s.MQTTS},
		{"https", strings.TrimPrefix(s.HTTPS, "https://")},
		{"http", strings.TrimPrefix(s.API, "http://")},
	} {
		if !refusedBeforeTLS(t, l.addr) {
			t.Errorf("%s: a connection from 127.0.0.2 was not closed at once", l.name)
		}
		series := `mote_ip_filter_refused_total{listener="` + l.name + `"}`
		daemontest.WaitFor(t, wait, func() error {
			if n := metricValue(t, s, series); n != 1 {
				return fmt.Errorf("%s = %v; want 1", series, n)
			}
			return nil
		})
	}
	// 127.0.0.1 is served everywhere.
	secret := s.Device(t, "dev")
	c := s.V3(t, "dev", secret)
	c.Pub(t, "things/dev/x", 1, false, "hi")
	if res, err := http.Get(s.API + "/healthz"); err != nil || res.StatusCode != 200 {
		t.Fatalf("/healthz from 127.0.0.1: %v %v", res, err)
	}
	if n := metricValue(t, s, `mote_ip_filter_refused_total{listener="ws"}`); n != 0 {
		t.Errorf("ws refusals before any: %v", n)
	}
}

// TestIPFilterWebSocket: the API port admits 127.0.0.2 but the device
// list does not: the WebSocket upgrade at /mqtt is refused with 403, the
// API still answers.
func TestIPFilterWebSocket(t *testing.T) {
	t.Parallel()
	s := daemontest.Start(t, func(c *config.Config) { c.DeviceIPDeny = []string{"127.0.0.2"} })
	addr := strings.TrimPrefix(s.API, "http://")
	get := func(path string, hdr string) string {
		c, err := dialFrom("127.0.0.2", addr)
		if err != nil {
			t.Skipf("cannot dial from 127.0.0.2: %v", err)
		}
		defer c.Close()
		io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"+hdr+"\r\n")
		out, _ := closedWithin(c, 5*time.Second)
		return out
	}
	if out := get("/mqtt", "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: mqtt\r\n"); !strings.HasPrefix(out, "HTTP/1.1 403 ") {
		t.Errorf("WebSocket upgrade from a denied device address: %q; want 403", out)
	}
	if out := get("/healthz", ""); !regexp.MustCompile(`^HTTP/1.1 200 `).MatchString(out) {
		t.Errorf("/healthz from 127.0.0.2 (API allowed): %q; want 200", out)
	}
	if n := metricValue(t, s, `mote_ip_filter_refused_total{listener="ws"}`); n != 1 {
		t.Errorf(`mote_ip_filter_refused_total{listener="ws"} = %v; want 1`, n)
	}
}

// TestBodyTimeoutClearedAfterBody: a POST whose handler waits longer than
// --http-body-timeout after reading its body — a direct method call to a
// device that does not answer — is not cut off: it gets its 504 after the
// method's timeout (a body deadline left in place would cancel the call,
// 503; a server-wide WriteTimeout would lose the answer).
func TestBodyTimeoutClearedAfterBody(t *testing.T) {
	t.Parallel()
	s := daemontest.Start(t, func(c *config.Config) { c.HTTPBodyTimeout = 200 * time.Millisecond })
	secret := s.Device(t, "dev")
	s.V3(t, "dev", secret) // connected, never answers
	// The broker records the session just after CONNACK.
	daemontest.WaitFor(t, 10*time.Second, func() error {
		if !s.Broker().Connected("dev") {
			return fmt.Errorf("dev not connected")
		}
		return nil
	})
	start := time.Now()
	req, _ := http.NewRequest("POST", s.API+"/api/v1/things/dev/methods/reboot", strings.NewReader(`{"timeoutSeconds":1}`))
	req.Header.Set("Authorization", "Bearer "+s.Token)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("method call that waits past the body timeout: %v", err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusGatewayTimeout || time.Since(start) < time.Second {
		t.Fatalf("method call: %d after %v: %s; want 504 after the 1s method timeout", res.StatusCode, time.Since(start), b)
	}
}
