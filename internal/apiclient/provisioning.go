package apiclient

import (
	"context"
	"encoding/json"
	"net/http"
	"time"
)

// ---- provisioning (docs/provisioning.md) ----

// Attestation is an enrollment group's attestation.
type Attestation struct {
	Type          string `json:"type"`
	PrimaryKey    string `json:"primaryKey,omitempty"` // in the answer to the creation only
	CACertificate string `json:"caCertificate,omitempty"`
	CAFingerprint string `json:"caFingerprint,omitempty"`
	Verified      *bool  `json:"verified,omitempty"`
	Mode          string `json:"mode,omitempty"`
}

// Enrollment is an enrollment group.
type Enrollment struct {
	Name                string            `json:"name"`
	Attestation         Attestation       `json:"attestation"`
	Type                string            `json:"type,omitempty"`
	Groups              []string          `json:"groups,omitempty"`
	Attributes          map[string]string `json:"attributes,omitempty"`
	Policies            []string          `json:"policies,omitempty"`
	Desired             json.RawMessage   `json:"desired,omitempty"`
	Enabled             *bool             `json:"enabled,omitempty"`
	MaxDevices          int               `json:"maxDevices,omitempty"`
	NamePattern         string            `json:"namePattern,omitempty"`
	NameTemplate        string            `json:"nameTemplate,omitempty"`
	DeviceConfiguration map[string]string `json:"deviceConfiguration,omitempty"`
	ExpiresAt           *time.Time        `json:"expiresAt,omitempty"`
	Registered          int               `json:"registered,omitempty"`
	CreatedAt           time.Time         `json:"createdAt,omitzero"`
	UpdatedAt           time.Time         `json:"updatedAt,omitzero"`
}

// CreateEnrollment creates an enrollment group.
func (c *Client) CreateEnrollment(ctx context.Context, e Enrollment) (Enrollment, error) {
	var out Enrollment
	err := c.do(ctx, request{method: http.MethodPost, path: "/enrollments", body: e}, &out)
	return out, err
}

// ListEnrollments returns one page of enrollment groups.
func (c *Client) ListEnrollments(ctx context.Context, o ListOptions) ([]Enrollment, string, error) {
	return list[Enrollment](ctx, c, "/enrollments", o.values())
}

// GetEnrollment returns one enrollment group.
func (c *Client) GetEnrollment(ctx context.Context, name string) (Enrollment, error) {
	var out Enrollment
	err := c.do(ctx, request{method: http.MethodGet, path: "/enrollments/" + seg(name)}, &out)
	return out, err
}

// UpdateEnrollment patches an enrollment group with the given fields.
func (c *Client) UpdateEnrollment(ctx context.Context, name string, patch map[string]any) (Enrollment, error) {
	var out Enrollment
	err := c.do(ctx, request{method: http.MethodPatch, path: "/enrollments/" + seg(name), body: patch}, &out)
	return out, err
}

// DeleteEnrollment deletes an enrollment group.
func (c *Client) DeleteEnrollment(ctx context.Context, name string) error {
	return c.do(ctx, request{method: http.MethodDelete, path: "/enrollments/" + seg(name)}, nil)
}

// VerificationCode is the nonce an x509CA group's CA must sign.
type VerificationCode struct {
	VerificationCode string    `json:"verificationCode"`
	ExpiresAt        time.Time `json:"expiresAt"`
}

// EnrollmentVerificationCode returns a fresh verification code.
func (c *Client) EnrollmentVerificationCode(ctx context.Context, name string) (VerificationCode, error) {
	var out VerificationCode
	err := c.do(ctx, request{method: http.MethodGet, path: "/enrollments/" + seg(name) + "/verification-code"}, &out)
	return out, err
}

// VerifyEnrollmentCA sends the verification certificate (PEM).
func (c *Client) VerifyEnrollmentCA(ctx context.Context, name, certPEM string) (Enrollment, error) {
	var out Enrollment
	err := c.do(ctx, request{method: http.MethodPost, path: "/enrollments/" + seg(name) + "/verify", body: map[string]string{"certificate": certPEM}}, &out)
	return out, err
}

// Claim is a claim token.
type Claim struct {
	ID            string     `json:"id"`
	Token         string     `json:"token,omitempty"` // in the answer to the creation only
	Thing         string     `json:"thing,omitempty"`
	Enrollment    string     `json:"enrollment,omitempty"`
	ExpiresAt     time.Time  `json:"expiresAt"`
	Redeemed      bool       `json:"redeemed"`
	RedeemedAt    *time.Time `json:"redeemedAt,omitempty"`
	RedeemedThing string     `json:"redeemedThing,omitempty"`
	CreatedAt     time.Time  `json:"createdAt"`
	QR            *struct {
		Payload string `json:"payload"`
		PNG     string `json:"png"`
	} `json:"qr,omitempty"`
}

// NewClaim is what CreateClaim asks for.
type NewClaim struct {
	Thing      string `json:"thing,omitempty"`
	Enrollment string `json:"enrollment,omitempty"`
	TTL        string `json:"ttl,omitempty"`
}

// CreateClaim creates a claim token.
func (c *Client) CreateClaim(ctx context.Context, n NewClaim) (Claim, error) {
	var out Claim
	err := c.do(ctx, request{method: http.MethodPost, path: "/claims", body: n}, &out)
	return out, err
}

// ListClaims returns one page of claim tokens.
func (c *Client) ListClaims(ctx context.Context, o ListOptions) ([]Claim, string, error) {
	return list[Claim](ctx, c, "/claims", o.values())
}

// GetClaim returns one claim token.
func (c *Client) GetClaim(ctx context.Context, id string) (Claim, error) {
	var out Claim
	err := c.do(ctx, request{method: http.MethodGet, path: "/claims/" + seg(id)}, &out)
	return out, err
}

// DeleteClaim deletes a claim token.
func (c *Client) DeleteClaim(ctx context.Context, id string) error {
	return c.do(ctx, request{method: http.MethodDelete, path: "/claims/" + seg(id)}, nil)
}
