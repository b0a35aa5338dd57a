package httpapi_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/config"
	"github.com/moteiot/mote/internal/daemontest"
)

type positionsAnswer struct {
	Items []struct {
		Thing string  `json:"thing"`
		Lat   float64 `json:"lat"`
		Lon   float64 `json:"lon"`
		Alarm string  `json:"alarm"`
	} `json:"items"`
	NextCursor string `json:"nextCursor"`
	Total      int    `json:"total"`
}

// GET /fleet/positions lists the things whose latest telemetry holds a
// valid position, by name and in pages, with the worst severity of their
// active alarms; a position out of range, a non-numeric one and a thing
// without one are left out.
func TestFleetPositions(t *testing.T) {
	s := daemontest.Start(t)
	ctx := context.Background()
	pubs := map[string]string{
		"a-truck":  `{"lat": 52.37, "lon": 4.89, "speed": 50}`,
		"b-truck":  `{"lat": -33.86, "lon": 151.2}`,
		"c-sensor": `{"temperature": 21}`,
		"d-broken": `{"lat": 95, "lon": 4}`,
		"e-text":   `{"lat": "52", "lon": "4"}`,
		"f-truck":  `{"lat": 0, "lon": -180}`,
	}
	for name, body := range pubs {
		s.Thing(t, name)
		if err := s.Broker().PublishAs(ctx, name, name, "things/"+name+"/telemetry", []byte(body), 1, false); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Alarms().Raise(ctx, "a-truck", "overheat", "minor", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Alarms().Raise(ctx, "a-truck", "geofence", "critical", nil); err != nil {
		t.Fatal(err)
	}
	var got positionsAnswer
	// Telemetry reaches the fleet index through the durable batch: a
	// generous deadline for a loaded machine.
	daemontest.WaitFor(t, 30*time.Second, func() error {
		if code := apiGet(t, s, "/fleet/positions", &got); code != 200 || got.Total != 3 {
			return fmt.Errorf("status %d, %+v", code, got)
		}
		return nil
	})
	want := "a-truck 52.37 4.89 critical|b-truck -33.86 151.2 |f-truck 0 -180 "
	var lines []string
	for _, it := range got.Items {
		lines = append(lines, fmt.Sprintf("%s %v %v %s", it.Thing, it.Lat, it.Lon, it.Alarm))
	}
	if g := strings.Join(lines, "|"); g != want {
		t.Errorf("positions = %q; want %q", g, want)
	}

	// Pages.
	var p1, p2 positionsAnswer
	apiGet(t, s, "/fleet/positions?limit=2", &p1)
	apiGet(t, s, "/fleet/positions?limit=2&cursor="+p1.NextCursor, &p2)
	if len(p1.Items) != 2 || p1.NextCursor != "b-truck" || len(p2.Items) != 1 || p2.Items[0].Thing != "f-truck" || p2.NextCursor != "" {
		t.Errorf("pages: %+v then %+v", p1, p2)
	}
	for _, bad := range []string{"limit=0", "limit=10001", "limit=x", "cursor=a%2Fb", "lat=1"} {
		if code := apiGet(t, s, "/fleet/positions?"+bad, nil); code != 400 {
			t.Errorf("GET /fleet/positions?%s = %d; want 400", bad, code)
		}
	}
	var info struct {
		MapTileURL *string `json:"mapTileURL"`
	}
	if apiGet(t, s, "/server", &info); info.MapTileURL == nil || *info.MapTileURL != "" {
		t.Errorf("GET /server mapTileURL = %v; want \"\" (the tests' setting)", info.MapTileURL)
	}
}

// GET /events?alarms=1&positions=1 streams alarm events and the
// positions of every thing, and nothing for telemetry without one.
func TestEventsAlarmsAndPositions(t *testing.T) {
	s := daemontest.Start(t)
	ctx := context.Background()
	s.Thing(t, "truck")
	req, _ := http.NewRequestWithContext(ctx, "GET", s.API+"/api/v1/events?alarms=1&positions=1", nil)
	req.Header.Set("Authorization", "Bearer "+s.Token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("status %d", res.StatusCode)
	}
	type ev struct{ name, data string }
	evs := make(chan ev, 16)
	go func() {
		sc := bufio.NewScanner(res.Body)
		var name string
		for sc.Scan() {
			line := sc.Text()
			if v, ok := strings.CutPrefix(line, "event: "); ok {
				name = v
			} else if v, ok := strings.CutPrefix(line, "data: "); ok {
				evs <- ev{name, v}
			}
		}
		close(evs)
	}()
	next := func() ev {
		t.Helper()
		select {
		case e, ok := <-evs:
			if !ok {
				t.Fatal("stream ended")
			}
			return e
		case <-time.After(5 * time.Second):
			t.Fatalf("no event within 5 s")
		}
		return ev{}
	}
	// The subscription is in once the stream answered; publish.
	for _, body := range []string{`{"temperature": 1}`, `{"lat": "x", "lon": 1}`, `{"lat": 48.1, "lon": 11.6}`} {
		if err := s.Broker().PublishAs(ctx, "truck", "truck", "things/truck/telemetry", []byte(body), 1, false); err != nil {
			t.Fatal(err)
		}
	}
	e := next()
	var pos struct {
		Thing    string
		Lat, Lon float64
	}
	if e.name != "position" || json.Unmarshal([]byte(e.data), &pos) != nil || pos.Thing != "truck" || pos.Lat != 48.1 || pos.Lon != 11.6 {
		t.Fatalf("first event = %s %s; want the position of truck", e.name, e.data)
	}
	if _, err := s.Alarms().Raise(ctx, "truck", "geofence", "major", nil); err != nil {
		t.Fatal(err)
	}
	e = next()
	var al struct {
		Event string
		Alarm struct{ Thing, Type, Severity string }
	}
	if e.name != "alarm" || json.Unmarshal([]byte(e.data), &al) != nil || al.Event != "raised" || al.Alarm.Thing != "truck" || al.Alarm.Severity != "major" {
		t.Fatalf("event = %s %s; want the raised alarm", e.name, e.data)
	}
	if code := apiGet(t, s, "/events?alarms=2", nil); code != 400 {
		t.Errorf("alarms=2: %d; want 400", code)
	}
}

// A device cannot place another thing on the map: its publish on the
// other's telemetry topic is refused by the default policy, and the map
// shows only where the other thing itself said it is.
func TestFleetPositionsOtherThing(t *testing.T) {
	s := daemontest.Start(t)
	secA := s.Device(t, "a")
	secB := s.Device(t, "b")
	a := s.V5(t, "a", secA)
	b := s.V5(t, "b", secB)
	b.Pub(t, "things/b/telemetry", 1, false, `{"lat": 10, "lon": 20}`)
	if rc := a.Pub(t, "things/b/telemetry", 1, false, `{"lat": -10, "lon": -20}`); rc < 0x80 {
		t.Fatalf("a's publish on b's telemetry: reason code %#x; want a refusal", rc)
	}
	a.Pub(t, "things/a/telemetry", 1, false, `{"lat": 1, "lon": 2}`) // after the refused one
	var got positionsAnswer
	daemontest.WaitFor(t, 30*time.Second, func() error {
		if apiGet(t, s, "/fleet/positions", &got); got.Total != 2 {
			return fmt.Errorf("%+v", got)
		}
		return nil
	})
	if p := got.Items[1]; p.Thing != "b" || p.Lat != 10 || p.Lon != 20 {
		t.Errorf("b is at %+v; want where b said (10, 20)", p)
	}
}

// With --position-keys latitude,longitude the map reads those keys (in
// GET /fleet/positions and the position events) and no longer lat/lon.
func TestFleetPositionsConfiguredKeys(t *testing.T) {
	s := daemontest.Start(t, func(c *config.Config) { c.PositionKeys = []string{"latitude", "longitude"} })
	ctx := context.Background()
	s.Thing(t, "old")
	s.Thing(t, "new")
	req, _ := http.NewRequestWithContext(ctx, "GET", s.API+"/api/v1/events?positions=1", nil)
	req.Header.Set("Authorization", "Bearer "+s.Token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	datas := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(res.Body)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				datas <- v
			}
		}
		close(datas)
	}()
	for thing, body := range map[string]string{"old": `{"lat": 1, "lon": 2}`, "new": `{"latitude": 52.5, "longitude": 13.4, "lat": 0}`} {
		if err := s.Broker().PublishAs(ctx, thing, thing, "things/"+thing+"/telemetry", []byte(body), 1, false); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case d := <-datas:
		var pos struct {
			Thing    string
			Lat, Lon float64
		}
		if json.Unmarshal([]byte(d), &pos) != nil || pos.Thing != "new" || pos.Lat != 52.5 || pos.Lon != 13.4 {
			t.Fatalf("position event %s; want new at 52.5, 13.4", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no position event within 10 s")
	}
	var got positionsAnswer
	daemontest.WaitFor(t, 30*time.Second, func() error {
		if code := apiGet(t, s, "/fleet/positions", &got); code != 200 || got.Total != 1 {
			return fmt.Errorf("status %d, %+v", code, got)
		}
		return nil
	})
	if it := got.Items[0]; it.Thing != "new" || it.Lat != 52.5 || it.Lon != 13.4 {
		t.Fatalf("positions = %+v; want only new at 52.5, 13.4", got.Items)
	}
}

// GET /events?telemetry=a,b streams the telemetry of those things only;
// a missing thing is 404, too many are 400.
func TestEventsTelemetryOfThings(t *testing.T) {
	s := daemontest.Start(t)
	ctx := context.Background()
	for _, n := range []string{"a", "b", "c"} {
		s.Thing(t, n)
	}
	if code := apiGet(t, s, "/events?telemetry=a,ghost", nil); code != 404 {
		t.Errorf("telemetry=a,ghost: %d; want 404", code)
	}
	if code := apiGet(t, s, "/events?telemetry="+strings.Repeat("a,", 100)+"a", nil); code != 400 {
		t.Errorf("101 things: %d; want 400", code)
	}
	if code := apiGet(t, s, "/events?telemetry=a%2Fb", nil); code != 400 {
		t.Errorf("telemetry=a/b: %d; want 400", code)
	}
	req, _ := http.NewRequestWithContext(ctx, "GET", s.API+"/api/v1/events?telemetry=a,b", nil)
	req.Header.Set("Authorization", "Bearer "+s.Token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	lines := make(chan string, 64)
	go func() {
		sc := bufio.NewScanner(res.Body)
		for sc.Scan() {
			if sc.Text() != "" {
				lines <- sc.Text()
			}
		}
		close(lines)
	}()
	for _, n := range []string{"c", "a", "b"} {
		if err := s.Broker().PublishAs(ctx, n, n, "things/"+n+"/telemetry", []byte(`{"temperature": 21}`), 1, false); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	deadline := time.After(10 * time.Second)
	for len(got) < 2 {
		select {
		case l := <-lines:
			if d, ok := strings.CutPrefix(l, "data: "); ok {
				var e struct {
					Thing   string
					Payload map[string]float64
				}
				if json.Unmarshal([]byte(d), &e) != nil || e.Payload["temperature"] != 21 {
					t.Fatalf("event data %s", d)
				}
				got = append(got, e.Thing)
			} else if v, ok := strings.CutPrefix(l, "event: "); ok && v != "telemetry" {
				t.Fatalf("event %q; want telemetry", v)
			}
		case <-deadline:
			t.Fatalf("telemetry events: %q; want a's and b's", got)
		}
	}
	if strings.Join(got, ",") != "a,b" {
		t.Fatalf("telemetry events of %q; want a, b (not c)", got)
	}
}
