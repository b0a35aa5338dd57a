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
