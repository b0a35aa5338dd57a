package apiclient

import (
	"context"
	"encoding/json"
	"github.com/moteiot/mote/internal/httpapi/wire"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/moteiot/mote/internal/telemetry"
)

// ---- rules ----

// RuleInput is the body of CreateRule and ReplaceRule.
type RuleInput struct {
	Name        string          `json:"name,omitempty"`
	SQL         string          `json:"sql"`
	Description string          `json:"description,omitempty"`
	Enabled     *bool           `json:"enabled,omitempty"`
	Actions     json.RawMessage `json:"actions,omitempty"`
	ErrorAction json.RawMessage `json:"errorAction,omitempty"`
}

// RuleTest is the body of TestRule. Payload is any JSON value; a JSON
// string is taken as the raw payload.
type RuleTest struct {
	SQL      string          `json:"sql"`
	Topic    string          `json:"topic"`
	Payload  json.RawMessage `json:"payload,omitempty"`
	ClientID string          `json:"clientId,omitempty"`
	Thing    string          `json:"thing,omitempty"`
	// Messages are the timed messages a windowed statement is tried on
	// (then Topic is not needed).
	Messages []RuleTestMessage `json:"messages,omitempty"`
}

// RuleTestMessage is a message of a windowed statement's test, received
// at At.
type RuleTestMessage struct {
	Topic    string          `json:"topic"`
	Payload  json.RawMessage `json:"payload,omitempty"`
	ClientID string          `json:"clientId,omitempty"`
	Thing    string          `json:"thing,omitempty"`
	At       time.Time       `json:"at"`
}

// RuleTestResult is the answer of TestRule.
type RuleTestResult struct {
	Matched bool            `json:"matched"`
	Output  json.RawMessage `json:"output,omitempty"`
	// A windowed statement's closed windows.
	Windows []RuleTestWindow `json:"windows,omitempty"`
	Late    int              `json:"late,omitempty"`
	Skipped int              `json:"skipped,omitempty"`
}

// RuleTestWindow is one closed window of a windowed statement's test.
type RuleTestWindow struct {
	Group  string          `json:"group"`
	Start  time.Time       `json:"start"`
	End    time.Time       `json:"end"`
	Output json.RawMessage `json:"output"`
}

// CreateRule creates a rule.
func (c *Client) CreateRule(ctx context.Context, r RuleInput) (wire.Rule, error) {
	var out wire.Rule
	err := c.do(ctx, request{method: http.MethodPost, path: "/rules", body: r}, &out)
	return out, err
}

// GetRule returns one rule.
func (c *Client) GetRule(ctx context.Context, name string) (wire.Rule, error) {
	var out wire.Rule
	err := c.do(ctx, request{method: http.MethodGet, path: "/rules/" + seg(name)}, &out)
	return out, err
}

// ListRules returns one page of rules and the next cursor.
func (c *Client) ListRules(ctx context.Context, o ListOptions) ([]wire.Rule, string, error) {
	return list[wire.Rule](ctx, c, "/rules", o.values())
}

// ReplaceRule replaces a rule's SQL, description, enabled, actions and
// error action.
func (c *Client) ReplaceRule(ctx context.Context, name string, r RuleInput) (wire.Rule, error) {
	var out wire.Rule
	err := c.do(ctx, request{method: http.MethodPut, path: "/rules/" + seg(name), body: r}, &out)
	return out, err
}

// SetRuleEnabled enables or disables a rule.
func (c *Client) SetRuleEnabled(ctx context.Context, name string, enabled bool) (wire.Rule, error) {
	var out wire.Rule
	err := c.do(ctx, request{method: http.MethodPatch, path: "/rules/" + seg(name), body: map[string]bool{"enabled": enabled}}, &out)
	return out, err
}

// DeleteRule deletes a rule.
func (c *Client) DeleteRule(ctx context.Context, name string) error {
	return c.do(ctx, request{method: http.MethodDelete, path: "/rules/" + seg(name)}, nil)
}

// TestRule evaluates a statement on a message without running actions.
func (c *Client) TestRule(ctx context.Context, t RuleTest) (RuleTestResult, error) {
	var out RuleTestResult
	err := c.do(ctx, request{method: http.MethodPost, path: "/rules/test", body: t}, &out)
	return out, err
}

// ---- telemetry ----

// TelemetryQuery selects telemetry. From and To are RFC 3339 or Unix
// milliseconds ("" = the server's default: the last hour). Agg and
// Interval ask for aggregates instead of raw points.
type TelemetryQuery struct {
	Keys     []string
	From, To string
	Limit    int
	Cursor   string
	Agg      string
	Interval string
}

func (q TelemetryQuery) values() url.Values {
	v := url.Values{}
	if len(q.Keys) > 0 {
		v.Set("keys", strings.Join(q.Keys, ","))
	}
	for k, s := range map[string]string{"from": q.From, "to": q.To, "cursor": q.Cursor, "agg": q.Agg, "interval": q.Interval} {
		if s != "" {
			v.Set(k, s)
		}
	}
	if q.Limit != 0 {
		v.Set("limit", itoa(q.Limit))
	}
	return v
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// Telemetry returns raw points of a thing (one page, and the next cursor).
func (c *Client) Telemetry(ctx context.Context, thing string, q TelemetryQuery) ([]telemetry.Point, string, error) {
	q.Agg, q.Interval = "", ""
	return list[telemetry.Point](ctx, c, "/things/"+seg(thing)+"/telemetry", q.values())
}

// TelemetryAggregate returns aggregates of a thing (q.Agg and q.Interval set).
func (c *Client) TelemetryAggregate(ctx context.Context, thing string, q TelemetryQuery) ([]telemetry.Bucket, error) {
	items, _, err := list[telemetry.Bucket](ctx, c, "/things/"+seg(thing)+"/telemetry", q.values())
	return items, err
}

// TelemetryLatest returns the newest point of each key of a thing.
func (c *Client) TelemetryLatest(ctx context.Context, thing string, keys []string) ([]telemetry.Point, error) {
	v := url.Values{}
	if len(keys) > 0 {
		v.Set("keys", strings.Join(keys, ","))
	}
	items, _, err := list[telemetry.Point](ctx, c, "/things/"+seg(thing)+"/telemetry/latest", v)
	return items, err
}
