package httpapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/moteiot/mote/internal/alarms"
	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/fleetindex"
	"github.com/moteiot/mote/internal/live"
)

// sseKeepAlive is how often an idle event stream gets a comment line, so
// proxies and browsers keep it open.
const sseKeepAlive = 15 * time.Second

// positionQueue bounds the items waiting for a browser that follows every
// thing's position; more are dropped and the browser told ("dropped"),
// which then reloads GET /fleet/positions.
const positionQueue = 4096

// alarmQueue bounds the alarm events waiting for one browser; more are
// dropped (counted in mote_alarm_requests_dropped_total{reason="event_subscriber"}).
const alarmQueue = 256

// maxTelemetryThings bounds the things of one telemetry stream
// (GET /events?telemetry=a,b,...): a dashboard's widgets name at most
// as many as one page of a group's things.
const maxTelemetryThings = 100

// alarmEventWire is an event "alarm".
type alarmEventWire struct {
	Event string        `json:"event"` // raised, acknowledged, cleared
	Time  time.Time     `json:"time"`
	Alarm alarmResponse `json:"alarm"`
}

// positionEvent is an event "position".
type positionEvent struct {
	Thing string    `json:"thing"`
	Lat   float64   `json:"lat"`
	Lon   float64   `json:"lon"`
	Time  time.Time `json:"time"`
}

// positionOf reads the numeric top-level position keys (latitude,
// longitude: --position-keys) of a telemetry message.
func positionOf(e *live.Event, keys [2]string) (positionEvent, bool) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(e.Payload, &obj); err != nil {
		return positionEvent{}, false
	}
	var lat, lon float64
	if json.Unmarshal(obj[keys[0]], &lat) != nil || json.Unmarshal(obj[keys[1]], &lon) != nil || !fleetindex.ValidPosition(lat, lon) {
		return positionEvent{}, false
	}
	return positionEvent{Thing: e.Thing, Lat: lat, Lon: lon, Time: e.Time}, true
}

// events serves GET /events: Server-Sent Events for the console.
// Streams are chosen in the query: stats=1 (event "stats" once a second),
// presence=1 (event "presence"; the recent ones first), thing=NAME (event
// "message" for each of that thing's messages), telemetry=A,B,... (event
// "telemetry" for those things' telemetry; dashboards). A browser that reads too
// slowly loses events; it is told how many in an event "dropped".
func (s *server) events(w http.ResponseWriter, r *http.Request) error {
	if s.live == nil {
		return core.Errorf(core.KindUnavailable, "live events are not available on this server")
	}
	q, err := parseQuery(r, "", "stats", "presence", "thing", "alarms", "positions", "telemetry")
	if err != nil {
		return err
	}
	var o live.WatchOptions
	var alarmsOn bool
	for _, p := range []struct {
		name string
		dst  *bool
	}{{"stats", &o.Stats}, {"presence", &o.Presence}, {"alarms", &alarmsOn}, {"positions", &o.Positions}} {
		switch v, ok := q.vals[p.name]; {
		case !ok || v == "0" || v == "false":
		case v == "1" || v == "true":
			*p.dst = true
		default:
			return core.Invalid(p.name, "%s must be 1 or 0", p.name)
		}
	}
	if name, ok := q.vals["thing"]; ok {
		if err := core.ValidateName("thing", name); err != nil {
			return err
		}
		if _, err := s.reg.GetThing(r.Context(), name); err != nil {
			return err
		}
		if err := s.needThingInScope(r.Context(), name); err != nil {
			return err
		}
		o.Thing = name
	}
	if list, ok := q.vals["telemetry"]; ok {
		names := strings.Split(list, ",")
		if len(names) > maxTelemetryThings {
			return core.Invalid("telemetry", "telemetry names at most %d things", maxTelemetryThings)
		}
		seen := map[string]bool{}
		for _, name := range names {
			if err := core.ValidateName("telemetry", name); err != nil {
				return err
			}
			if seen[name] {
				continue
			}
			seen[name] = true
			if _, err := s.reg.GetThing(r.Context(), name); err != nil {
				return err
			}
			if err := s.needThingInScope(r.Context(), name); err != nil {
				return err
			}
			o.Telemetry = append(o.Telemetry, name)
		}
	}
	// A scoped principal gets only its things' events (docs/users.md).
	sc := scopeFrom(r.Context())
	if sc != nil && o.Stats {
		s.metrics.refused("fleet_wide")
		return core.Errorf(core.KindForbidden, "a principal scoped to groups may not watch the fleet-wide stats stream")
	}
	visible := newScopeCache(s, sc)
	if !o.Stats && !o.Presence && o.Thing == "" && !alarmsOn && !o.Positions && len(o.Telemetry) == 0 {
		return core.Invalid("", "choose at least one stream: stats=1, presence=1, thing=NAME, alarms=1, positions=1 or telemetry=NAME,...")
	}
	if o.Positions {
		// Every thing's positions: a longer queue for bursts.
		o.Queue = positionQueue
	}
	// Alarm events come from the alarm service (the platform's own
	// publishes do not pass the bus); a nil channel never receives.
	var alarmEvents <-chan alarms.Event
	if alarmsOn {
		svc, err := s.alarmService()
		if err != nil {
			return err
		}
		ch, cancel := svc.Subscribe(alarmQueue)
		defer cancel()
		alarmEvents = ch
	}
	rc := http.NewResponseController(w)
	watcher := s.live.Watch(o)
	defer watcher.Close()

	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	send := func(event string, v any) error {
		if e := eventOf(v); sc != nil && e != nil && !visible.in(r.Context(), eventThing(e)) {
			return nil
		}
		if event == "position" {
			p, ok := v.(*live.Event)
			if !ok {
				return nil
			}
			pos, ok := positionOf(p, s.posKeys)
			if !ok {
				return nil // not a position after all
			}
			v = pos
		}
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		if _, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", event, b); err != nil {
			return err
		}
		return nil
	}
	// What the page needs at once: the latest stats, the recent presence.
	fmt.Fprint(w, "retry: 2000\n\n")
	if o.Stats {
		if err := send("stats", s.live.Stats()); err != nil {
			return nil
		}
	}
	if o.Presence {
		for _, e := range s.live.RecentPresence() {
			if err := send("presence", e); err != nil {
				return nil
			}
		}
	}
	if err := rc.Flush(); err != nil {
		return nil
	}
	keep := time.NewTicker(sseKeepAlive)
	defer keep.Stop()
	for {
		select {
		case <-r.Context().Done():
			return nil
		case <-s.liveDone:
			return nil
		case <-keep.C:
			if _, err := fmt.Fprint(w, ": keep-alive\n\n"); err != nil {
				return nil
			}
		case e, ok := <-alarmEvents:
			if !ok {
				return nil // the alarm service stopped
			}
			if !visible.in(r.Context(), e.Alarm.Thing) {
				continue // a scoped principal sees its things' alarms only
			}
			if err := send("alarm", alarmEventWire{Event: e.Event, Time: e.Time, Alarm: alarmWire(e.Alarm)}); err != nil {
				return nil
			}
		case it := <-watcher.C:
			var err error
			if it.Stats != nil {
				err = send(it.Kind, it.Stats)
			} else {
				err = send(it.Kind, it.Event)
			}
			if n := watcher.Dropped(); n > 0 && err == nil {
				err = send("dropped", map[string]int64{"count": n})
			}
			if err != nil {
				return nil
			}
		}
		// Send whatever else is already queued before flushing.
		for more := true; more; {
			select {
			case it := <-watcher.C:
				var err error
				if it.Stats != nil {
					err = send(it.Kind, it.Stats)
				} else {
					err = send(it.Kind, it.Event)
				}
				if err != nil {
					return nil
				}
			default:
				more = false
			}
		}
		if err := rc.Flush(); err != nil {
			return nil
		}
	}
}

// eventOf returns the live event v is, if any.
func eventOf(v any) *live.Event {
	switch e := v.(type) {
	case *live.Event:
		return e
	case live.Event:
		return &e
	}
	return nil
}

// eventThing is the thing an event is about: its own, or for a presence
// event (a platform message) the "thing" of its payload; "" if none.
func eventThing(e *live.Event) string {
	if e.Thing != "" {
		return e.Thing
	}
	var p struct {
		Thing string `json:"thing"`
	}
	if json.Unmarshal(e.Payload, &p) != nil {
		return ""
	}
	return p.Thing
}
