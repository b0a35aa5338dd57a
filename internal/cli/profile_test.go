package cli_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/daemontest"
	"github.com/moteiot/mote/internal/store"
)

func TestProfileCommands(t *testing.T) {
	t.Parallel()
	s := daemontest.Start(t)
	if _, err := s.Registry().CreateThing(t.Context(), store.Thing{Name: "a", Enabled: true, Attributes: map[string]string{"site": "ams"}}); err != nil {
		t.Fatal(err)
	}
	mote := func(args ...string) (string, string, int) {
		t.Helper()
		return run(t, append([]string{"--server", s.API, "--token", s.Token}, args...)...)
	}
	out, errOut, code := mote("-o", "json", "profile", "create", "p1", "--desired", `{"interval":60}`, "--query", "attributes.site = 'ams'", "--priority", "3")
	if code != 0 {
		t.Fatalf("create: exit %d %s %s", code, out, errOut)
	}
	p := decode[map[string]any](t, out)
	if p["name"] != "p1" || p["priority"] != float64(3) {
		t.Fatalf("create: %s", out)
	}
	out, _, code = mote("profile", "get", "p1")
	if code != 0 || !strings.Contains(out, "attributes.site") || !strings.Contains(out, `"interval":60`) {
		t.Errorf("get: exit %d %s", code, out)
	}
	out, _, code = mote("profile", "list")
	if code != 0 || !strings.Contains(out, "p1") || !strings.Contains(out, "PRIORITY") {
		t.Errorf("list: exit %d %s", code, out)
	}
	daemontest.WaitFor(t, 10*time.Second, func() error {
		out, _, _ = mote("profile", "compliance", "p1")
		if !strings.Contains(out, "1 non-compliant") || !strings.Contains(out, "interval: 60 / null") {
			return fmt.Errorf("compliance: %s", out)
		}
		return nil
	})
	out, _, code = mote("profile", "update", "p1", "--desired", `{"interval":30}`, "--group", "nosuch")
	if code == 0 || out != "" {
		t.Errorf("update to a missing group: exit %d %s", code, out)
	}
	_, errOut, code = mote("profile", "create", "p2", "--desired", `{"a":1}`)
	if code != 2 || !strings.Contains(errOut, "--group or --query") {
		t.Errorf("create without a target: exit %d %s; want 2", code, errOut)
	}
	if out, errOut, code = mote("profile", "delete", "p1"); code != 0 {
		t.Errorf("delete: exit %d %s %s", code, out, errOut)
	}
	if _, _, code = mote("profile", "get", "p1"); code == 0 {
		t.Error("get after delete succeeded")
	}
}
