package alarms_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/alarms"
	"github.com/moteiot/mote/internal/config"
	"github.com/moteiot/mote/internal/daemontest"
)

const wait = 10 * time.Second

func api(t *testing.T, s *daemontest.Server, method, path, body string) (int, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, s.API+"/api/v1"+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+s.Token)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func decode[T any](t *testing.T, body string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatalf("decode %s: %v", body, err)
	}
	return v
}

type alarmList struct {
	Items      []alarms.Alarm `json:"items"`
	NextCursor string         `json:"nextCursor"`
}

// monitor connects a client allowed to watch alarm events.
func monitor(t *testing.T, s *daemontest.Server) *daemontest.V5 {
	t.Helper()
	code, out := api(t, s, "POST", "/policies", `{"name":"watch-alarms","document":{"statements":[
		{"effect":"allow","actions":["subscribe"],"topics":["$mote/events/alarms/#"]}]}}`)
	if code != http.StatusCreated {
		t.Fatalf("create policy: %d %s", code, out)
	}
	m := s.V5(t, "ops", s.Device(t, "ops", "watch-alarms"))
	if rc := m.Sub(t, "$mote/events/alarms/#"); rc != 1 {
		t.Fatalf("subscribe to alarm events: reason %#x", rc)
	}
	return m
}

// TestDeviceToAlarmEventWebhookAndEmail: a real MQTT device's telemetry
// goes through a rule's raiseAlarm action to an alarm event on MQTT, a
// webhook and an e-mail; an operator acknowledges and clears it over REST.
func TestDeviceToAlarmEventWebhookAndEmail(t *testing.T) {
	box := alarms.StartMailbox(t)
	h := &alarms.Hook{}
	web := httptest.NewServer(h)
	defer web.Close()
	s := daemontest.Start(t, func(c *config.Config) {
		c.AlarmWebhookURL = web.URL
		c.AlarmSMTPAddr = box.Addr()
		c.AlarmSMTPFrom = "mote@example.com"
		c.AlarmSMTPTo = []string{"ops@example.com"}
	})
	code, out := api(t, s, "POST", "/rules", `{"name":"overheat","sql":"SELECT temperature FROM 'things/+/telemetry' WHERE temperature > 80",
		"actions":[{"type":"raiseAlarm","alarmType":"overheat","severity":"critical"}]}`)
	if code != http.StatusCreated {
		t.Fatalf("create rule: %d %s", code, out)
	}
	m := monitor(t, s)
	dev := s.V5(t, "boiler", s.Device(t, "boiler"))
	s.Device(t, "victim")
	dev.Pub(t, "things/boiler/telemetry", 1, false, `{"temperature": 70}`)
	// The payload names another thing: it must not matter.
	dev.Pub(t, "things/boiler/telemetry", 1, false, `{"temperature": 95, "thing": "victim"}`)

	ev := decode[alarms.Event](t, m.Inbox.Wait(t, "$mote/events/alarms/boiler/overheat/raised", wait).Payload)
	if ev.Alarm.Thing != "boiler" || ev.Alarm.Severity != "critical" || ev.Alarm.Status != "active" || string(ev.Alarm.Details) != `{"temperature":95}` {
		t.Fatalf("raised event: %+v", ev)
	}
	id := ev.Alarm.ID
	daemontest.WaitFor(t, wait, func() error {
		if len(h.Received()) != 1 || !strings.Contains(h.Received()[0], id) {
			return fmt.Errorf("webhooks %q", h.Received())
		}
		if len(box.Received()) != 1 || !strings.Contains(box.Received()[0], "overheat alarm raised on boiler") {
			return fmt.Errorf("e-mails %q", box.Received())
		}
		return nil
	})
	code, out = api(t, s, "GET", "/alarms?thing=victim", "")
	if code != 200 || len(decode[alarmList](t, out).Items) != 0 {
		t.Fatalf("victim's alarms: %d %s; want none", code, out)
	}

	// A repeat counts up, with no new event.
	dev.Pub(t, "things/boiler/telemetry", 1, false, `{"temperature": 96}`)
	daemontest.WaitFor(t, wait, func() error {
		_, out := api(t, s, "GET", "/alarms/"+id, "")
		if a := decode[alarms.Alarm](t, out); a.Count != 2 {
			return fmt.Errorf("count %d; want 2", a.Count)
		}
		return nil
	})

	code, out = api(t, s, "GET", "/alarms?status=active&severity=critical", "")
	if l := decode[alarmList](t, out); code != 200 || len(l.Items) != 1 || l.Items[0].ID != id {
		t.Fatalf("active critical alarms: %d %s", code, out)
	}
	code, out = api(t, s, "POST", "/alarms/"+id+"/ack", "")
	if code != 200 || decode[alarms.Alarm](t, out).Status != "acknowledged" {
		t.Fatalf("ack: %d %s", code, out)
	}
	m.Inbox.Wait(t, "$mote/events/alarms/boiler/overheat/acknowledged", wait)
	if code, out = api(t, s, "POST", "/alarms/"+id+"/ack", ""); code != http.StatusConflict {
		t.Fatalf("ack twice: %d %s; want 409", code, out)
	}
	code, out = api(t, s, "POST", "/alarms/"+id+"/clear", "")
	if code != 200 || decode[alarms.Alarm](t, out).Status != "cleared" {
		t.Fatalf("clear: %d %s", code, out)
	}
	m.Inbox.Wait(t, "$mote/events/alarms/boiler/overheat/cleared", wait)
	if code, _ = api(t, s, "POST", "/alarms/"+id+"/clear", ""); code != http.StatusConflict {
		t.Fatalf("clear twice: %d; want 409", code)
	}
}

func TestAlarmAPIValidation(t *testing.T) {
	s := daemontest.Start(t)
	for _, c := range []struct {
		method, path string
		code         int
	}{
		{"GET", "/alarms?status=burning", 400},
		{"GET", "/alarms?severity=fatal", 400},
		{"GET", "/alarms?thing=a/b", 400},
		{"GET", "/alarms?bogus=1", 400},
		{"GET", "/alarms?limit=0", 400},
		{"GET", "/alarms/alm_nope", 404},
		{"POST", "/alarms/alm_nope/ack", 404},
		{"POST", "/alarms/alm_nope/clear", 404},
		{"GET", "/alarms?status=open&thing=x&severity=minor&type=t&limit=5", 200},
	} {
		if code, out := api(t, s, c.method, c.path, ""); code != c.code {
			t.Errorf("%s %s = %d %s; want %d", c.method, c.path, code, out, c.code)
		}
	}
}
