package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/config"
	"github.com/moteiot/mote/internal/daemontest"
	"github.com/moteiot/mote/internal/store"
)

const wait = 10 * time.Second

type answer struct {
	status int
	header http.Header
	body   string
}

// do sends a request with the given credentials setter (nil: none).
func do(tb testing.TB, c *http.Client, method, url, body string, auth func(*http.Request)) answer {
	tb.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		tb.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if auth != nil {
		auth(req)
	}
	if c == nil {
		c = http.DefaultClient
	}
	res, err := c.Do(req)
	if err != nil {
		tb.Fatalf("%s %s: %v", method, url, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return answer{res.StatusCode, res.Header, string(b)}
}

func basic(thing, secret string) func(*http.Request) {
	return func(r *http.Request) { r.SetBasicAuth(thing, secret) }
}

func bearer(tok string) func(*http.Request) {
	return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tok) }
}

func publishURL(s *daemontest.Server, thing, topic string) string {
	return s.API + "/api/v1/devices/" + thing + "/messages?topic=" + topic
}

// TestDevicePublishTakesTheMQTTPath: a message POSTed by a device reaches
// MQTT subscribers, triggers a rule and lands in telemetry.
func TestDevicePublishTakesTheMQTTPath(t *testing.T) {
	s := daemontest.Start(t)
	secret := s.Device(t, "sensor-1")
	sub := s.V5(t, "sensor-1", secret)
	if rc := sub.Sub(t, "things/sensor-1/#"); rc != 1 {
		t.Fatalf("SUBACK %#x", rc)
	}
	rule := `{"name": "hot", "sql": "SELECT temp FROM 'things/+/telemetry' WHERE temp > 20",
		"actions": [{"type": "republish", "topic": "things/sensor-1/alerts"}]}`
	if a := do(t, nil, "POST", s.API+"/api/v1/rules", rule, bearer(s.Token)); a.status != 201 {
		t.Fatalf("create rule: %d %s", a.status, a.body)
	}

	a := do(t, nil, "POST", publishURL(s, "sensor-1", "things/sensor-1/telemetry"), `{"temp": 21.5}`, basic("sensor-1", secret))
	if a.status != 204 {
		t.Fatalf("POST devices/sensor-1/messages = %d %s; want 204", a.status, a.body)
	}
	if m := sub.Inbox.Wait(t, "things/sensor-1/telemetry", wait); m.Payload != `{"temp": 21.5}` || m.QoS != 1 {
		t.Errorf("subscriber got %+v", m)
	}
	if m := sub.Inbox.Wait(t, "things/sensor-1/alerts", wait); m.Payload != `{"temp":21.5}` {
		t.Errorf("rule republished %q", m.Payload)
	}
	daemontest.WaitFor(t, wait, func() error {
		a := do(t, nil, "GET", s.API+"/api/v1/things/sensor-1/telemetry/latest", "", bearer(s.Token))
		if a.status != 200 || !strings.Contains(a.body, `"key":"temp"`) || !strings.Contains(a.body, `"value":21.5`) {
			return fmt.Errorf("latest telemetry: %d %s", a.status, a.body)
		}
		return nil
	})

	// Bearer secret, QoS 0, retained: a later subscriber gets it.
	a = do(t, nil, "POST", publishURL(s, "sensor-1", "things/sensor-1/state")+"&qos=0&retain=true", "on", bearer(secret))
	if a.status != 204 {
		t.Fatalf("POST (bearer, qos 0, retain) = %d %s", a.status, a.body)
	}
	late, err := s.DialV5(t, daemontest.V5Options{ClientID: "late", Username: "sensor-1", Password: secret, CleanStart: true})
	if err != nil {
		t.Fatal(err)
	}
	late.Sub(t, "things/sensor-1/state")
	if m := late.Inbox.Wait(t, "things/sensor-1/state", wait); m.Payload != "on" || !m.Retain {
		t.Errorf("retained message = %+v", m)
	}
}

func TestDevicePublishRefusals(t *testing.T) {
	s := daemontest.Start(t)
	secretA := s.Device(t, "a")
	secretB := s.Device(t, "b")
	secretOff := s.Device(t, "off")
	disabled := false
	if _, err := s.Registry().UpdateThing(context.Background(), "off", store.ThingPatch{Enabled: &disabled}); err != nil {
		t.Fatal(err)
	}
	topicA := "things/a/telemetry"
	for _, tc := range []struct {
		name   string
		url    string
		auth   func(*http.Request)
		status int
		kind   string
	}{
		{"no credentials", publishURL(s, "a", topicA), nil, 401, "unauthorized"},
		{"wrong secret", publishURL(s, "a", topicA), basic("a", "nope"), 401, "unauthorized"},
		{"an API token is not a device", publishURL(s, "a", topicA), bearer(s.Token), 401, "unauthorized"},
		{"b's secret for a (basic)", publishURL(s, "a", topicA), basic("b", secretB), 403, "forbidden"},
		{"b's secret for a (bearer)", publishURL(s, "a", topicA), bearer(secretB), 401, "unauthorized"},
		{"a's secret, a's path, b's topic", publishURL(s, "a", "things/b/telemetry"), basic("a", secretA), 403, "forbidden"},
		{"disabled thing", publishURL(s, "off", "things/off/x"), basic("off", secretOff), 403, "forbidden"},
		{"malformed basic", publishURL(s, "a", topicA), func(r *http.Request) { r.Header.Set("Authorization", "Basic !!!") }, 401, "unauthorized"},
		{"no topic", s.API + "/api/v1/devices/a/messages", basic("a", secretA), 400, "invalid"},
		{"wildcard topic", publishURL(s, "a", "things/a/%2B"), basic("a", secretA), 400, "invalid"},
		{"qos 2", publishURL(s, "a", topicA) + "&qos=2", basic("a", secretA), 400, "invalid"},
		{"unknown parameter", publishURL(s, "a", topicA) + "&qso=1", basic("a", secretA), 400, "invalid"},
	} {
		a := do(t, nil, "POST", tc.url, "{}", tc.auth)
		var p struct{ Type string }
		_ = json.Unmarshal([]byte(a.body), &p)
		if a.status != tc.status || p.Type != "https://mote.dev/problems/"+tc.kind {
			t.Errorf("%s: %d %s; want %d %s", tc.name, a.status, a.body, tc.status, tc.kind)
		}
	}
	big := strings.Repeat("x", s.Config.MaxPacketSize+1)
	if a := do(t, nil, "POST", publishURL(s, "a", topicA), big, basic("a", secretA)); a.status != 413 {
		t.Errorf("message over max-packet-size: %d %s; want 413", a.status, a.body)
	}
}

// TestDeviceClientCertificate: over HTTPS a device may authenticate with
// its client certificate, and only as itself.
func TestDeviceClientCertificate(t *testing.T) {
	s := daemontest.Start(t)
	s.Thing(t, "cam")
	s.Device(t, "other")
	_, cert := s.ClientCert(t, "cam")
	withCert := &http.Client{Transport: &http.Transport{TLSClientConfig: s.TLSConfig(&cert)}}
	noCert := &http.Client{Transport: &http.Transport{TLSClientConfig: s.TLSConfig(nil)}}
	t.Cleanup(withCert.CloseIdleConnections)
	t.Cleanup(noCert.CloseIdleConnections)
	url := func(thing string) string {
		return s.HTTPS + "/api/v1/devices/" + thing + "/messages?topic=things/" + thing + "/telemetry"
	}
	if a := do(t, withCert, "POST", url("cam"), `{"v": 1}`, nil); a.status != 204 {
		t.Errorf("POST with cam's certificate = %d %s; want 204", a.status, a.body)
	}
	if a := do(t, withCert, "POST", url("other"), `{"v": 1}`, nil); a.status != 403 {
		t.Errorf("POST as other with cam's certificate = %d %s; want 403", a.status, a.body)
	}
	if a := do(t, noCert, "POST", url("cam"), `{"v": 1}`, nil); a.status != 401 {
		t.Errorf("POST over HTTPS without credentials = %d %s; want 401", a.status, a.body)
	}
	// The API itself works over HTTPS too.
	if a := do(t, noCert, "GET", s.HTTPS+"/api/v1/things/cam", "", bearer(s.Token)); a.status != 200 {
		t.Errorf("GET things/cam over HTTPS = %d %s", a.status, a.body)
	}
}

func TestDeviceShadowOverHTTP(t *testing.T) {
	s := daemontest.Start(t)
	secret := s.Device(t, "lamp")
	dev := s.V5(t, "lamp", secret)
	dev.Sub(t, "$mote/things/lamp/shadow/update/documents")
	base := s.API + "/api/v1/devices/lamp/shadows/"
	a := do(t, nil, "POST", base+"classic", `{"state": {"reported": {"on": true}}}`, basic("lamp", secret))
	if a.status != 200 || !strings.Contains(a.body, `"reported":{"on":true}`) {
		t.Fatalf("update shadow = %d %s", a.status, a.body)
	}
	dev.Inbox.Wait(t, "$mote/things/lamp/shadow/update/documents", wait)
	a = do(t, nil, "GET", base+"classic", "", bearer(secret))
	var doc struct {
		State struct {
			Reported map[string]any `json:"reported"`
		} `json:"state"`
		Version int `json:"version"`
	}
	if err := json.Unmarshal([]byte(a.body), &doc); err != nil || a.status != 200 || doc.State.Reported["on"] != true || doc.Version != 1 {
		t.Errorf("get shadow = %d %s", a.status, a.body)
	}
	if a := do(t, nil, "POST", base+"cfg", `{"state": {"desired": {"mode": "eco"}}}`, basic("lamp", secret)); a.status != 200 {
		t.Errorf("update named shadow = %d %s", a.status, a.body)
	}
	if a := do(t, nil, "GET", base+"missing", "", basic("lamp", secret)); a.status != 404 {
		t.Errorf("get missing shadow = %d %s; want 404", a.status, a.body)
	}
	if a := do(t, nil, "DELETE", base+"cfg", "", basic("lamp", secret)); a.status != 200 {
		t.Errorf("delete named shadow = %d %s", a.status, a.body)
	}

	// A policy that denies the shadow topics applies over HTTP too.
	deny := `{"name": "no-shadow", "document": {"statements": [{"effect": "deny", "actions": ["publish"], "topics": ["$mote/things/${thing}/shadow/#"]}]}}`
	if a := do(t, nil, "POST", s.API+"/api/v1/policies", deny, bearer(s.Token)); a.status != 201 {
		t.Fatalf("create policy: %d %s", a.status, a.body)
	}
	if a := do(t, nil, "PUT", s.API+"/api/v1/things/lamp/policies/no-shadow", "", bearer(s.Token)); a.status != 200 {
		t.Fatalf("attach policy: %d %s", a.status, a.body)
	}
	daemontest.WaitFor(t, wait, func() error {
		if a := do(t, nil, "GET", base+"classic", "", basic("lamp", secret)); a.status != 403 {
			return fmt.Errorf("get shadow with a deny policy = %d %s; want 403", a.status, a.body)
		}
		return nil
	})
}

// TestDeviceRateLimit: one bucket per thing across HTTP and MQTT; HTTP
// gets 429 with Retry-After, MQTT 5 gets PUBACK 0x96; both are counted.
func TestDeviceRateLimit(t *testing.T) {
	s := daemontest.Start(t, func(c *config.Config) {
		c.DeviceRateLimit = 0.001 // one message every 1000 s after the burst
		c.DeviceRateBurst = 2
	})
	secret := s.Device(t, "chatty")
	url := publishURL(s, "chatty", "things/chatty/telemetry")
	for i := range 2 {
		if a := do(t, nil, "POST", url, `{"n": 1}`, basic("chatty", secret)); a.status != 204 {
			t.Fatalf("message %d within the burst: %d %s", i+1, a.status, a.body)
		}
	}
	a := do(t, nil, "POST", url, `{"n": 3}`, basic("chatty", secret))
	if a.status != 429 || !strings.Contains(a.body, "rate_limited") {
		t.Fatalf("message over the limit: %d %s; want 429", a.status, a.body)
	}
	if ra, err := strconv.Atoi(a.header.Get("Retry-After")); err != nil || ra < 1 {
		t.Errorf("Retry-After = %q; want a number of seconds", a.header.Get("Retry-After"))
	}

	dev := s.V5(t, "chatty", secret)
	if rc := dev.Pub(t, "things/chatty/telemetry", 1, false, `{"n": 4}`); rc != 0x96 {
		t.Errorf("MQTT 5 QoS 1 over the limit: PUBACK %#x; want 0x96", rc)
	}
	// MQTT 3.1.1 cannot say no, and an acknowledgement would lose the
	// message silently: the publisher is throttled, and disconnected
	// without an acknowledgement when the wait would be this long.
	v3, _, err := s.DialV3(t, daemontest.V3Options{ClientID: "chatty-v3", Username: "chatty", Password: secret})
	if err != nil {
		t.Fatal(err)
	}
	tok := v3.Publish("things/chatty/telemetry", 1, false, `{"n": 5}`)
	select {
	case <-v3.Lost:
	case <-time.After(wait):
		t.Error("MQTT 3.1.1 publisher 1000 s over its limit not disconnected")
	}
	if tok.WaitTimeout(wait) && tok.Error() == nil {
		t.Error("MQTT 3.1.1 publish over the limit acknowledged")
	}
	// Another thing has its own bucket.
	other := s.Device(t, "quiet")
	if a := do(t, nil, "POST", publishURL(s, "quiet", "things/quiet/x"), `1`, basic("quiet", other)); a.status != 204 {
		t.Errorf("another thing: %d %s; want 204", a.status, a.body)
	}
	m := do(t, nil, "GET", s.API+"/metrics", "", nil)
	for _, want := range []string{`mote_rate_limited_total{protocol="http"} 1`, `mote_rate_limited_total{protocol="mqtt"} 2`} {
		if !strings.Contains(m.body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// BenchmarkDevicePublish measures HTTP device messages (QoS 1, Basic auth,
// 100 things, no subscriber) through the whole server.
//
//	go test -run '^$' -bench BenchmarkDevicePublish -benchtime 3s ./internal/httpapi
func BenchmarkDevicePublish(b *testing.B) {
	s := daemontest.Start(b)
	type dev struct{ name, secret string }
	devs := make([]dev, 100)
	for i := range devs {
		devs[i].name = fmt.Sprintf("d%03d", i)
		devs[i].secret = s.Device(b, devs[i].name)
	}
	tr := &http.Transport{MaxIdleConnsPerHost: 256}
	client := &http.Client{Transport: tr}
	b.Cleanup(tr.CloseIdleConnections)
	var next atomic.Uint64
	b.SetParallelism(8)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			d := devs[next.Add(1)%uint64(len(devs))]
			req, _ := http.NewRequest("POST", publishURL(s, d.name, "things/"+d.name+"/data"), strings.NewReader(`{"v": 1}`))
			req.SetBasicAuth(d.name, d.secret)
			res, err := client.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			res.Body.Close()
			if res.StatusCode != 204 {
				b.Errorf("status %d", res.StatusCode)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}
