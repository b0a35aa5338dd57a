package apiclient

import (
	"context"
	"encoding/json"
	"net/http"
	"time"
)

// ---- alarms ----

// Alarm is an alarm as the API shows it.
type Alarm struct {
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

// AlarmFilter selects alarms in ListAlarms; zero fields do not filter.
type AlarmFilter struct {
	Status, Thing, Severity, Type string
}

// ListAlarms returns one page of alarms, newest first.
func (c *Client) ListAlarms(ctx context.Context, f AlarmFilter, o ListOptions) ([]Alarm, string, error) {
	q := o.values()
	for k, v := range map[string]string{"status": f.Status, "thing": f.Thing, "severity": f.Severity, "type": f.Type} {
		if v != "" {
			q.Set(k, v)
		}
	}
	return list[Alarm](ctx, c, "/alarms", q)
}

// GetAlarm returns one alarm.
func (c *Client) GetAlarm(ctx context.Context, id string) (Alarm, error) {
	var out Alarm
	err := c.do(ctx, request{method: http.MethodGet, path: "/alarms/" + seg(id)}, &out)
	return out, err
}

// AckAlarm acknowledges an active alarm and returns it.
func (c *Client) AckAlarm(ctx context.Context, id string) (Alarm, error) {
	var out Alarm
	err := c.do(ctx, request{method: http.MethodPost, path: "/alarms/" + seg(id) + "/ack"}, &out)
	return out, err
}

// ClearAlarm clears an alarm and returns it.
func (c *Client) ClearAlarm(ctx context.Context, id string) (Alarm, error) {
	var out Alarm
	err := c.do(ctx, request{method: http.MethodPost, path: "/alarms/" + seg(id) + "/clear"}, &out)
	return out, err
}
