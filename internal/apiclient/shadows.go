package apiclient

import (
	"context"
	"encoding/json"
	"net/http"
	"time"
)

// ClassicShadow is the name the API gives the classic (unnamed) shadow.
// The methods below also accept "" for it.
const ClassicShadow = "classic"

// ShadowInfo is one shadow in ListShadows.
type ShadowInfo struct {
	Name      string    `json:"name"` // ClassicShadow for the classic shadow
	Version   int64     `json:"version"`
	UpdatedAt time.Time `json:"updatedAt"`
}

func shadowPath(thing, name string) string {
	if name == "" {
		name = ClassicShadow
	}
	return "/things/" + seg(thing) + "/shadows/" + seg(name)
}

// GetShadow returns a shadow document: state (desired, reported, delta),
// metadata, version and timestamp.
func (c *Client) GetShadow(ctx context.Context, thing, name string) (json.RawMessage, error) {
	var out json.RawMessage
	err := c.do(ctx, request{method: http.MethodGet, path: shadowPath(thing, name)}, &out)
	return out, err
}

// UpdateShadow sends an update document ({"state": {"desired": ...,
// "reported": ...}, "version"?, "clientToken"?}) and returns the accepted
// response: the updated fields with their metadata and the new version.
func (c *Client) UpdateShadow(ctx context.Context, thing, name string, update json.RawMessage) (json.RawMessage, error) {
	var out json.RawMessage
	err := c.do(ctx, request{method: http.MethodPost, path: shadowPath(thing, name), body: update}, &out)
	return out, err
}

// DeleteShadow deletes a shadow and returns {"version", "timestamp"}; a
// shadow created again continues from that version.
func (c *Client) DeleteShadow(ctx context.Context, thing, name string) (json.RawMessage, error) {
	var out json.RawMessage
	err := c.do(ctx, request{method: http.MethodDelete, path: shadowPath(thing, name)}, &out)
	return out, err
}

// ListShadows returns one page of a thing's shadows, by name.
func (c *Client) ListShadows(ctx context.Context, thing string, o ListOptions) ([]ShadowInfo, string, error) {
	return list[ShadowInfo](ctx, c, "/things/"+seg(thing)+"/shadows", o.values())
}
