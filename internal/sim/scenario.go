package sim

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/moteiot/mote/internal/apiclient"
	"github.com/moteiot/mote/internal/core"
)

// Scenarios (mote sim --scenario): each creates the analytics rule of one
// detector for the simulator's type (if a rule of that name is absent) and
// drives the fleet's first device so that the detector trips within a
// minute at Speed 1; the other devices behave as usual.
const (
	ScenarioGeofence = "geofence" // the device drives out of the square around its site
	ScenarioAnomaly  = "anomaly"  // temperature spikes after the detector's warm-up
	ScenarioSilence  = "silence"  // the device stays connected but stops publishing
	ScenarioOverheat = "overheat" // temperature above the threshold for the duration
)

// Scenarios lists the scenario names.
var Scenarios = []string{ScenarioGeofence, ScenarioAnomaly, ScenarioSilence, ScenarioOverheat}

// Scenario timings at Speed 1.
const (
	scenarioTrigger  = 10 * time.Second // after the fleet starts
	overheatFor      = 20 * time.Second
	overheatAbove    = 70.0
	overheatTemp     = 80.0
	anomalyWarmup    = 20 // values
	anomalySpike     = 30.0
	anomalyEvery     = 5 // a spike every 5th message after the warm-up
	fenceHalfSideDeg = 0.15
	driveDegPerSec   = 0.01 // how fast the geofence device drives north
)

// Scenario drives a fleet into tripping one detector.
type Scenario struct {
	Name string
	// Speed scales the scenario's time (and the durations of its rule):
	// 1 is real time (an alarm within a minute); tests use more.
	Speed float64
	// Rate is the fleet's telemetry rate (messages per second per
	// device): the silence rule's expected interval follows it.
	Rate float64
	site Site // of the driven device
}

// NewScenario checks a scenario for the fleet whose first device is
// victim.
func NewScenario(name string, speed, rate float64, victim Identity) (*Scenario, error) {
	if !slices.Contains(Scenarios, name) {
		return nil, core.Invalid("scenario", "scenario must be one of %s, not %q", strings.Join(Scenarios, ", "), name)
	}
	if speed == 0 {
		speed = 1
	}
	if !(speed >= 1 && speed <= 1000) {
		return nil, core.Invalid("scenario-speed", "scenario speed must be from 1 to 1000, not %g", speed)
	}
	if rate == 0 {
		rate = DefaultRate
	}
	return &Scenario{Name: name, Speed: speed, Rate: rate, site: victim.Site}, nil
}

// RuleName is the name of the scenario's analytics rule.
func (s *Scenario) RuleName() string { return "sim-" + s.Name }

// AlarmType is the type of the alarm the scenario raises.
func (s *Scenario) AlarmType() string {
	switch s.Name {
	case ScenarioGeofence:
		return "geofence-exit"
	case ScenarioSilence:
		return "device-silent"
	}
	return s.Name
}

func (s *Scenario) scaled(d time.Duration) time.Duration { return time.Duration(float64(d) / s.Speed) }

// fence is a square around every site (a MultiPolygon): every device's
// path (at most ~7 km from its site) is inside, so only the driven device
// leaves it.
func (s *Scenario) fence() map[string]any {
	var polys [][][][]float64
	for _, site := range Sites {
		lat, lon := site.Lat, site.Lon
		dLat := fenceHalfSideDeg
		dLon := fenceHalfSideDeg / math.Max(math.Cos(lat*math.Pi/180), 0.1)
		ring := [][]float64{{lon - dLon, lat - dLat}, {lon + dLon, lat - dLat}, {lon + dLon, lat + dLat}, {lon - dLon, lat + dLat}, {lon - dLon, lat - dLat}}
		polys = append(polys, [][][]float64{ring})
	}
	return map[string]any{"type": "MultiPolygon", "coordinates": polys}
}

// Rule is the scenario's analytics rule for the thing type.
func (s *Scenario) Rule(thingType string) apiclient.AnalyticsRule {
	var kind string
	var cfg map[string]any
	switch s.Name {
	case ScenarioOverheat:
		kind = "threshold"
		cfg = map[string]any{"key": "temperature", "above": overheatAbove, "clearBelow": overheatAbove - 5,
			"for": s.scaled(overheatFor).String(), "severity": "critical"}
	case ScenarioAnomaly:
		kind = "anomaly"
		cfg = map[string]any{"key": "temperature", "warmup": anomalyWarmup, "sensitivity": 6}
	case ScenarioSilence:
		kind = "silence"
		// Three times the device's interval, at least 1s (the smallest
		// the detector takes).
		iv := max(time.Second, time.Duration(math.Ceil(2/s.Rate))*time.Second)
		cfg = map[string]any{"expectedInterval": iv.String(), "factor": 3}
	case ScenarioGeofence:
		kind = "geofence"
		cfg = map[string]any{"fence": s.fence(), "alarmOn": "exit"}
	}
	cfg["alarmType"] = s.AlarmType()
	b, _ := json.Marshal(cfg)
	on := true
	return apiclient.AnalyticsRule{Name: s.RuleName(), Kind: kind, ThingType: thingType, Config: b, Enabled: &on}
}

// EnsureRule creates the scenario's rule unless one of its name exists
// (then it is used as it is); created says which.
func (s *Scenario) EnsureRule(ctx context.Context, c *apiclient.Client, thingType string) (created bool, err error) {
	if _, err := c.GetAnalyticsRule(ctx, s.RuleName()); err == nil {
		return false, nil
	} else if !apiclient.IsNotFound(err) {
		return false, fmt.Errorf("get analytics rule %s: %w", s.RuleName(), err)
	}
	if _, err := c.CreateAnalyticsRule(ctx, s.Rule(thingType)); err != nil {
		if apiclient.KindOf(err) == core.KindConflict {
			return false, nil
		}
		return false, fmt.Errorf("create analytics rule %s: %w", s.RuleName(), err)
	}
	return true, nil
}

// apply changes the n-th reading (1-based) of the driven device, elapsed
// after the fleet started; false: do not publish it.
func (s *Scenario) apply(n int, elapsed time.Duration, r *Reading) bool {
	since := elapsed - s.scaled(scenarioTrigger)
	switch s.Name {
	case ScenarioOverheat:
		if since >= 0 {
			r.Temperature = overheatTemp + float64(n%3)
		}
	case ScenarioAnomaly:
		if n > anomalyWarmup+anomalyEvery && n%anomalyEvery == 0 {
			r.Temperature = round(r.Temperature+anomalySpike, 2)
		}
	case ScenarioSilence:
		return since < 0
	case ScenarioGeofence:
		if since >= 0 {
			// Drive north, out of the fence, in a few seconds.
			r.Lat = round(math.Min(r.Lat+driveDegPerSec*since.Seconds()*s.Speed, s.site.Lat+3*fenceHalfSideDeg), 6)
			r.Speed = round(driveDegPerSec*111_000, 2)
		}
	}
	return true
}
