package cli_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestShadowCommands(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	s.ok(t, "thing", "create", "lamp")

	out := s.ok(t, "shadow", "update", "lamp", "--desired", `{"on": true, "level": 7}`, "--client-token", "cli-1")
	acc := decode[map[string]any](t, out)
	if acc["version"] != 1.0 || acc["clientToken"] != "cli-1" {
		t.Errorf("update: %s", out)
	}
	s.ok(t, "shadow", "update", "lamp", "--reported", `{"on": false, "level": 7}`)
	out = s.ok(t, "shadow", "get", "lamp")
	doc := decode[map[string]any](t, out)
	delta, _ := doc["state"].(map[string]any)["delta"].(map[string]any)
	if len(delta) != 1 || delta["on"] != true || doc["version"] != 2.0 {
		t.Errorf("get: %s", out)
	}

	// Version conflict: exit 4 with the server's message.
	_, errOut, code := s.run(t, "shadow", "update", "lamp", "--reported", `{"on": true}`, "--version", "1")
	if code != 4 || !strings.Contains(errOut, "Version conflict") {
		t.Errorf("conflict: exit %d, %s", code, errOut)
	}

	// Named shadow from a file, and from stdin.
	f := filepath.Join(t.TempDir(), "u.json")
	if err := os.WriteFile(f, []byte(`{"state":{"reported":{"fw":"1.2"}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	s.ok(t, "shadow", "update", "lamp", "--name", "firmware", "--file", f)
	stdout, stderr, code := runIn(t, `{"state":{"desired":{"fw":"1.3"}}}`, "--server", s.url, "--token", s.token,
		"shadow", "update", "lamp", "--name", "firmware", "--file", "-")
	if code != 0 || !strings.Contains(stdout, `"version": 2`) {
		t.Errorf("update from stdin: exit %d %s %s", code, stdout, stderr)
	}

	out = s.ok(t, "shadow", "list", "lamp")
	if !strings.Contains(out, "classic") || !strings.Contains(out, "firmware") {
		t.Errorf("list: %s", out)
	}
	out = s.ok(t, "-o", "json", "shadow", "list", "lamp")
	if list := decode[[]map[string]any](t, out); len(list) != 2 {
		t.Errorf("list json: %s", out)
	}

	out = s.ok(t, "shadow", "delete", "lamp", "--name", "firmware")
	if !strings.Contains(out, "deleted shadow firmware of lamp (version 2)") {
		t.Errorf("delete: %s", out)
	}
	_, errOut, code = s.run(t, "shadow", "get", "lamp", "--name", "firmware")
	if code != 3 || !strings.Contains(errOut, "No shadow exists") {
		t.Errorf("get deleted: exit %d %s", code, errOut)
	}

	// Usage errors.
	for _, args := range [][]string{
		{"shadow", "update", "lamp"},
		{"shadow", "update", "lamp", "--file", f, "--desired", "{}"},
		{"shadow", "update", "lamp", "--desired", "[1]"},
		{"shadow", "update", "lamp", "--desired", "{"},
		{"shadow", "get"},
	} {
		if _, _, code := s.run(t, args...); code != 2 {
			t.Errorf("mote %s: exit %d; want 2", strings.Join(args, " "), code)
		}
	}
	if _, _, code := s.run(t, "shadow", "get", "nobody"); code != 3 {
		t.Errorf("unknown thing: exit %d; want 3", code)
	}
}
