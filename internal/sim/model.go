package sim

import (
	"hash/fnv"
	"math"
	"math/rand/v2"
	"time"
)

// Site is a place simulated devices are installed: its code (the "site"
// attribute), its position and its climate.
type Site struct {
	Code     string
	City     string
	Lat, Lon float64
	Temp     float64 // mean temperature, °C
	Humidity float64 // mean relative humidity, %
}

// Sites are the places devices are spread over, round robin by index.
var Sites = []Site{
	{"ams", "Amsterdam", 52.3702, 4.8952, 12, 78},
	{"ber", "Berlin", 52.5200, 13.4050, 11, 70},
	{"lis", "Lisbon", 38.7223, -9.1393, 18, 68},
	{"nyc", "New York", 40.7128, -74.0060, 14, 63},
	{"sfo", "San Francisco", 37.7749, -122.4194, 15, 73},
	{"sin", "Singapore", 1.3521, 103.8198, 28, 82},
	{"syd", "Sydney", -33.8688, 151.2093, 19, 65},
}

// SiteByCode returns the site with the given code, or false.
func SiteByCode(code string) (Site, bool) {
	for _, s := range Sites {
		if s.Code == code {
			return s, true
		}
	}
	return Site{}, false
}

// Hardware models of the simulated sensors.
var hardwareModels = []string{"MS-100", "MS-200", "MS-300 Outdoor"}

// DefaultFirmware is the firmware version a new or wiped device reports.
const DefaultFirmware = "1.4.2"

// LatLon is a position in degrees.
type LatLon struct{ Lat, Lon float64 }

// Reading is one telemetry message, as published on things/{thing}/telemetry.
type Reading struct {
	TS          int64   `json:"ts"`          // device time, Unix milliseconds
	Temperature float64 `json:"temperature"` // °C
	Humidity    float64 `json:"humidity"`    // % relative humidity
	Battery     float64 `json:"battery"`     // % charge, never increases
	Lat         float64 `json:"lat"`
	Lon         float64 `json:"lon"`
	Speed       float64 `json:"speed"` // m/s along the path
	RSSI        int     `json:"rssi"`  // dBm
}

// Value ranges a Reading stays in.
const (
	MinTemperature, MaxTemperature = -40.0, 85.0
	MinRSSI, MaxRSSI               = -120, -30
)

// Model is the physics of one simulated sensor: temperature with a daily
// cycle, a slow random drift and noise; humidity that moves against the
// temperature; a battery that drains (faster while moving); and a position
// that moves at a steady speed along a closed path around its site. It is
// deterministic for a given name and start time. Not safe for concurrent
// use.
type Model struct {
	rng  *rand.Rand
	site Site

	path   []LatLon  // closed loop: the last point connects to the first
	cum    []float64 // metres along the path at each point
	length float64   // metres around the whole loop
	speed  float64   // m/s
	dist   float64   // metres travelled along the loop

	baseTemp, tempDrift float64
	baseHum, humDrift   float64
	battery             float64 // %
	drainPerHour        float64 // % per hour while still
	rssiBase            float64

	last time.Time
	pos  LatLon
}

// seedOf turns a name into a random seed.
func seedOf(name string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(name))
	return h.Sum64()
}

// NewModel returns the model of the device called name at site, starting at
// start. The same name gives the same device personality (path, speed,
// climate offset, battery) on every run.
func NewModel(name string, site Site, start time.Time) *Model {
	seed := seedOf(name)
	m := &Model{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), site: site, last: start}
	r := m.rng
	// A closed path of 6..9 waypoints on a rough circle 300..2000 m around a
	// point within 3 km of the site.
	center := offset(LatLon{site.Lat, site.Lon}, (r.Float64()*2-1)*3000, (r.Float64()*2-1)*3000)
	radius := 300 + r.Float64()*1700
	n := 6 + r.IntN(4)
	phase := r.Float64() * 2 * math.Pi
	for i := range n {
		a := phase + 2*math.Pi*float64(i)/float64(n)
		rad := radius * (0.7 + 0.6*r.Float64())
		m.path = append(m.path, offset(center, rad*math.Cos(a), rad*math.Sin(a)))
	}
	m.cum = make([]float64, n+1)
	for i := range n {
		m.cum[i+1] = m.cum[i] + distance(m.path[i], m.path[(i+1)%n])
	}
	m.length = m.cum[n]
	// Some devices are parked, most walk or ride.
	switch k := r.IntN(10); {
	case k == 0:
		m.speed = 0
	case k < 6:
		m.speed = 0.8 + r.Float64()*1.2 // walking
	default:
		m.speed = 3 + r.Float64()*9 // cycling, driving in town
	}
	m.dist = r.Float64() * m.length
	m.baseTemp = site.Temp + (r.Float64()*2-1)*3
	m.baseHum = site.Humidity + (r.Float64()*2-1)*8
	m.battery = 55 + r.Float64()*45
	m.drainPerHour = 0.5 + r.Float64()*2.5
	m.rssiBase = -95 + r.Float64()*40
	m.pos = m.at(m.dist)
	return m
}

// Path returns the waypoints of the device's closed path.
func (m *Model) Path() []LatLon { return append([]LatLon(nil), m.path...) }

// Position returns the current position.
func (m *Model) Position() LatLon { return m.pos }

// Battery returns the current charge in %.
func (m *Model) Battery() float64 { return m.battery }

// Accuracy returns a GPS accuracy in metres for a position fix.
func (m *Model) Accuracy() float64 { return round(3+m.rng.Float64()*12, 1) }

// Step advances the model to now (a time before the last step counts as no
// time passing) and returns the reading.
func (m *Model) Step(now time.Time) Reading {
	dt := now.Sub(m.last).Seconds()
	if dt < 0 {
		dt = 0
	} else {
		m.last = now
	}
	r := m.rng
	// Drifts: Ornstein–Uhlenbeck processes (mean-reverting random walks)
	// with a time constant of an hour.
	const tau = 3600.0
	m.tempDrift += -m.tempDrift*dt/tau + 0.05*math.Sqrt(dt)*r.NormFloat64()
	m.humDrift += -m.humDrift*dt/tau + 0.1*math.Sqrt(dt)*r.NormFloat64()
	// Daily cycle: warmest at 15:00 local (solar) time.
	hour := float64(now.UTC().Hour()) + float64(now.UTC().Minute())/60 + m.site.Lon/15
	daily := 3 * math.Cos(2*math.Pi*(hour-15)/24)
	temp := clamp(m.baseTemp+daily+m.tempDrift+0.1*r.NormFloat64(), MinTemperature, MaxTemperature)
	hum := clamp(m.baseHum-2*(temp-m.baseTemp)+m.humDrift+0.3*r.NormFloat64(), 0, 100)

	m.dist = math.Mod(m.dist+m.speed*dt, math.Max(m.length, 1))
	m.pos = m.at(m.dist)

	drain := m.drainPerHour
	if m.speed > 0 {
		drain *= 1.5 // the GPS and the radio work harder on the move
	}
	m.battery = math.Max(0, m.battery-drain*dt/3600)

	rssi := int(math.Round(clamp(m.rssiBase+4*r.NormFloat64(), MinRSSI, MaxRSSI)))
	return Reading{
		TS:          now.UnixMilli(),
		Temperature: round(temp, 2),
		Humidity:    round(hum, 1),
		Battery:     math.Floor(m.battery*100) / 100, // floor: never rounds up
		Lat:         round(m.pos.Lat, 6),
		Lon:         round(m.pos.Lon, 6),
		Speed:       round(m.speed, 2),
		RSSI:        rssi,
	}
}

// at returns the position d metres along the path.
func (m *Model) at(d float64) LatLon {
	n := len(m.path)
	for i := range n {
		if d <= m.cum[i+1] || i == n-1 {
			seg := m.cum[i+1] - m.cum[i]
			f := 0.0
			if seg > 0 {
				f = clamp((d-m.cum[i])/seg, 0, 1)
			}
			a, b := m.path[i], m.path[(i+1)%n]
			return LatLon{a.Lat + (b.Lat-a.Lat)*f, a.Lon + (b.Lon-a.Lon)*f}
		}
	}
	return m.path[0]
}

const earthRadius = 6371000.0 // metres

// offset moves p by north and east metres (flat-earth approximation, good
// for the few kilometres of a path).
func offset(p LatLon, east, north float64) LatLon {
	dLat := north / earthRadius * 180 / math.Pi
	dLon := east / (earthRadius * math.Cos(p.Lat*math.Pi/180)) * 180 / math.Pi
	return LatLon{p.Lat + dLat, p.Lon + dLon}
}

// distance returns the metres between a and b (equirectangular
// approximation).
func distance(a, b LatLon) float64 {
	x := (b.Lon - a.Lon) * math.Pi / 180 * math.Cos((a.Lat+b.Lat)/2*math.Pi/180)
	y := (b.Lat - a.Lat) * math.Pi / 180
	return math.Hypot(x, y) * earthRadius
}

func clamp(v, lo, hi float64) float64 { return math.Max(lo, math.Min(hi, v)) }

func round(v float64, places int) float64 {
	p := math.Pow(10, float64(places))
	return math.Round(v*p) / p
}
