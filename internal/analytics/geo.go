package analytics

import (
	"encoding/json"
	"fmt"
	"math"
	"math/big"
)

// Geometry of geofences: GeoJSON Polygon and MultiPolygon ([lon, lat]
// positions, RFC 7946), and circles. Containment is exact at the
// boundary: a point on an edge or a vertex is inside. The orientation
// test falls back to exact rational arithmetic when the float result is
// too close to zero to trust. A polygon whose ring crosses the
// antimeridian (an edge spanning more than 180° of longitude) is tested
// with longitudes taken modulo 360.

// Limits of a fence.
const (
	MaxFenceVertices = 10_000
	earthRadiusM     = 6_371_008.8
)

type point struct{ lon, lat float64 }

type ring []point

type polygon struct {
	rings []ring // outer first, then holes
	wraps bool   // crosses the antimeridian: longitudes in [0, 360)
}

// Fence is a checked geofence.
type Fence struct {
	polys  []polygon
	circle *circle
}

type circle struct {
	center point
	radius float64 // metres
}

// fenceJSON is the fence of a geofence rule: a GeoJSON geometry, or a circle.
type fenceJSON struct {
	Type        string          `json:"type"` // Polygon, MultiPolygon, Circle
	Coordinates json.RawMessage `json:"coordinates"`
	// Circle: center [lon, lat] and radius in metres.
	Center       []float64 `json:"center"`
	RadiusMeters float64   `json:"radiusMeters"`
}

// ParseFence checks a fence: a GeoJSON Polygon or MultiPolygon whose rings
// are closed, have at least 4 positions, finite coordinates within range
// and do not cross themselves; or {"type": "Circle", "center": [lon, lat],
// "radiusMeters": r}. Errors name the field under prefix.
func ParseFence(field string, data []byte) (*Fence, error) {
	var fj fenceJSON
	if err := decodeStrict(data, &fj); err != nil {
		return nil, invalid(field, "%s: %v", field, err)
	}
	f := &Fence{}
	switch fj.Type {
	case "Circle":
		if len(fj.Center) != 2 {
			return nil, invalid(field+".center", "center must be [lon, lat]")
		}
		c := point{fj.Center[0], fj.Center[1]}
		if err := checkPoint(field+".center", c); err != nil {
			return nil, err
		}
		if !(fj.RadiusMeters > 0 && fj.RadiusMeters <= 20_000_000) {
			return nil, invalid(field+".radiusMeters", "radiusMeters must be above 0 and at most 20000000")
		}
		f.circle = &circle{c, fj.RadiusMeters}
		return f, nil
	case "Polygon":
		var rings [][][]float64
		if err := json.Unmarshal(fj.Coordinates, &rings); err != nil {
			return nil, invalid(field+".coordinates", "a Polygon's coordinates are an array of rings of [lon, lat] positions")
		}
		p, err := parsePolygon(field+".coordinates", rings)
		if err != nil {
			return nil, err
		}
		f.polys = []polygon{p}
	case "MultiPolygon":
		var polys [][][][]float64
		if err := json.Unmarshal(fj.Coordinates, &polys); err != nil || len(polys) == 0 {
			return nil, invalid(field+".coordinates", "a MultiPolygon's coordinates are an array of polygons")
		}
		for i, rings := range polys {
			p, err := parsePolygon(fmt.Sprintf("%s.coordinates[%d]", field, i), rings)
			if err != nil {
				return nil, err
			}
			f.polys = append(f.polys, p)
		}
	default:
		return nil, invalid(field+".type", "type must be Polygon, MultiPolygon or Circle")
	}
	n := 0
	for _, p := range f.polys {
		for _, r := range p.rings {
			n += len(r)
		}
	}
	if n > MaxFenceVertices {
		return nil, invalid(field+".coordinates", "a fence has at most %d positions", MaxFenceVertices)
	}
	return f, nil
}

func checkPoint(field string, p point) error {
	switch {
	case math.IsNaN(p.lon) || math.IsNaN(p.lat) || math.IsInf(p.lon, 0) || math.IsInf(p.lat, 0):
		return invalid(field, "coordinates must be finite numbers")
	case p.lon < -180 || p.lon > 180:
		return invalid(field, "longitude %v is outside -180 to 180", p.lon)
	case p.lat < -90 || p.lat > 90:
		return invalid(field, "latitude %v is outside -90 to 90", p.lat)
	}
	return nil
}

func parsePolygon(field string, rings [][][]float64) (polygon, error) {
	if len(rings) == 0 {
		return polygon{}, invalid(field, "a polygon needs an outer ring")
	}
	var p polygon
	for i, raw := range rings {
		f := fmt.Sprintf("%s[%d]", field, i)
		if len(raw) < 4 {
			return polygon{}, invalid(f, "a ring needs at least 4 positions (the first repeated last)")
		}
		if len(raw) > MaxFenceVertices {
			return polygon{}, invalid(f, "a ring has at most %d positions", MaxFenceVertices)
		}
		r := make(ring, len(raw))
		for j, pos := range raw {
			if len(pos) < 2 || len(pos) > 3 {
				return polygon{}, invalid(fmt.Sprintf("%s[%d]", f, j), "a position is [lon, lat]")
			}
			r[j] = point{pos[0], pos[1]}
			if err := checkPoint(fmt.Sprintf("%s[%d]", f, j), r[j]); err != nil {
				return polygon{}, err
			}
		}
		if r[0] != r[len(r)-1] {
			return polygon{}, invalid(f, "the ring is not closed: its last position must repeat the first")
		}
		for j := 1; j < len(r); j++ {
			if math.Abs(r[j].lon-r[j-1].lon) > 180 {
				p.wraps = true
			}
		}
		p.rings = append(p.rings, r)
	}
	if p.wraps {
		for _, r := range p.rings {
			for j := range r {
				r[j].lon = wrap360(r[j].lon)
			}
		}
	}
	for i, r := range p.rings {
		if err := checkSimple(fmt.Sprintf("%s[%d]", field, i), r); err != nil {
			return polygon{}, err
		}
	}
	return p, nil
}

func wrap360(lon float64) float64 {
	if lon < 0 {
		return lon + 360
	}
	return lon
}

// checkSimple refuses a ring whose edges cross or touch other than at the
// shared vertex of neighbours, and a degenerate ring (no area).
func checkSimple(field string, r ring) error {
	n := len(r) - 1 // edges
	for i := 0; i < n; i++ {
		a, b := r[i], r[i+1]
		if a == b {
			return invalid(field, "the ring repeats position %d", i+1)
		}
		for j := i + 1; j < n; j++ {
			c, d := r[j], r[j+1]
			adjacent := j == i+1 || (i == 0 && j == n-1)
			if adjacent {
				// Neighbours share one vertex; they must not overlap.
				shared, other := b, d
				if i == 0 && j == n-1 {
					shared, other = a, c
				}
				if orient(a, b, c) == 0 && orient(a, b, d) == 0 && onSegment(a, b, other) && other != shared {
					return invalid(field, "the ring folds back on itself at position %d", j+1)
				}
				continue
			}
			if segmentsIntersect(a, b, c, d) {
				return invalid(field, "the ring crosses itself (edges %d and %d)", i+1, j+1)
			}
		}
	}
	if area2(r) == 0 {
		return invalid(field, "the ring has no area")
	}
	return nil
}

func area2(r ring) float64 {
	var s float64
	for i := 0; i+1 < len(r); i++ {
		s += r[i].lon*r[i+1].lat - r[i+1].lon*r[i].lat
	}
	return s
}

// orient is the sign of the cross product (b-a)×(c-a): 1 counter-clockwise,
// -1 clockwise, 0 collinear — exact.
func orient(a, b, c point) int {
	x := (b.lon-a.lon)*(c.lat-a.lat) - (b.lat-a.lat)*(c.lon-a.lon)
	// Error bound of the float evaluation (Shewchuk's ccwerrboundA, with margin).
	bound := 1e-15 * (math.Abs((b.lon-a.lon)*(c.lat-a.lat)) + math.Abs((b.lat-a.lat)*(c.lon-a.lon)))
	if x > bound {
		return 1
	}
	if x < -bound {
		return -1
	}
	r := func(f float64) *big.Rat { return new(big.Rat).SetFloat64(f) }
	sub := func(p, q float64) *big.Rat { return new(big.Rat).Sub(r(p), r(q)) }
	l := new(big.Rat).Mul(sub(b.lon, a.lon), sub(c.lat, a.lat))
	m := new(big.Rat).Mul(sub(b.lat, a.lat), sub(c.lon, a.lon))
	return l.Cmp(m)
}

// onSegment reports whether p, collinear with a and b, lies between them.
func onSegment(a, b, p point) bool {
	return math.Min(a.lon, b.lon) <= p.lon && p.lon <= math.Max(a.lon, b.lon) &&
		math.Min(a.lat, b.lat) <= p.lat && p.lat <= math.Max(a.lat, b.lat)
}

func segmentsIntersect(a, b, c, d point) bool {
	o1, o2, o3, o4 := orient(a, b, c), orient(a, b, d), orient(c, d, a), orient(c, d, b)
	if o1 != o2 && o3 != o4 && o1*o2 <= 0 && o3*o4 <= 0 {
		return true
	}
	return (o1 == 0 && onSegment(a, b, c)) || (o2 == 0 && onSegment(a, b, d)) ||
		(o3 == 0 && onSegment(c, d, a)) || (o4 == 0 && onSegment(c, d, b))
}

// inRing: 1 inside, 0 on the boundary, -1 outside (crossing number with
// exact orientation).
func inRing(r ring, p point) int {
	inside := false
	for i := 0; i+1 < len(r); i++ {
		a, b := r[i], r[i+1]
		o := orient(a, b, p)
		if o == 0 && onSegment(a, b, p) {
			return 0
		}
		if (a.lat > p.lat) != (b.lat > p.lat) {
			// The edge crosses the horizontal line through p: is the
			// crossing to the right of p?
			if (b.lat > a.lat) == (o > 0) {
				inside = !inside
			}
		}
	}
	if inside {
		return 1
	}
	return -1
}

func (p polygon) contains(pt point) bool {
	if p.wraps {
		pt.lon = wrap360(pt.lon)
	}
	switch inRing(p.rings[0], pt) {
	case -1:
		return false
	case 0:
		return true
	}
	for _, h := range p.rings[1:] {
		if inRing(h, pt) == 1 { // strictly inside a hole; its edge belongs to the fence
			return false
		}
	}
	return true
}

// Contains reports whether the position (lat, lon) is in the fence; the
// boundary is inside.
func (f *Fence) Contains(lat, lon float64) bool {
	pt := point{lon, lat}
	if f.circle != nil {
		return haversine(f.circle.center.lat, f.circle.center.lon, lat, lon) <= f.circle.radius
	}
	for _, p := range f.polys {
		if p.contains(pt) {
			return true
		}
	}
	return false
}

// haversine is the great-circle distance in metres.
func haversine(lat1, lon1, lat2, lon2 float64) float64 {
	const rad = math.Pi / 180
	dlat := (lat2 - lat1) * rad
	dlon := (lon2 - lon1) * rad
	s := math.Sin(dlat/2)*math.Sin(dlat/2) + math.Cos(lat1*rad)*math.Cos(lat2*rad)*math.Sin(dlon/2)*math.Sin(dlon/2)
	return 2 * earthRadiusM * math.Asin(math.Min(1, math.Sqrt(s)))
}
