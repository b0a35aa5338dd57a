package httpapi

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/telemetry"
)

func (s *server) telemetryStore() (telemetry.Store, error) {
	if s.telemetry == nil {
		return nil, core.Errorf(core.KindUnavailable, "the telemetry store is not enabled on this server")
	}
	return s.telemetry, nil
}

// parseTelemetryTime reads an RFC 3339 time or Unix milliseconds.
func parseTelemetryTime(name, v string) (int64, error) {
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		return n, nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return 0, core.Invalid(name, "%s must be an RFC 3339 time or Unix milliseconds, got %q", name, v)
	}
	return t.UnixMilli(), nil
}

func splitList(v string) []string {
	if v == "" {
		return nil
	}
	var out []string
	for p := range strings.SplitSeq(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// telemetryQuery answers a raw or aggregate query for things (nil: from
// the "things" parameter).
func (s *server) telemetryQuery(w http.ResponseWriter, r *http.Request, things []string) error {
	ts, err := s.telemetryStore()
	if err != nil {
		return err
	}
	names := []string{"keys", "from", "to", "limit", "cursor", "agg", "interval"}
	if things == nil {
		names = append(names, "things")
	}
	q, err := parseQuery(r, "", names...)
	if err != nil {
		return err
	}
	if things == nil {
		things = splitList(q.vals["things"])
		if len(things) == 0 {
			return core.Invalid("things", "things is required: a comma-separated list of thing names")
		}
		if sc := scopeFrom(r.Context()); sc != nil && len(things) > 1000 {
			return core.Invalid("things", "at most 1000 things")
		}
		if sc := scopeFrom(r.Context()); sc != nil {
			for _, t := range things {
				if err := core.ValidateName("things", t); err != nil {
					return err
				}
				if err := s.needThingInScope(r.Context(), t); err != nil {
					return err
				}
			}
		}
	}
	keys := splitList(q.vals["keys"])
	now := time.Now().UnixMilli()
	to := now + 1
	if v, ok := q.vals["to"]; ok {
		if to, err = parseTelemetryTime("to", v); err != nil {
			return err
		}
	}
	from := to - time.Hour.Milliseconds()
	if v, ok := q.vals["from"]; ok {
		if from, err = parseTelemetryTime("from", v); err != nil {
			return err
		}
	}
	if agg, ok := q.vals["agg"]; ok {
		if _, ok := q.vals["cursor"]; ok {
			return core.Invalid("cursor", "cursor is only for raw points, not with agg")
		}
		if _, ok := q.vals["limit"]; ok {
			return core.Invalid("limit", "limit is only for raw points, not with agg")
		}
		iv, ok := q.vals["interval"]
		if !ok {
			return core.Invalid("interval", "agg needs an interval, e.g. interval=1m")
		}
		d, err := time.ParseDuration(iv)
		if err != nil {
			return core.Invalid("interval", "interval must be a duration such as 10s, 1m or 1h, got %q", iv)
		}
		aq := telemetry.AggQuery{Things: things, Keys: keys, From: from, To: to, Interval: d, Func: telemetry.AggFunc(agg)}
		if !aq.Func.Valid() {
			return core.Invalid("agg", "unknown aggregate %q (want one of min, max, avg, sum, count, first, last)", agg)
		}
		buckets, err := ts.Aggregate(r.Context(), aq)
		if err != nil {
			return err
		}
		return writeJSON(w, http.StatusOK, newList(buckets, ""))
	}
	if _, ok := q.vals["interval"]; ok {
		return core.Invalid("interval", "interval is only for aggregates: give agg too")
	}
	limit := 1000
	if v, ok := q.vals["limit"]; ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > telemetry.MaxLimit {
			return core.Invalid("limit", "limit must be an integer from 1 to %d", telemetry.MaxLimit)
		}
		limit = n
	}
	points, next, err := ts.Range(r.Context(), telemetry.RangeQuery{Things: things, Keys: keys, From: from, To: to, Limit: limit, Cursor: q.vals["cursor"]})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, newList(points, next))
}

func (s *server) thingTelemetry(w http.ResponseWriter, r *http.Request) error {
	thing, err := pathName(r, "name")
	if err != nil {
		return err
	}
	if _, err := s.reg.GetThing(r.Context(), thing); err != nil {
		return err
	}
	return s.telemetryQuery(w, r, []string{thing})
}

func (s *server) thingTelemetryLatest(w http.ResponseWriter, r *http.Request) error {
	ts, err := s.telemetryStore()
	if err != nil {
		return err
	}
	thing, err := pathName(r, "name")
	if err != nil {
		return err
	}
	q, err := parseQuery(r, "", "keys")
	if err != nil {
		return err
	}
	if _, err := s.reg.GetThing(r.Context(), thing); err != nil {
		return err
	}
	points, err := ts.Latest(r.Context(), []string{thing}, splitList(q.vals["keys"]))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, newList(points, ""))
}

func (s *server) queryTelemetry(w http.ResponseWriter, r *http.Request) error {
	return s.telemetryQuery(w, r, nil)
}
