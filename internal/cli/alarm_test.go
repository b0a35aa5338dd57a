package cli_test

import (
	"strings"
	"testing"

	"github.com/moteiot/mote/internal/daemontest"
)

func TestAlarmCommands(t *testing.T) {
	t.Parallel()
	s := daemontest.Start(t)
	s.Thing(t, "boiler")
	a, err := s.Alarms().Raise(t.Context(), "boiler", "overheat", "major", []byte(`{"t":90}`))
	if err != nil {
		t.Fatal(err)
	}
	mote := func(args ...string) (string, string, int) {
		t.Helper()
		return run(t, append([]string{"--server", s.API, "--token", s.Token}, args...)...)
	}
	out, errOut, code := mote("alarm", "list", "--status", "active")
	if code != 0 || !strings.Contains(out, a.ID) || !strings.Contains(out, "overheat") || !strings.Contains(out, "SEVERITY") {
		t.Fatalf("list: exit %d %s %s", code, out, errOut)
	}
	out, _, code = mote("alarm", "list", "--severity", "critical")
	if code != 0 || strings.Contains(out, a.ID) {
		t.Errorf("list --severity critical: exit %d %s; want no major alarm", code, out)
	}
	out, _, code = mote("-o", "json", "alarm", "get", a.ID)
	if code != 0 || decode[map[string]any](t, out)["status"] != "active" {
		t.Errorf("get: exit %d %s", code, out)
	}
	out, _, code = mote("alarm", "ack", a.ID)
	if code != 0 || !strings.Contains(out, "acknowledged") {
		t.Errorf("ack: exit %d %s", code, out)
	}
	_, errOut, code = mote("alarm", "ack", a.ID)
	if code != 4 || !strings.Contains(errOut, "acknowledged") {
		t.Errorf("ack twice: exit %d %s; want 4", code, errOut)
	}
	out, _, code = mote("alarm", "clear", a.ID)
	if code != 0 || !strings.Contains(out, "cleared") {
		t.Errorf("clear: exit %d %s", code, out)
	}
	_, _, code = mote("alarm", "get", "alm_nope")
	if code != 3 {
		t.Errorf("unknown alarm: exit %d; want 3", code)
	}
	_, _, code = mote("alarm", "list", "--status", "burning")
	if code != 2 {
		t.Errorf("bad status: exit %d; want 2", code)
	}
	a2, err := s.Alarms().Get(t.Context(), a.ID)
	if err != nil || a2.Status != "cleared" || a2.AckedAt == nil {
		t.Fatalf("after the CLI: %+v %v; want cleared after an ack", a2, err)
	}
}

func TestAnalyticsCommands(t *testing.T) {
	t.Parallel()
	s := daemontest.Start(t)
	mote := func(args ...string) (string, string, int) {
		t.Helper()
		return run(t, append([]string{"--server", s.API, "--token", s.Token}, args...)...)
	}
	out, errOut, code := mote("analytics", "create", "hot", "--kind", "threshold", "--config", `{"key":"t","above":80}`)
	if code != 0 || !strings.Contains(out, "every thing") {
		t.Fatalf("create: exit %d %s %s", code, out, errOut)
	}
	_, errOut, code = mote("analytics", "create", "bad", "--kind", "geofence", "--config",
		`{"fence":{"type":"Polygon","coordinates":[[[0,0],[1,1],[1,0],[0,1],[0,0]]]}}`)
	if code != 2 || !strings.Contains(errOut, "crosses itself") {
		t.Errorf("self-intersecting fence: exit %d %s; want 2", code, errOut)
	}
	out, _, code = mote("analytics", "update", "hot", "--kind", "silence", "--group", "g", "--config", `{"expectedInterval":"1m"}`)
	if code != 0 || !strings.Contains(out, "group g") || !strings.Contains(out, "silence") {
		t.Errorf("update: exit %d %s", code, out)
	}
	out, _, code = mote("analytics", "list")
	if code != 0 || !strings.Contains(out, "hot") || !strings.Contains(out, "KIND") {
		t.Errorf("list: exit %d %s", code, out)
	}
	if _, _, code = mote("analytics", "delete", "hot"); code != 0 {
		t.Errorf("delete: exit %d", code)
	}
	if _, _, code = mote("analytics", "get", "hot"); code != 3 {
		t.Errorf("get after delete: exit %d; want 3", code)
	}
}
