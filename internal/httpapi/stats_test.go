package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/config"
	"github.com/moteiot/mote/internal/daemontest"
	"github.com/moteiot/mote/internal/store"
)

// apiGet GETs path with the admin token and decodes the JSON answer.
func apiGet(t *testing.T, s *daemontest.Server, path string, out any) int {
	t.Helper()
	req, err := http.NewRequest("GET", s.API+"/api/v1"+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+s.Token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	if out != nil && res.StatusCode == 200 {
		if err := json.Unmarshal(body, out); err != nil {
			t.Fatalf("GET %s: %v: %s", path, err, body)
		}
	}
	return res.StatusCode
}

type apiThing struct {
	Name      string     `json:"name"`
	Connected bool       `json:"connected"`
	Enabled   bool       `json:"enabled"`
	LastSeen  *time.Time `json:"lastSeen"`
	Stats     *struct {
		PublishDenied    int64      `json:"publishDenied"`
		InvalidTelemetry int64      `json:"invalidTelemetry"`
		LastDeniedTopic  string     `json:"lastDeniedTopic"`
		LastDeniedAt     *time.Time `json:"lastDeniedAt"`
		LastInvalidAt    *time.Time `json:"lastInvalidAt"`
	} `json:"stats"`
}

// An MQTT 3.1.1 publish that policy refuses is acknowledged and dropped:
// the thing's record counts it and names the topic. Telemetry that is not
// a JSON object is delivered but counted. Last seen follows the device's
// packets, not its connect time.
func TestThingActivityStats(t *testing.T) {
	s := daemontest.Start(t, func(c *config.Config) { c.LastSeenInterval = 10 * time.Millisecond })
	sec := s.Device(t, "dev")
	c := s.V3(t, "dev", sec)
	defer c.Disconnect(0)

	var th apiThing
	daemontest.WaitFor(t, 3*time.Second, func() error {
		if apiGet(t, s, "/things/dev", &th); !th.Connected || th.LastSeen == nil {
			return fmt.Errorf("not connected yet: %+v", th)
		}
		return nil
	})
	connectedAt := *th.LastSeen
	if th.Stats == nil || th.Stats.PublishDenied != 0 || th.Stats.InvalidTelemetry != 0 {
		t.Fatalf("stats of a new thing: %+v", th.Stats)
	}
	// Let the clock pass the connect time (millisecond resolution).
	daemontest.WaitFor(t, time.Second, func() error {
		if time.Since(connectedAt) < 20*time.Millisecond {
			return fmt.Errorf("too soon")
		}
		return nil
	})

	c.Pub(t, "elsewhere/secret", 1, false, `{"x":1}`) // denied: acknowledged all the same (3.1.1)
	c.Pub(t, "things/dev/telemetry", 1, false, `not json`)
	c.Pub(t, "things/dev/telemetry", 1, false, `[1,2]`)
	c.Pub(t, "things/dev/telemetry", 1, false, `{"temp":21}`)

	daemontest.WaitFor(t, 3*time.Second, func() error {
		th = apiThing{}
		apiGet(t, s, "/things/dev", &th)
		if th.Stats == nil || th.Stats.PublishDenied != 1 || th.Stats.InvalidTelemetry != 2 {
			return fmt.Errorf("stats %+v", th.Stats)
		}
		if th.LastSeen == nil || !th.LastSeen.After(connectedAt) {
			return fmt.Errorf("lastSeen %v is not after the connect time %v", th.LastSeen, connectedAt)
		}
		return nil
	})
	if th.Stats.LastDeniedTopic != "elsewhere/secret" || th.Stats.LastDeniedAt == nil || th.Stats.LastInvalidAt == nil {
		t.Errorf("stats %+v: want the denied topic and both times", th.Stats)
	}
	// Over the HTTP device API too: a thing that never connects is seen
	// when it sends, and its telemetry is checked the same way.
	_, httpSecret := s.Secret(t, s.Thing(t, "http-dev").Name)
	hreq, _ := http.NewRequest("POST", s.API+"/api/v1/devices/http-dev/messages?topic=things/http-dev/telemetry", strings.NewReader("21"))
	hreq.SetBasicAuth("http-dev", httpSecret)
	hres, err := http.DefaultClient.Do(hreq)
	if err != nil {
		t.Fatal(err)
	}
	hres.Body.Close()
	if hres.StatusCode != 204 {
		t.Fatalf("HTTP device message: %d", hres.StatusCode)
	}
	daemontest.WaitFor(t, 3*time.Second, func() error {
		var h apiThing
		apiGet(t, s, "/things/http-dev", &h)
		if h.LastSeen == nil || h.Stats == nil || h.Stats.InvalidTelemetry != 1 {
			return fmt.Errorf("http-dev: lastSeen %v, stats %+v", h.LastSeen, h.Stats)
		}
		return nil
	})

	req, _ := http.NewRequest("GET", s.API+"/metrics", nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if !strings.Contains(string(body), "\nmote_telemetry_invalid_total 3\n") {
		t.Errorf("metrics: want mote_telemetry_invalid_total 3")
	}
}

// GET /stats gives the overview's counts; GET /things sorts and totals.
func TestStatsAndThingListSortTotal(t *testing.T) {
	s := daemontest.Start(t)
	ctx := context.Background()
	secA := s.Device(t, "a")
	s.Thing(t, "b")
	s.Thing(t, "c")
	off := false
	if _, err := s.Registry().UpdateThing(ctx, "c", store.ThingPatch{Enabled: &off}); err != nil {
		t.Fatal(err)
	}
	a := s.V3(t, "a", secA)
	defer a.Disconnect(0)
	if _, err := s.Rules().Create(ctx, store.Rule{
		Name: "hook", SQL: "SELECT * FROM 'things/+/telemetry'", Enabled: true,
		Actions: json.RawMessage(`[{"type":"webhook","url":"http://127.0.0.1:1/","retries":0,"timeoutMs":500}]`),
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Rules().Create(ctx, store.Rule{Name: "idle", SQL: "SELECT * FROM 'nothing'", Enabled: false,
		Actions: json.RawMessage(`[{"type":"log"}]`)}); err != nil {
		t.Fatal(err)
	}
	a.Pub(t, "things/a/telemetry", 1, false, `{"temp":1}`)

	type stats struct {
		Things struct{ Total, Connected, Disabled int }
		Rules  struct {
			Total, Enabled  int
			Matched, Errors uint64
			Failing         []struct {
				Name            string
				Errors, Matched uint64
			}
		}
		Messages struct {
			InPerSecond, OutPerSecond float64
			Connections               int64
		}
	}
	var st stats
	daemontest.WaitFor(t, 10*time.Second, func() error {
		st = stats{}
		if code := apiGet(t, s, "/stats", &st); code != 200 {
			return fmt.Errorf("GET /stats: %d", code)
		}
		if st.Things.Connected != 1 || len(st.Rules.Failing) != 1 || st.Messages.Connections != 1 {
			return fmt.Errorf("stats %+v", st)
		}
		return nil
	})
	// a, b, c and the default things daemontest does not create: exactly 3.
	if st.Things.Total != 3 || st.Things.Disabled != 1 {
		t.Errorf("things %+v: want total 3, disabled 1", st.Things)
	}
	// The built-in telemetry rule, hook and idle.
	if st.Rules.Total != 3 || st.Rules.Enabled != 2 || st.Rules.Failing[0].Name != "hook" || st.Rules.Failing[0].Errors == 0 || st.Rules.Errors == 0 || st.Rules.Matched < 2 {
		t.Errorf("rules %+v", st.Rules)
	}
	if st.Messages.Connections != 1 {
		t.Errorf("messages %+v: want 1 connection", st.Messages)
	}
	var rule struct {
		Metrics struct{ Matched, Errors uint64 }
	}
	apiGet(t, s, "/rules/hook", &rule)
	if rule.Metrics.Matched != 1 || rule.Metrics.Errors == 0 {
		t.Errorf("GET /rules/hook metrics %+v", rule.Metrics)
	}
	if code := apiGet(t, s, "/stats?x=1", nil); code != 400 {
		t.Errorf("GET /stats?x=1: %d, want 400", code)
	}

	// The things list: a total of all matches, and sort= with its cursor.
	type list struct {
		Items      []apiThing
		NextCursor string
		Total      int
	}
	var l list
	apiGet(t, s, "/things?limit=1", &l)
	if l.Total != 3 || len(l.Items) != 1 || l.Items[0].Name != "a" || l.NextCursor == "" {
		t.Errorf("GET /things?limit=1: %+v", l)
	}
	var names []string
	cursor := ""
	for range 5 {
		l = list{}
		apiGet(t, s, "/things?sort=-lastSeen&limit=1&cursor="+cursor, &l)
		for _, th := range l.Items {
			names = append(names, th.Name)
		}
		if cursor = l.NextCursor; cursor == "" {
			break
		}
	}
	// a was seen (connected); b and c never: by name, descending.
	if got := strings.Join(names, ","); got != "a,c,b" {
		t.Errorf("sort=-lastSeen walked %s, want a,c,b", got)
	}
	l = list{}
	apiGet(t, s, "/things?sort=-name&connected=false", &l)
	if l.Total != 2 || len(l.Items) != 2 || l.Items[0].Name != "c" {
		t.Errorf("sort=-name&connected=false: %+v", l)
	}
	if code := apiGet(t, s, "/things?sort=size", nil); code != 400 {
		t.Errorf("sort=size: %d, want 400", code)
	}
}
