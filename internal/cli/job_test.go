package cli_test

import (
	"strings"
	"testing"

	"github.com/moteiot/mote/internal/daemontest"
)

func TestJobCommands(t *testing.T) {
	t.Parallel()
	s := daemontest.Start(t)
	s.Thing(t, "a")
	s.Thing(t, "b")
	mote := func(args ...string) (string, string, int) {
		t.Helper()
		return run(t, append([]string{"--server", s.API, "--token", s.Token}, args...)...)
	}
	out, errOut, code := mote("-o", "json", "job", "create", "j1", "--document", `{"op":"reboot"}`, "--things", "a,b", "--max-per-minute", "60")
	if code != 0 {
		t.Fatalf("create: exit %d %s %s", code, out, errOut)
	}
	j := decode[map[string]any](t, out)
	if j["jobId"] != "j1" || j["status"] != "IN_PROGRESS" {
		t.Fatalf("create: %s", out)
	}
	out, _, code = mote("job", "get", "j1")
	if code != 0 || !strings.Contains(out, "IN_PROGRESS") || !strings.Contains(out, "maximumPerMinute") {
		t.Errorf("get: exit %d %s", code, out)
	}
	out, _, code = mote("job", "list")
	if code != 0 || !strings.Contains(out, "j1") {
		t.Errorf("list: exit %d %s", code, out)
	}
	out, _, code = mote("job", "executions", "j1")
	if code != 0 || !strings.Contains(out, "a") || !strings.Contains(out, "THING") {
		t.Errorf("executions: exit %d %s", code, out)
	}
	out, _, code = mote("job", "thing", "b")
	if code != 0 || !strings.Contains(out, "j1") {
		t.Errorf("thing: exit %d %s", code, out)
	}
	_, errOut, code = mote("job", "create", "j2", "--document", `{}`, "--things", "nosuch")
	if code != 2 || !strings.Contains(errOut, "nosuch") {
		t.Errorf("create over a missing thing: exit %d %s; want 2", code, errOut)
	}
	_, errOut, code = mote("job", "delete", "j1")
	if code != 4 || !strings.Contains(errOut, "force") {
		t.Errorf("delete in progress: exit %d %s; want 4", code, errOut)
	}
	out, _, code = mote("job", "cancel", "j1", "--force", "--comment", "enough")
	if code != 0 || !strings.Contains(out, "CANCELED") || !strings.Contains(out, "enough") {
		t.Errorf("cancel: exit %d %s", code, out)
	}
	if out, errOut, code = mote("job", "delete", "j1"); code != 0 {
		t.Errorf("delete: exit %d %s %s", code, out, errOut)
	}
}
