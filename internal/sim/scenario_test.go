package sim_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/apiclient"
	"github.com/moteiot/mote/internal/daemontest"
	"github.com/moteiot/mote/internal/sim"
)

// TestScenarios runs every scenario, time-scaled, against one daemon: each
// on a type of its own with two devices; the scenario's rule is created,
// and its alarm appears over the API for the driven device, not the other.
func TestScenarios(t *testing.T) {
	s := daemontest.Start(t)
	c := apiclient.New(s.API, s.Token)
	for _, name := range sim.Scenarios {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			const rate = 10
			ids, _, err := sim.Provision(ctx, c, sim.ProvisionOptions{Devices: 2, Prefix: name, Type: "sensor-" + name, Group: "sim-" + name, Rate: rate})
			if err != nil {
				t.Fatal(err)
			}
			if y, err := c.GetType(ctx, "sensor-"+name); err != nil || !strings.Contains(string(y.Model), `"°C"`) || !strings.Contains(string(y.Model), `"interval":"1s"`) {
				t.Fatalf("type sensor-%s = %s, %v; want the sensor model (units, 1s interval)", name, y.Model, err)
			}
			sc, err := sim.NewScenario(name, 10, rate, ids[0])
			if err != nil {
				t.Fatal(err)
			}
			// Each scenario's rule name is its own: make them distinct per
			// type by creating the rule under the type.
			if created, err := sc.EnsureRule(ctx, c, "sensor-"+name); err != nil || !created {
				t.Fatalf("EnsureRule = %v, %v; want created", created, err)
			}
			if created, err := sc.EnsureRule(ctx, c, "sensor-"+name); err != nil || created {
				t.Fatalf("EnsureRule again = %v, %v; want it kept", created, err)
			}
			f, err := sim.NewFleet(ids, sim.Options{MQTTAddr: s.MQTT, Rate: rate, QoS: 1, Scenario: sc})
			if err != nil {
				t.Fatal(err)
			}
			runCtx, cancel := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() { done <- f.Run(runCtx) }()
			defer func() {
				cancel()
				<-done
			}()
			start := time.Now()
			daemontest.WaitFor(t, 30*time.Second, func() error {
				list, _, err := c.ListAlarms(ctx, apiclient.AlarmFilter{Thing: ids[0].Thing, Type: sc.AlarmType()}, apiclient.ListOptions{})
				if err != nil {
					return err
				}
				if len(list) == 0 {
					return fmt.Errorf("no %s alarm for %s yet (fleet %+v)", sc.AlarmType(), ids[0].Thing, f.Stats())
				}
				return nil
			})
			t.Logf("%s: alarm after %s", name, time.Since(start).Round(10*time.Millisecond))
			list, _, err := c.ListAlarms(ctx, apiclient.AlarmFilter{Thing: ids[1].Thing, Type: sc.AlarmType()}, apiclient.ListOptions{})
			if err != nil || len(list) != 0 {
				t.Errorf("alarms of the undriven device %s = %+v, %v; want none", ids[1].Thing, list, err)
			}
		})
	}
}

func TestScenarioRefused(t *testing.T) {
	if _, err := sim.NewScenario("meteor", 1, 1, sim.Identity{}); err == nil {
		t.Error("NewScenario(meteor) = nil error")
	}
	if _, err := sim.NewScenario("silence", 0.5, 1, sim.Identity{}); err == nil {
		t.Error("NewScenario(speed 0.5) = nil error")
	}
}
