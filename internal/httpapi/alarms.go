package httpapi

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/moteiot/mote/internal/alarms"
	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/store"
)

// Alarms (docs/alarms.md): list with filters, get, acknowledge, clear.

// alarmResponse is an alarm on the wire.
type alarmResponse struct {
	ID             string          `json:"id"`
	Type           string          `json:"type"`
	Thing          string          `json:"thing"`
	Severity       string          `json:"severity"`
	Status         string          `json:"status"`
	Details        json.RawMessage `json:"details,omitempty"`
	Count          int64           `json:"count"`
	CreatedAt      time.Time       `json:"createdAt"`
	LastAt         time.Time       `json:"lastAt"`
	AcknowledgedAt *time.Time      `json:"acknowledgedAt,omitempty"`
	ClearedAt      *time.Time      `json:"clearedAt,omitempty"`
}

func alarmWire(a alarms.Alarm) alarmResponse {
	return alarmResponse{ID: a.ID, Type: a.Type, Thing: a.Thing, Severity: a.Severity, Status: a.Status,
		Details: a.Details, Count: a.Count, CreatedAt: a.CreatedAt, LastAt: a.LastAt,
		AcknowledgedAt: a.AckedAt, ClearedAt: a.ClearedAt}
}

func (s *server) alarmService() (*alarms.Service, error) {
	if s.alarms == nil {
		return nil, core.Errorf(core.KindUnavailable, "alarms are not enabled on this server")
	}
	return s.alarms, nil
}

// listAlarms is GET /alarms?status=&thing=&severity=&type=&limit=&cursor=,
// newest first.
func (s *server) listAlarms(w http.ResponseWriter, r *http.Request) error {
	q, err := parseQuery(r, "", "status", "thing", "severity", "type", "limit", "cursor")
	if err != nil {
		return err
	}
	limit, err := q.limit()
	if err != nil {
		return err
	}
	f := store.AlarmFilter{Status: q.vals["status"], Thing: q.vals["thing"], Severity: q.vals["severity"], Type: q.vals["type"]}
	if f.Status != "" && f.Status != "open" && !slices.Contains(alarms.Statuses, f.Status) {
		return core.Invalid("status", "status must be one of %s or open", strings.Join(alarms.Statuses, ", "))
	}
	if f.Severity != "" && !alarms.ValidSeverity(f.Severity) {
		return core.Invalid("severity", "severity must be one of %s", strings.Join(alarms.Severities, ", "))
	}
	if f.Thing != "" {
		if err := core.ValidateName("thing", f.Thing); err != nil {
			return err
		}
	}
	if f.Type != "" {
		if err := alarms.ValidateType("type", f.Type); err != nil {
			return err
		}
	}
	svc, err := s.alarmService()
	if err != nil {
		return err
	}
	fetch := func(before string, n int) ([]alarms.Alarm, error) {
		g := f
		g.Before, g.Limit = before, n
		return svc.List(r.Context(), g)
	}
	if sc := scopeFrom(r.Context()); sc != nil { // only the alarms of the scope's things
		fetch = scopedFetch(fetch, func(a alarms.Alarm) string { return a.ID }, func(a alarms.Alarm) (bool, error) {
			return s.inScope(r.Context(), sc, a.Thing)
		})
	}
	list, next, err := pageAfter(q.vals["cursor"], limit, fetch, func(a alarms.Alarm) string { return a.ID })
	if err != nil {
		return err
	}
	out := make([]alarmResponse, len(list))
	for i, a := range list {
		out[i] = alarmWire(a)
	}
	return writeJSON(w, http.StatusOK, newList(out, next))
}

func (s *server) getAlarm(w http.ResponseWriter, r *http.Request) error {
	return s.oneAlarm(w, r, (*alarms.Service).Get)
}

// ackAlarm is POST /alarms/{id}/ack: 200 with the alarm; 409 unless it
// was active.
func (s *server) ackAlarm(w http.ResponseWriter, r *http.Request) error {
	return s.oneAlarm(w, r, (*alarms.Service).Ack)
}

// clearAlarm is POST /alarms/{id}/clear: 200 with the alarm; 409 if it
// was cleared already.
func (s *server) clearAlarm(w http.ResponseWriter, r *http.Request) error {
	return s.oneAlarm(w, r, (*alarms.Service).Clear)
}

func (s *server) oneAlarm(w http.ResponseWriter, r *http.Request, op func(*alarms.Service, context.Context, string) (alarms.Alarm, error)) error {
	if err := noParams(r); err != nil {
		return err
	}
	svc, err := s.alarmService()
	if err != nil {
		return err
	}
	id := r.PathValue("id")
	if err := core.ValidateName("id", id); err != nil {
		return err
	}
	if sc := scopeFrom(r.Context()); sc != nil {
		// An alarm of a thing outside the scope is not there.
		a, err := svc.Get(r.Context(), id)
		if err != nil {
			return err
		}
		if ok, err := s.inScope(r.Context(), sc, a.Thing); err != nil {
			return err
		} else if !ok {
			s.metrics.refused("out_of_scope")
			return core.NotFound("alarm", id)
		}
	}
	a, err := op(svc, r.Context(), id)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, alarmWire(a))
}
