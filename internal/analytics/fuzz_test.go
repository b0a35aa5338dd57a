package analytics

import (
	"math"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/core"
)

// FuzzParseFence: any input is a fence or a 400, never a panic; a fence
// answers Contains for any position, and its vertices are inside.
func FuzzParseFence(f *testing.F) {
	for _, s := range []string{
		square(10, 50, 11, 51),
		`{"type":"Polygon","coordinates":[[[170,-10],[-170,-10],[-170,10],[170,10],[170,-10]]]}`,
		`{"type":"MultiPolygon","coordinates":[[[[0,0],[1,0],[1,1],[0,0]]],[[[5,5],[6,5],[6,6],[5,5]]]]}`,
		`{"type":"Polygon","coordinates":[[[0,0],[10,0],[10,10],[0,10],[0,0]],[[4,4],[6,4],[6,6],[4,6],[4,4]]]}`,
		`{"type":"Polygon","coordinates":[[[0,0],[1,1],[1,0],[0,1],[0,0]]]}`,
		`{"type":"Circle","center":[0,0],"radiusMeters":1000}`,
		`{"type":"Polygon","coordinates":[[[0,0],[1e999,0],[1,1],[0,0]]]}`,
		`{"type":"Polygon"}`, `null`, `{`, ``,
	} {
		f.Add([]byte(s), 50.5, 10.5)
	}
	f.Fuzz(func(t *testing.T, data []byte, lat, lon float64) {
		fence, err := ParseFence("fence", data)
		if err != nil {
			if k := core.KindOf(err); k != core.KindInvalid {
				t.Fatalf("error of kind %s: %v", k, err)
			}
			return
		}
		if !math.IsNaN(lat) && !math.IsNaN(lon) {
			fence.Contains(lat, lon)
		}
		for _, p := range fence.polys {
			for _, r := range p.rings[:1] {
				for _, v := range r {
					lon := v.lon
					if lon > 180 {
						lon -= 360
					}
					if !fence.Contains(v.lat, lon) {
						t.Fatalf("vertex %v of the outer ring is not inside", v)
					}
				}
			}
		}
	})
}

// FuzzParse: any detector configuration is a detector or a 4xx; a
// detector survives any input.
func FuzzParse(f *testing.F) {
	seeds := [][2]string{
		{KindThreshold, `{"key":"temperature","above":80,"for":"5m","clearBelow":75}`},
		{KindThreshold, `{"key":"b","below":10}`},
		{KindGeofence, `{"fence":` + square(0, 0, 1, 1) + `,"alarmOn":"dwell","dwell":"1m"}`},
		{KindSpeed, `{"limitKmh":100}`},
		{KindSilence, `{"expectedInterval":"1m","factor":2}`},
		{KindFlapping, `{"connects":3,"within":"1m"}`},
		{KindAnomaly, `{"key":"v","stuckCount":10}`},
		{"x", `{}`},
	}
	for _, s := range seeds {
		f.Add(s[0], []byte(s[1]), 85.0, 0.5)
	}
	f.Fuzz(func(t *testing.T, kind string, config []byte, x, y float64) {
		d, _, err := Parse(kind, config)
		if err != nil {
			if k := core.KindOf(err); k != core.KindInvalid && k != core.KindTooLarge {
				t.Fatalf("error of kind %s: %v", k, err)
			}
			return
		}
		st := d.NewState()
		v := Values{"temperature": x, "b": x, "v": x, "lat": y, "lon": x}
		for i := range 3 {
			d.Telemetry(st, t0.Add(timeStep(i)), v)
			d.Presence(st, true, t0.Add(timeStep(i)))
			d.Tick(st, t0.Add(timeStep(i+1)))
		}
		roundTrip(t, d, st)
	})
}

func timeStep(i int) time.Duration { return time.Duration(i) * time.Minute }
