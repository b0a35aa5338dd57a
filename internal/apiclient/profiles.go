package apiclient

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"time"
)

// ---- configuration profiles ----

// ProfileTarget selects a profile's things: a group or a fleet query.
type ProfileTarget struct {
	Group string `json:"group,omitempty"`
	Query string `json:"query,omitempty"`
}

// ProfileInput is the body of CreateProfile and UpdateProfile.
type ProfileInput struct {
	Name        string          `json:"name,omitempty"`
	Description string          `json:"description,omitempty"`
	Desired     json.RawMessage `json:"desired"`
	Target      ProfileTarget   `json:"target"`
	Priority    int             `json:"priority"`
}

// Profile is a configuration profile as the API answers it.
type Profile struct {
	Name        string          `json:"name"`
	Description string          `json:"description"`
	Desired     json.RawMessage `json:"desired"`
	Target      ProfileTarget   `json:"target"`
	Priority    int             `json:"priority"`
	CreatedAt   time.Time       `json:"createdAt"`
	UpdatedAt   time.Time       `json:"updatedAt"`
}

// ProfileKeyDiff is a key whose reported value differs from the desired.
type ProfileKeyDiff struct {
	Key      string          `json:"key"`
	Desired  json.RawMessage `json:"desired"`
	Reported json.RawMessage `json:"reported"`
}

// ThingCompliance is a thing's compliance with one profile.
type ThingCompliance struct {
	Thing     string           `json:"thing,omitempty"`
	Profile   string           `json:"profile,omitempty"`
	Priority  *int             `json:"priority,omitempty"`
	Compliant bool             `json:"compliant"`
	Keys      int              `json:"keys"`
	Differing []ProfileKeyDiff `json:"differing"`
}

// ProfileCompliance is a profile's compliance over its things.
type ProfileCompliance struct {
	Profile      string            `json:"profile"`
	Things       int               `json:"things"`
	Compliant    int               `json:"compliant"`
	NonCompliant int               `json:"nonCompliant"`
	Items        []ThingCompliance `json:"items"`
	NextCursor   string            `json:"nextCursor,omitempty"`
}

// CreateProfile creates a configuration profile.
func (c *Client) CreateProfile(ctx context.Context, in ProfileInput) (Profile, error) {
	var out Profile
	err := c.do(ctx, request{method: http.MethodPost, path: "/profiles", body: in}, &out)
	return out, err
}

// GetProfile returns a profile.
func (c *Client) GetProfile(ctx context.Context, name string) (Profile, error) {
	var out Profile
	err := c.do(ctx, request{method: http.MethodGet, path: "/profiles/" + seg(name)}, &out)
	return out, err
}

// ListProfiles returns one page of profiles by name.
func (c *Client) ListProfiles(ctx context.Context, o ListOptions) ([]Profile, string, error) {
	return list[Profile](ctx, c, "/profiles", o.values())
}

// UpdateProfile replaces a profile (all but its name).
func (c *Client) UpdateProfile(ctx context.Context, name string, in ProfileInput) (Profile, error) {
	var out Profile
	err := c.do(ctx, request{method: http.MethodPut, path: "/profiles/" + seg(name), body: in}, &out)
	return out, err
}

// DeleteProfile deletes a profile.
func (c *Client) DeleteProfile(ctx context.Context, name string) error {
	return c.do(ctx, request{method: http.MethodDelete, path: "/profiles/" + seg(name)}, nil)
}

// GetProfileCompliance returns a profile's compliance counts and one page
// of its non-compliant things.
func (c *Client) GetProfileCompliance(ctx context.Context, name string, o ListOptions) (ProfileCompliance, error) {
	var out ProfileCompliance
	err := c.do(ctx, request{method: http.MethodGet, path: "/profiles/" + seg(name) + "/compliance", query: o.values()}, &out)
	return out, err
}

// ThingProfiles returns the profiles that apply to a thing, with its
// compliance with each.
func (c *Client) ThingProfiles(ctx context.Context, thing string) ([]ThingCompliance, error) {
	l, _, err := list[ThingCompliance](ctx, c, "/things/"+seg(thing)+"/profiles", url.Values{})
	return l, err
}
