package apiclient

import (
	"context"
	"net/http"
	"time"
)

// ---- console users (docs/users.md) ----

// User is a console user.
type User struct {
	Name        string     `json:"name"`
	Role        string     `json:"role"`
	Groups      []string   `json:"groups,omitempty"`
	CreatedAt   time.Time  `json:"createdAt"`
	UpdatedAt   time.Time  `json:"updatedAt"`
	LastLoginAt *time.Time `json:"lastLoginAt,omitempty"`
}

// CreateUser creates a user, scoped to groups if any.
func (c *Client) CreateUser(ctx context.Context, name, password, role string, groups []string) (User, error) {
	body := struct {
		Name     string   `json:"name"`
		Password string   `json:"password"`
		Role     string   `json:"role"`
		Groups   []string `json:"groups,omitempty"`
	}{name, password, role, groups}
	var out User
	err := c.do(ctx, request{method: http.MethodPost, path: "/users", body: body}, &out)
	return out, err
}

// ListUsers lists the users (the first 1000).
func (c *Client) ListUsers(ctx context.Context) ([]User, error) {
	items, _, err := list[User](ctx, c, "/users", map[string][]string{"limit": {"1000"}})
	return items, err
}

// GetUser returns a user.
func (c *Client) GetUser(ctx context.Context, name string) (User, error) {
	var out User
	err := c.do(ctx, request{method: http.MethodGet, path: "/users/" + seg(name)}, &out)
	return out, err
}

// UpdateUser changes a user's role (if not "") and group scope (if
// groups is not nil; an empty slice removes the scope).
func (c *Client) UpdateUser(ctx context.Context, name, role string, groups *[]string) (User, error) {
	body := map[string]any{}
	if role != "" {
		body["role"] = role
	}
	if groups != nil {
		g := *groups
		if g == nil {
			g = []string{}
		}
		body["groups"] = g
	}
	var out User
	err := c.do(ctx, request{method: http.MethodPatch, path: "/users/" + seg(name), body: body}, &out)
	return out, err
}

// DeleteUser deletes a user with its sessions and API tokens.
func (c *Client) DeleteUser(ctx context.Context, name string) error {
	return c.do(ctx, request{method: http.MethodDelete, path: "/users/" + seg(name)}, nil)
}

// SetUserPassword changes a password: one's own with old, or (old "")
// another user's as an admin.
func (c *Client) SetUserPassword(ctx context.Context, name, old, password string) error {
	body := struct {
		OldPassword string `json:"oldPassword,omitempty"`
		Password    string `json:"password"`
	}{old, password}
	return c.do(ctx, request{method: http.MethodPost, path: "/users/" + seg(name) + "/password", body: body}, nil)
}

// TokenRequest describes an API token to create.
type TokenRequest struct {
	Name      string     `json:"name"`
	Role      string     `json:"role,omitempty"`
	User      *string    `json:"user,omitempty"`
	Groups    []string   `json:"groups,omitempty"`
	ExpiresAt *time.Time `json:"expiresAt,omitempty"`
	RateLimit int        `json:"rateLimit,omitempty"`
}

// CreateTokenFor creates an API token with an owner, scope and rate limit.
func (c *Client) CreateTokenFor(ctx context.Context, tr TokenRequest) (NewToken, error) {
	if tr.ExpiresAt != nil {
		t := tr.ExpiresAt.UTC()
		tr.ExpiresAt = &t
	}
	var out NewToken
	err := c.do(ctx, request{method: http.MethodPost, path: "/tokens", body: tr}, &out)
	return out, err
}
