package shadow_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/moteiot/mote/internal/daemontest"
)

const wait = 5 * time.Second

// doc decodes a JSON response body.
func doc(t *testing.T, s string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatalf("not a JSON object: %v: %s", err, s)
	}
	return m
}

// path returns the value at a dotted path of a decoded document.
func path(m map[string]any, p string) any {
	var cur any = m
	for _, k := range strings.Split(p, ".") {
		mm, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = mm[k]
	}
	return cur
}

func wantPath(t *testing.T, what string, m map[string]any, p string, want any) {
	t.Helper()
	got := path(m, p)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("%s: %s = %v; want %v (document %v)", what, p, got, want, m)
	}
}

// waitMsg waits for a message on topic whose payload contains substr and
// returns it decoded: inboxes keep every message, so this tells an answer
// from earlier ones on the same topic.
func waitMsg(t *testing.T, in *daemontest.Inbox, topic, substr string) map[string]any {
	t.Helper()
	var found string
	daemontest.WaitFor(t, wait, func() error {
		for _, m := range in.All() {
			if m.Topic == topic && strings.Contains(m.Payload, substr) {
				found = m.Payload
				return nil
			}
		}
		return fmt.Errorf("no message on %s containing %q; got %v", topic, substr, in.All())
	})
	return doc(t, found)
}

// api sends a REST request with the admin token and returns status and body.
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

// TestMQTTPrefixes: a device that speaks only $aws/... gets its answers
// there, one on $mote/... gets them there, for classic and named shadows,
// with MQTT 5 and 3.1.1 clients.
func TestMQTTPrefixes(t *testing.T) {
	s := daemontest.Start(t)
	awsSecret := s.Device(t, "aws-dev")
	moteSecret := s.Device(t, "mote-dev")

	aws := s.V5(t, "aws-dev", awsSecret)
	if rc := aws.Sub(t, "$aws/things/aws-dev/shadow/#"); rc != 1 {
		t.Fatalf("subscribe: reason %#x", rc)
	}
	mote := s.V3(t, "mote-dev", moteSecret)
	if rc := mote.Sub(t, "$mote/things/mote-dev/shadow/#", 1); rc != 1 {
		t.Fatalf("subscribe (v3): %#x", rc)
	}

	// AWS prefix, classic shadow, MQTT 5.
	aws.Pub(t, "$aws/things/aws-dev/shadow/update", 1, false, `{"state":{"desired":{"color":"red"},"reported":{"color":"blue"}},"clientToken":"c-1"}`)
	m := doc(t, aws.Inbox.Wait(t, "$aws/things/aws-dev/shadow/update/accepted", wait).Payload)
	wantPath(t, "accepted", m, "state.desired.color", "red")
	wantPath(t, "accepted", m, "version", 1)
	wantPath(t, "accepted", m, "clientToken", "c-1")
	if _, ok := path(m, "metadata.desired.color.timestamp").(float64); !ok {
		t.Errorf("accepted: no metadata timestamp: %v", m)
	}
	d := doc(t, aws.Inbox.Wait(t, "$aws/things/aws-dev/shadow/update/delta", wait).Payload)
	wantPath(t, "delta", d, "state.color", "red")
	wantPath(t, "delta", d, "clientToken", "c-1")
	docs := doc(t, aws.Inbox.Wait(t, "$aws/things/aws-dev/shadow/update/documents", wait).Payload)
	if v, ok := docs["previous"]; !ok || v != nil {
		t.Errorf("documents.previous of a new shadow: %v; want null", v)
	}
	wantPath(t, "documents", docs, "current.state.reported.color", "blue")
	wantPath(t, "documents", docs, "current.version", 1)

	aws.Pub(t, "$aws/things/aws-dev/shadow/get", 1, false, `{"clientToken":"g"}`)
	g := doc(t, aws.Inbox.Wait(t, "$aws/things/aws-dev/shadow/get/accepted", wait).Payload)
	wantPath(t, "get", g, "state.delta.color", "red")
	wantPath(t, "get", g, "clientToken", "g")

	// Named shadow, same prefix.
	aws.Pub(t, "$aws/things/aws-dev/shadow/name/cfg/update", 1, false, `{"state":{"reported":{"fw":"1.0"}}}`)
	n := doc(t, aws.Inbox.Wait(t, "$aws/things/aws-dev/shadow/name/cfg/update/accepted", wait).Payload)
	wantPath(t, "named accepted", n, "version", 1)
	wantPath(t, "named accepted", n, "state.reported.fw", "1.0")

	// Rejections go to .../rejected with the AWS error shape.
	aws.Pub(t, "$aws/things/aws-dev/shadow/update", 1, false, `{"state":{"desired":{"x":1}},"version":7,"clientToken":"v"}`)
	r := doc(t, aws.Inbox.Wait(t, "$aws/things/aws-dev/shadow/update/rejected", wait).Payload)
	wantPath(t, "rejected", r, "code", 409)
	wantPath(t, "rejected", r, "message", "Version conflict")
	wantPath(t, "rejected", r, "clientToken", "v")
	aws.Pub(t, "$aws/things/aws-dev/shadow/name/nope/get", 1, false, ``)
	r = doc(t, aws.Inbox.Wait(t, "$aws/things/aws-dev/shadow/name/nope/get/rejected", wait).Payload)
	wantPath(t, "rejected get", r, "code", 404)
	wantPath(t, "rejected get", r, "message", "No shadow exists with name: 'nope'")

	// $mote prefix with MQTT 3.1.1.
	mote.Pub(t, "$mote/things/mote-dev/shadow/name/n1/update", 1, false, `{"state":{"reported":{"t":21.5}}}`)
	a := doc(t, mote.Inbox.Wait(t, "$mote/things/mote-dev/shadow/name/n1/update/accepted", wait).Payload)
	wantPath(t, "mote accepted", a, "state.reported.t", 21.5)
	mote.Pub(t, "$mote/things/mote-dev/shadow/update", 1, false, `{not json`)
	r = doc(t, mote.Inbox.Wait(t, "$mote/things/mote-dev/shadow/update/rejected", wait).Payload)
	wantPath(t, "malformed", r, "code", 400)
	wantPath(t, "malformed", r, "message", "Invalid JSON")
	mote.Pub(t, "$mote/things/mote-dev/shadow/update", 1, false, `{"clientToken":"m"}`)
	r = waitMsg(t, mote.Inbox, "$mote/things/mote-dev/shadow/update/rejected", `"m"`)
	wantPath(t, "missing state", r, "message", "Missing required node: state")
	wantPath(t, "missing state", r, "clientToken", "m")
	mote.Pub(t, "$mote/things/mote-dev/shadow/update", 1, false, `{"state":{"reported":{"s":"`+strings.Repeat("x", 9000)+`"}}}`)
	r = waitMsg(t, mote.Inbox, "$mote/things/mote-dev/shadow/update/rejected", `"code":413`) // not "413" alone: a timestamp can hold it
	wantPath(t, "too large", r, "code", 413)

	// Delete keeps the version counter.
	mote.Pub(t, "$mote/things/mote-dev/shadow/name/n1/delete", 1, false, `{"clientToken":"del"}`)
	del := doc(t, mote.Inbox.Wait(t, "$mote/things/mote-dev/shadow/name/n1/delete/accepted", wait).Payload)
	wantPath(t, "delete", del, "version", 1)
	wantPath(t, "delete", del, "clientToken", "del")
	mote.Pub(t, "$mote/things/mote-dev/shadow/name/n1/update", 1, false, `{"state":{"reported":{"t":1}},"clientToken":"again"}`)
	again := waitMsg(t, mote.Inbox, "$mote/things/mote-dev/shadow/name/n1/update/accepted", `"again"`)
	wantPath(t, "re-created", again, "version", 2)

	// Nothing crossed over to the other prefix's subscribers.
	for _, msg := range aws.Inbox.All() {
		if !strings.HasPrefix(msg.Topic, "$aws/things/aws-dev/") {
			t.Errorf("aws device got %s", msg.Topic)
		}
	}
}

// TestOfflineDeviceGetsDelta: desired changes while the device is offline;
// after reconnecting, a get shows the delta.
func TestOfflineDeviceGetsDelta(t *testing.T) {
	s := daemontest.Start(t)
	secret := s.Device(t, "lamp")
	c := s.V5(t, "lamp", secret)
	c.Sub(t, "$aws/things/lamp/shadow/#")
	c.Pub(t, "$aws/things/lamp/shadow/update", 1, false, `{"state":{"reported":{"on":false,"level":3}}}`)
	c.Inbox.Wait(t, "$aws/things/lamp/shadow/update/accepted", wait)
	if err := c.Disconnect(&paho.Disconnect{}); err != nil {
		t.Fatal(err)
	}

	// The app changes desired over REST while the lamp is away.
	status, body := api(t, s, "POST", "/things/lamp/shadows/classic", `{"state":{"desired":{"on":true,"level":3}}}`)
	if status != 200 {
		t.Fatalf("REST update: %d %s", status, body)
	}
	wantPath(t, "REST accepted", doc(t, body), "version", 2)

	c2 := s.V5(t, "lamp", secret)
	c2.Sub(t, "$aws/things/lamp/shadow/get/accepted")
	c2.Pub(t, "$aws/things/lamp/shadow/get", 1, false, `{}`)
	g := doc(t, c2.Inbox.Wait(t, "$aws/things/lamp/shadow/get/accepted", wait).Payload)
	delta, _ := path(g, "state.delta").(map[string]any)
	if len(delta) != 1 || delta["on"] != true {
		t.Errorf("delta after reconnect: %v; want {on: true}", path(g, "state.delta"))
	}
	wantPath(t, "get", g, "version", 2)
}

// TestPolicy: thing A can neither read nor update thing B's shadow.
func TestPolicy(t *testing.T) {
	s := daemontest.Start(t)
	a := s.V5(t, "thing-a", s.Device(t, "thing-a"))
	b := s.V5(t, "thing-b", s.Device(t, "thing-b"))
	b.Sub(t, "$aws/things/thing-b/shadow/#")
	b.Pub(t, "$aws/things/thing-b/shadow/update", 1, false, `{"state":{"reported":{"secret":42}}}`)
	b.Inbox.Wait(t, "$aws/things/thing-b/shadow/update/accepted", wait)

	for _, f := range []string{"$aws/things/thing-b/shadow/#", "$mote/things/thing-b/shadow/get/accepted", "$aws/things/+/shadow/#"} {
		if rc := a.Sub(t, f); rc < 0x80 {
			t.Errorf("A subscribing to %s: reason %#x; want a refusal", f, rc)
		}
	}
	for _, topic := range []string{"$aws/things/thing-b/shadow/update", "$mote/things/thing-b/shadow/name/x/update", "$aws/things/thing-b/shadow/delete"} {
		if rc := a.Pub(t, topic, 1, false, `{"state":{"reported":{"secret":0}}}`); rc != 0x87 {
			t.Errorf("A publishing to %s: reason %#x; want 0x87", topic, rc)
		}
	}
	a.Pub(t, "$aws/things/thing-b/shadow/get", 1, false, ``)
	a.Inbox.None(t, "", 300*time.Millisecond)

	status, body := api(t, s, "GET", "/things/thing-b/shadows/classic", "")
	if status != 200 {
		t.Fatalf("GET: %d %s", status, body)
	}
	g := doc(t, body)
	wantPath(t, "B's shadow", g, "state.reported.secret", 42)
	wantPath(t, "B's shadow", g, "version", 1)
	status, _ = api(t, s, "GET", "/things/thing-b/shadows/x", "")
	if status != 404 {
		t.Errorf("named shadow A tried to create: %d; want 404", status)
	}
}

// TestREST covers the REST routes and that a REST update produces the
// same MQTT messages as an MQTT update.
func TestREST(t *testing.T) {
	s := daemontest.Start(t)
	c := s.V5(t, "dev", s.Device(t, "dev"))
	c.Sub(t, "$mote/things/dev/shadow/#")

	status, body := api(t, s, "POST", "/things/dev/shadows/classic", `{"state":{"desired":{"mode":"eco"}},"clientToken":"r1"}`)
	if status != 200 {
		t.Fatalf("POST: %d %s", status, body)
	}
	acc := doc(t, body)
	wantPath(t, "accepted", acc, "state.desired.mode", "eco")
	wantPath(t, "accepted", acc, "clientToken", "r1")
	d := doc(t, c.Inbox.Wait(t, "$mote/things/dev/shadow/update/delta", wait).Payload)
	wantPath(t, "delta from REST", d, "state.mode", "eco")
	docs := doc(t, c.Inbox.Wait(t, "$mote/things/dev/shadow/update/documents", wait).Payload)
	wantPath(t, "documents from REST", docs, "current.state.desired.mode", "eco")

	status, body = api(t, s, "POST", "/things/dev/shadows/settings", `{"state":{"reported":{"a":1}}}`)
	if status != 200 {
		t.Fatalf("POST named: %d %s", status, body)
	}
	status, body = api(t, s, "GET", "/things/dev/shadows", "")
	if status != 200 {
		t.Fatalf("list: %d %s", status, body)
	}
	var list struct {
		Items []struct {
			Name    string `json:"name"`
			Version int64  `json:"version"`
		} `json:"items"`
	}
	if err := json.Unmarshal([]byte(body), &list); err != nil || len(list.Items) != 2 ||
		list.Items[0].Name != "classic" || list.Items[1].Name != "settings" {
		t.Errorf("list: %s", body)
	}
	status, body = api(t, s, "GET", "/things/dev/shadows?limit=1", "")
	if status != 200 || !strings.Contains(body, `"nextCursor":"classic"`) {
		t.Errorf("list limit=1: %d %s", status, body)
	}
	status, body = api(t, s, "GET", "/things/dev/shadows?cursor=classic", "")
	if status != 200 || !strings.Contains(body, `"settings"`) || strings.Contains(body, `"classic"`) {
		t.Errorf("list cursor: %d %s", status, body)
	}

	// Errors, with the AWS code as the HTTP status.
	for _, tc := range []struct {
		method, path, body string
		status             int
		detail             string
	}{
		{"POST", "/things/dev/shadows/classic", `{"state":{"desired":{"a":1}},"version":99}`, 409, "Version conflict"},
		{"POST", "/things/dev/shadows/classic", `{"nostate":1}`, 400, "Missing required node: state"},
		{"POST", "/things/dev/shadows/classic", `{"state":`, 400, "Invalid JSON"},
		{"POST", "/things/dev/shadows/classic", `{"state":{"reported":{"s":"` + strings.Repeat("y", 9000) + `"}}}`, 413, "maximum size"},
		{"GET", "/things/dev/shadows/missing", "", 404, "No shadow exists with name: 'missing'"},
		{"GET", "/things/ghost/shadows/classic", "", 404, `ghost\" not found`},
		{"GET", "/things/ghost/shadows", "", 404, `ghost\" not found`},
		{"GET", "/things/dev/shadows/bad.name", "", 400, "Shadow name may contain"},
		{"DELETE", "/things/dev/shadows/missing", "", 404, "No shadow exists"},
	} {
		status, body := api(t, s, tc.method, tc.path, tc.body)
		if status != tc.status || !strings.Contains(body, tc.detail) {
			t.Errorf("%s %s: %d %s; want %d with %q", tc.method, tc.path, status, body, tc.status, tc.detail)
		}
	}

	// Delete, then re-create: the version continues.
	status, body = api(t, s, "DELETE", "/things/dev/shadows/settings", "")
	if status != 200 {
		t.Fatalf("DELETE: %d %s", status, body)
	}
	wantPath(t, "delete", doc(t, body), "version", 1)
	c.Inbox.Wait(t, "$mote/things/dev/shadow/name/settings/delete/accepted", wait)
	status, _ = api(t, s, "GET", "/things/dev/shadows/settings", "")
	if status != 404 {
		t.Errorf("GET after DELETE: %d", status)
	}
	status, body = api(t, s, "POST", "/things/dev/shadows/settings", `{"state":{"reported":{"b":2}}}`)
	if status != 200 {
		t.Fatalf("re-create: %d %s", status, body)
	}
	wantPath(t, "re-created", doc(t, body), "version", 2)
}

// TestConcurrentUpdates: 50 parallel updaters of one shadow; the version
// equals the number of accepted updates and no key is lost.
func TestConcurrentUpdates(t *testing.T) {
	s := daemontest.Start(t)
	s.Thing(t, "hub")
	const n = 50
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		accepted int
		versions = map[float64]bool{}
	)
	for i := range n {
		wg.Go(func() {
			// Half over REST, half through the service API the REST API uses.
			var body []byte
			update := fmt.Sprintf(`{"state":{"reported":{"k%02d":%d}}}`, i, i)
			if i%2 == 0 {
				status, b := api(t, s, "POST", "/things/hub/shadows/classic", update)
				if status != 200 {
					t.Errorf("updater %d: %d %s", i, status, b)
					return
				}
				body = []byte(b)
			} else {
				b, err := s.Shadows().Update(context.Background(), "hub", "", []byte(update))
				if err != nil {
					t.Errorf("updater %d: %v", i, err)
					return
				}
				body = b
			}
			var m map[string]any
			_ = json.Unmarshal(body, &m)
			mu.Lock()
			accepted++
			versions[m["version"].(float64)] = true
			mu.Unlock()
		})
	}
	wg.Wait()
	g, err := s.Shadows().Get(context.Background(), "hub", "")
	if err != nil {
		t.Fatal(err)
	}
	m := doc(t, string(g))
	wantPath(t, "final", m, "version", accepted)
	if len(versions) != accepted {
		t.Errorf("%d accepted updates got %d distinct versions", accepted, len(versions))
	}
	rep, _ := path(m, "state.reported").(map[string]any)
	for i := range n {
		if _, ok := rep[fmt.Sprintf("k%02d", i)]; !ok {
			t.Errorf("key k%02d lost", i)
		}
	}
}

// TestConcurrentMQTT: 20 clients of one thing update one shadow at once.
func TestConcurrentMQTT(t *testing.T) {
	s := daemontest.Start(t)
	secret := s.Device(t, "multi")
	const n = 20
	var wg sync.WaitGroup
	for i := range n {
		c, err := s.DialV5(t, daemontest.V5Options{ClientID: fmt.Sprintf("multi-%d", i), Username: "multi", Password: secret, CleanStart: true})
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			c.Pub(t, "$mote/things/multi/shadow/update", 1, false, fmt.Sprintf(`{"state":{"desired":{"c%d":true}}}`, i))
		})
	}
	wg.Wait()
	daemontest.WaitFor(t, wait, func() error {
		g, err := s.Shadows().Get(context.Background(), "multi", "")
		if err != nil {
			return err
		}
		m := doc(t, string(g))
		if v := path(m, "version"); v != float64(n) {
			return fmt.Errorf("version %v; want %d", v, n)
		}
		if d, _ := path(m, "state.desired").(map[string]any); len(d) != n {
			return fmt.Errorf("desired has %d keys; want %d", len(d), n)
		}
		return nil
	})
}

// TestRestart: shadows and tombstones survive a restart.
func TestRestart(t *testing.T) {
	s := daemontest.Start(t)
	s.Thing(t, "keep")
	ctx := context.Background()
	for _, u := range []string{`{"state":{"desired":{"a":1}}}`, `{"state":{"reported":{"a":2}}}`} {
		if _, err := s.Shadows().Update(ctx, "keep", "", []byte(u)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Shadows().Update(ctx, "keep", "gone", []byte(`{"state":{"desired":{"x":1}}}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Shadows().Delete(ctx, "keep", "gone"); err != nil {
		t.Fatal(err)
	}
	before, _ := s.Shadows().Get(ctx, "keep", "")
	s.Restart(t)
	after, err := s.Shadows().Get(ctx, "keep", "")
	if err != nil {
		t.Fatal(err)
	}
	b, a := doc(t, string(before)), doc(t, string(after))
	delete(b, "timestamp")
	delete(a, "timestamp")
	bj, _ := json.Marshal(b)
	aj, _ := json.Marshal(a)
	if !bytes.Equal(bj, aj) {
		t.Errorf("after restart:\n%s\nbefore:\n%s", aj, bj)
	}
	body, err := s.Shadows().Update(ctx, "keep", "gone", []byte(`{"state":{"desired":{"y":1}}}`))
	if err != nil {
		t.Fatal(err)
	}
	wantPath(t, "re-created after restart", doc(t, string(body)), "version", 2)
}

// TestThingDeleted: a thing's shadows go with it; a new thing of the same
// name starts afresh.
func TestThingDeleted(t *testing.T) {
	s := daemontest.Start(t)
	s.Thing(t, "tmp")
	ctx := context.Background()
	if _, err := s.Shadows().Update(ctx, "tmp", "", []byte(`{"state":{"desired":{"a":1}}}`)); err != nil {
		t.Fatal(err)
	}
	if err := s.Registry().DeleteThing(ctx, "tmp"); err != nil {
		t.Fatal(err)
	}
	s.Thing(t, "tmp")
	daemontest.WaitFor(t, wait, func() error {
		if _, err := s.Shadows().Get(ctx, "tmp", ""); err == nil {
			return fmt.Errorf("the deleted thing's shadow is still there")
		}
		return nil
	})
	body, err := s.Shadows().Update(ctx, "tmp", "", []byte(`{"state":{"desired":{"b":1}}}`))
	if err != nil {
		t.Fatal(err)
	}
	wantPath(t, "fresh shadow", doc(t, string(body)), "version", 1)
	if err := s.Registry().DeleteThing(ctx, "tmp"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Shadows().Update(ctx, "tmp", "", []byte(`{"state":{"desired":{"c":1}}}`)); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("update of a deleted thing's shadow: %v; want 404", err)
	}
}
