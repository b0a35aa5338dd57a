package apiclient

import (
	"bytes"
	"context"
	"encoding/json"
	"github.com/moteiot/mote/internal/httpapi/wire"
	"net/http"
	"time"
)

// ---- thing types ----

// NewType is the body of CreateType.
type NewType struct {
	Name        string   `json:"name"`
	Description string   `json:"description,omitempty"`
	Policies    []string `json:"policies,omitempty"`
	// Model is the type's device model (docs/device-models.md); nil: none.
	Model json.RawMessage `json:"model,omitempty"`
}

// TypePatch is a partial update of a thing type: nil fields are not sent;
// a non-nil empty Policies detaches every policy. Model replaces the
// device model; RemoveModel removes it.
type TypePatch struct {
	Description *string
	Policies    []string
	Model       json.RawMessage
	RemoveModel bool
}

// MarshalJSON encodes only the fields that are present.
func (p TypePatch) MarshalJSON() ([]byte, error) {
	m := map[string]any{}
	if p.Description != nil {
		m["description"] = *p.Description
	}
	if p.Policies != nil {
		m["policies"] = p.Policies
	}
	if p.Model != nil {
		m["model"] = p.Model
	} else if p.RemoveModel {
		m["model"] = nil
	}
	return json.Marshal(m)
}

// CreateType creates a thing type.
func (c *Client) CreateType(ctx context.Context, t NewType) (wire.ThingType, error) {
	var out wire.ThingType
	err := c.do(ctx, request{method: http.MethodPost, path: "/types", body: t}, &out)
	return out, err
}

// GetType returns one thing type.
func (c *Client) GetType(ctx context.Context, name string) (wire.ThingType, error) {
	var out wire.ThingType
	err := c.do(ctx, request{method: http.MethodGet, path: "/types/" + seg(name)}, &out)
	return out, err
}

// ListTypes returns one page of thing types and the next cursor.
func (c *Client) ListTypes(ctx context.Context, o ListOptions) ([]wire.ThingType, string, error) {
	return list[wire.ThingType](ctx, c, "/types", o.values())
}

// UpdateType changes a type's description, policies and/or model.
func (c *Client) UpdateType(ctx context.Context, name string, p TypePatch) (wire.ThingType, error) {
	var out wire.ThingType
	err := c.do(ctx, request{method: http.MethodPatch, path: "/types/" + seg(name), body: p}, &out)
	return out, err
}

// DeleteType deletes a thing type; it is a conflict while things use it.
func (c *Client) DeleteType(ctx context.Context, name string) error {
	return c.do(ctx, request{method: http.MethodDelete, path: "/types/" + seg(name)}, nil)
}

// ---- groups ----

// NewGroup is the body of CreateGroup.
type NewGroup struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	Query       string `json:"query,omitempty"` // a fleet query: the group is dynamic
}

// CreateGroup creates a static group, or with a Query a dynamic one.
func (c *Client) CreateGroup(ctx context.Context, g NewGroup) (wire.Group, error) {
	var out wire.Group
	err := c.do(ctx, request{method: http.MethodPost, path: "/groups", body: g}, &out)
	return out, err
}

// GetGroup returns one group.
func (c *Client) GetGroup(ctx context.Context, name string) (wire.Group, error) {
	var out wire.Group
	err := c.do(ctx, request{method: http.MethodGet, path: "/groups/" + seg(name)}, &out)
	return out, err
}

// ListGroups returns one page of groups and the next cursor.
func (c *Client) ListGroups(ctx context.Context, o ListOptions) ([]wire.Group, string, error) {
	return list[wire.Group](ctx, c, "/groups", o.values())
}

// UpdateGroup replaces a group's description.
func (c *Client) UpdateGroup(ctx context.Context, name, description string) (wire.Group, error) {
	var out wire.Group
	body := struct {
		Description string `json:"description"`
	}{description}
	err := c.do(ctx, request{method: http.MethodPatch, path: "/groups/" + seg(name), body: body}, &out)
	return out, err
}

// UpdateGroupQuery replaces a dynamic group's query.
func (c *Client) UpdateGroupQuery(ctx context.Context, name, query string) (wire.Group, error) {
	var out wire.Group
	body := struct {
		Query string `json:"query"`
	}{query}
	err := c.do(ctx, request{method: http.MethodPatch, path: "/groups/" + seg(name), body: body}, &out)
	return out, err
}

// GroupThings returns one page of a group's members (static or dynamic).
func (c *Client) GroupThings(ctx context.Context, name string, o ListOptions) ([]wire.Thing, string, error) {
	return list[wire.Thing](ctx, c, "/groups/"+seg(name)+"/things", o.values())
}

// DeleteGroup deletes a group; its members stay, without the membership.
func (c *Client) DeleteGroup(ctx context.Context, name string) error {
	return c.do(ctx, request{method: http.MethodDelete, path: "/groups/" + seg(name)}, nil)
}

// ---- policies ----

// Policy is a stored policy. Document is kept as the server sent it
// ({"statements": [...]}); Decode parses it.
type Policy struct {
	Name        string          `json:"name"`
	Description string          `json:"description"`
	Document    json.RawMessage `json:"document"`
	Builtin     bool            `json:"builtin"`
	CreatedAt   time.Time       `json:"createdAt"`
	UpdatedAt   time.Time       `json:"updatedAt"`
}

// PolicyDocument mirrors the policy document: an ordered list of
// statements.
type PolicyDocument struct {
	Statements []PolicyStatement `json:"statements"`
}

// PolicyStatement is one statement of a policy document: effect "allow" or
// "deny", actions "publish", "subscribe", "receive", and MQTT topic filters
// that may use the variables ${thing} and ${clientid}.
type PolicyStatement struct {
	Effect  string   `json:"effect"`
	Actions []string `json:"actions"`
	Topics  []string `json:"topics"`
}

// JSON returns the document's JSON, for NewPolicy.Document.
func (d PolicyDocument) JSON() json.RawMessage {
	b, _ := json.Marshal(d) // a struct of strings always marshals
	return b
}

// Decode parses the policy's document.
func (p Policy) Decode() (PolicyDocument, error) {
	var d PolicyDocument
	err := json.Unmarshal(p.Document, &d)
	return d, err
}

// NewPolicy is the body of CreatePolicy. Document is sent as is, so the
// server (which rejects unknown fields) sees exactly what the caller wrote.
type NewPolicy struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	Document    json.RawMessage `json:"document"`
}

// CreatePolicy creates a policy.
func (c *Client) CreatePolicy(ctx context.Context, p NewPolicy) (Policy, error) {
	var out Policy
	err := c.do(ctx, request{method: http.MethodPost, path: "/policies", body: p}, &out)
	return out, err
}

// PolicyValidation is the answer of ValidatePolicy.
type PolicyValidation struct {
	Valid      bool `json:"valid"`
	Statements int  `json:"statements"`
}

// ValidatePolicy checks a policy document (its JSON text, sent as it is,
// so that a syntax error's line and column are the text's) without
// storing it.
func (c *Client) ValidatePolicy(ctx context.Context, document []byte) (PolicyValidation, error) {
	var out PolicyValidation
	err := c.do(ctx, request{method: http.MethodPost, path: "/policies:validate", raw: bytes.NewReader(document), rawType: "application/json"}, &out)
	return out, err
}

// GetPolicy returns one policy.
func (c *Client) GetPolicy(ctx context.Context, name string) (Policy, error) {
	var out Policy
	err := c.do(ctx, request{method: http.MethodGet, path: "/policies/" + seg(name)}, &out)
	return out, err
}

// ListPolicies returns one page of policies and the next cursor.
func (c *Client) ListPolicies(ctx context.Context, o ListOptions) ([]Policy, string, error) {
	return list[Policy](ctx, c, "/policies", o.values())
}

// UpdatePolicy replaces a policy's description and document; connected
// clients get the new permissions at once.
func (c *Client) UpdatePolicy(ctx context.Context, name, description string, document json.RawMessage) (Policy, error) {
	var out Policy
	body := struct {
		Description string          `json:"description"`
		Document    json.RawMessage `json:"document"`
	}{description, document}
	err := c.do(ctx, request{method: http.MethodPut, path: "/policies/" + seg(name), body: body}, &out)
	return out, err
}

// DeletePolicy deletes a policy and detaches it everywhere. The built-in
// "default" policy cannot be deleted (conflict).
func (c *Client) DeletePolicy(ctx context.Context, name string) error {
	return c.do(ctx, request{method: http.MethodDelete, path: "/policies/" + seg(name)}, nil)
}

// ---- API tokens ----

// NewToken is a freshly created API token: Secret is the whole token
// (mote.tok_XXXX.YYYY), shown only this once.
type NewToken struct {
	wire.Token
	Secret string `json:"token"`
}

// CreateToken creates an API token. role "" means the server default
// (admin); expiresAt may be nil (never expires).
func (c *Client) CreateToken(ctx context.Context, name, role string, expiresAt *time.Time) (NewToken, error) {
	body := struct {
		Name      string     `json:"name"`
		Role      string     `json:"role,omitempty"`
		ExpiresAt *time.Time `json:"expiresAt,omitempty"`
	}{Name: name, Role: role}
	if expiresAt != nil {
		t := expiresAt.UTC()
		body.ExpiresAt = &t
	}
	var out NewToken
	err := c.do(ctx, request{method: http.MethodPost, path: "/tokens", body: body}, &out)
	return out, err
}

// ListTokens lists the API tokens (never their secrets).
func (c *Client) ListTokens(ctx context.Context) ([]wire.Token, error) {
	items, _, err := list[wire.Token](ctx, c, "/tokens", nil)
	return items, err
}

// DeleteToken deletes an API token; it stops working at once.
func (c *Client) DeleteToken(ctx context.Context, id string) error {
	return c.do(ctx, request{method: http.MethodDelete, path: "/tokens/" + seg(id)}, nil)
}
