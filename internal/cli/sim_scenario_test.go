package cli_test

import (
	"context"
	"strings"
	"testing"

	"github.com/moteiot/mote/internal/apiclient"
	"github.com/moteiot/mote/internal/cli"
	"github.com/moteiot/mote/internal/daemontest"
)

// TestSimScenario: mote sim --scenario creates the rule and the alarm is
// there when the run ends; a scenario it does not know is a usage error.
func TestSimScenario(t *testing.T) {
	s := daemontest.Start(t)
	global := []string{"--server", s.API, "--token", s.Token}
	if _, errOut, code := run(t, append(global, "sim", "--scenario", "meteor")...); code != cli.ExitUsage || !strings.Contains(errOut, "geofence, anomaly, silence, overheat") {
		t.Fatalf("mote sim --scenario meteor = %d, %s; want a usage error listing the scenarios", code, errOut)
	}
	out, errOut, code := run(t, append(global, "sim", "--devices", "2", "--rate", "10", "--scenario", "overheat", "--scenario-speed", "10", "--duration", "6s")...)
	if code != cli.ExitOK {
		t.Fatalf("mote sim --scenario overheat = %d; stderr:\n%s", code, errOut)
	}
	if !strings.Contains(out, `Scenario overheat: created analytics rule sim-overheat; sim-0001 will raise a "overheat" alarm.`) {
		t.Errorf("output:\n%s", out)
	}
	c := apiclient.New(s.API, s.Token)
	list, _, err := c.ListAlarms(context.Background(), apiclient.AlarmFilter{Thing: "sim-0001", Type: "overheat"}, apiclient.ListOptions{})
	if err != nil || len(list) != 1 || list[0].Severity != "critical" {
		t.Fatalf("overheat alarms of sim-0001 = %+v, %v; want one critical", list, err)
	}
}
