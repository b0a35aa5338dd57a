package coap_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"

	"github.com/moteiot/mote/internal/daemontest"
	"github.com/moteiot/mote/internal/store"
)

// TestCoAPTelemetryAndRules: a confirmable CoAP POST on the telemetry
// topic is stored by the built-in telemetry rule (queryable over REST)
// and triggers a user rule, the same as an MQTT publish.
func TestCoAPTelemetryAndRules(t *testing.T) {
	s := start(t)
	secret := s.Device(t, "sensor-1")
	watcher := s.V5(t, "watcher", s.Device(t, "watcher"))
	watcher.Sub(t, "things/watcher/alerts")
	if _, err := s.Rules().Create(ctx(t), store.Rule{
		Name: "hot", SQL: "SELECT temp, topic(2) AS device FROM 'things/+/telemetry' WHERE temp > 30", Enabled: true,
		Actions: json.RawMessage(`[{"type":"republish","topic":"things/watcher/alerts"}]`),
	}); err != nil {
		t.Fatalf("create rule: %v", err)
	}

	cc := dial(t, s)
	for _, temp := range []int{20, 35} {
		resp, err := cc.Post(ctx(t), "/things/sensor-1/telemetry", message.AppJSON, bytes.NewReader(fmt.Appendf(nil, `{"temp":%d}`, temp)), token("sensor-1", secret))
		if err != nil || resp.Code() != codes.Changed {
			t.Fatalf("POST temp %d = %v, %v; want 2.04", temp, resp, err)
		}
	}
	// 2.04 came after the journal had the messages: they are stored.
	var raw struct {
		Items []struct {
			Value json.RawMessage `json:"value"`
		} `json:"items"`
	}
	daemontest.WaitFor(t, 10*time.Second, func() error {
		req, _ := http.NewRequest("GET", s.API+"/api/v1/things/sensor-1/telemetry?keys=temp", nil)
		req.Header.Set("Authorization", "Bearer "+s.Token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		raw.Items = nil
		if err := json.NewDecoder(resp.Body).Decode(&raw); err != nil {
			return err
		}
		if len(raw.Items) != 2 {
			return fmt.Errorf("telemetry points = %d; want 2", len(raw.Items))
		}
		return nil
	})
	if string(raw.Items[0].Value) != "20" || string(raw.Items[1].Value) != "35" {
		t.Errorf("telemetry = %s, %s; want 20, 35", raw.Items[0].Value, raw.Items[1].Value)
	}
	m := watcher.Inbox.Wait(t, "things/watcher/alerts", 10*time.Second)
	var alert struct {
		Temp   int    `json:"temp"`
		Device string `json:"device"`
	}
	if err := json.Unmarshal([]byte(m.Payload), &alert); err != nil || alert.Temp != 35 || alert.Device != "sensor-1" {
		t.Errorf("alert = %s; want temp 35 from sensor-1", m.Payload)
	}
}
