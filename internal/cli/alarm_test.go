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
