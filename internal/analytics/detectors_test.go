package analytics

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/core"
)

var t0 = time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)

func mustParse(t testing.TB, kind, config string) Detector {
	t.Helper()
	d, _, err := Parse(kind, []byte(config))
	if err != nil {
		t.Fatalf("Parse(%s, %s): %v", kind, config, err)
	}
	return d
}

// roundTrip saves and restores a state as the engine does across a restart.
func roundTrip(t testing.TB, d Detector, st State) State {
	t.Helper()
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	out := d.NewState()
	if err := json.Unmarshal(b, out); err != nil {
		t.Fatal(err)
	}
	return out
}

func outcome(o Outcome) string {
	switch {
	case o.Raise:
		return "raise"
	case o.Clear:
		return "clear"
	}
	return "-"
}

// TestThresholdDurationAndHysteresis: "temperature > 80 for 5 min, clear
// below 75", with a restart in the middle of the window.
func TestThresholdDurationAndHysteresis(t *testing.T) {
	d := mustParse(t, KindThreshold, `{"key":"temperature","above":80,"for":"5m","clearBelow":75}`)
	st := d.NewState()
	steps := []struct {
		min     int
		temp    float64
		want    string
		restart bool
	}{
		{0, 81, "-", false},
		{2, 90, "-", true}, // restart mid-window: the window continues
		{4, 85, "-", false},
		{5, 80.5, "raise", false}, // 5 minutes above 80
		{6, 95, "-", false},       // raised once
		{7, 78, "-", false},       // hysteresis: between 75 and 80 stays raised
		{8, 75, "-", false},       // 75 is not below 75
		{9, 74.9, "clear", false},
		{10, 81, "-", false},
		{12, 79, "-", false}, // dipped: the window restarts
		{13, 81, "-", false},
		{17, 81, "-", false},
		{18, 81, "raise", false},
	}
	for _, s := range steps {
		if s.restart {
			st = roundTrip(t, d, st)
		}
		got := outcome(d.Telemetry(st, t0.Add(time.Duration(s.min)*time.Minute), Values{"temperature": s.temp, "other": 1}))
		if got != s.want {
			t.Fatalf("minute %d, %v: %s; want %s", s.min, s.temp, got, s.want)
		}
	}
	// A message without the key changes nothing.
	if o := d.Telemetry(st, t0.Add(time.Hour), Values{"humidity": 3}); o.Raise || o.Clear {
		t.Fatalf("without the key: %+v", o)
	}
}

func TestThresholdBelowAndImmediate(t *testing.T) {
	d := mustParse(t, KindThreshold, `{"key":"battery","below":10,"clearAbove":20}`)
	st := d.NewState()
	var got []string
	for i, v := range []float64{50, 9, 5, 15, 21, 8} {
		got = append(got, outcome(d.Telemetry(st, t0.Add(time.Duration(i)*time.Second), Values{"battery": v})))
	}
	if strings.Join(got, " ") != "- raise - - clear raise" {
		t.Fatalf("outcomes %q", got)
	}
}

func square(lon0, lat0, lon1, lat1 float64) string {
	return fmt.Sprintf(`{"type":"Polygon","coordinates":[[[%v,%v],[%v,%v],[%v,%v],[%v,%v],[%v,%v]]]}`,
		lon0, lat0, lon1, lat0, lon1, lat1, lon0, lat1, lon0, lat0)
}

// TestFenceBoundaryExact: points on edges and vertices are inside; points
// a hair outside are not; holes; circles; the antimeridian.
func TestFenceBoundaryExact(t *testing.T) {
	next := func(x, dir float64) float64 { return math.Nextafter(x, dir) }
	sq, err := ParseFence("fence", []byte(square(10, 50, 11, 51)))
	if err != nil {
		t.Fatal(err)
	}
	// A triangle with a slanted edge from (0,0) to (3,1): (1.5, 0.5) is on it.
	tri, err := ParseFence("fence", []byte(`{"type":"Polygon","coordinates":[[[0,0],[3,1],[0,1],[0,0]]]}`))
	if err != nil {
		t.Fatal(err)
	}
	holed, err := ParseFence("fence", []byte(`{"type":"Polygon","coordinates":[[[0,0],[10,0],[10,10],[0,10],[0,0]],[[4,4],[6,4],[6,6],[4,6],[4,4]]]}`))
	if err != nil {
		t.Fatal(err)
	}
	// Across the antimeridian: from 170°E to 170°W.
	anti, err := ParseFence("fence", []byte(`{"type":"Polygon","coordinates":[[[170,-10],[-170,-10],[-170,10],[170,10],[170,-10]]]}`))
	if err != nil {
		t.Fatal(err)
	}
	circ, err := ParseFence("fence", []byte(`{"type":"Circle","center":[0,0],"radiusMeters":1000}`))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name     string
		f        *Fence
		lat, lon float64
		want     bool
	}{
		{"inside", sq, 50.5, 10.5, true},
		{"vertex", sq, 50, 10, true},
		{"far vertex", sq, 51, 11, true},
		{"bottom edge", sq, 50, 10.5, true},
		{"left edge", sq, 50.5, 10, true},
		{"right edge", sq, 50.25, 11, true},
		{"top edge", sq, 51, 10.75, true},
		{"a hair below", sq, next(50, 0), 10.5, false},
		{"a hair left", sq, 50.5, next(10, 0), false},
		{"a hair right", sq, 50.5, next(11, 100), false},
		{"a hair above", sq, next(51, 100), 10.5, false},
		{"outside", sq, 52, 12, false},
		{"on the slanted edge", tri, 0.5, 1.5, true},
		{"on the slanted edge 2", tri, 0.75, 2.25, true},
		{"just below the slanted edge", tri, next(0.5, 0), 1.5, false},
		{"in the hole", holed, 5, 5, false},
		{"on the hole's edge", holed, 4, 5, true},
		{"between hole and outer", holed, 2, 2, true},
		{"antimeridian east side", anti, 0, 175, true},
		{"antimeridian west side", anti, 0, -175, true},
		{"antimeridian on it", anti, 0, 180, true},
		{"antimeridian -180", anti, 0, -180, true},
		{"antimeridian edge 170", anti, 5, 170, true},
		{"antimeridian edge -170", anti, 5, -170, true},
		{"antimeridian outside east", anti, 0, 169, false},
		{"antimeridian outside west", anti, 0, -169, false},
		{"antimeridian far away", anti, 0, 0, false},
		{"circle centre", circ, 0, 0, true},
		{"circle inside", circ, 0.008, 0, true},
		{"circle outside", circ, 0.01, 0, false},
	} {
		if got := c.f.Contains(c.lat, c.lon); got != c.want {
			t.Errorf("%s: Contains(%v, %v) = %v; want %v", c.name, c.lat, c.lon, got, c.want)
		}
	}
}

// TestFenceRejects: invalid GeoJSON is a 400 naming the field.
func TestFenceRejects(t *testing.T) {
	for _, c := range []struct{ fence, field string }{
		{`{"type":"Polygon","coordinates":[[[0,0],[1,0],[1,1],[0,1]]]}`, "fence.coordinates[0]"},                       // not closed
		{`{"type":"Polygon","coordinates":[[[0,0],[1,1],[1,0],[0,1],[0,0]]]}`, "fence.coordinates[0]"},                 // bow tie
		{`{"type":"Polygon","coordinates":[[[0,0],[1,0],[0,0]]]}`, "fence.coordinates[0]"},                             // too short
		{`{"type":"Polygon","coordinates":[[[0,0],[1,0],[2,0],[0,0]]]}`, "fence.coordinates[0]"},                       // no area
		{`{"type":"Polygon","coordinates":[[[0,0],[2,0],[2,2],[1,0],[0,0]]]}`, "fence.coordinates[0]"},                 // touches itself
		{`{"type":"Polygon","coordinates":[[[0,0],[1,0],[1,1],[0,1],[0,0.5],[0,1.5],[0,0]]]}`, "fence.coordinates[0]"}, // folds back
		{`{"type":"Polygon","coordinates":[[[0,0],[1,0],[1,1],[0,1],[0,0]]],"extra":1}`, "fence"},
		{`{"type":"Polygon","coordinates":[[[0,0],[1e999,0],[1,1],[0,0]]]}`, "fence.coordinates"},
		{`{"type":"Polygon","coordinates":[[[0,0],[181,0],[1,1],[0,0]]]}`, "fence.coordinates[0][1]"},
		{`{"type":"Polygon","coordinates":[[[0,0],[1,91],[1,1],[0,0]]]}`, "fence.coordinates[0][1]"},
		{`{"type":"Polygon","coordinates":"x"}`, "fence.coordinates"},
		{`{"type":"Polygon","coordinates":[]}`, "fence.coordinates"},
		{`{"type":"Point","coordinates":[0,0]}`, "fence.type"},
		{`{"type":"Circle","center":[0],"radiusMeters":5}`, "fence.center"},
		{`{"type":"Circle","center":[0,0],"radiusMeters":0}`, "fence.radiusMeters"},
		{`{"type":"Circle","center":[0,95],"radiusMeters":5}`, "fence.center"},
		{`[]`, "fence"},
	} {
		_, err := ParseFence("fence", []byte(c.fence))
		if core.KindOf(err) != core.KindInvalid || core.FieldOf(err) != c.field {
			t.Errorf("ParseFence(%s) = %v (field %q); want invalid %s", c.fence, err, core.FieldOf(err), c.field)
		}
	}
}

func TestGeofenceEnterExitDwell(t *testing.T) {
	fence := square(10, 50, 11, 51)
	run := func(config string, pts [][2]float64, restartAt int) string {
		d := mustParse(t, KindGeofence, config)
		st := d.NewState()
		var got []string
		for i, p := range pts {
			if i == restartAt {
				st = roundTrip(t, d, st)
			}
			got = append(got, outcome(d.Telemetry(st, t0.Add(time.Duration(i)*time.Minute), Values{"lat": p[0], "lon": p[1], "y": p[0], "x": p[1]})))
		}
		return strings.Join(got, " ")
	}
	path := [][2]float64{{50.5, 10.5}, {50, 10.5}, {49.9, 10.5}, {49.8, 10.5}, {50.2, 10.2}, {50.3, 10.3}, {50.3, 10.3}, {50.3, 10.3}}
	if got := run(`{"fence":`+fence+`}`, path, -1); got != "- - raise - clear - - -" {
		t.Errorf("exit: %s", got)
	}
	if got := run(`{"fence":`+fence+`,"alarmOn":"enter","latKey":"y","lonKey":"x"}`, path, -1); got != "raise - clear - raise - - -" {
		t.Errorf("enter: %s", got)
	}
	// Dwell 2 minutes: entered at minute 4, raised at 6; a restart at 5.
	if got := run(`{"fence":`+fence+`,"alarmOn":"dwell","dwell":"2m"}`, path, 5); got != "- - - - - - raise -" {
		t.Errorf("dwell: %s", got)
	}
}

func TestSpeed(t *testing.T) {
	d := mustParse(t, KindSpeed, `{"limitKmh":100}`)
	st := d.NewState()
	// 0.01° of latitude is 1.112 km: in 30 s that is 133 km/h; in 60 s 67 km/h.
	var got []string
	at := t0
	for _, p := range []struct {
		dt  time.Duration
		lat float64
	}{{0, 0}, {30 * time.Second, 0.01}, {30 * time.Second, 0.02}, {60 * time.Second, 0.03}, {time.Millisecond, 0.5}} {
		at = at.Add(p.dt)
		got = append(got, outcome(d.Telemetry(st, at, Values{"lat": p.lat, "lon": 0})))
	}
	if strings.Join(got, " ") != "- raise - clear -" {
		t.Fatalf("positions: %q", got)
	}
	r := mustParse(t, KindSpeed, `{"limitKmh":100,"speedKey":"kmh"}`)
	rs := r.NewState()
	if o := r.Telemetry(rs, t0, Values{"kmh": 120}); !o.Raise {
		t.Fatalf("reported 120 km/h: %+v", o)
	}
	if o := r.Telemetry(rs, t0, Values{"kmh": 95}); o.Clear {
		t.Fatalf("95 km/h is above the 90 to clear: %+v", o)
	}
	if o := r.Telemetry(rs, t0, Values{"kmh": 80}); !o.Clear {
		t.Fatalf("80 km/h: %+v", o)
	}
}

func TestSilenceAcrossRestart(t *testing.T) {
	d := mustParse(t, KindSilence, `{"expectedInterval":"10s","factor":3}`)
	st := d.NewState()
	if o := d.Tick(st, t0); o.Raise {
		t.Fatal("a thing never heard from is not silent")
	}
	d.Telemetry(st, t0, nil)
	if o := d.Tick(st, t0.Add(30*time.Second)); o.Raise {
		t.Fatal("30s is not more than 3 × 10s")
	}
	st = roundTrip(t, d, st)
	if o := d.Tick(st, t0.Add(31*time.Second)); !o.Raise {
		t.Fatal("31s of silence after a restart: want a raise")
	}
	if o := d.Tick(st, t0.Add(time.Hour)); o.Raise {
		t.Fatal("raised twice")
	}
	if o := d.Telemetry(st, t0.Add(time.Hour), nil); !o.Clear {
		t.Fatal("a message clears")
	}
}

func TestFlapping(t *testing.T) {
	d := mustParse(t, KindFlapping, `{"connects":3,"within":"1m"}`)
	st := d.NewState()
	var got []string
	for _, s := range []int{0, 10, 70, 80, 90} { // connects at these seconds
		d.Presence(st, false, t0.Add(time.Duration(s)*time.Second))
		got = append(got, outcome(d.Presence(st, true, t0.Add(time.Duration(s)*time.Second))))
	}
	if strings.Join(got, " ") != "- - - - raise" {
		t.Fatalf("connects: %q (0, 10 and 70 are not within a minute; 70, 80, 90 are)", got)
	}
	st = roundTrip(t, d, st)
	if o := d.Tick(st, t0.Add(120*time.Second)); o.Clear {
		t.Fatal("at 120s, 70..90 are within a minute")
	}
	if o := d.Tick(st, t0.Add(131*time.Second)); !o.Clear {
		t.Fatal("at 131s only 80 and 90 are within a minute: want a clear")
	}
}

// TestParseRejects: bad configurations are 400s that name the field.
func TestParseRejects(t *testing.T) {
	for _, c := range []struct{ kind, config, field string }{
		{"nope", `{}`, "kind"},
		{KindThreshold, `{"above":1}`, "config.key"},
		{KindThreshold, `{"key":"t"}`, "config.above"},
		{KindThreshold, `{"key":"t","above":1,"below":0}`, "config.above"},
		{KindThreshold, `{"key":"t","above":80,"clearBelow":85}`, "config.clearBelow"},
		{KindThreshold, `{"key":"t","above":80,"for":"-1m"}`, "config.for"},
		{KindThreshold, `{"key":"t","above":80,"for":5}`, "config"},
		{KindThreshold, `{"key":"t","above":"x"}`, "config"},
		{KindThreshold, `{"key":"t","above":80,"bogus":1}`, "config"},
		{KindThreshold, `{"key":"t","above":80,"severity":"fatal"}`, "config.severity"},
		{KindThreshold, `{"key":"t","above":80,"alarmType":"a/b"}`, "config.alarmType"},
		{KindGeofence, `{}`, "config.fence"},
		{KindGeofence, `{"fence":{"type":"Circle","center":[0,0],"radiusMeters":1},"alarmOn":"dwell"}`, "config.dwell"},
		{KindGeofence, `{"fence":{"type":"Circle","center":[0,0],"radiusMeters":1},"alarmOn":"x"}`, "config.alarmOn"},
		{KindSpeed, `{}`, "config.limitKmh"},
		{KindSpeed, `{"limitKmh":10,"clearBelowKmh":20}`, "config.clearBelowKmh"},
		{KindSilence, `{"expectedInterval":"500ms"}`, "config.expectedInterval"},
		{KindSilence, `{"expectedInterval":"1m","factor":0.5}`, "config.factor"},
		{KindFlapping, `{"connects":1}`, "config.connects"},
		{KindAnomaly, `{}`, "config.key"},
		{KindAnomaly, `{"key":"v","alpha":1}`, "config.alpha"},
		{KindAnomaly, `{"key":"v","stuckCount":1}`, "config.stuckCount"},
	} {
		_, _, err := Parse(c.kind, []byte(c.config))
		if core.KindOf(err) != core.KindInvalid || core.FieldOf(err) != c.field {
			t.Errorf("Parse(%s, %s) = %v (field %q); want invalid %s", c.kind, c.config, err, core.FieldOf(err), c.field)
		}
	}
	_, cfg, err := Parse(KindSilence, []byte(`{"expectedInterval":"1m"}`))
	if err != nil || cfg.AlarmType != "device-silent" || cfg.Severity != "major" {
		t.Errorf("silence defaults: %+v %v", cfg, err)
	}
}
