package e2e

import (
	"os"
	"strings"
	"testing"
	"time"
)

// The simulator as a user runs it: `mote sim` against `mote serve`, live
// devices, then Ctrl-C (SIGINT) stops it cleanly with a summary.
func TestSimulator(t *testing.T) {
	s := startServer(t, t.TempDir(), true)
	c := cli{server: s.api, token: s.token}
	env := baseEnv("MOTE_SERVER="+s.api, "MOTE_TOKEN="+s.token)

	sim := startProc(t, time.Minute, env, moteBin, "sim", "--devices", "3", "--rate", "5")
	if out, ok := sim.waitOutput(bannerTimeout, func(out string) bool { return strings.Contains(out, "All 3 devices connected") }); !ok {
		t.Fatalf("mote sim did not connect its devices\nstdout:\n%s\nstderr:\n%s", out, sim.stderr)
	}
	var things []struct {
		Name      string `json:"name"`
		Type      string `json:"type"`
		Connected bool   `json:"connected"`
	}
	simWaitFor(t, func() bool {
		c.okJSON(t, &things, "thing", "list", "--type", "simulated-sensor", "--connected", "true")
		return len(things) == 3
	})
	if err := sim.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	if code := sim.wait(t, 20*time.Second); code != 0 {
		t.Fatalf("mote sim after SIGINT exited %d\nstdout:\n%s\nstderr:\n%s", code, sim.stdout, sim.stderr)
	}
	if out := sim.stdout.String(); !strings.Contains(out, "Stopped after") || !strings.Contains(out, " 0 errors.") {
		t.Fatalf("mote sim summary:\n%s\nstderr:\n%s", out, sim.stderr)
	}
	simWaitFor(t, func() bool {
		c.okJSON(t, &things, "thing", "list", "--type", "simulated-sensor", "--connected", "true")
		return len(things) == 0
	})

	// Over MQTTS, trusting the server's CA; the same things again.
	var sum struct {
		Reused int    `json:"reused"`
		MQTT   string `json:"mqtt"`
		Sent   int64  `json:"sent"`
		Errors int64  `json:"errors"`
	}
	c.okJSON(t, &sum, "sim", "--devices", "3", "--tls", "--rate", "20", "--duration", "2s")
	if sum.Reused != 3 || sum.MQTT != s.mqtts || sum.Errors != 0 {
		t.Fatalf("mote sim --tls: %+v; want 3 reused, mqtt %s, no errors", sum, s.mqtts)
	}
	var latest []struct {
		Key string `json:"key"`
	}
	c.okJSON(t, &latest, "telemetry", "latest", "sim-0001")
	keys := []string{}
	for _, p := range latest {
		keys = append(keys, p.Key)
	}
	if got := strings.Join(keys, ","); !strings.Contains(got, "battery") || !strings.Contains(got, "temperature") || !strings.Contains(got, "lat") {
		t.Fatalf("latest telemetry keys of sim-0001: %s", got)
	}
}

// simWaitFor polls cond every 50 ms for up to 10 s.
func simWaitFor(t *testing.T, cond func() bool) {
	t.Helper()
	if !poll(10*time.Second, 50*time.Millisecond, cond) {
		t.Fatal("condition not met within 10s")
	}
}
