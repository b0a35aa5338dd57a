package apiclient

import (
	"context"
	"encoding/json"
	"github.com/moteiot/mote/internal/httpapi/wire"
	"io"
	"net/http"
	"net/url"
	"strconv"
)

// NewThing is the body of CreateThing. Enabled nil means the server
// default (enabled).
type NewThing struct {
	Name       string            `json:"name"`
	Type       string            `json:"type,omitempty"`
	Attributes map[string]string `json:"attributes,omitempty"`
	Tags       []string          `json:"tags,omitempty"`
	Groups     []string          `json:"groups,omitempty"`
	Policies   []string          `json:"policies,omitempty"`
	Enabled    *bool             `json:"enabled,omitempty"`
}

// ThingPatch is a partial update of a thing. Only the fields that are set
// are sent: a nil pointer, map or slice leaves that field as it is; a
// non-nil empty map or slice clears it (Attributes, Tags, Groups and
// Policies each replace the whole set); Type pointing to "" removes the
// type.
type ThingPatch struct {
	Type       *string
	Attributes map[string]string
	Tags       []string
	Groups     []string
	Policies   []string
	Enabled    *bool
}

// MarshalJSON encodes only the fields that are present.
func (p ThingPatch) MarshalJSON() ([]byte, error) {
	m := map[string]any{}
	if p.Type != nil {
		m["type"] = *p.Type
	}
	if p.Attributes != nil {
		m["attributes"] = p.Attributes
	}
	if p.Tags != nil {
		m["tags"] = p.Tags
	}
	if p.Groups != nil {
		m["groups"] = p.Groups
	}
	if p.Policies != nil {
		m["policies"] = p.Policies
	}
	if p.Enabled != nil {
		m["enabled"] = *p.Enabled
	}
	return json.Marshal(m)
}

// ThingQuery filters ListThings. Zero fields do not filter.
type ThingQuery struct {
	// Query is a fleet query (docs/fleet-query.md); it cannot be
	// combined with the other filters.
	Query      string
	Prefix     string
	Type       string
	Group      string
	Tag        string
	Attributes map[string]string // attr.KEY=VALUE, ANDed
	Connected  *bool
	Limit      int    // 1..1000; 0 = server default (100)
	Cursor     string // NextCursor of the previous page
}

func (q ThingQuery) values() url.Values {
	v := ListOptions{Limit: q.Limit, Cursor: q.Cursor}.values()
	set := func(k, s string) {
		if s != "" {
			v.Set(k, s)
		}
	}
	set("q", q.Query)
	set("prefix", q.Prefix)
	set("type", q.Type)
	set("group", q.Group)
	set("tag", q.Tag)
	for k, val := range q.Attributes {
		v.Set("attr."+k, val)
	}
	if q.Connected != nil {
		v.Set("connected", strconv.FormatBool(*q.Connected))
	}
	return v
}

// CreateThing creates a thing.
func (c *Client) CreateThing(ctx context.Context, t NewThing) (wire.Thing, error) {
	var out wire.Thing
	err := c.do(ctx, request{method: http.MethodPost, path: "/things", body: t}, &out)
	return out, err
}

// GetThing returns one thing, with its presence.
func (c *Client) GetThing(ctx context.Context, name string) (wire.Thing, error) {
	var out wire.Thing
	err := c.do(ctx, request{method: http.MethodGet, path: "/things/" + seg(name)}, &out)
	return out, err
}

// ListThings returns one page of things ordered by name and the cursor of
// the next page ("" on the last page).
func (c *Client) ListThings(ctx context.Context, q ThingQuery) ([]wire.Thing, string, error) {
	return list[wire.Thing](ctx, c, "/things", q.values())
}

// CountThings returns how many things match a fleet query.
func (c *Client) CountThings(ctx context.Context, query string) (int, error) {
	var out struct {
		Count int `json:"count"`
	}
	err := c.do(ctx, request{method: http.MethodGet, path: "/things:count", query: url.Values{"q": {query}}}, &out)
	return out.Count, err
}

// UpdateThing applies a partial update and returns the updated thing.
// Disabling a thing disconnects it at once.
func (c *Client) UpdateThing(ctx context.Context, name string, p ThingPatch) (wire.Thing, error) {
	var out wire.Thing
	err := c.do(ctx, request{method: http.MethodPatch, path: "/things/" + seg(name), body: p}, &out)
	return out, err
}

// DeleteThing deletes a thing and its credentials, and disconnects it.
func (c *Client) DeleteThing(ctx context.Context, name string) error {
	return c.do(ctx, request{method: http.MethodDelete, path: "/things/" + seg(name)}, nil)
}

// AttachPolicy attaches a policy to a thing and returns the thing.
func (c *Client) AttachPolicy(ctx context.Context, thing, policy string) (wire.Thing, error) {
	var out wire.Thing
	err := c.do(ctx, request{method: http.MethodPut, path: "/things/" + seg(thing) + "/policies/" + seg(policy)}, &out)
	return out, err
}

// DetachPolicy detaches a policy from a thing and returns the thing.
func (c *Client) DetachPolicy(ctx context.Context, thing, policy string) (wire.Thing, error) {
	var out wire.Thing
	err := c.do(ctx, request{method: http.MethodDelete, path: "/things/" + seg(thing) + "/policies/" + seg(policy)}, &out)
	return out, err
}

// ImportRow is one row of an import report.
type ImportRow struct {
	Line         int    `json:"line"`
	Name         string `json:"name"`
	Result       string `json:"result"` // created, unchanged, error
	Reason       string `json:"reason,omitempty"`
	CredentialID string `json:"credentialId,omitempty"`
	Secret       string `json:"secret,omitempty"`
}

// ImportReport is the answer of an import (docs/import.md).
type ImportReport struct {
	Mode      string      `json:"mode"`
	DryRun    bool        `json:"dryRun"`
	Applied   bool        `json:"applied"`
	Created   int         `json:"created"`
	Unchanged int         `json:"unchanged"`
	Errors    int         `json:"errors"`
	Rows      []ImportRow `json:"rows"`
}

// ImportThings sends a CSV (contentType text/csv) or JSON lines
// (application/x-ndjson) file to POST /things:import. mode is atomic ("")
// or bestEffort. An atomic import with errors is not an error: its
// report says so (Applied false).
func (c *Client) ImportThings(ctx context.Context, contentType string, body io.Reader, mode string, dryRun bool) (ImportReport, error) {
	q := url.Values{}
	if mode != "" {
		q.Set("mode", mode)
	}
	if dryRun {
		q.Set("dryRun", "true")
	}
	var out ImportReport
	err := c.do(ctx, request{method: http.MethodPost, path: "/things:import", query: q, raw: body, rawType: contentType, also: http.StatusUnprocessableEntity}, &out)
	return out, err
}
