package ruleengine_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/daemontest"
)

// TestWindowedRuleEndToEnd: a real MQTT device publishes; a windowed rule
// created over the API averages its temperature per second and, when the
// window closes, republishes the aggregate to a real subscriber and raises
// an alarm on the device's thing.
func TestWindowedRuleEndToEnd(t *testing.T) {
	s := daemontest.Start(t)
	dev := s.V5(t, "sensor-1", s.Device(t, "sensor-1"))
	watcher := s.V5(t, "watcher", s.Device(t, "watcher"))
	watcher.Sub(t, "things/watcher/#")

	// Bad windows are refused with the position of the problem.
	code, out := api(t, s, "POST", "/rules", `{"name":"bad","sql":"SELECT avg(temp) FROM 'things/+/telemetry' GROUP BY thing, SLIDING(1m, 7s)","actions":[{"type":"log"}]}`)
	if code != 400 || !strings.Contains(out, `"field":"sql"`) || !strings.Contains(out, "at 1:72: hop 7s does not divide the window length 1m") {
		t.Fatalf("bad window: %d %s", code, out)
	}
	code, out = api(t, s, "POST", "/rules", `{"name":"bad","sql":"SELECT temp FROM 'things/+/telemetry' WHERE avg(temp) > 3","actions":[{"type":"log"}]}`)
	if code != 400 || !strings.Contains(out, "at 1:45: aggregate avg() is not allowed in WHERE") {
		t.Fatalf("aggregate in WHERE: %d %s", code, out)
	}

	mustAPI(t, s, "POST", "/rules", `{"name":"hot-avg",
		"sql":"SELECT avg(temp) AS avgTemp, max(temp) AS maxTemp, count(*) AS n, topic(2) AS device FROM 'things/+/telemetry' GROUP BY thing, TUMBLING(1s) HAVING avg(temp) > 30",
		"actions":[{"type":"republish","topic":"things/watcher/avg/${device}"},{"type":"raiseAlarm","alarmType":"hot-average","severity":"major"}]}`, 201)
	for range 3 {
		dev.Pub(t, "things/sensor-1/telemetry", 1, false, `{"temp": 40}`)
	}
	m := watcher.Inbox.Wait(t, "things/watcher/avg/sensor-1", wait)
	var got struct {
		AvgTemp, MaxTemp float64
		N                int
		Device           string
	}
	if err := json.Unmarshal([]byte(m.Payload), &got); err != nil || got.AvgTemp != 40 || got.MaxTemp != 40 || got.N < 1 || got.Device != "sensor-1" {
		t.Fatalf("republished %s (%v)", m.Payload, err)
	}
	deadline := time.Now().Add(wait)
	for {
		out := mustAPI(t, s, "GET", "/alarms?thing=sensor-1", "", 200)
		if strings.Contains(out, `"type":"hot-average"`) && strings.Contains(out, `"avgTemp":40`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no hot-average alarm on sensor-1: %s", out)
		}
		time.Sleep(10 * time.Millisecond)
	}

	// POST /rules/test shows the windows of timed messages.
	out = mustAPI(t, s, "POST", "/rules/test", `{"sql":"SELECT avg(temp) AS a FROM 'things/+/telemetry' GROUP BY thing, TUMBLING(1m)",
		"messages":[{"topic":"things/x/telemetry","payload":{"temp":1},"at":"2026-01-01T10:00:05Z"},
			{"topic":"things/x/telemetry","payload":{"temp":2},"at":"2026-01-01T10:00:50Z"}]}`, 200)
	if strings.TrimSpace(out) != `{"matched":true,"windows":[{"group":"x","start":"2026-01-01T10:00:00Z","end":"2026-01-01T10:01:00Z","output":{"a":1.5}}]}` {
		t.Fatalf("rules/test: %s", out)
	}
}
