package fleetindex

import (
	"context"
	"math"
	"sort"
	"time"

	"github.com/moteiot/mote/internal/core"
)

// Position is where a thing last was: the latest numeric values of its
// latitude and longitude telemetry keys.
type Position struct {
	Thing    string
	Lat, Lon float64
	LastSeen time.Time // zero: never seen
}

// Positions returns, ordered by name, up to limit things after the name
// after that have a valid position (finite latKey and lonKey values in
// range) in their latest telemetry, the name to continue after ("" at the
// end) and how many things have one in all. It reads the index only: no
// store round trip, whatever the number of things. Like the queries it
// is core.KindUnavailable while the index loads.
func (x *Index) Positions(ctx context.Context, latKey, lonKey, after string, limit int) ([]Position, string, int, error) {
	if err := ctx.Err(); err != nil {
		return nil, "", 0, err
	}
	if !x.ready.Load() {
		x.queryRefused.WithLabelValues("loading").Inc()
		return nil, "", 0, &core.Error{Kind: core.KindUnavailable, Msg: "the fleet index is still loading; retry shortly"}
	}
	if limit <= 0 {
		limit = 1000
	}
	x.queries.WithLabelValues("positions").Inc()
	order := x.ordered()
	start := 0
	if after != "" {
		start = sort.Search(len(order), func(i int) bool { return order[i].doc.Name > after })
	}
	var out []Position
	total, next := 0, ""
	x.mu.RLock()
	defer x.mu.RUnlock()
	for i, e := range order {
		if e.removed {
			continue
		}
		lat, ok1 := e.doc.Telemetry[latKey].(float64)
		lon, ok2 := e.doc.Telemetry[lonKey].(float64)
		if !ok1 || !ok2 || !ValidPosition(lat, lon) {
			continue
		}
		total++
		if i < start {
			continue
		}
		if len(out) == limit {
			if next == "" {
				next = out[len(out)-1].Thing
			}
			continue
		}
		out = append(out, Position{Thing: e.doc.Name, Lat: lat, Lon: lon, LastSeen: e.doc.LastSeen})
	}
	return out, next, total, nil
}

// ValidPosition reports whether lat and lon are finite and in range.
func ValidPosition(lat, lon float64) bool {
	return !math.IsNaN(lat) && !math.IsNaN(lon) && lat >= -90 && lat <= 90 && lon >= -180 && lon <= 180
}
