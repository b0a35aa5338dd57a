package ruleengine_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/config"
	"github.com/moteiot/mote/internal/daemontest"
	"github.com/moteiot/mote/internal/datadir"
	"github.com/moteiot/mote/internal/registry"
	"github.com/moteiot/mote/internal/seal"
	"github.com/moteiot/mote/internal/store/sqlite"
)

const wait = 10 * time.Second

func api(t *testing.T, s *daemontest.Server, method, p string, body string) (int, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, s.API+"/api/v1"+p, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+s.Token)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

func mustAPI(t *testing.T, s *daemontest.Server, method, p, body string, want int) string {
	t.Helper()
	code, out := api(t, s, method, p, body)
	if code != want {
		t.Fatalf("%s %s: %d %s; want %d", method, p, code, out, want)
	}
	return out
}

// TestRepublishEndToEnd: a device publishes, a rule created over the API
// republishes a reshaped message that a real subscriber receives; disable,
// enable, update and delete take effect without a restart.
func TestRepublishEndToEnd(t *testing.T) {
	s := daemontest.Start(t)
	dev := s.V5(t, "sensor-1", s.Device(t, "sensor-1"))
	watcher := s.V5(t, "watcher", s.Device(t, "watcher"))
	watcher.Sub(t, "things/watcher/#")

	mustAPI(t, s, "POST", "/rules", `{"name":"hot","sql":"SELECT temp, topic(2) AS device FROM 'things/+/telemetry' WHERE temp > 50",
		"actions":[{"type":"republish","topic":"things/watcher/alerts/${device}"}]}`, 201)
	dev.Pub(t, "things/sensor-1/telemetry", 1, false, `{"temp": 20}`)
	dev.Pub(t, "things/sensor-1/telemetry", 1, false, `{"temp": 55.5, "hum": 40}`)
	m := watcher.Inbox.Wait(t, "things/watcher/alerts/sensor-1", wait)
	if m.Payload != `{"temp":55.5,"device":"sensor-1"}` {
		t.Fatalf("republished %s", m.Payload)
	}
	if n := len(watcher.Inbox.All()); n != 1 {
		t.Fatalf("watcher got %d messages; want 1 (temp 20 does not match)", n)
	}

	// A sentinel rule sees every message after hot (rules run in name
	// order): once its copy of a message arrives, hot has had its turn.
	mustAPI(t, s, "POST", "/rules", `{"name":"sentinel","sql":"SELECT temp FROM 'things/+/telemetry'",
		"actions":[{"type":"republish","topic":"things/watcher/sentinel/${temp}"}]}`, 201)
	fromHot := func() (n int) {
		for _, m := range watcher.Inbox.All() {
			if !strings.HasPrefix(m.Topic, "things/watcher/sentinel/") {
				n++
			}
		}
		return n
	}

	mustAPI(t, s, "PATCH", "/rules/hot", `{"enabled":false}`, 200)
	dev.Pub(t, "things/sensor-1/telemetry", 1, false, `{"temp": 60}`)
	watcher.Inbox.Wait(t, "things/watcher/sentinel/60", wait)
	if n := fromHot(); n != 1 {
		t.Fatalf("disabled rule still republishes: %v", watcher.Inbox.All())
	}
	mustAPI(t, s, "PUT", "/rules/hot", `{"sql":"SELECT temp * 2 AS t2 FROM 'things/+/telemetry'",
		"actions":[{"type":"republish","topic":"things/watcher/double/${topic(2)}"}]}`, 200)
	dev.Pub(t, "things/sensor-1/telemetry", 1, false, `{"temp": 4}`)
	m = watcher.Inbox.Wait(t, "things/watcher/double/sensor-1", wait)
	if m.Payload != `{"t2":8}` {
		t.Fatalf("after PUT: %s", m.Payload)
	}
	mustAPI(t, s, "DELETE", "/rules/hot", "", 204)
	mustAPI(t, s, "GET", "/rules/hot", "", 404)
	dev.Pub(t, "things/sensor-1/telemetry", 1, false, `{"temp": 5}`)
	watcher.Inbox.Wait(t, "things/watcher/sentinel/5", wait)
	if n := fromHot(); n != 2 {
		t.Fatalf("deleted rule still republishes: %v", watcher.Inbox.All())
	}

	// Bad SQL is a 400 on field sql with the position.
	code, out := api(t, s, "POST", "/rules", `{"name":"bad","sql":"SELECT temp\nFROM things","actions":[]}`)
	if code != 400 || !strings.Contains(out, `"field":"sql"`) || !strings.Contains(out, "2:") {
		t.Fatalf("bad sql: %d %s", code, out)
	}
	// The default rule is listed.
	out = mustAPI(t, s, "GET", "/rules", "", 200)
	if !strings.Contains(out, `"name":"telemetry"`) {
		t.Fatalf("list: %s", out)
	}
}

// TestWebhookEndToEnd: a webhook reaches a real HTTP server; a failing
// one (500s) triggers the error action, which republishes to a topic a
// subscriber receives. Metrics move.
func TestWebhookEndToEnd(t *testing.T) {
	var mu sync.Mutex
	var got []string
	fails := 0
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		if r.URL.Path == "/fail" {
			fails++
			w.WriteHeader(500)
			return
		}
		got = append(got, string(b)+" "+r.Header.Get("X-Token"))
	}))
	defer hook.Close()

	s := daemontest.Start(t)
	dev := s.V5(t, "sensor-1", s.Device(t, "sensor-1"))
	watcher := s.V5(t, "watcher", s.Device(t, "watcher"))
	watcher.Sub(t, "things/watcher/#")
	mustAPI(t, s, "POST", "/rules", fmt.Sprintf(`{"name":"hook","sql":"SELECT temp FROM 'things/+/events'",
		"actions":[{"type":"webhook","url":%q,"headers":{"X-Token":"abc"}}]}`, hook.URL+"/ok"), 201)
	mustAPI(t, s, "POST", "/rules", fmt.Sprintf(`{"name":"broken","sql":"SELECT temp FROM 'things/+/events'",
		"actions":[{"type":"webhook","url":%q,"retries":1,"timeoutMs":2000}],
		"errorAction":{"type":"republish","topic":"things/watcher/errors/${rule}"}}`, hook.URL+"/fail"), 201)
	dev.Pub(t, "things/sensor-1/events", 1, false, `{"temp": 7}`)

	m := watcher.Inbox.Wait(t, "things/watcher/errors/broken", wait)
	var doc map[string]any
	if err := json.Unmarshal([]byte(m.Payload), &doc); err != nil {
		t.Fatal(err)
	}
	if doc["rule"] != "broken" || doc["topic"] != "things/sensor-1/events" || doc["thing"] != "sensor-1" ||
		doc["clientId"] != "sensor-1" || !strings.Contains(doc["error"].(string), "500") || doc["payload"] == "" {
		t.Fatalf("error document: %s", m.Payload)
	}
	daemontest.WaitFor(t, wait, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(got) != 1 || got[0] != `{"temp":7} abc` {
			return fmt.Errorf("webhook got %q", got)
		}
		return nil
	})
	mu.Lock()
	if fails != 2 {
		t.Errorf("failing webhook called %d times; want 2 (1 retry)", fails)
	}
	mu.Unlock()

	wantMetrics := []string{
		`mote_rule_matched_total{rule="hook"} 1`,
		`mote_rule_matched_total{rule="broken"} 1`,
		`mote_rule_errors_total{rule="broken"} 1`,
		`mote_rule_action_total{action="webhook",result="success",rule="hook"} 1`,
		`mote_rule_action_total{action="webhook",result="failure",rule="broken"} 1`,
		`mote_rule_action_total{action="error:republish",result="success",rule="broken"} 1`,
		`mote_rules_dropped_total 0`,
	}
	daemontest.WaitFor(t, wait, func() error {
		res, err := http.Get(s.API + "/metrics")
		if err != nil {
			return err
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		for _, want := range wantMetrics {
			if !strings.Contains(string(b), want) {
				return fmt.Errorf("metrics lack %s", want)
			}
		}
		return nil
	})
	// Deleting a rule removes its series.
	mustAPI(t, s, "DELETE", "/rules/broken", "", 204)
	res, err := http.Get(s.API + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if strings.Contains(string(b), `rule="broken"`) {
		t.Errorf("metrics of a deleted rule remain")
	}
}

// TestTelemetryEndToEnd: the default rule stores what a device publishes
// on things/{thing}/telemetry; it is queryable raw, as latest and as
// aggregates with the right numbers.
func TestTelemetryEndToEnd(t *testing.T) {
	s := daemontest.Start(t)
	dev := s.V5(t, "sensor-1", s.Device(t, "sensor-1"))
	base := time.Now().Add(-10 * time.Minute).Truncate(time.Minute).UnixMilli()
	for i, temp := range []float64{10, 20, 30, 40} {
		// Two per minute: (10, 20) in the first bucket, (30, 40) in the next.
		ts := base + int64(i/2)*60_000 + int64(i%2)*1000
		dev.Pub(t, "things/sensor-1/telemetry", 1, false, fmt.Sprintf(`{"ts": %d, "temp": %v, "ok": true}`, ts, temp))
	}
	var raw struct {
		Items []struct {
			Key   string          `json:"key"`
			TS    int64           `json:"ts"`
			Value json.RawMessage `json:"value"`
		} `json:"items"`
	}
	daemontest.WaitFor(t, wait, func() error {
		_, out := api(t, s, "GET", "/things/sensor-1/telemetry?keys=temp", "")
		raw.Items = nil
		if err := json.Unmarshal([]byte(out), &raw); err != nil {
			return err
		}
		if len(raw.Items) != 4 {
			return fmt.Errorf("raw: %s", out)
		}
		return nil
	})
	if string(raw.Items[0].Value) != "10" || raw.Items[0].TS != base || string(raw.Items[3].Value) != "40" {
		t.Fatalf("raw points: %+v", raw.Items)
	}
	out := mustAPI(t, s, "GET", "/things/sensor-1/telemetry/latest", "", 200)
	if !strings.Contains(out, `"key":"temp","ts":`+fmt.Sprint(base+61_000)+`,"value":40`) || !strings.Contains(out, `"key":"ok"`) {
		t.Fatalf("latest: %s", out)
	}
	out = mustAPI(t, s, "GET", fmt.Sprintf("/things/sensor-1/telemetry?keys=temp&agg=avg&interval=1m&from=%d&to=%d", base, base+120_000), "", 200)
	want := fmt.Sprintf(`{"items":[{"thing":"sensor-1","key":"temp","ts":%d,"value":15},{"thing":"sensor-1","key":"temp","ts":%d,"value":35}]}`, base, base+60_000)
	if strings.TrimSpace(out) != want {
		t.Fatalf("avg:\n got %s\nwant %s", out, want)
	}
	out = mustAPI(t, s, "GET", fmt.Sprintf("/telemetry?things=sensor-1&keys=temp&agg=max&interval=2m&from=%d&to=%d", base, base+120_000), "", 200)
	if !strings.Contains(out, `"value":40`) {
		t.Fatalf("max across things: %s", out)
	}
	mustAPI(t, s, "GET", "/things/ghost/telemetry", "", 404)
	mustAPI(t, s, "GET", "/telemetry?things=sensor-1&agg=avg", "", 400)

	// Deleting the default rule stops storing, and it stays deleted after a restart.
	mustAPI(t, s, "DELETE", "/rules/telemetry", "", 204)
	s.Restart(t)
	mustAPI(t, s, "GET", "/rules/telemetry", "", 404)
}

// TestRuleTestEndpoint: POST /rules/test evaluates without actions.
func TestRuleTestEndpoint(t *testing.T) {
	s := daemontest.Start(t)
	out := mustAPI(t, s, "POST", "/rules/test", `{"sql":"SELECT temp, topic(2) AS d FROM 'things/+/telemetry' WHERE temp > 1","topic":"things/a/telemetry","payload":{"temp":5}}`, 200)
	if strings.TrimSpace(out) != `{"matched":true,"output":{"temp":5,"d":"a"}}` {
		t.Fatalf("test: %s", out)
	}
	out = mustAPI(t, s, "POST", "/rules/test", `{"sql":"SELECT * FROM 'things/+/telemetry' WHERE temp > 1","topic":"things/a/telemetry","payload":"{\"temp\":0}"}`, 200)
	if strings.TrimSpace(out) != `{"matched":false}` {
		t.Fatalf("test no match: %s", out)
	}
	code, out := api(t, s, "POST", "/rules/test", `{"sql":"SELECT FROM 'x'","topic":"x","payload":{}}`)
	if code != 400 || !strings.Contains(out, `"field":"sql"`) {
		t.Fatalf("bad sql: %d %s", code, out)
	}

	// A viewer may read and test rules and read telemetry, not change rules.
	_, viewer, err := s.Registry().CreateToken(t.Context(), "viewer", registry.RoleViewer, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.Token = viewer
	mustAPI(t, s, "GET", "/rules", "", 200)
	mustAPI(t, s, "GET", "/rules/telemetry", "", 200)
	mustAPI(t, s, "POST", "/rules/test", `{"sql":"SELECT * FROM 'a'","topic":"a","payload":{}}`, 200)
	mustAPI(t, s, "GET", "/telemetry?things=x", "", 200)
	mustAPI(t, s, "PATCH", "/rules/telemetry", `{"enabled":false}`, 403)
	mustAPI(t, s, "POST", "/rules", `{"name":"x","sql":"SELECT * FROM 'a'"}`, 403)
	mustAPI(t, s, "DELETE", "/rules/telemetry", "", 403)
}

// blackhole accepts TCP connections and never answers; it counts them.
// Register closeHole after starting the server, so that it runs first and
// the server's close does not wait for the attempt in flight.
func blackhole(t *testing.T) (url string, accepted *atomic.Int64, closeHole func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted = &atomic.Int64{}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	closeHole = func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	}
	t.Cleanup(closeHole) // if the test ends before it registers it
	return "http://" + ln.Addr().String() + "/hook", accepted, closeHole
}

// TestBlackholedWebhookEndToEnd: one rule's webhook goes to an address
// that never answers; another rule on the same messages republishes every
// one to a real subscriber. The first rule's drops are in
// GET /rules/{name} and in /metrics.
func TestBlackholedWebhookEndToEnd(t *testing.T) {
	hook, accepted, closeHole := blackhole(t)
	s := daemontest.Start(t, func(c *config.Config) {
		c.RuleActionQueue, c.RuleActionConcurrency, c.RuleWebhookTimeout = 4, 1, time.Minute
	})
	t.Cleanup(closeHole)
	dev := s.V5(t, "sensor-1", s.Device(t, "sensor-1"))
	watcher := s.V5(t, "watcher", s.Device(t, "watcher"))
	watcher.Sub(t, "things/watcher/#")
	mustAPI(t, s, "POST", "/rules", `{"name":"a-hook","sql":"SELECT n FROM 'things/+/events'",
		"actions":[{"type":"webhook","url":"`+hook+`","retries":0}]}`, 201)
	mustAPI(t, s, "POST", "/rules", `{"name":"b-relay","sql":"SELECT n FROM 'things/+/events'",
		"actions":[{"type":"republish","topic":"things/watcher/relay"}]}`, 201)
	const n = 50
	for i := range n {
		dev.Pub(t, "things/sensor-1/events", 0, false, fmt.Sprintf(`{"n": %d}`, i))
	}
	daemontest.WaitFor(t, wait, func() error {
		if got := len(watcher.Inbox.Distinct("things/watcher/relay")); got != n {
			return fmt.Errorf("b-relay republished %d of %d", got, n)
		}
		return nil
	})
	var got struct {
		Metrics struct {
			Matched        int64 `json:"matched"`
			ActionsDropped int64 `json:"actionsDropped"`
			Dropped        struct {
				QueueFull int64 `json:"queueFull"`
			} `json:"dropped"`
		} `json:"metrics"`
	}
	daemontest.WaitFor(t, wait, func() error {
		if err := json.Unmarshal([]byte(mustAPI(t, s, "GET", "/rules/a-hook", "", 200)), &got); err != nil {
			return err
		}
		// 1 in flight, 4 queued, the rest dropped (one more if the
		// delivery goroutine took the first only after the last came).
		if m := got.Metrics; m.Matched != n || m.Dropped.QueueFull < n-5 || m.Dropped.QueueFull > n-4 || m.ActionsDropped != m.Dropped.QueueFull {
			return fmt.Errorf("a-hook metrics %+v; want %d matched, %d or %d dropped (queue full)", m, n, n-5, n-4)
		}
		return nil
	})
	if accepted.Load() != 1 {
		t.Errorf("black hole accepted %d connections; want 1 (concurrency 1)", accepted.Load())
	}
	res, err := http.Get(s.API + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if want := fmt.Sprintf(`mote_rule_actions_dropped_total{reason="queue_full",rule="a-hook"} %d`, got.Metrics.Dropped.QueueFull); !strings.Contains(string(b), want) {
		t.Errorf("/metrics lacks %s", want)
	}
}

// TestHangingErrorActionEndToEnd: the telemetry rule's error action is a
// webhook that never answers; device A's telemetry fails (a key longer
// than telemetry allows), which runs the error action, and device B's
// durable telemetry is still stored and queryable at once (before the
// fix the error action ran on the journal's consumer for its timeout).
func TestHangingErrorActionEndToEnd(t *testing.T) {
	hook, accepted, closeHole := blackhole(t)
	s := daemontest.Start(t, func(c *config.Config) { c.RuleWebhookTimeout = time.Minute })
	t.Cleanup(closeHole)
	mustAPI(t, s, "PUT", "/rules/telemetry", `{"sql":"SELECT * FROM 'things/+/telemetry'","actions":[{"type":"telemetry"}],
		"errorAction":{"type":"webhook","url":"`+hook+`"}}`, 200)
	a := s.V5(t, "dev-a", s.Device(t, "dev-a"))
	b := s.V5(t, "dev-b", s.Device(t, "dev-b"))
	a.Pub(t, "things/dev-a/telemetry", 1, false, `{"bad": {"`+strings.Repeat("k", 300)+`": 1}}`)
	daemontest.WaitFor(t, wait, func() error {
		if accepted.Load() == 0 {
			return fmt.Errorf("the error action's webhook was not called")
		}
		return nil
	})
	start := time.Now()
	b.Pub(t, "things/dev-b/telemetry", 1, false, `{"temp": 21}`)
	daemontest.WaitFor(t, 5*time.Second, func() error {
		out := mustAPI(t, s, "GET", "/things/dev-b/telemetry/latest", "", 200)
		if !strings.Contains(out, `"key":"temp"`) {
			return fmt.Errorf("dev-b telemetry not stored: %s", out)
		}
		return nil
	})
	t.Logf("dev-b stored %v after its publish while dev-a's error action hangs", time.Since(start))
}

// TestWebhookSecretsSealedEndToEnd: through the daemon, a webhook's
// header value is sealed in mote.db with the data dir's seal.key (0600);
// an admin reads it in plain text, a viewer as ***, the endpoint gets it,
// before and after a restart on the same data dir.
func TestWebhookSecretsSealedEndToEnd(t *testing.T) {
	var hits atomic.Int32
	var bad atomic.Value
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if got := r.Header.Get("X-Api-Key"); got != "k-s3cret" {
			bad.Store(got)
		}
		hits.Add(1)
	}))
	defer hook.Close()

	s := daemontest.Start(t)
	fi, err := os.Stat(datadir.SealKey(s.Dir))
	if err != nil || fi.Mode().Perm() != 0o600 || fi.Size() != seal.KeySize {
		t.Fatalf("seal.key: %v, %v; want a 0600 file of %d bytes", fi, err, seal.KeySize)
	}
	dev := s.V5(t, "sensor-1", s.Device(t, "sensor-1"))
	mustAPI(t, s, "POST", "/rules", fmt.Sprintf(`{"name":"hook","sql":"SELECT temp FROM 'things/+/events'",
		"actions":[{"type":"webhook","url":%q,"headers":{"X-Api-Key":"k-s3cret"}}]}`, hook.URL), 201)

	st, err := sqlite.Open(datadir.DB(s.Dir))
	if err != nil {
		t.Fatal(err)
	}
	row, err := st.Rules().Get(t.Context(), "hook")
	st.Close()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(row.Actions), "k-s3cret") || !strings.Contains(string(row.Actions), `"X-Api-Key":"`+seal.Prefix) {
		t.Fatalf("stored actions %s; want the header value sealed", row.Actions)
	}
	if out := mustAPI(t, s, "GET", "/rules/hook", "", 200); !strings.Contains(out, `"X-Api-Key":"k-s3cret"`) {
		t.Errorf("admin GET /rules/hook = %s; want the plain value", out)
	}
	admin := s.Token
	_, viewer, err := s.Registry().CreateToken(t.Context(), "viewer", registry.RoleViewer, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.Token = viewer
	if out := mustAPI(t, s, "GET", "/rules/hook", "", 200); !strings.Contains(out, `"X-Api-Key":"***"`) || strings.Contains(out, "s3cret") || strings.Contains(out, seal.Prefix) {
		t.Errorf("viewer GET /rules/hook = %s; want ***", out)
	}
	s.Token = admin

	dev.Pub(t, "things/sensor-1/events", 1, false, `{"temp": 7}`)
	daemontest.WaitFor(t, wait, func() error {
		if n := hits.Load(); n != 1 {
			return fmt.Errorf("webhook requests %d; want 1", n)
		}
		return nil
	})
	s.Restart(t)
	dev = s.V5(t, "sensor-1b", s.Device(t, "sensor-1b"))
	dev.Pub(t, "things/sensor-1b/events", 1, false, `{"temp": 8}`)
	daemontest.WaitFor(t, wait, func() error {
		if n := hits.Load(); n != 2 {
			return fmt.Errorf("webhook requests after a restart %d; want 2", n)
		}
		return nil
	})
	if v := bad.Load(); v != nil {
		t.Errorf("the webhook got X-Api-Key %q; want k-s3cret", v)
	}
}
