package dashboards_test

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
	"github.com/moteiot/mote/internal/registry"
)

const wait = 10 * time.Second

type answer struct {
	status int
	body   string
	header http.Header
}

func call(t *testing.T, s *daemontest.Server, token, method, path, body string, header ...string) answer {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, s.API+"/api/v1"+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, string(b), resp.Header}
}

func field(t *testing.T, a answer) string {
	t.Helper()
	var p struct {
		Field string `json:"field"`
	}
	if err := json.Unmarshal([]byte(a.body), &p); err != nil {
		t.Fatalf("problem %q: %v", a.body, err)
	}
	return p.Field
}

const board = `{"name": "plant", "title": "Plant", "widgets": [
 {"id": "temps", "type": "timeseries", "grid": {"x": 0, "y": 0, "w": 8, "h": 4}, "things": ["dev1", "dev2"], "keys": ["temp"], "window": "1h"},
 {"id": "now", "type": "latest", "grid": {"x": 8, "y": 0, "w": 4, "h": 4}, "things": ["dev1", "dev2"], "keys": ["temp"]}]}`

// TestDashboardAPI: create, validation errors with their paths, a huge
// document, a viewer's write, optimistic concurrency (412), the limit on
// dashboards; the stats history fed by a real device; and a restart that
// keeps both (one daemon for all, to keep the package fast).
func TestDashboardAPI(t *testing.T) {
	s := daemontest.Start(t, func(c *config.Config) {
		c.MaxDashboards = 2
		c.DashboardMaxSize = 4096
		c.DashboardMaxWidgets = 5
		c.StatsHistoryInterval = 100 * time.Millisecond
	})
	ctx := context.Background()
	_, viewer, err := s.Registry().CreateToken(ctx, "viewer", registry.RoleViewer, nil)
	if err != nil {
		t.Fatal(err)
	}
	admin := s.Token

	a := call(t, s, admin, "POST", "/dashboards", board)
	if a.status != http.StatusCreated || a.header.Get("ETag") != `"1"` || a.header.Get("Location") != "/api/v1/dashboards/plant" {
		t.Fatalf("create: %d %v %s", a.status, a.header, a.body)
	}
	var d struct {
		Name    string `json:"name"`
		Version int64  `json:"version"`
		Widgets []struct {
			ID     string   `json:"id"`
			Things []string `json:"things"`
		} `json:"widgets"`
	}
	if err := json.Unmarshal([]byte(a.body), &d); err != nil || d.Version != 1 || len(d.Widgets) != 2 || d.Widgets[0].Things[1] != "dev2" {
		t.Fatalf("created %s (%v)", a.body, err)
	}

	// Validation errors name the JSON path.
	for _, c := range []struct{ body, field string }{
		{`{"name": "x", "widgets": [{"id": "a", "type": "alarms", "grid": {"x": 0, "y": 0, "w": 1, "h": 1, "z": 3}}]}`, "widgets[0].grid.z"},
		{`{"name": "x", "widgets": [{"id": "a", "type": "alarms", "grid": {"x": 0, "y": 0, "w": 1, "h": 1}}, {"id": "b", "type": "pie", "grid": {"x": 0, "y": 0, "w": 1, "h": 1}}]}`, "widgets[1].type"},
		{`{"name": "x", "widgets": [{"id": "a", "type": "alarms", "grid": {"x": 6, "y": 0, "w": 7, "h": 1}}]}`, "widgets[0].grid.w"},
		{`{"name": "x", "widgets": [], "owner": "eve"}`, "owner"},
		{`{"name": "x", "widgets": [` + strings.Repeat(`{"id": "a", "type": "alarms", "grid": {"x": 0, "y": 0, "w": 1, "h": 1}},`, 5) + `{"id": "f", "type": "alarms", "grid": {"x": 0, "y": 0, "w": 1, "h": 1}}]}`, "widgets"},
	} {
		a := call(t, s, admin, "POST", "/dashboards", c.body)
		if a.status != http.StatusBadRequest || field(t, a) != c.field {
			t.Errorf("POST %.80s: %d %s; want 400 about %s", c.body, a.status, a.body, c.field)
		}
	}
	// A document beyond --dashboard-max-size: 413, whether it says its
	// length or streams it.
	huge := `{"name": "x", "title": "` + strings.Repeat("a", 5000) + `", "widgets": []}`
	if a := call(t, s, admin, "POST", "/dashboards", huge); a.status != http.StatusRequestEntityTooLarge {
		t.Errorf("huge document: %d %s; want 413", a.status, a.body)
	}
	req, _ := http.NewRequest("POST", s.API+"/api/v1/dashboards", io.MultiReader(strings.NewReader(huge)))
	req.Header.Set("Authorization", "Bearer "+admin)
	req.Header.Set("Content-Type", "application/json")
	req.ContentLength = -1
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("huge chunked document: %v %v; want 413", resp, err)
	} else {
		resp.Body.Close()
	}

	// A viewer reads but does not write.
	if a := call(t, s, viewer, "GET", "/dashboards/plant", ""); a.status != http.StatusOK || a.header.Get("ETag") != `"1"` {
		t.Errorf("viewer GET: %d %s", a.status, a.body)
	}
	for _, m := range []string{"POST", "PUT", "DELETE"} {
		path, body := "/dashboards/plant", board
		if m == "POST" {
			path, body = "/dashboards", strings.Replace(board, `"plant"`, `"mine"`, 1)
		}
		if m == "DELETE" {
			body = ""
		}
		if a := call(t, s, viewer, m, path, body); a.status != http.StatusForbidden {
			t.Errorf("viewer %s: %d %s; want 403", m, a.status, a.body)
		}
	}

	// Optimistic concurrency: two editors at version 1.
	edited := strings.Replace(board, `"Plant"`, `"Edited"`, 1)
	if a := call(t, s, admin, "PUT", "/dashboards/plant", edited, "If-Match", `"1"`); a.status != http.StatusOK || a.header.Get("ETag") != `"2"` {
		t.Fatalf("PUT If-Match 1: %d %v %s", a.status, a.header, a.body)
	}
	if a := call(t, s, admin, "PUT", "/dashboards/plant", board, "If-Match", `"1"`); a.status != http.StatusPreconditionFailed {
		t.Errorf("second PUT If-Match 1: %d %s; want 412", a.status, a.body)
	}
	if a := call(t, s, admin, "PUT", "/dashboards/plant", strings.Replace(board, `"name": "plant"`, `"name": "plant", "version": 1`, 1)); a.status != http.StatusPreconditionFailed {
		t.Errorf("PUT with version 1 in the body: %d %s; want 412", a.status, a.body)
	}
	if a := call(t, s, admin, "DELETE", "/dashboards/plant", "", "If-Match", `"1"`); a.status != http.StatusPreconditionFailed {
		t.Errorf("DELETE If-Match 1: %d %s; want 412", a.status, a.body)
	}
	if a := call(t, s, admin, "PUT", "/dashboards/plant", board, "If-Match", `soon`); a.status != http.StatusBadRequest || field(t, a) != "If-Match" {
		t.Errorf("PUT If-Match soon: %d %s; want 400", a.status, a.body)
	}
	if a := call(t, s, admin, "PUT", "/dashboards/plant", strings.Replace(board, `"plant"`, `"other"`, 1)); a.status != http.StatusBadRequest || field(t, a) != "name" {
		t.Errorf("PUT renaming: %d %s; want 400 about name", a.status, a.body)
	}
	if a := call(t, s, admin, "GET", "/dashboards/plant", ""); !strings.Contains(a.body, `"title":"Edited"`) || a.header.Get("ETag") != `"2"` {
		t.Errorf("after the refused writes: %s %v; want the first edit, version 2", a.body, a.header)
	}
	if a := call(t, s, admin, "PUT", "/dashboards/nope", strings.Replace(board, `"plant"`, `"nope"`, 1)); a.status != http.StatusNotFound {
		t.Errorf("PUT a missing dashboard: %d; want 404", a.status)
	}

	// --max-dashboards 2.
	if a := call(t, s, admin, "POST", "/dashboards", `{"name": "second", "widgets": []}`); a.status != http.StatusCreated {
		t.Fatalf("second dashboard: %d %s", a.status, a.body)
	}
	if a := call(t, s, admin, "POST", "/dashboards", `{"name": "third", "widgets": []}`); a.status != http.StatusConflict || !strings.Contains(a.body, "max-dashboards") {
		t.Errorf("third dashboard: %d %s; want 409 naming the setting", a.status, a.body)
	}
	if a := call(t, s, admin, "POST", "/dashboards", `{"name": "second", "widgets": []}`); a.status != http.StatusConflict {
		t.Errorf("duplicate: %d %s; want 409", a.status, a.body)
	}
	a = call(t, s, viewer, "GET", "/dashboards?limit=1", "")
	var list struct {
		Items []struct {
			Name    string `json:"name"`
			Widgets int    `json:"widgets"`
		} `json:"items"`
		NextCursor string `json:"nextCursor"`
	}
	if err := json.Unmarshal([]byte(a.body), &list); err != nil || len(list.Items) != 1 || list.Items[0].Name != "plant" || list.Items[0].Widgets != 2 || list.NextCursor == "" {
		t.Errorf("list limit 1: %s", a.body)
	}
	resp, err := http.Get(s.API + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	mb, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`mote_dashboards_refused_total{reason="stale"} 3`, `mote_dashboards_refused_total{reason="limit"} 1`, `mote_dashboards_refused_total{reason="too_large"} 2`} {
		if !strings.Contains(string(mb), want) {
			t.Errorf("metrics lack %s", want)
		}
	}

	n := checkHistory(t, s)

	s.Restart(t)
	a = call(t, s, admin, "GET", "/stats/history?window=24h", "")
	var after history
	if err := json.Unmarshal([]byte(a.body), &after); err != nil || len(after.Points) < n {
		t.Errorf("history after a restart: %d points (%v); want at least the %d before", len(after.Points), err, n)
	}
	if a := call(t, s, admin, "GET", "/dashboards/plant", ""); a.status != http.StatusOK || !strings.Contains(a.body, `"title":"Edited"`) {
		t.Errorf("after a restart: %d %s", a.status, a.body)
	}
	if a := call(t, s, admin, "DELETE", "/dashboards/plant", "", "If-Match", `"2"`); a.status != http.StatusNoContent {
		t.Errorf("DELETE If-Match 2: %d %s", a.status, a.body)
	}
	if a := call(t, s, admin, "GET", "/dashboards/plant", ""); a.status != http.StatusNotFound {
		t.Errorf("after delete: %d", a.status)
	}
}

type history struct {
	Window string `json:"window"`
	Points []struct {
		Time              time.Time `json:"time"`
		Messages          int64     `json:"messages"`
		MessagesPerSecond float64   `json:"messagesPerSecond"`
		Connected         int       `json:"connected"`
		ActiveAlarms      int       `json:"activeAlarms"`
	} `json:"points"`
}

// checkHistory: a real device's connection and messages show in the
// history; it returns the number of points.
func checkHistory(t *testing.T, s *daemontest.Server) int {
	t.Helper()
	dev := s.V5(t, "dev1", s.Device(t, "dev1"))
	for i := range 5 {
		if rc := dev.Pub(t, "things/dev1/telemetry", 1, false, fmt.Sprintf(`{"temp": %d}`, i)); rc >= 0x80 {
			t.Fatalf("publish: reason %#x", rc)
		}
	}
	var h history
	daemontest.WaitFor(t, wait, func() error {
		a := call(t, s, s.Token, "GET", "/stats/history?window=1h", "")
		if a.status != http.StatusOK {
			return fmt.Errorf("history: %d %s", a.status, a.body)
		}
		h = history{}
		if err := json.Unmarshal([]byte(a.body), &h); err != nil {
			return err
		}
		var msgs int64
		connected := false
		for _, p := range h.Points {
			msgs += p.Messages
			connected = connected || p.Connected == 1
		}
		if msgs < 5 || !connected {
			return fmt.Errorf("history %d points, %d messages, connected seen %v; want 5 messages and dev1 connected", len(h.Points), msgs, connected)
		}
		return nil
	})
	if h.Window != "1h" {
		t.Errorf("window = %q", h.Window)
	}
	for _, q := range []string{"window=7d", "window=1h&window=24h", "from=0"} {
		if a := call(t, s, s.Token, "GET", "/stats/history?"+q, ""); a.status != http.StatusBadRequest {
			t.Errorf("history?%s: %d; want 400", q, a.status)
		}
	}
	return len(h.Points)
}
