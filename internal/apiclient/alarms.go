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

// ---- analytics rules ----

// AnalyticsRule is an analytics rule (a detector for a thing type, a
// group or every thing).
type AnalyticsRule struct {
	Name      string          `json:"name"`
	Kind      string          `json:"kind"`
	ThingType string          `json:"thingType,omitempty"`
	Group     string          `json:"group,omitempty"`
	Config    json.RawMessage `json:"config"`
	Enabled   *bool           `json:"enabled,omitempty"`
	CreatedAt time.Time       `json:"createdAt,omitzero"`
	UpdatedAt time.Time       `json:"updatedAt,omitzero"`
}

// CreateAnalyticsRule creates an analytics rule.
func (c *Client) CreateAnalyticsRule(ctx context.Context, r AnalyticsRule) (AnalyticsRule, error) {
	var out AnalyticsRule
	err := c.do(ctx, request{method: http.MethodPost, path: "/analytics/rules", body: r}, &out)
	return out, err
}

// UpdateAnalyticsRule replaces an analytics rule.
func (c *Client) UpdateAnalyticsRule(ctx context.Context, r AnalyticsRule) (AnalyticsRule, error) {
	var out AnalyticsRule
	err := c.do(ctx, request{method: http.MethodPut, path: "/analytics/rules/" + seg(r.Name), body: r}, &out)
	return out, err
}

// GetAnalyticsRule returns an analytics rule.
func (c *Client) GetAnalyticsRule(ctx context.Context, name string) (AnalyticsRule, error) {
	var out AnalyticsRule
	err := c.do(ctx, request{method: http.MethodGet, path: "/analytics/rules/" + seg(name)}, &out)
	return out, err
}

// ListAnalyticsRules returns one page of analytics rules by name.
func (c *Client) ListAnalyticsRules(ctx context.Context, o ListOptions) ([]AnalyticsRule, string, error) {
	return list[AnalyticsRule](ctx, c, "/analytics/rules", o.values())
}

// DeleteAnalyticsRule deletes an analytics rule and its detectors' state.
func (c *Client) DeleteAnalyticsRule(ctx context.Context, name string) error {
	return c.do(ctx, request{method: http.MethodDelete, path: "/analytics/rules/" + seg(name)}, nil)
}
