package cli_test

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moteiot/mote/internal/daemontest"
)

// TestAuditCommands: changes made with the CLI are in the audit log, which
// survives a restart; list filters, export writes NDJSON to a 0600 file.
func TestAuditCommands(t *testing.T) {
	t.Parallel()
	s := daemontest.Start(t)
	mote := func(args ...string) (string, string, int) {
		t.Helper()
		return run(t, append([]string{"--server", s.API, "--token", s.Token}, args...)...)
	}
	if out, errOut, code := mote("thing", "create", "pump-1"); code != 0 {
		t.Fatalf("thing create: exit %d %s %s", code, out, errOut)
	}
	if out, errOut, code := mote("thing", "delete", "pump-1"); code != 0 {
		t.Fatalf("thing delete: exit %d %s %s", code, out, errOut)
	}
	s.Restart(t)
	mote = func(args ...string) (string, string, int) {
		t.Helper()
		return run(t, append([]string{"--server", s.API, "--token", s.Token}, args...)...)
	}
	out, errOut, code := mote("audit", "list", "--target", "thing:pump-1")
	if code != 0 || !strings.Contains(out, "thing.create") || !strings.Contains(out, "thing.delete") || !strings.Contains(out, "ACTION") {
		t.Fatalf("audit list after a restart: exit %d %s %s", code, out, errOut)
	}
	out, _, code = mote("-o", "json", "audit", "list", "--action", "thing.delete", "--since", "1h")
	if list := decode[[]map[string]any](t, out); code != 0 || len(list) != 1 || list[0]["status"] != float64(204) {
		t.Errorf("audit list --action thing.delete: exit %d %s", code, out)
	}
	file := filepath.Join(t.TempDir(), "audit.ndjson")
	if _, errOut, code := mote("audit", "export", "--action", "thing.*", "--out", file); code != 0 {
		t.Fatalf("audit export: exit %d %s", code, errOut)
	}
	fi, err := os.Stat(file)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("export file: %v, mode %v; want 0600", err, fi.Mode())
	}
	f, _ := os.Open(file)
	defer f.Close()
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		var e map[string]any
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("export line %d: %v", n+1, err)
		}
		n++
	}
	if n != 2 {
		t.Errorf("export has %d lines; want 2", n)
	}
	if _, _, code := mote("audit", "list", "--since", "last tuesday"); code != 2 {
		t.Errorf("bad --since: exit %d; want 2", code)
	}
}

// TestThingImportCommand: mote thing import with errors (atomic: exit 4,
// nothing created), bestEffort, and secrets written once to a 0600 file.
func TestThingImportCommand(t *testing.T) {
	t.Parallel()
	s := daemontest.Start(t)
	mote := func(args ...string) (string, string, int) {
		t.Helper()
		return run(t, append([]string{"--server", s.API, "--token", s.Token}, args...)...)
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "devices.csv")
	os.WriteFile(file, []byte("name,attributes.site,credential\nd1,berlin,secret\nd2,paris,\nbad name,x,\n"), 0o644)
	out, errOut, code := mote("thing", "import", file)
	if code != 4 || !strings.Contains(out, "bad name") || !strings.Contains(out, "nothing") {
		t.Fatalf("atomic import with an error: exit %d %s %s; want 4", code, out, errOut)
	}
	if _, err := s.Registry().GetThing(t.Context(), "d1"); err == nil {
		t.Fatal("d1 was created by an atomic import with errors")
	}
	secrets := filepath.Join(dir, "secrets.csv")
	out, errOut, code = mote("thing", "import", file, "--mode", "bestEffort", "--out", secrets)
	if code != 4 || !strings.Contains(out, "2 created") {
		t.Fatalf("bestEffort import: exit %d %s %s", code, out, errOut)
	}
	fi, err := os.Stat(secrets)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("secrets file: %v %v; want mode 0600", err, fi)
	}
	b, _ := os.ReadFile(secrets)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 2 || lines[0] != "thing,credentialId,secret" || !strings.HasPrefix(lines[1], "d1,cred") {
		t.Fatalf("secrets file = %q", b)
	}
	if strings.Contains(out, strings.Split(lines[1], ",")[2]) {
		t.Error("the secret was printed although --out was given")
	}
	if th, err := s.Registry().GetThing(t.Context(), "d2"); err != nil || th.Attributes["site"] != "paris" {
		t.Errorf("d2 = %+v, %v", th, err)
	}
	if _, _, code := mote("thing", "import", file, "--out", secrets); code != 2 {
		t.Errorf("--out onto an existing file: exit %d; want 2 (never overwrite secrets)", code)
	}
	if _, _, code := mote("thing", "import", filepath.Join(dir, "x.txt")); code != 2 {
		t.Errorf("unknown format: exit %d; want 2", code)
	}
}
