package apiclient

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// ---- dashboards ----

// Dashboard is a console dashboard; Widgets is its JSON array of widgets
// (docs/dashboards.md).
type Dashboard struct {
	Name      string          `json:"name"`
	Title     string          `json:"title"`
	Widgets   json.RawMessage `json:"widgets"`
	Version   int64           `json:"version"`
	CreatedAt time.Time       `json:"createdAt"`
	UpdatedAt time.Time       `json:"updatedAt"`
}

// DashboardSummary is a dashboard in a list: its widgets counted.
type DashboardSummary struct {
	Name      string    `json:"name"`
	Title     string    `json:"title"`
	Widgets   int       `json:"widgets"`
	Version   int64     `json:"version"`
	CreatedAt time.Time `json:"createdAt"`
	UpdatedAt time.Time `json:"updatedAt"`
}

func ifMatch(version int64) http.Header {
	if version <= 0 {
		return nil
	}
	return http.Header{"If-Match": {`"` + strconv.FormatInt(version, 10) + `"`}}
}

// CreateDashboard creates a dashboard from its document ({"name",
// "title", "widgets"}).
func (c *Client) CreateDashboard(ctx context.Context, doc json.RawMessage) (Dashboard, error) {
	var out Dashboard
	err := c.do(ctx, request{method: http.MethodPost, path: "/dashboards", body: doc}, &out)
	return out, err
}

// ReplaceDashboard replaces a dashboard's title and widgets; ifVersion > 0
// makes it conditional (a dashboard changed since answers 412).
func (c *Client) ReplaceDashboard(ctx context.Context, name string, doc json.RawMessage, ifVersion int64) (Dashboard, error) {
	var out Dashboard
	err := c.do(ctx, request{method: http.MethodPut, path: "/dashboards/" + seg(name), body: doc, header: ifMatch(ifVersion)}, &out)
	return out, err
}

// GetDashboard returns a dashboard.
func (c *Client) GetDashboard(ctx context.Context, name string) (Dashboard, error) {
	var out Dashboard
	err := c.do(ctx, request{method: http.MethodGet, path: "/dashboards/" + seg(name)}, &out)
	return out, err
}

// ListDashboards returns one page of dashboards by name.
func (c *Client) ListDashboards(ctx context.Context, o ListOptions) ([]DashboardSummary, string, error) {
	return list[DashboardSummary](ctx, c, "/dashboards", o.values())
}

// DeleteDashboard deletes a dashboard; ifVersion as in ReplaceDashboard.
func (c *Client) DeleteDashboard(ctx context.Context, name string, ifVersion int64) error {
	return c.do(ctx, request{method: http.MethodDelete, path: "/dashboards/" + seg(name), header: ifMatch(ifVersion)}, nil)
}

// StatsHistory is the overview's history over a window.
type StatsHistory struct {
	Window string `json:"window"`
	Points []struct {
		Time              time.Time `json:"time"`
		Messages          int64     `json:"messages"`
		MessagesPerSecond float64   `json:"messagesPerSecond"`
		Connected         int       `json:"connected"`
		ActiveAlarms      int       `json:"activeAlarms"`
	} `json:"points"`
}

// GetStatsHistory returns the history of the last window ("1h" or "24h").
func (c *Client) GetStatsHistory(ctx context.Context, window string) (StatsHistory, error) {
	var out StatsHistory
	err := c.do(ctx, request{method: http.MethodGet, path: "/stats/history", query: url.Values{"window": {window}}}, &out)
	return out, err
}
