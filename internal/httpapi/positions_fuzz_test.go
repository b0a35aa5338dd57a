package httpapi

import (
	"math"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/live"
)

// FuzzPositionOf: any telemetry payload yields a valid position or none,
// never a panic.
func FuzzPositionOf(f *testing.F) {
	for _, s := range []string{
		`{"lat": 52.37, "lon": 4.89}`,
		`{"lat": -90, "lon": 180, "speed": 3}`,
		`{"lat": 90.0000001, "lon": 0}`,
		`{"lat": "52", "lon": 4}`,
		`{"lat": null, "lon": 1}`,
		`{"lat": 1e400, "lon": 1}`,
		`{"lat": 1, "lon": 2, "lat": 3}`,
		`{"pos": {"lat": 1, "lon": 2}}`,
		`[1, 2]`,
		`{"lat": 1`,
		``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, ok := positionOf(&live.Event{Thing: "t", Time: time.Unix(0, 0), Payload: b}, [2]string{"lat", "lon"})
		if !ok {
			return
		}
		if math.IsNaN(p.Lat) || math.IsNaN(p.Lon) || math.Abs(p.Lat) > 90 || math.Abs(p.Lon) > 180 || p.Thing != "t" {
			t.Fatalf("positionOf(%q) = %+v", b, p)
		}
	})
}
