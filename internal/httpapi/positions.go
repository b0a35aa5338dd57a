package httpapi

import (
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/moteiot/mote/internal/alarms"
	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/store"
)

// The fleet map (docs/map.md): GET /fleet/positions.

// positionJSON is one thing on the map.
type positionJSON struct {
	Thing    string     `json:"thing"`
	Lat      float64    `json:"lat"`
	Lon      float64    `json:"lon"`
	LastSeen *time.Time `json:"lastSeen,omitempty"`
	// Alarm is the most severe severity among the thing's active alarms
	// ("" none).
	Alarm string `json:"alarm,omitempty"`
}

type positionList struct {
	Items      []positionJSON `json:"items"`
	NextCursor string         `json:"nextCursor,omitempty"`
	Total      int            `json:"total"`
}

// maxPositionsPage bounds one page of positions: a map of 10,000 things
// loads in one request.
const maxPositionsPage = 10_000

// fleetPositions is GET /fleet/positions?limit=&cursor=: every thing whose
// latest telemetry has numeric lat and lon, by name, from the fleet index
// (memory), with the worst severity of its active alarms (read from the
// store in pages: as many rows as there are active alarms, never one
// query per thing).
func (s *server) fleetPositions(w http.ResponseWriter, r *http.Request) error {
	q, err := parseQuery(r, "", "limit", "cursor")
	if err != nil {
		return err
	}
	limit := 1000
	if v, ok := q.vals["limit"]; ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxPositionsPage {
			return core.Invalid("limit", "limit must be an integer from 1 to %d", maxPositionsPage)
		}
		limit = n
	}
	after := q.vals["cursor"]
	if after != "" {
		if err := core.ValidateName("cursor", after); err != nil {
			return err
		}
	}
	if err := s.needFleet(); err != nil {
		return err
	}
	page, next, total, err := s.fleet.Positions(r.Context(), s.posKeys[0], s.posKeys[1], after, limit)
	if err != nil {
		return err
	}
	worst := map[string]string{}
	if s.alarms != nil && len(page) > 0 {
		if worst, err = s.activeSeverities(r); err != nil {
			return err
		}
	}
	out := positionList{Items: make([]positionJSON, len(page)), NextCursor: next, Total: total}
	for i, p := range page {
		j := positionJSON{Thing: p.Thing, Lat: p.Lat, Lon: p.Lon, Alarm: worst[p.Thing]}
		if !p.LastSeen.IsZero() {
			t := p.LastSeen.UTC()
			j.LastSeen = &t
		}
		out.Items[i] = j
	}
	return writeJSON(w, http.StatusOK, out)
}

// activeSeverities maps each thing with active alarms to the most severe
// of them. The active alarms are bounded by --alarm-max-open.
func (s *server) activeSeverities(r *http.Request) (map[string]string, error) {
	worst := map[string]string{}
	rank := func(sev string) int { return slices.Index(alarms.Severities, sev) }
	before := ""
	for range 10_000 { // 10M alarms: more than --alarm-max-open allows
		list, err := s.alarms.List(r.Context(), store.AlarmFilter{Status: store.AlarmActive, Before: before, Limit: 1000})
		if err != nil {
			return nil, err
		}
		for _, a := range list {
			if cur, ok := worst[a.Thing]; !ok || rank(a.Severity) < rank(cur) {
				worst[a.Thing] = a.Severity
			}
		}
		if len(list) < 1000 {
			break
		}
		before = list[len(list)-1].ID
	}
	return worst, nil
}
