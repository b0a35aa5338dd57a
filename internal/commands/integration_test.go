package commands_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/moteiot/mote/internal/daemontest"
)

const wait = 10 * time.Second

// command is the API object, as a client sees it.
type command struct {
	ID          string          `json:"id"`
	Thing       string          `json:"thing"`
	Name        string          `json:"name"`
	Payload     json.RawMessage `json:"payload"`
	Status      string          `json:"status"`
	CreatedAt   time.Time       `json:"createdAt"`
	ExpiresAt   time.Time       `json:"expiresAt"`
	DeliveredAt *time.Time      `json:"deliveredAt"`
	CompletedAt *time.Time      `json:"completedAt"`
	Result      *struct {
		Status string          `json:"status"`
		Output json.RawMessage `json:"output"`
	} `json:"result"`
}

// message is what the device receives.
type message struct {
	ID        string          `json:"id"`
	Name      string          `json:"name"`
	Payload   json.RawMessage `json:"payload"`
	ExpiresAt time.Time       `json:"expiresAt"`
}

// do sends a request with the given Authorization header.
func do(t *testing.T, method, url, authz, body string) (int, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if authz != "" {
		req.Header.Set("Authorization", authz)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func api(t *testing.T, s *daemontest.Server, method, path, body string) (int, string) {
	t.Helper()
	return do(t, method, s.API+"/api/v1"+path, "Bearer "+s.Token, body)
}

func decode[T any](t *testing.T, body string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatalf("decode %s: %v", body, err)
	}
	return v
}

// send queues a command and returns it.
func send(t *testing.T, s *daemontest.Server, thing, body string) command {
	t.Helper()
	code, out := api(t, s, "POST", "/things/"+thing+"/commands", body)
	if code != http.StatusCreated {
		t.Fatalf("POST /things/%s/commands %s: %d %s", thing, body, code, out)
	}
	c := decode[command](t, out)
	if c.Status != "queued" || !strings.HasPrefix(c.ID, "cmd_") || c.Thing != thing {
		t.Fatalf("created command: %s; want queued, an id cmd_..., thing %s", out, thing)
	}
	return c
}

func get(t *testing.T, s *daemontest.Server, thing, id string) command {
	t.Helper()
	code, out := api(t, s, "GET", "/things/"+thing+"/commands/"+id, "")
	if code != http.StatusOK {
		t.Fatalf("GET command %s: %d %s", id, code, out)
	}
	return decode[command](t, out)
}

// waitStatus waits until the API shows the command in status.
func waitStatus(t *testing.T, s *daemontest.Server, thing, id, status string) command {
	t.Helper()
	var c command
	daemontest.WaitFor(t, wait, func() error {
		c = get(t, s, thing, id)
		if c.Status != status {
			return fmt.Errorf("command %s is %s; want %s", id, c.Status, status)
		}
		return nil
	})
	return c
}

// received returns the command messages the inbox holds, in arrival order.
func received(t *testing.T, in *daemontest.Inbox, thing string) []message {
	t.Helper()
	var out []message
	for _, m := range in.All() {
		if strings.HasPrefix(m.Topic, "$mote/things/"+thing+"/commands/") && !strings.HasSuffix(m.Topic, "/result") {
			msg := decode[message](t, m.Payload)
			if m.Topic != "$mote/things/"+thing+"/commands/"+msg.ID {
				t.Errorf("command %s arrived on %s", msg.ID, m.Topic)
			}
			if m.QoS != 1 {
				t.Errorf("command %s arrived at QoS %d; want 1", msg.ID, m.QoS)
			}
			out = append(out, msg)
		}
	}
	return out
}

func ids(list []message) []string {
	out := make([]string, len(list))
	for i, m := range list {
		out[i] = m.ID
	}
	return out
}

// waitReceived waits for the inbox to hold exactly the commands ids, in
// that order.
func waitReceived(t *testing.T, in *daemontest.Inbox, thing string, want ...string) []message {
	t.Helper()
	var got []message
	daemontest.WaitFor(t, wait, func() error {
		got = received(t, in, thing)
		if strings.Join(ids(got), ",") != strings.Join(want, ",") {
			return fmt.Errorf("device received %v; want %v", ids(got), want)
		}
		return nil
	})
	return got
}

// monitor connects a client allowed to watch command events.
func monitor(t *testing.T, s *daemontest.Server) *daemontest.V5 {
	t.Helper()
	code, out := api(t, s, "POST", "/policies", `{"name":"watch-commands","document":{"statements":[
		{"effect":"allow","actions":["subscribe"],"topics":["$mote/events/commands/#"]}]}}`)
	if code != http.StatusCreated {
		t.Fatalf("create policy: %d %s", code, out)
	}
	secret := s.Device(t, "ops", "watch-commands")
	m := s.V5(t, "ops", secret)
	if rc := m.Sub(t, "$mote/events/commands/#"); rc != 1 {
		t.Fatalf("subscribe to command events: reason %#x", rc)
	}
	return m
}

// waitEvent waits for the event of a command reaching status.
func waitEvent(t *testing.T, in *daemontest.Inbox, thing, id, status string) map[string]any {
	t.Helper()
	topic := "$mote/events/commands/" + thing + "/" + id
	var ev map[string]any
	daemontest.WaitFor(t, wait, func() error {
		for _, m := range in.All() {
			if m.Topic != topic {
				continue
			}
			e := decode[map[string]any](t, m.Payload)
			if e["event"] == status {
				ev = e
				return nil
			}
		}
		return fmt.Errorf("no %q event on %s; got %v", status, topic, in.All())
	})
	return ev
}

func TestCommandQueuedWhileOfflineArrivesAfterConnect(t *testing.T) {
	t.Parallel()
	s := daemontest.Start(t)
	secret := s.Device(t, "dev")
	mon := monitor(t, s)

	c := send(t, s, "dev", `{"name":"reboot","payload":{"delaySeconds":5},"ttlSeconds":600}`)
	if got := c.ExpiresAt.Sub(c.CreatedAt); got != 600*time.Second {
		t.Errorf("expiresAt - createdAt = %v; want 10m", got)
	}
	waitEvent(t, mon.Inbox, "dev", c.ID, "queued")

	d := s.V5(t, "dev", secret)
	if rc := d.Sub(t, "$mote/things/dev/commands/+"); rc != 1 {
		t.Fatalf("subscribe: reason %#x", rc)
	}
	msg := waitReceived(t, d.Inbox, "dev", c.ID)[0]
	if msg.Name != "reboot" || string(msg.Payload) != `{"delaySeconds":5}` || !msg.ExpiresAt.Equal(c.ExpiresAt) {
		t.Errorf("device got %+v; want reboot {\"delaySeconds\":5} expiring %v", msg, c.ExpiresAt)
	}

	got := waitStatus(t, s, "dev", c.ID, "delivered")
	if got.DeliveredAt == nil || got.DeliveredAt.Before(c.CreatedAt) {
		t.Errorf("deliveredAt = %v; want a time after creation %v", got.DeliveredAt, c.CreatedAt)
	}
	ev := waitEvent(t, mon.Inbox, "dev", c.ID, "delivered")
	if cmd, _ := ev["command"].(map[string]any); cmd["id"] != c.ID || cmd["status"] != "delivered" {
		t.Errorf("delivered event: %v", ev)
	}

	// The outcome, reported over MQTT.
	if rc := d.Pub(t, "$mote/things/dev/commands/"+c.ID+"/result", 1, false, `{"status":"succeeded","output":{"uptime":0}}`); rc != 0 {
		t.Fatalf("publish result: reason %#x", rc)
	}
	got = waitStatus(t, s, "dev", c.ID, "succeeded")
	if got.Result == nil || got.Result.Status != "succeeded" || string(got.Result.Output) != `{"uptime":0}` || got.CompletedAt == nil {
		t.Errorf("after the result: %+v; want result succeeded with output {\"uptime\":0} and completedAt", got)
	}
	waitEvent(t, mon.Inbox, "dev", c.ID, "succeeded")

	// A second result for a completed command changes nothing.
	d.Pub(t, "$mote/things/dev/commands/"+c.ID+"/result", 1, false, `{"status":"failed"}`)
	code, out := api(t, s, "GET", "/things/dev/commands?status=succeeded", "")
	if code != http.StatusOK || !strings.Contains(out, c.ID) {
		t.Errorf("list succeeded: %d %s; want it to hold %s", code, out, c.ID)
	}
	daemontest.WaitFor(t, wait, func() error {
		_, metrics := do(t, "GET", s.API+"/metrics", "", "")
		for _, want := range []string{`mote_commands_total{status="queued"} 1`, `mote_commands_total{status="delivered"} 1`,
			`mote_commands_total{status="succeeded"} 1`, `mote_command_reports_ignored_total{reason="not_pending"} 1`} {
			if !strings.Contains(metrics, want) {
				return fmt.Errorf("metrics lack %s", want)
			}
		}
		return nil
	})
}

func TestCommandsArriveInOrderToAConnectedDevice(t *testing.T) {
	t.Parallel()
	s := daemontest.Start(t)
	secret := s.Device(t, "dev")
	d, _, err := s.DialV3(t, daemontest.V3Options{ClientID: "dev-1", Username: "dev", Password: secret})
	if err != nil {
		t.Fatal(err)
	}
	if rc := d.Sub(t, "$mote/things/dev/commands/+", 1); rc != 1 {
		t.Fatalf("subscribe: return code %#x", rc)
	}
	var want []string
	for _, n := range []string{"lock", "locate", "configure"} {
		body := `{"name":"` + n + `"}`
		if n == "configure" {
			body = `{"name":"configure","payload":{"settings":{"interval":30}}}`
		}
		want = append(want, send(t, s, "dev", body).ID)
	}
	waitReceived(t, d.Inbox, "dev", want...)
	for _, id := range want {
		waitStatus(t, s, "dev", id, "delivered")
	}
}

func TestExpiredCommandNeverArrives(t *testing.T) {
	t.Parallel()
	s := daemontest.Start(t)
	secret := s.Device(t, "dev")
	old := send(t, s, "dev", `{"name":"locate","ttlSeconds":1}`)
	got := waitStatus(t, s, "dev", old.ID, "expired")
	if got.CompletedAt == nil || got.CompletedAt.Before(old.ExpiresAt) {
		t.Errorf("completedAt = %v; want a time at or after expiresAt %v", got.CompletedAt, old.ExpiresAt)
	}

	d := s.V5(t, "dev", secret)
	d.Sub(t, "$mote/things/dev/commands/+")
	// Commands go in creation order, so once a newer one arrived the
	// expired one would have come first.
	fresh := send(t, s, "dev", `{"name":"locate"}`)
	waitReceived(t, d.Inbox, "dev", fresh.ID)
	if got := get(t, s, "dev", old.ID); got.Status != "expired" || got.DeliveredAt != nil {
		t.Errorf("expired command now %s (deliveredAt %v)", got.Status, got.DeliveredAt)
	}
}

func TestCancelledCommandIsNotDelivered(t *testing.T) {
	t.Parallel()
	s := daemontest.Start(t)
	secret := s.Device(t, "dev")
	c := send(t, s, "dev", `{"name":"wipe","payload":{"confirm":true}}`)
	code, out := api(t, s, "DELETE", "/things/dev/commands/"+c.ID, "")
	if code != http.StatusOK || decode[command](t, out).Status != "cancelled" {
		t.Fatalf("cancel: %d %s; want 200 cancelled", code, out)
	}
	code, out = api(t, s, "DELETE", "/things/dev/commands/"+c.ID, "")
	if code != http.StatusConflict || !strings.Contains(out, "cancelled") {
		t.Errorf("cancel twice: %d %s; want 409 naming the status", code, out)
	}

	d := s.V5(t, "dev", secret)
	d.Sub(t, "$mote/things/dev/commands/+")
	next := send(t, s, "dev", `{"name":"reboot"}`)
	waitReceived(t, d.Inbox, "dev", next.ID)
	waitStatus(t, s, "dev", next.ID, "delivered")
	code, out = api(t, s, "DELETE", "/things/dev/commands/"+next.ID, "")
	if code != http.StatusConflict || !strings.Contains(out, "delivered") {
		t.Errorf("cancel a delivered command: %d %s; want 409", code, out)
	}
}

func TestQueuedCommandSurvivesRestart(t *testing.T) {
	t.Parallel()
	s := daemontest.Start(t)
	secret := s.Device(t, "dev")
	c := send(t, s, "dev", `{"name":"configure","payload":{"settings":{"led":"off"}}}`)
	s.Restart(t)

	if got := get(t, s, "dev", c.ID); got.Status != "queued" {
		t.Fatalf("after restart: %s; want queued", got.Status)
	}
	d := s.V5(t, "dev", secret)
	d.Sub(t, "$mote/things/dev/commands/#")
	msg := waitReceived(t, d.Inbox, "dev", c.ID)[0]
	if string(msg.Payload) != `{"settings":{"led":"off"}}` {
		t.Errorf("payload after restart: %s", msg.Payload)
	}
	waitStatus(t, s, "dev", c.ID, "delivered")
}

func TestResumedSessionGetsCommands(t *testing.T) {
	t.Parallel()
	s := daemontest.Start(t)
	secret := s.Device(t, "dev")
	o := daemontest.V5Options{ClientID: "dev-p", Username: "dev", Password: secret, SessionExpiry: 600}
	d, err := s.DialV5(t, o)
	if err != nil {
		t.Fatal(err)
	}
	d.Sub(t, "$mote/things/dev/commands/+")
	if err := d.Disconnect(&paho.Disconnect{}); err != nil {
		t.Fatal(err)
	}
	daemontest.WaitFor(t, wait, func() error {
		if _, out := api(t, s, "GET", "/things/dev", ""); !strings.Contains(out, `"connected":false`) {
			return fmt.Errorf("dev still connected: %s", out)
		}
		return nil
	})
	c := send(t, s, "dev", `{"name":"lock","payload":{"message":"stolen"}}`)

	// Reconnect without subscribing again: the session has the subscription.
	d, err = s.DialV5(t, o)
	if err != nil {
		t.Fatal(err)
	}
	if !d.Connack.SessionPresent {
		t.Fatal("session not resumed")
	}
	waitReceived(t, d.Inbox, "dev", c.ID)
	waitStatus(t, s, "dev", c.ID, "delivered")
}

func TestDeviceCannotReachAnotherDevicesCommands(t *testing.T) {
	t.Parallel()
	s := daemontest.Start(t)
	secretA := s.Device(t, "a")
	s.Device(t, "b")
	c := send(t, s, "b", `{"name":"reboot"}`)

	// MQTT: no subscription to b's commands, exact or by wildcard.
	a := s.V5(t, "a", secretA)
	for _, f := range []string{"$mote/things/b/commands/+", "$mote/things/+/commands/+", "$mote/things/b/commands/" + c.ID} {
		if rc := a.Sub(t, f); rc != 0x87 {
			t.Errorf("a subscribes to %s: reason %#x; want 0x87", f, rc)
		}
	}
	// Nor a result for b's command.
	if rc := a.Pub(t, "$mote/things/b/commands/"+c.ID+"/result", 1, false, `{"status":"succeeded"}`); rc != 0x87 {
		t.Errorf("a publishes b's result: reason %#x; want 0x87", rc)
	}
	// a's own result topic with b's command id reaches nothing of b's.
	a.Pub(t, "$mote/things/a/commands/"+c.ID+"/result", 1, false, `{"status":"succeeded"}`)

	// HTTP: a's credentials cannot poll b, nor report on b's command.
	basicA := "Basic " + basic("a", secretA)
	code, out := do(t, "GET", s.API+"/api/v1/devices/b/commands", basicA, "")
	if code != http.StatusForbidden {
		t.Errorf("a polls b: %d %s; want 403", code, out)
	}
	code, out = do(t, "GET", s.API+"/api/v1/devices/b/commands", "Bearer "+secretA, "")
	if code != http.StatusUnauthorized {
		t.Errorf("a's secret as b: %d %s; want 401", code, out)
	}
	code, out = do(t, "POST", s.API+"/api/v1/devices/a/commands/"+c.ID+"/result", basicA, `{"status":"succeeded"}`)
	if code != http.StatusNotFound {
		t.Errorf("a reports on b's command: %d %s; want 404", code, out)
	}
	code, out = do(t, "GET", s.API+"/api/v1/devices/a/commands", basicA, "")
	if code != http.StatusOK || strings.Contains(out, c.ID) {
		t.Errorf("a polls itself: %d %s; want 200 without b's command", code, out)
	}
	if got := get(t, s, "b", c.ID); got.Status != "queued" {
		t.Errorf("b's command is %s; want queued", got.Status)
	}
}

func basic(user, pass string) string {
	req, _ := http.NewRequest("GET", "http://x", nil)
	req.SetBasicAuth(user, pass)
	return strings.TrimPrefix(req.Header.Get("Authorization"), "Basic ")
}

func TestHTTPDeviceAPI(t *testing.T) {
	t.Parallel()
	s := daemontest.Start(t)
	secret := s.Device(t, "dev")
	authz := "Basic " + basic("dev", secret)
	poll := func(q string) []message {
		t.Helper()
		code, out := do(t, "GET", s.API+"/api/v1/devices/dev/commands"+q, authz, "")
		if code != http.StatusOK {
			t.Fatalf("poll%s: %d %s", q, code, out)
		}
		return decode[struct{ Items []message }](t, out).Items
	}
	if got := poll(""); len(got) != 0 {
		t.Fatalf("poll with nothing queued: %v", got)
	}
	c1 := send(t, s, "dev", `{"name":"locate"}`)
	c2 := send(t, s, "dev", `{"name":"custom.thing","payload":[1,2,3]}`)
	got := poll("?wait=0")
	if strings.Join(ids(got), ",") != c1.ID+","+c2.ID {
		t.Fatalf("poll: %v; want %s, %s", ids(got), c1.ID, c2.ID)
	}
	if string(got[1].Payload) != "[1,2,3]" || got[1].Name != "custom.thing" {
		t.Errorf("second command: %+v", got[1])
	}
	if c := get(t, s, "dev", c1.ID); c.Status != "delivered" || c.DeliveredAt == nil {
		t.Errorf("after the poll: %+v; want delivered", c)
	}
	if got := poll(""); len(got) != 0 {
		t.Errorf("second poll: %v; want nothing (taken already)", ids(got))
	}

	// A long poll returns when a command is queued.
	done := make(chan []message, 1)
	go func() {
		req, _ := http.NewRequest("GET", s.API+"/api/v1/devices/dev/commands?wait=30s", nil)
		req.Header.Set("Authorization", "Bearer "+secret)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			done <- nil
			return
		}
		defer resp.Body.Close()
		var v struct{ Items []message }
		json.NewDecoder(resp.Body).Decode(&v)
		done <- v.Items
	}()
	var c3 command
	daemontest.WaitFor(t, wait, func() error {
		// Until the poll is waiting, a command would be taken at its start;
		// either way it must come back in this poll.
		if c3.ID == "" {
			c3 = send(t, s, "dev", `{"name":"reboot"}`)
		}
		return nil
	})
	select {
	case items := <-done:
		if len(items) != 1 || items[0].ID != c3.ID {
			t.Fatalf("long poll: %v; want %s", items, c3.ID)
		}
	case <-time.After(wait):
		t.Fatal("long poll did not return after a command was queued")
	}

	// Results.
	code, out := do(t, "POST", s.API+"/api/v1/devices/dev/commands/"+c1.ID+"/result", authz, `{"status":"succeeded","output":{"lat":52.37,"lon":4.9,"accuracy":12}}`)
	if code != http.StatusOK {
		t.Fatalf("report: %d %s", code, out)
	}
	r := decode[command](t, out)
	if r.Status != "succeeded" || r.Result == nil || !strings.Contains(string(r.Result.Output), `"lat":52.37`) {
		t.Errorf("reported: %s", out)
	}
	code, out = do(t, "POST", s.API+"/api/v1/devices/dev/commands/"+c1.ID+"/result", authz, `{"status":"failed"}`)
	if code != http.StatusConflict {
		t.Errorf("report twice: %d %s; want 409", code, out)
	}
	code, out = do(t, "POST", s.API+"/api/v1/devices/dev/commands/"+c2.ID+"/result", authz, `{"status":"done"}`)
	if code != http.StatusBadRequest || !strings.Contains(out, `"field":"status"`) {
		t.Errorf("bad status: %d %s; want 400 on status", code, out)
	}
	code, out = do(t, "GET", s.API+"/api/v1/devices/dev/commands?wait=2h", authz, "")
	if code != http.StatusBadRequest || !strings.Contains(out, `"field":"wait"`) {
		t.Errorf("wait=2h: %d %s; want 400 on wait", code, out)
	}
	code, _ = do(t, "GET", s.API+"/api/v1/devices/dev/commands", "", "")
	if code != http.StatusUnauthorized {
		t.Errorf("no credentials: %d; want 401", code)
	}
}

func TestCommandValidation(t *testing.T) {
	t.Parallel()
	s := daemontest.Start(t)
	s.Device(t, "dev")
	for _, tc := range []struct {
		body  string
		code  int
		field string
	}{
		{`{"name":""}`, 400, "name"},
		{`{"name":"a/b"}`, 400, "name"},
		{`{"name":"reboot","ttlSeconds":0}`, 400, "ttlSeconds"},
		{`{"name":"reboot","ttlSeconds":99999999}`, 400, "ttlSeconds"},
		{`{"name":"reboot","payload":{"delaySeconds":-1}}`, 400, "payload.delaySeconds"},
		{`{"name":"reboot","payload":{"delay":1}}`, 400, "payload.delay"},
		{`{"name":"wipe"}`, 400, "payload"},
		{`{"name":"wipe","payload":{"confirm":false}}`, 400, "payload.confirm"},
		{`{"name":"configure","payload":{"settings":[1]}}`, 400, "payload.settings"},
		{`{"name":"locate","payload":{"x":1}}`, 400, "payload.x"},
		{`{"name":"lock","payload":{"pin":7}}`, 400, "payload.pin"},
		{`{"name":"reboot","extra":1}`, 400, "extra"},
		{`{"name":"anything.custom","payload":"free form"}`, 201, ""},
	} {
		code, out := api(t, s, "POST", "/things/dev/commands", tc.body)
		if code != tc.code {
			t.Errorf("POST %s: %d %s; want %d", tc.body, code, out, tc.code)
			continue
		}
		if tc.field != "" && !strings.Contains(out, `"field":"`+tc.field+`"`) {
			t.Errorf("POST %s: %s; want field %q", tc.body, out, tc.field)
		}
	}
	if code, out := api(t, s, "POST", "/things/ghost/commands", `{"name":"reboot"}`); code != 404 {
		t.Errorf("unknown thing: %d %s; want 404", code, out)
	}
	if code, out := api(t, s, "GET", "/things/ghost/commands", ""); code != 404 {
		t.Errorf("list for an unknown thing: %d %s; want 404", code, out)
	}
	if code, out := api(t, s, "GET", "/things/dev/commands/cmd_nope", ""); code != 404 {
		t.Errorf("unknown command: %d %s; want 404", code, out)
	}
	if code, out := api(t, s, "GET", "/things/dev/commands?status=done", ""); code != 400 {
		t.Errorf("bad status filter: %d %s; want 400", code, out)
	}
}

func TestCommandListPages(t *testing.T) {
	t.Parallel()
	s := daemontest.Start(t)
	s.Device(t, "dev")
	var want []string
	for range 5 {
		want = append([]string{send(t, s, "dev", `{"name":"locate"}`).ID}, want...) // newest first
	}
	var got []string
	cursor := ""
	for range 10 {
		code, out := api(t, s, "GET", "/things/dev/commands?limit=2"+cursor, "")
		if code != 200 {
			t.Fatalf("list: %d %s", code, out)
		}
		page := decode[struct {
			Items      []command
			NextCursor string
		}](t, out)
		for _, c := range page.Items {
			got = append(got, c.ID)
		}
		if page.NextCursor == "" {
			break
		}
		cursor = "&cursor=" + page.NextCursor
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("pages: %v; want %v", got, want)
	}
}

func TestQoS0SubscriptionCountsAsDelivered(t *testing.T) {
	t.Parallel()
	s := daemontest.Start(t)
	secret := s.Device(t, "dev")
	d, _, err := s.DialV3(t, daemontest.V3Options{ClientID: "dev-q0", Username: "dev", Password: secret})
	if err != nil {
		t.Fatal(err)
	}
	if rc := d.Sub(t, "$mote/things/dev/commands/+", 0); rc != 0 {
		t.Fatalf("subscribe: return code %#x", rc)
	}
	c := send(t, s, "dev", `{"name":"locate"}`)
	m := d.Inbox.Wait(t, "$mote/things/dev/commands/"+c.ID, wait)
	if m.QoS != 0 {
		t.Errorf("QoS %d; want 0 (the subscription's)", m.QoS)
	}
	waitStatus(t, s, "dev", c.ID, "delivered")
}
