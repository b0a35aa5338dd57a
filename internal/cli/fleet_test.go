package cli_test

import (
	"strings"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/httpapi/wire"
)

// TestFleetQueryCommands: thing list --query, thing count, a dynamic
// group from group create --query and its members; a bad query exits 2
// with the error's line and column.
func TestFleetQueryCommands(t *testing.T) {
	s := newServer(t)
	s.ok(t, "thing", "create", "ams-1", "--attr", "site=ams")
	s.ok(t, "thing", "create", "ams-2", "--attr", "site=ams")
	s.ok(t, "thing", "create", "rtm-1", "--attr", "site=rtm")
	// The index follows the registry off the request path.
	deadline := time.Now().Add(10 * time.Second)
	for strings.TrimSpace(s.ok(t, "thing", "count", "--query", "name LIKE '*-1'")) != "2" {
		if time.Now().After(deadline) {
			t.Fatal("thing count never reached 2")
		}
		time.Sleep(20 * time.Millisecond)
	}
	things := decode[[]wire.Thing](t, s.ok(t, "thing", "list", "-o", "json", "--query", "attributes.site = 'ams'", "--limit", "1", "--all"))
	if len(things) != 2 || things[0].Name != "ams-1" || things[1].Name != "ams-2" {
		t.Errorf("thing list --query = %+v", things)
	}
	out := s.ok(t, "group", "create", "amsterdam", "--query", "attributes.site = 'ams'")
	if !strings.Contains(out, "attributes.site = 'ams'") {
		t.Errorf("group create output lacks the query:\n%s", out)
	}
	deadline = time.Now().Add(10 * time.Second)
	for {
		// A dynamic group's members are computed after its creation: until
		// then the server answers 503 and the CLI says to retry (exit 1).
		var members []wire.Thing
		out, errOut, code := s.run(t, "group", "members", "amsterdam", "-o", "json")
		switch {
		case code == 0:
			members = decode[[]wire.Thing](t, out)
		case !strings.Contains(errOut, "being computed; retry shortly"):
			t.Fatalf("mote group members amsterdam: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
		}
		if len(members) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("members = %+v; want ams-1 and ams-2", members)
		}
		time.Sleep(20 * time.Millisecond)
	}
	_, errOut, code := s.run(t, "thing", "list", "--query", "connected = 'yes'")
	if code != 2 || !strings.Contains(errOut, "at 1:13") {
		t.Errorf("bad query: exit %d, stderr %q; want 2 (a refused request) and the place", code, errOut)
	}
}
