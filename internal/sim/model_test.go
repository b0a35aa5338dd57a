package sim

import (
	"fmt"
	"math"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)

// distToPath returns the metres from p to the nearest segment of the
// closed path.
func distToPath(path []LatLon, p LatLon) float64 {
	best := math.Inf(1)
	for i := range path {
		a, b := path[i], path[(i+1)%len(path)]
		// Project in a local metric frame around a.
		bx, by := eastNorth(a, b)
		px, py := eastNorth(a, p)
		f := 0.0
		if l2 := bx*bx + by*by; l2 > 0 {
			f = clamp((px*bx+py*by)/l2, 0, 1)
		}
		best = math.Min(best, math.Hypot(px-f*bx, py-f*by))
	}
	return best
}

func eastNorth(origin, p LatLon) (east, north float64) {
	north = (p.Lat - origin.Lat) * math.Pi / 180 * earthRadius
	east = (p.Lon - origin.Lon) * math.Pi / 180 * earthRadius * math.Cos(origin.Lat*math.Pi/180)
	return east, north
}

func TestModelValuesInRange(t *testing.T) {
	for i := range 50 {
		name := fmt.Sprintf("sim-%04d", i+1)
		site := Sites[i%len(Sites)]
		m := NewModel(name, site, t0)
		now := t0
		for step := range 2000 {
			now = now.Add(7 * time.Second)
			r := m.Step(now)
			if r.TS != now.UnixMilli() {
				t.Fatalf("%s step %d: ts = %d; want %d", name, step, r.TS, now.UnixMilli())
			}
			if r.Temperature < MinTemperature || r.Temperature > MaxTemperature ||
				math.Abs(r.Temperature-site.Temp) > 20 {
				t.Fatalf("%s step %d: temperature %v out of range for %s (mean %v)", name, step, r.Temperature, site.City, site.Temp)
			}
			if r.Humidity < 0 || r.Humidity > 100 {
				t.Fatalf("%s step %d: humidity %v out of 0..100", name, step, r.Humidity)
			}
			if r.Battery < 0 || r.Battery > 100 {
				t.Fatalf("%s step %d: battery %v out of 0..100", name, step, r.Battery)
			}
			if r.RSSI < MinRSSI || r.RSSI > MaxRSSI {
				t.Fatalf("%s step %d: rssi %v out of range", name, step, r.RSSI)
			}
			if math.Abs(r.Lat-site.Lat) > 0.1 || math.Abs(r.Lon-site.Lon) > 0.15 {
				t.Fatalf("%s step %d: position %v,%v is not near %s", name, step, r.Lat, r.Lon, site.City)
			}
		}
	}
}

func TestModelBatteryNeverIncreases(t *testing.T) {
	m := NewModel("sim-0001", Sites[0], t0)
	prev := m.Step(t0).Battery
	now := t0
	for step := range 20000 {
		now = now.Add(10 * time.Second)
		b := m.Step(now).Battery
		if b > prev {
			t.Fatalf("step %d: battery rose from %v to %v", step, prev, b)
		}
		prev = b
	}
	// 20000 × 10 s is over 55 hours: the battery has visibly drained.
	if first := NewModel("sim-0001", Sites[0], t0).Step(t0).Battery; prev >= first-20 {
		t.Fatalf("battery %v after 55 h; started at %v: it does not drain", prev, first)
	}
	// A step back in time changes nothing.
	if b := m.Step(t0).Battery; b != prev {
		t.Fatalf("stepping back in time moved the battery from %v to %v", prev, b)
	}
}

func TestModelMovesAlongItsPath(t *testing.T) {
	moved := 0
	for i := range 20 {
		m := NewModel(fmt.Sprintf("sim-%04d", i+1), Sites[i%len(Sites)], t0)
		path := m.Path()
		start := m.Position()
		now := t0
		maxGap := 0.0
		prev := start
		for range 600 {
			now = now.Add(time.Second)
			r := m.Step(now)
			p := LatLon{r.Lat, r.Lon}
			// Rounded to 6 decimals (≈ 0.1 m): allow 0.5 m.
			if d := distToPath(path, p); d > 0.5 {
				t.Fatalf("device %d: position %v is %.2f m off its path", i, p, d)
			}
			maxGap = math.Max(maxGap, distance(prev, p))
			prev = p
			if r.Speed == 0 && (p.Lat != round(start.Lat, 6) || p.Lon != round(start.Lon, 6)) {
				t.Fatalf("device %d: parked but moved from %v to %v", i, start, p)
			}
		}
		// In one second a device moves its speed, not more (plus rounding).
		if maxGap > m.speed+0.5 {
			t.Fatalf("device %d: jumped %.1f m in a second at %.1f m/s", i, maxGap, m.speed)
		}
		if m.speed > 0 {
			if distance(start, prev) == 0 {
				t.Fatalf("device %d moves at %.1f m/s but stayed at %v", i, m.speed, start)
			}
			moved++
		}
	}
	if moved == 0 {
		t.Fatal("no device moved")
	}
}

func TestModelIsDeterministicByName(t *testing.T) {
	a := NewModel("sim-0042", Sites[2], t0)
	b := NewModel("sim-0042", Sites[2], t0)
	c := NewModel("sim-0043", Sites[2], t0)
	for i := range 10 {
		now := t0.Add(time.Duration(i) * time.Minute)
		ra, rb, rc := a.Step(now), b.Step(now), c.Step(now)
		if ra != rb {
			t.Fatalf("same name, step %d: %+v != %+v", i, ra, rb)
		}
		if ra == rc {
			t.Fatalf("different names, step %d: identical readings %+v", i, ra)
		}
	}
}
