package analytics_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/moteiot/mote/internal/config"
	"github.com/moteiot/mote/internal/daemontest"
)

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

// TestDeviceThroughThresholdToAlarmEvent: a rule created over REST for a
// thing type; a real MQTT device (paho) of that type crosses the
// threshold; the alarm event arrives on MQTT; below the clear level it
// clears.
func TestDeviceThroughThresholdToAlarmEvent(t *testing.T) {
	s := daemontest.Start(t)
	for _, c := range []struct{ path, body string }{
		{"/types", `{"name":"boiler"}`},
		{"/things", `{"name":"b1","type":"boiler"}`},
		{"/policies", `{"name":"watch-alarms","document":{"statements":[{"effect":"allow","actions":["subscribe"],"topics":["$mote/events/alarms/#"]}]}}`},
		{"/analytics/rules", `{"name":"overheat","kind":"threshold","thingType":"boiler",
			"config":{"key":"temperature","above":80,"clearBelow":75,"alarmType":"overheat","severity":"critical"}}`},
	} {
		if code, out := api(t, s, "POST", c.path, c.body); code != http.StatusCreated {
			t.Fatalf("POST %s: %d %s", c.path, code, out)
		}
	}
	m := s.V5(t, "ops", s.Device(t, "ops", "watch-alarms"))
	if rc := m.Sub(t, "$mote/events/alarms/#"); rc != 1 {
		t.Fatalf("subscribe: %#x", rc)
	}
	_, secret := s.Secret(t, "b1")
	dev := s.V5(t, "b1", secret)
	dev.Pub(t, "things/b1/telemetry", 1, false, `{"temperature": 79}`)
	dev.Pub(t, "things/b1/telemetry", 1, false, `{"temperature": 85}`)
	raw := m.Inbox.Wait(t, "$mote/events/alarms/b1/overheat/raised", 10*time.Second)
	var ev struct {
		Alarm struct {
			Thing, Severity string
			Details         map[string]any
		}
	}
	if err := json.Unmarshal([]byte(raw.Payload), &ev); err != nil || ev.Alarm.Severity != "critical" || ev.Alarm.Details["rule"] != "overheat" || ev.Alarm.Details["value"] != 85.0 {
		t.Fatalf("raised event %s: %+v %v", raw.Payload, ev, err)
	}
	dev.Pub(t, "things/b1/telemetry", 1, false, `{"temperature": 77}`) // hysteresis: stays
	dev.Pub(t, "things/b1/telemetry", 1, false, `{"temperature": 70}`)
	m.Inbox.Wait(t, "$mote/events/alarms/b1/overheat/cleared", 10*time.Second)
	if n := len(m.Inbox.Distinct("$mote/events/alarms/b1/overheat/cleared")); n != 1 {
		t.Fatalf("cleared events: %d", n)
	}
}

func TestAnalyticsRuleAPI(t *testing.T) {
	s := daemontest.Start(t)
	for _, c := range []struct {
		method, path, body string
		code               int
		field              string
	}{
		{"POST", "/analytics/rules", `{"name":"f","kind":"geofence","config":{"fence":{"type":"Polygon","coordinates":[[[0,0],[1,1],[1,0],[0,1],[0,0]]]}}}`, 400, "config.fence.coordinates[0]"},
		{"POST", "/analytics/rules", `{"name":"f","kind":"geofence","config":{"fence":{"type":"Polygon","coordinates":[[[0,0],[1,0],[1,1],[0,1]]]}}}`, 400, "config.fence.coordinates[0]"},
		{"POST", "/analytics/rules", `{"name":"f","kind":"geofence","config":{"fence":{"type":"Polygon","coordinates":[[[0,0],[NaN,0],[1,1],[0,0]]]}}}`, 400, ""},
		{"POST", "/analytics/rules", `{"name":"f","kind":"geofence","config":{"fence":{"type":"Circle","center":[0,0],"radiusMeters":1e999}}}`, 400, ""},
		{"POST", "/analytics/rules", `{"name":"t","kind":"threshold","config":{"above":1}}`, 400, "config.key"},
		{"POST", "/analytics/rules", `{"name":"t","kind":"bogus","config":{}}`, 400, "kind"},
		{"POST", "/analytics/rules", `{"name":"ok","kind":"geofence","group":"fleet","config":{"fence":{"type":"Polygon","coordinates":[[[170,-10],[-170,-10],[-170,10],[170,10],[170,-10]]]},"alarmOn":"exit"}}`, 201, ""},
		{"POST", "/analytics/rules", `{"name":"ok","kind":"silence","config":{"expectedInterval":"1m"}}`, 409, ""},
		{"GET", "/analytics/rules/ok", "", 200, ""},
		{"GET", "/analytics/rules", "", 200, ""},
		{"PUT", "/analytics/rules/ok", `{"kind":"silence","config":{"expectedInterval":"1m"}}`, 200, ""},
		{"PUT", "/analytics/rules/nope", `{"kind":"silence","config":{"expectedInterval":"1m"}}`, 404, ""},
		{"DELETE", "/analytics/rules/ok", "", 204, ""},
		{"DELETE", "/analytics/rules/ok", "", 404, ""},
	} {
		code, out := api(t, s, c.method, c.path, c.body)
		if code != c.code {
			t.Errorf("%s %s %s = %d %s; want %d", c.method, c.path, c.body, code, out, c.code)
			continue
		}
		if c.field != "" && !strings.Contains(out, `"`+c.field+`"`) {
			t.Errorf("%s %s: %s; want the field %s named", c.method, c.path, out, c.field)
		}
	}
}

// BenchmarkMessageToAlarmEvent is the time from a device's message to the
// alarm event on MQTT while devices publish 5,000 msgs/s of telemetry
// (through the rules engine's telemetry rule and the analytics): one op is
// one probe message that crosses a threshold (alternately raising and
// clearing), timed to its event at a subscriber. Reports p50 and p99.
//
// MOTE_BENCH_TRIP=N makes every Nth message of each loader cross the
// threshold too (alternately raising and clearing that loader's alarm:
// 5000/N alarm changes a second besides the probe's), and
// MOTE_BENCH_ALARM_BATCH sets --alarm-batch (1: no group commit).
func BenchmarkMessageToAlarmEvent(b *testing.B) {
	const loaders = 5
	rate := 5000.0 // msgs/s of background telemetry; MOTE_BENCH_RATE changes it
	if v, err := strconv.ParseFloat(os.Getenv("MOTE_BENCH_RATE"), 64); err == nil && v >= 0 {
		rate = v
	}
	trip, _ := strconv.Atoi(os.Getenv("MOTE_BENCH_TRIP"))
	var opts []daemontest.Option
	if n, err := strconv.Atoi(os.Getenv("MOTE_BENCH_ALARM_BATCH")); err == nil {
		opts = append(opts, func(c *config.Config) { c.AlarmBatch = n })
	}
	s := daemontest.Start(b, opts...)
	tb := testing.TB(b)
	for _, c := range []struct{ path, body string }{
		{"/policies", `{"name":"watch-alarms","document":{"statements":[{"effect":"allow","actions":["subscribe"],"topics":["$mote/events/alarms/#"]}]}}`},
		{"/analytics/rules", `{"name":"hot","kind":"threshold","config":{"key":"t","above":80,"clearBelow":75,"alarmType":"hot"}}`},
	} {
		if code, out := apiB(tb, s, "POST", c.path, c.body); code != http.StatusCreated {
			b.Fatalf("POST %s: %d %s", c.path, code, out)
		}
	}
	m := s.V5(b, "ops", s.Device(b, "ops", "watch-alarms"))
	if rc := m.Sub(b, "$mote/events/alarms/probe/#"); rc != 1 { // the probe's only: the loaders' events would crowd the inbox
		b.Fatalf("subscribe: %#x", rc)
	}
	probe := s.V5(b, "probe", s.Device(b, "probe"))
	stop := make(chan struct{})
	done := make(chan int, loaders)
	for i := range loaders {
		name := fmt.Sprint("load", i)
		c := s.V5(b, name, s.Device(b, name))
		go func() {
			n := 0
			// A burst every 10 ms: rate/loaders/100 messages, paced by
			// the wall clock so that slow bursts are caught up.
			began := time.Now()
			tick := time.NewTicker(10 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					done <- n
					return
				case <-tick.C:
					due := int(time.Since(began).Seconds() * rate / loaders)
					for ; n < due; n++ {
						body := []byte(`{"t": 20, "h": 40}`)
						if trip > 0 && n%trip == 0 {
							body = []byte(`{"t": 90, "h": 40}`) // raises; the next ordinary one clears
						}
						_, _ = c.Publish(context.Background(), &paho.Publish{Topic: "things/" + name + "/telemetry", Payload: body})
					}
				}
			}
		}()
	}
	loadStart := time.Now()
	time.Sleep(time.Second) // let the load settle (a fixed warm-up, not a wait for a condition)
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		v, ev := 90, "raised"
		if i%2 == 1 {
			v, ev = 70, "cleared"
		}
		before := len(m.Inbox.Distinct("$mote/events/alarms/probe/hot/" + ev))
		t0 := time.Now()
		probe.Pub(b, "things/probe/telemetry", 0, false, fmt.Sprintf(`{"t": %d}`, v))
		deadline := time.Now().Add(10 * time.Second)
		for len(m.Inbox.Distinct("$mote/events/alarms/probe/hot/"+ev)) == before {
			if time.Now().After(deadline) {
				b.Fatalf("probe %d: no %s event; %s", i, ev, dropCounters(s))
			}
			time.Sleep(100 * time.Microsecond)
		}
		lat = append(lat, time.Since(t0))
		time.Sleep(20 * time.Millisecond) // pace the probes
	}
	b.StopTimer()
	elapsed := time.Since(loadStart)
	close(stop)
	sent := 0
	for range loaders {
		sent += <-done
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50_ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99_ms")
	b.ReportMetric(float64(sent)/elapsed.Seconds(), "load_msgs/s")
}

func apiB(tb testing.TB, s *daemontest.Server, method, path, body string) (int, string) {
	tb.Helper()
	req, err := http.NewRequest(method, s.API+"/api/v1"+path, strings.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+s.Token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(out)
}

// dropCounters reads the server's counters of what was dropped or
// refused on the way from a message to an alarm event.
func dropCounters(s *daemontest.Server) string {
	resp, err := http.Get(s.API + "/metrics")
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var out []string
	for _, l := range strings.Split(string(body), "\n") {
		for _, p := range []string{"mote_analytics_dropped", "mote_alarm_requests", "mote_alarm_batch_size_count", "mote_alarm_batch_size_sum", "mote_alarm_events_total", "mote_messages_dropped"} {
			if strings.HasPrefix(l, p) {
				out = append(out, l)
			}
		}
	}
	return strings.Join(out, "; ")
}
