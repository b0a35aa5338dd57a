package cli_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moteiot/mote/internal/daemontest"
)

func TestDashboardCommands(t *testing.T) {
	t.Parallel()
	s := daemontest.Start(t)
	mote := func(args ...string) (string, string, int) {
		t.Helper()
		return run(t, append([]string{"--server", s.API, "--token", s.Token}, args...)...)
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "plant.json")
	doc := `{"name": "plant", "title": "Plant floor", "widgets": [
	 {"id": "temps", "type": "timeseries", "grid": {"x": 0, "y": 0, "w": 8, "h": 4}, "things": ["dev1", "dev2"], "keys": ["temp"]}]}`
	if err := os.WriteFile(file, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := mote("dashboard", "create", "-f", file)
	if code != 0 || !strings.Contains(out, "Plant floor") || !strings.Contains(out, "temps") || !strings.Contains(out, "0,0 8×4") {
		t.Fatalf("create: exit %d %s %s", code, out, errOut)
	}
	out, _, code = mote("dashboard", "list")
	if code != 0 || !strings.Contains(out, "plant") || !strings.Contains(out, "WIDGETS") {
		t.Errorf("list: exit %d %s", code, out)
	}
	out, _, code = mote("-o", "json", "dashboard", "get", "plant")
	if code != 0 || decode[map[string]any](t, out)["version"] != float64(1) {
		t.Errorf("get: exit %d %s", code, out)
	}
	edited := strings.Replace(doc, "Plant floor", "Edited", 1)
	if err := os.WriteFile(file, []byte(edited), 0o600); err != nil {
		t.Fatal(err)
	}
	out, errOut, code = mote("dashboard", "update", "plant", "-f", file, "--if-version", "1")
	if code != 0 || !strings.Contains(out, "Edited") {
		t.Errorf("update --if-version 1: exit %d %s %s", code, out, errOut)
	}
	_, errOut, code = mote("dashboard", "update", "plant", "-f", file, "--if-version", "1")
	if code == 0 || !strings.Contains(errOut, "changed") {
		t.Errorf("stale update: exit %d %s; want a refusal", code, errOut)
	}
	_, errOut, code = mote("dashboard", "delete", "plant", "--if-version", "1")
	if code == 0 || !strings.Contains(errOut, "changed") {
		t.Errorf("stale delete: exit %d %s; want a refusal", code, errOut)
	}
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte(`{"name": "x", "widgets": [{"id": "a", "type": "pie", "grid": {"x": 0, "y": 0, "w": 1, "h": 1}}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	_, errOut, code = mote("dashboard", "create", "-f", bad)
	if code == 0 || !strings.Contains(errOut, "widgets[0].type") {
		t.Errorf("bad widget: exit %d %s; want the path in the error", code, errOut)
	}
	out, _, code = mote("dashboard", "delete", "plant", "--if-version", "2")
	if code != 0 || !strings.Contains(out, "Deleted") {
		t.Errorf("delete: exit %d %s", code, out)
	}
	if _, _, code = mote("dashboard", "get", "plant"); code != 3 {
		t.Errorf("get after delete: exit %d; want 3", code)
	}
}
