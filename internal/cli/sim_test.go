package cli_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/moteiot/mote/internal/apiclient"
	"github.com/moteiot/mote/internal/cli"
	"github.com/moteiot/mote/internal/daemontest"
)

func TestSim(t *testing.T) {
	s := daemontest.Start(t)
	global := []string{"--server", s.API, "--token", s.Token}

	// The MQTT address comes from the server; the run ends after
	// --duration with a summary.
	out, errOut, code := run(t, append(global, "sim", "--devices", "3", "--rate", "50", "--duration", "3s", "-o", "json")...)
	if code != cli.ExitOK {
		t.Fatalf("mote sim = %d; stderr:\n%s", code, errOut)
	}
	var sum struct {
		Created, Reused   int
		MQTT              string
		Devices           int
		Connected         int
		Sent, Errors      int64
		MessagesPerSecond float64
	}
	if err := json.Unmarshal([]byte(out), &sum); err != nil {
		t.Fatalf("summary %q: %v", out, err)
	}
	if sum.Created != 3 || sum.Devices != 3 || sum.Connected != 0 || sum.Sent == 0 || sum.Errors != 0 || sum.MQTT != s.MQTT {
		t.Fatalf("summary = %+v; want 3 devices created and stopped, some sent, no errors, mqtt %s", sum, s.MQTT)
	}
	if !strings.Contains(errOut, "Provisioning 3 devices (sim-0001 .. sim-0003)") {
		t.Fatalf("stderr with -o json:\n%s", errOut)
	}
	pts, err := apiclient.New(s.API, s.Token).TelemetryLatest(context.Background(), "sim-0003", []string{"temperature"})
	if err != nil || len(pts) != 1 {
		t.Fatalf("latest temperature of sim-0003: %v, %v", pts, err)
	}

	// A second run reuses the things; the table output ends with a summary.
	out, errOut, code = run(t, append(global, "sim", "-n", "3", "--duration", "1s", "--mqtt", s.MQTT)...)
	if code != cli.ExitOK || !strings.Contains(out, "0 created, 3 reused (3 old secrets deleted) in ") || !strings.Contains(out, "Stopped after") {
		t.Fatalf("second mote sim = %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}

	s.Thing(t, "other-0001")
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"sim", "--rate", "0"}, cli.ExitUsage, "--rate must be between"},
		{[]string{"sim", "--qos", "2"}, cli.ExitUsage, "--qos must be 0 or 1"},
		{[]string{"sim", "--devices", "0"}, cli.ExitUsage, "--devices must be at least 1"},
		{[]string{"sim", "--mqtt", "a:b:c"}, cli.ExitUsage, "--mqtt must be host:port"},
		{[]string{"sim", "--prefix", "a/b"}, cli.ExitUsage, "does not make valid thing names"},
		{[]string{"sim", "--prefix", "other", "-n", "1"}, cli.ExitConflict, `thing "other-0001" exists but is not a simulated device`},
	} {
		_, errOut, code := run(t, append(global, tc.args...)...)
		if code != tc.code || !strings.Contains(errOut, tc.msg) {
			t.Errorf("mote %v = %d, %q; want %d, %q", tc.args, code, errOut, tc.code, tc.msg)
		}
	}
	if _, errOut, code := run(t, "--server", s.API, "sim"); code != cli.ExitAuth || !strings.Contains(errOut, "no API token") {
		t.Errorf("mote sim without a token = %d, %q", code, errOut)
	}
}
