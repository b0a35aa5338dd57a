package coap_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
	piondtls "github.com/pion/dtls/v2"
	"github.com/plgd-dev/go-coap/v3/dtls"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	"github.com/plgd-dev/go-coap/v3/udp"
	udpclient "github.com/plgd-dev/go-coap/v3/udp/client"

	"github.com/moteiot/mote/internal/commands"
	"github.com/moteiot/mote/internal/config"
	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/daemontest"
	"github.com/moteiot/mote/internal/store"
)

// start runs a whole server with CoAP on loopback, token authentication
// on, and small limits.
func start(t *testing.T, opts ...daemontest.Option) *daemontest.Server {
	t.Helper()
	o := append([]daemontest.Option{func(c *config.Config) {
		c.CoAPTokenAuth = true
		c.CoAPMaxPayload = 4096
		c.CoAPMaxObservers = 3
	}}, opts...)
	return daemontest.Start(t, o...)
}

func coapAddr(s *daemontest.Server) string  { return s.Addrs().CoAP }
func coapsAddr(s *daemontest.Server) string { return s.Addrs().CoAPS }

// dial is a go-coap UDP client of the server.
func dial(t *testing.T, s *daemontest.Server) *udpclient.Conn {
	t.Helper()
	cc, err := udp.Dial(coapAddr(s))
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

func token(thing, secret string) message.Option {
	return message.Option{ID: message.URIQuery, Value: []byte("token=" + thing + ":" + secret)}
}

func body(t *testing.T, m *pool.Message) string {
	t.Helper()
	if m.Body() == nil {
		return ""
	}
	b, err := m.ReadBody()
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return string(b)
}

// coapClient returns the path of libcoap's coap-client, or skips. Debian's
// libcoap3-bin installs it as coap-client-notls, -openssl and -gnutls
// (plain UDP is all these tests need); other builds as coap-client.
func coapClient(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"coap-client", "coap-client-notls", "coap-client-openssl", "coap-client-gnutls"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("coap-client (Debian libcoap3-bin) is not installed; .ci/run installs it")
	return ""
}

func runCoAPClient(t *testing.T, args ...string) string {
	t.Helper()
	return runCoAPClientWith(t, coapClient(t), args...)
}

// runCoAPClientWith runs a coap-client binary to completion and returns
// what it printed.
func runCoAPClientWith(t *testing.T, client string, args ...string) string {
	t.Helper()
	c, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(c, client, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(client), strings.Join(args, " "), err, out)
	}
	return string(out)
}

func uri(s *daemontest.Server, path, thing, secret string) string {
	return "coap://" + coapAddr(s) + path + "?token=" + url.QueryEscape(thing+":"+secret)
}

// watch collects the bus messages on topics matching filter: what the
// broker handed on to shadows, rules and telemetry.
func watch(t *testing.T, s *daemontest.Server, filter string) <-chan core.Message {
	t.Helper()
	ch := make(chan core.Message, 100)
	unsub := s.Bus().Subscribe(filter, func(m core.Message) {
		select {
		case ch <- m:
		default:
		}
	})
	t.Cleanup(unsub)
	return ch
}

func next(t *testing.T, ch <-chan core.Message) core.Message {
	t.Helper()
	select {
	case m := <-ch:
		return m
	case <-time.After(10 * time.Second):
		t.Fatal("no message on the bus after 10s")
	}
	return core.Message{}
}

func TestCoAPClientPostReachesBroker(t *testing.T) {
	coapClient(t)
	s := start(t)
	secret := s.Device(t, "dev-1")
	msgs := watch(t, s, "things/#")

	runCoAPClient(t, "-m", "post", "-t", "json", "-e", `{"temp":21.5}`, uri(s, "/things/dev-1/telemetry", "dev-1", secret))
	m := next(t, msgs)
	if m.Topic != "things/dev-1/telemetry" || string(m.Payload) != `{"temp":21.5}` || m.Thing != "dev-1" || m.Protocol != "coap" || m.QoS != 1 {
		t.Errorf("bus message = %s %q thing %q protocol %q qos %d; want things/dev-1/telemetry, the CoAP body, dev-1, coap, QoS 1 (confirmable)", m.Topic, m.Payload, m.Thing, m.Protocol, m.QoS)
	}
}

func TestCoAPClientBlockwisePost(t *testing.T) {
	coapClient(t)
	s := start(t)
	secret := s.Device(t, "dev-1")
	msgs := watch(t, s, "things/#")
	payload := `{"log":"` + strings.Repeat("x", 3000) + `"}` // 47 blocks of 64 bytes
	file := t.TempDir() + "/body.json"
	if err := os.WriteFile(file, []byte(payload), 0o600); err != nil {
		t.Fatal(err)
	}
	runCoAPClient(t, "-m", "post", "-b", "64", "-t", "json", "-f", file, uri(s, "/things/dev-1/logs", "dev-1", secret))
	m := next(t, msgs)
	if m.Topic != "things/dev-1/logs" || string(m.Payload) != payload {
		t.Errorf("bus message = %s (%d bytes); want things/dev-1/logs with the whole %d-byte block-wise body", m.Topic, len(m.Payload), len(payload))
	}
}

func TestCoAPClientShadowPutGetObserve(t *testing.T) {
	coapClient(t)
	s := start(t)
	secret := s.Device(t, "lamp")
	u := uri(s, "/things/lamp/shadow", "lamp", secret)

	runCoAPClient(t, "-m", "put", "-t", "json", "-e", `{"state":{"reported":{"on":true,"note":"`+strings.Repeat("n", 200)+`"}}}`, u)
	// A GET in blocks of 64 bytes (Block2): the whole document arrives.
	out := runCoAPClient(t, "-m", "get", "-b", "64", u)
	if !strings.Contains(out, `"on":true`) || !strings.Contains(out, strings.Repeat("n", 200)) {
		t.Fatalf("GET shadow = %q; want the reported state, whole", out)
	}

	// Observe: coap-client prints each notification; an update made
	// elsewhere (the REST API's path) reaches it.
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// -w: coap-client writes each payload with no separator otherwise,
	// so the notifications would never make a line.
	cmd := exec.CommandContext(c, coapClient(t), "-w", "-m", "get", "-s", "25", u)
	lines := startLines(t, cmd)
	waitLine(t, lines, `"on":true`)
	if _, err := s.Shadows().Update(ctx(t), "lamp", "", []byte(`{"state":{"desired":{"on":false}}}`)); err != nil {
		t.Fatalf("update shadow: %v", err)
	}
	waitLine(t, lines, `"desired":{"on":false}`)
	// One change, one notification: the line after it is the next
	// change's, not the same document again.
	if _, err := s.Shadows().Update(ctx(t), "lamp", "", []byte(`{"state":{"desired":{"on":true}}}`)); err != nil {
		t.Fatalf("update shadow: %v", err)
	}
	if l := nextLine(t, lines); !strings.Contains(l, `"desired":{"on":true}`) {
		t.Errorf("notification after the second update = %q; want the second document (a change notified twice?)", l)
	}
}

// nextLine is the next line of output, within 15 s.
func nextLine(t *testing.T, lines <-chan string) string {
	t.Helper()
	select {
	case l, ok := <-lines:
		if !ok {
			t.Fatal("output ended")
		}
		return l
	case <-time.After(15 * time.Second):
		t.Fatal("no line after 15s")
	}
	return ""
}

// startLines starts cmd and returns its stdout and stderr lines.
func startLines(t *testing.T, cmd *exec.Cmd) <-chan string {
	t.Helper()
	r, w := io.Pipe()
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", cmd.Path, err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait(); _ = w.Close() })
	ch := make(chan string, 100)
	go func() {
		defer close(ch)
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64*1024), 1<<20)
		for sc.Scan() {
			ch <- sc.Text()
		}
	}()
	return ch
}

func waitLine(t *testing.T, lines <-chan string, want string) {
	t.Helper()
	deadline := time.After(15 * time.Second)
	var seen []string
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("output ended without %q; saw %q", want, seen)
			}
			if strings.Contains(l, want) {
				return
			}
			seen = append(seen, l)
		case <-deadline:
			t.Fatalf("no line with %q after 15s; saw %q", want, seen)
		}
	}
}

func TestCoAPClientObserveCommands(t *testing.T) {
	coapClient(t)
	s := start(t)
	secret := s.Device(t, "pump")
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(c, coapClient(t), "-w", "-m", "get", "-s", "25", uri(s, "/things/pump/commands", "pump", secret)) // -w: a line per payload
	lines := startLines(t, cmd)
	waitLine(t, lines, `{"items":[]}`)
	created, err := s.Commands().Create(ctx(t), "pump", commands.Request{Name: "flush", Payload: json.RawMessage(`{"litres":3}`)})
	if err != nil {
		t.Fatalf("create command: %v", err)
	}
	waitLine(t, lines, `"name":"flush"`)

	// The result goes back as a POST on /things/pump/commands/{id}.
	runCoAPClient(t, "-m", "post", "-t", "json", "-e", `{"status":"succeeded","output":{"ok":true}}`, uri(s, "/things/pump/commands/"+created.ID, "pump", secret))
	got, err := s.Commands().Get(ctx(t), "pump", created.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != store.CommandSucceeded {
		t.Errorf("command status = %q; want succeeded after the CoAP result", got.Status)
	}
}

func TestAnotherThingsPathIsForbidden(t *testing.T) {
	s := start(t)
	secretA := s.Device(t, "a")
	s.Device(t, "b")
	msgs := watch(t, s, "things/#")
	cc := dial(t, s)
	for _, path := range []string{"/things/b/telemetry", "/things/b/shadow", "/things/b/commands"} {
		var resp *pool.Message
		var err error
		if strings.HasSuffix(path, "telemetry") {
			resp, err = cc.Post(ctx(t), path, message.AppJSON, bytes.NewReader([]byte(`{"x":1}`)), token("a", secretA))
		} else {
			resp, err = cc.Get(ctx(t), path, token("a", secretA))
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if resp.Code() != codes.Forbidden {
			t.Errorf("%s as thing a = %v; want 4.03", path, resp.Code())
		}
	}
	select {
	case m := <-msgs:
		t.Errorf("bus got %s from a refused request", m.Topic)
	default:
	}
	// The same device on its own path is fine: the refusal was about
	// the path, not the credentials.
	resp, err := cc.Post(ctx(t), "/things/a/telemetry", message.AppJSON, bytes.NewReader([]byte(`{"x":1}`)), token("a", secretA))
	if err != nil || resp.Code() != codes.Changed {
		t.Fatalf("own path = %v, %v; want 2.04", resp, err)
	}
	if m := next(t, msgs); m.Topic != "things/a/telemetry" {
		t.Errorf("bus topic = %s; want things/a/telemetry", m.Topic)
	}
	if n := metric(t, s, "mote_coap_forbidden_total"); n != 3 {
		t.Errorf("mote_coap_forbidden_total = %v; want 3", n)
	}
}

func TestBadTokens(t *testing.T) {
	s := start(t)
	secret := s.Device(t, "a")
	s.Device(t, "b")
	cc := dial(t, s)
	for _, tc := range []struct {
		name string
		opts message.Options
		want codes.Code
	}{
		{"none", nil, codes.Unauthorized},
		{"wrong secret", message.Options{token("a", "nope")}, codes.Unauthorized},
		{"b's name, a's secret", message.Options{token("b", secret)}, codes.Unauthorized},
		{"no colon", message.Options{{ID: message.URIQuery, Value: []byte("token=" + secret)}}, codes.Unauthorized},
		{"unknown query", message.Options{token("a", secret), {ID: message.URIQuery, Value: []byte("qos=2")}}, codes.BadOption},
		{"token twice", message.Options{token("a", secret), token("a", secret)}, codes.BadOption},
	} {
		resp, err := cc.Post(ctx(t), "/things/a/telemetry", message.AppJSON, bytes.NewReader([]byte(`{}`)), tc.opts...)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if resp.Code() != tc.want {
			t.Errorf("%s: code = %v; want %v", tc.name, resp.Code(), tc.want)
		}
	}
	if n := metric(t, s, `mote_coap_auth_failures_total{method="token"}`); n < 4 {
		t.Errorf("mote_coap_auth_failures_total{token} = %v; want at least 4", n)
	}
}

func TestTokenAuthOffByDefault(t *testing.T) {
	s := daemontest.Start(t)
	secret := s.Device(t, "a")
	cc := dial(t, s)
	resp, err := cc.Post(ctx(t), "/things/a/telemetry", message.AppJSON, bytes.NewReader([]byte(`{}`)), token("a", secret))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Code() != codes.Unauthorized {
		t.Errorf("token on a server without --coap-token-auth = %v; want 4.01", resp.Code())
	}
}

func TestOversizeBlockwiseTransfer(t *testing.T) {
	s := start(t) // coap-max-payload 4096
	secret := s.Device(t, "a")
	msgs := watch(t, s, "things/#")
	cc := dial(t, s)
	big := bytes.Repeat([]byte("x"), 20_000)
	resp, err := cc.Post(ctx(t), "/things/a/logs", message.TextPlain, bytes.NewReader(big), token("a", secret))
	if err != nil {
		t.Fatalf("post: %v", err)
	}
	if resp.Code() != codes.RequestEntityTooLarge {
		t.Fatalf("20 KB block-wise body = %v; want 4.13", resp.Code())
	}
	if v, err := resp.GetOptionUint32(message.Size1); err != nil || v != 4096 {
		t.Errorf("Size1 of the 4.13 = %d, %v; want 4096 (the limit)", v, err)
	}
	// A body that announces its size (Size1) is refused on the first block.
	req, err := cc.NewPostRequest(ctx(t), "/things/a/logs", message.TextPlain, bytes.NewReader([]byte("x")), token("a", secret))
	if err != nil {
		t.Fatal(err)
	}
	req.SetOptionUint32(message.Size1, 1<<30)
	resp, err = cc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Code() != codes.RequestEntityTooLarge {
		t.Errorf("Size1 = 1 GiB: %v; want 4.13", resp.Code())
	}
	select {
	case m := <-msgs:
		t.Errorf("bus got %s (%d bytes) from a refused transfer", m.Topic, len(m.Payload))
	default:
	}
	// Just under the limit passes.
	ok := bytes.Repeat([]byte("y"), 4000)
	resp, err = cc.Post(ctx(t), "/things/a/logs", message.TextPlain, bytes.NewReader(ok), token("a", secret))
	if err != nil || resp.Code() != codes.Changed {
		t.Fatalf("4000-byte body = %v, %v; want 2.04", resp, err)
	}
	if m := next(t, msgs); len(m.Payload) != 4000 {
		t.Errorf("bus payload = %d bytes; want 4000", len(m.Payload))
	}
	if n := metric(t, s, `mote_coap_requests_total{code="4.13"}`); n < 2 {
		t.Errorf(`mote_coap_requests_total{code="4.13"} = %v; want at least 2`, n)
	}
}

func TestObserverFlood(t *testing.T) {
	// coap-max-observers 3; a silent peer is forgotten after 1s.
	s := start(t, func(c *config.Config) { c.CoAPSessionIdle = time.Second })
	secret := s.Device(t, "a")
	cc := dial(t, s)
	registered := 0
	for i := range 10 {
		req, err := cc.NewObserveRequest(ctx(t), "/things/a/shadow", token("a", secret))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := cc.Do(req)
		if err != nil {
			t.Fatalf("observe %d: %v", i, err)
		}
		if _, err := resp.Observe(); err == nil {
			registered++
		}
	}
	if registered != 3 {
		t.Errorf("observations registered = %d of 10; want 3 (coap-max-observers)", registered)
	}
	if n := metric(t, s, `mote_coap_observers{resource="shadow"}`); n != 3 {
		t.Errorf("mote_coap_observers = %v; want 3", n)
	}
	if n := metric(t, s, `mote_coap_observe_refused_total`); n != 7 {
		t.Errorf("mote_coap_observe_refused_total = %v; want 7", n)
	}
	// A peer that goes silent is forgotten with its observations (UDP
	// has no close to see).
	_ = cc.Close()
	daemontest.WaitFor(t, 10*time.Second, func() error {
		if n := metric(t, s, `mote_coap_observers{resource="shadow"}`); n != 0 {
			return fmt.Errorf("observers = %v after the session closed; want 0", n)
		}
		return nil
	})
}

func TestCBOR(t *testing.T) {
	s := start(t)
	secret := s.Device(t, "a")
	msgs := watch(t, s, "things/#")
	cc := dial(t, s)
	doc, _ := cbor.Marshal(map[string]any{"temp": 21, "ok": true})
	resp, err := cc.Post(ctx(t), "/things/a/telemetry", message.AppCBOR, bytes.NewReader(doc), token("a", secret))
	if err != nil || resp.Code() != codes.Changed {
		t.Fatalf("CBOR post = %v, %v; want 2.04", resp, err)
	}
	if m := next(t, msgs); string(m.Payload) != `{"ok":true,"temp":21}` {
		t.Errorf("bus payload = %s; want the CBOR as JSON", m.Payload)
	}
	// A shadow update in CBOR, read back in CBOR (Accept: 60).
	upd, _ := cbor.Marshal(map[string]any{"state": map[string]any{"reported": map[string]any{"level": 7}}})
	resp, err = cc.Put(ctx(t), "/things/a/shadow", message.AppCBOR, bytes.NewReader(upd), token("a", secret))
	if err != nil || resp.Code() != codes.Changed {
		t.Fatalf("CBOR shadow update = %v, %v; want 2.04", resp, err)
	}
	resp, err = cc.Get(ctx(t), "/things/a/shadow", token("a", secret), message.Option{ID: message.Accept, Value: []byte{60}})
	if err != nil || resp.Code() != codes.Content {
		t.Fatalf("GET shadow = %v, %v", resp, err)
	}
	if cf, _ := resp.ContentFormat(); cf != message.AppCBOR {
		t.Errorf("content format = %v; want application/cbor", cf)
	}
	var got struct {
		State struct {
			Reported map[string]int `cbor:"reported"`
		} `cbor:"state"`
	}
	if err := cbor.Unmarshal([]byte(body(t, resp)), &got); err != nil || got.State.Reported["level"] != 7 {
		t.Errorf("CBOR shadow = %+v, %v; want reported level 7", got, err)
	}
	// Malformed CBOR is a 4.00, and a text shadow update a 4.15.
	resp, err = cc.Post(ctx(t), "/things/a/telemetry", message.AppCBOR, bytes.NewReader([]byte{0xbf, 0x61}), token("a", secret))
	if err != nil || resp.Code() != codes.BadRequest {
		t.Errorf("malformed CBOR = %v, %v; want 4.00", resp, err)
	}
	resp, err = cc.Put(ctx(t), "/things/a/shadow", message.TextPlain, bytes.NewReader([]byte("on")), token("a", secret))
	if err != nil || resp.Code() != codes.UnsupportedMediaType {
		t.Errorf("text/plain shadow update = %v, %v; want 4.15", resp, err)
	}
}

// psk fetches a secret credential's PSK over the REST API, as an
// administrator would.
func psk(t *testing.T, s *daemontest.Server, thing, id string) []byte {
	t.Helper()
	var out struct {
		Identity string `json:"identity"`
		PSK      string `json:"psk"`
	}
	apiGet(t, s, "/api/v1/things/"+thing+"/credentials/"+id+"/psk", &out)
	key, err := hex.DecodeString(out.PSK)
	if err != nil || out.Identity != thing || len(key) != 32 {
		t.Fatalf("psk = %+v; want identity %s and 32 hex bytes", out, thing)
	}
	return key
}

func dialPSK(s *daemontest.Server, identity string, key []byte) (*udpclient.Conn, error) {
	return dtls.Dial(coapsAddr(s), &piondtls.Config{
		PSK:                 func([]byte) ([]byte, error) { return key, nil },
		PSKIdentityHint:     []byte(identity),
		CipherSuites:        []piondtls.CipherSuiteID{piondtls.TLS_PSK_WITH_AES_128_CCM_8},
		ConnectContextMaker: handshakeTimeout,
	})
}

// handshakeTimeout bounds a test's DTLS handshake (pion's default is 30s).
func handshakeTimeout() (context.Context, func()) {
	return context.WithTimeout(context.Background(), 5*time.Second)
}

// refused reports whether a DTLS dial, or the first request on it, fails.
func refused(t *testing.T, cc *udpclient.Conn, err error, path string) bool {
	t.Helper()
	if err != nil {
		return true
	}
	defer cc.Close()
	c, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_, perr := cc.Post(c, path, message.AppJSON, bytes.NewReader([]byte(`{}`)))
	return perr != nil
}

func TestDTLSPSK(t *testing.T) {
	s := start(t)
	s.Thing(t, "psk-dev")
	credID, _ := s.Secret(t, "psk-dev")
	key := psk(t, s, "psk-dev", credID)
	msgs := watch(t, s, "things/#")

	cc, err := dialPSK(s, "psk-dev", key)
	if err != nil {
		t.Fatalf("DTLS-PSK handshake: %v", err)
	}
	defer cc.Close()
	resp, err := cc.Post(ctx(t), "/things/psk-dev/telemetry", message.AppJSON, bytes.NewReader([]byte(`{"v":1}`)))
	if err != nil || resp.Code() != codes.Changed {
		t.Fatalf("POST over DTLS-PSK = %v, %v; want 2.04", resp, err)
	}
	if m := next(t, msgs); m.Topic != "things/psk-dev/telemetry" || m.Thing != "psk-dev" {
		t.Errorf("bus = %s from %s; want things/psk-dev/telemetry from psk-dev", m.Topic, m.Thing)
	}
	// The session is psk-dev's: another thing's path is 4.03.
	s.Device(t, "other")
	resp, err = cc.Post(ctx(t), "/things/other/telemetry", message.AppJSON, bytes.NewReader([]byte(`{}`)))
	if err != nil || resp.Code() != codes.Forbidden {
		t.Errorf("other thing's path over PSK = %v, %v; want 4.03", resp, err)
	}

	// A wrong key, or the key of a revoked secret, is refused.
	bad := append([]byte(nil), key...)
	bad[0] ^= 1
	if c, err := dialPSK(s, "psk-dev", bad); !refused(t, c, err, "/things/psk-dev/telemetry") {
		t.Errorf("a wrong PSK was accepted")
	}
	if _, err := s.Registry().RevokeCredential(ctx(t), "psk-dev", credID); err != nil {
		t.Fatalf("revoke: %v", err)
	}
	// The live session of the revoked secret's PSK is closed.
	daemontest.WaitFor(t, 5*time.Second, func() error {
		c, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if _, err := cc.Post(c, "/things/psk-dev/telemetry", message.AppJSON, bytes.NewReader([]byte(`{}`))); err == nil {
			return fmt.Errorf("the session of a revoked PSK is still served")
		}
		return nil
	})
	if c, err := dialPSK(s, "psk-dev", key); !refused(t, c, err, "/things/psk-dev/telemetry") {
		t.Errorf("the PSK of a revoked secret was accepted")
	}
	if n := metric(t, s, `mote_coap_auth_failures_total{method="psk"}`); n < 1 {
		t.Errorf("psk auth failures = %v; want at least 1 (the revoked secret)", n)
	}
}

func TestDTLSCertificate(t *testing.T) {
	s := start(t)
	s.Thing(t, "cert-dev")
	_, pair := s.ClientCert(t, "cert-dev")
	msgs := watch(t, s, "things/#")
	tc := s.TLSConfig(&pair)
	cc, err := dtls.Dial(coapsAddr(s), &piondtls.Config{
		Certificates:        tc.Certificates,
		RootCAs:             tc.RootCAs,
		ServerName:          "localhost",
		ConnectContextMaker: handshakeTimeout,
	})
	if err != nil {
		t.Fatalf("DTLS handshake with a device certificate: %v", err)
	}
	defer cc.Close()
	resp, err := cc.Post(ctx(t), "/things/cert-dev/telemetry", message.AppJSON, bytes.NewReader([]byte(`{"v":2}`)))
	if err != nil || resp.Code() != codes.Changed {
		t.Fatalf("POST over DTLS = %v, %v; want 2.04", resp, err)
	}
	if m := next(t, msgs); m.Thing != "cert-dev" || m.Protocol != "coap" {
		t.Errorf("bus message from %s over %s; want cert-dev over coap", m.Thing, m.Protocol)
	}
	resp, err = cc.Get(ctx(t), "/things/cert-dev/shadow")
	if err != nil || resp.Code() != codes.NotFound {
		t.Errorf("GET a shadow that does not exist = %v, %v; want 4.04", resp, err)
	}
	// A certificate from another CA is refused.
	other := selfSigned(t)
	c, err := dtls.Dial(coapsAddr(s), &piondtls.Config{Certificates: []tls.Certificate{other}, RootCAs: tc.RootCAs, ServerName: "localhost", ConnectContextMaker: handshakeTimeout})
	if !refused(t, c, err, "/things/cert-dev/telemetry") {
		t.Errorf("a certificate of another CA was served")
	}
}

// selfSigned is a client certificate no Mote CA signed.
func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "cert-dev"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// metric reads one sample from the server's /metrics (0 when absent).
func metric(t *testing.T, s *daemontest.Server, name string) float64 {
	t.Helper()
	resp, err := http.Get(s.API + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, name+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return 0
}

func apiGet(t *testing.T, s *daemontest.Server, path string, out any) {
	t.Helper()
	req, _ := http.NewRequest("GET", s.API+path, nil)
	req.Header.Set("Authorization", "Bearer "+s.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s = %d %s", path, resp.StatusCode, b)
	}
	if err := json.Unmarshal(b, out); err != nil {
		t.Fatal(err)
	}
}

func TestRateLimitIsTheBrokers(t *testing.T) {
	s := start(t, func(c *config.Config) { c.DeviceRateLimit, c.DeviceRateBurst = 0.01, 2 })
	secret := s.Device(t, "a")
	cc := dial(t, s)
	var got []codes.Code
	for range 3 {
		resp, err := cc.Post(ctx(t), "/things/a/telemetry", message.AppJSON, bytes.NewReader([]byte(`{}`)), token("a", secret))
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, resp.Code())
	}
	if got[0] != codes.Changed || got[1] != codes.Changed || got[2] != codes.TooManyRequests {
		t.Errorf("codes = %v; want 2.04, 2.04, 4.29 (burst 2)", got)
	}
	if n := metric(t, s, `mote_rate_limited_total{protocol="coap"}`); n != 1 {
		t.Errorf(`mote_rate_limited_total{protocol="coap"} = %v; want 1`, n)
	}
}

func TestSessionLimit(t *testing.T) {
	s := start(t, func(c *config.Config) { c.CoAPMaxSessions = 1 })
	secret := s.Device(t, "a")
	first := dial(t, s)
	resp, err := first.Post(ctx(t), "/things/a/telemetry", message.AppJSON, bytes.NewReader([]byte(`{}`)), token("a", secret))
	if err != nil || resp.Code() != codes.Changed {
		t.Fatalf("first peer = %v, %v; want 2.04", resp, err)
	}
	second := dial(t, s) // another source port: another session
	c, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if resp, err := second.Post(c, "/things/a/telemetry", message.AppJSON, bytes.NewReader([]byte(`{}`)), token("a", secret)); err == nil {
		t.Errorf("second peer beyond coap-max-sessions 1 got %v; want no answer", resp.Code())
	}
	if n := metric(t, s, `mote_coap_sessions_refused_total{listener="udp"}`); n < 1 {
		t.Errorf("mote_coap_sessions_refused_total{udp} = %v; want at least 1", n)
	}
	// The first peer is still served.
	resp, err = first.Post(ctx(t), "/things/a/telemetry", message.AppJSON, bytes.NewReader([]byte(`{}`)), token("a", secret))
	if err != nil || resp.Code() != codes.Changed {
		t.Errorf("first peer after the refusal = %v, %v; want 2.04", resp, err)
	}
}

// A block-wise transfer over coap-max-payload (4096 here) from libcoap is
// refused 4.13 and never reaches the bus.
func TestCoAPClientBlockwiseOversize(t *testing.T) {
	coapClient(t)
	s := start(t)
	secret := s.Device(t, "dev-1")
	msgs := watch(t, s, "things/#")
	file := t.TempDir() + "/big.json"
	if err := os.WriteFile(file, []byte(`{"log":"`+strings.Repeat("x", 6000)+`"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	c, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, _ := exec.CommandContext(c, coapClient(t), "-m", "post", "-b", "256", "-t", "json", "-f", file, uri(s, "/things/dev-1/logs", "dev-1", secret)).CombinedOutput()
	if !strings.Contains(string(out), "4.13") {
		t.Errorf("coap-client output = %q; want a 4.13 answer", out)
	}
	select {
	case m := <-msgs:
		t.Errorf("bus got %s (%d bytes) from a refused transfer", m.Topic, len(m.Payload))
	default:
	}
	if n := metric(t, s, `mote_coap_requests_total{code="4.13"}`); n < 1 {
		t.Errorf(`mote_coap_requests_total{code="4.13"} = %v; want at least 1`, n)
	}
}

// A shadow document larger than a block reaches a libcoap observer
// whole, in the registration answer and in a notification (Block2).
func TestCoAPClientObserveLargeShadow(t *testing.T) {
	coapClient(t)
	s := start(t)
	secret := s.Device(t, "lamp")
	u := uri(s, "/things/lamp/shadow", "lamp", secret)
	big := strings.Repeat("a", 2000)
	if _, err := s.Shadows().Update(ctx(t), "lamp", "", []byte(`{"state":{"reported":{"note":"`+big+`"}}}`)); err != nil {
		t.Fatal(err)
	}
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	lines := startLines(t, exec.CommandContext(c, coapClient(t), "-w", "-m", "get", "-s", "25", u))
	waitLine(t, lines, `"note":"`+big+`"`)
	bigger := strings.Repeat("b", 2500)
	if _, err := s.Shadows().Update(ctx(t), "lamp", "", []byte(`{"state":{"reported":{"note":"`+bigger+`"}}}`)); err != nil {
		t.Fatal(err)
	}
	waitLine(t, lines, `"note":"`+bigger+`"`)
}
