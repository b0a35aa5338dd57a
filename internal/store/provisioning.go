package store

import (
	"context"
	"time"
)

// Attestation types of an enrollment group (internal/provisioning).
const (
	AttestationSymmetricKey = "symmetricKey"
	AttestationX509CA       = "x509CA"
)

// Enrollment is an enrollment group: how devices prove they may register
// themselves and what each one is given. The store keeps Spec (what a
// device is given: type, groups, attributes, policies, desired shadow,
// name rules) as the provisioning package encodes it (JSON) and does not
// interpret it.
type Enrollment struct {
	Name        string
	Attestation string // AttestationSymmetricKey or AttestationX509CA
	// SealedKey is a symmetric-key group's primary key, sealed by the
	// caller (internal/seal).
	SealedKey string
	// CACert is an x509CA group's CA certificate (PEM), CAFingerprint its
	// hex SHA-256; CAVerified once its proof of possession was given.
	CACert        string
	CAFingerprint string
	CAVerified    bool
	// VerificationCode is the nonce the CA must sign as the common name of
	// a verification certificate, valid until VerificationExpires.
	VerificationCode    string
	VerificationExpires *time.Time
	Spec                []byte
	Enabled             bool
	MaxDevices          int // 0: no limit
	ExpiresAt           *time.Time
	Registered          int // devices registered through the group (Reserve)
	CreatedAt           time.Time
	UpdatedAt           time.Time
}

// Registration records which thing a registration id of a group became,
// and the credential it was last given. It goes with its thing.
type Registration struct {
	Enrollment string
	ID         string // the registration id
	Thing      string
	Credential string
	CreatedAt  time.Time
	UpdatedAt  time.Time
}

// Claim is a one-time claim token. Only a keyed hash of the token is kept.
type Claim struct {
	ID            string
	TokenHash     []byte
	Thing         string // fixed thing name; "" lets the redeemer's CSR name it
	Enrollment    string // "" or the group whose spec the thing gets
	ExpiresAt     time.Time
	RedeemedAt    *time.Time
	RedeemedThing string
	CreatedAt     time.Time
}

// ProvisioningStore keeps enrollment groups, their registrations and
// claim tokens. Lists are ordered by name (claims by id).
type ProvisioningStore interface {
	// CreateEnrollment stores a new group; the same name is a conflict.
	CreateEnrollment(ctx context.Context, e Enrollment) (Enrollment, error)
	GetEnrollment(ctx context.Context, name string) (Enrollment, error)
	ListEnrollments(ctx context.Context, after string, limit int) ([]Enrollment, error)
	// UpdateEnrollment replaces everything but Name, Attestation,
	// Registered and CreatedAt, and sets UpdatedAt to now.
	UpdateEnrollment(ctx context.Context, e Enrollment) (Enrollment, error)
	// DeleteEnrollment removes the group, its registrations and the
	// claims that name it.
	DeleteEnrollment(ctx context.Context, name string) error
	// Reserve counts one more device in the group, atomically: a group
	// with MaxDevices > 0 that has as many is a core.Conflict
	// `enrollment "x" is full`.
	Reserve(ctx context.Context, name string) (Enrollment, error)
	// Release gives back a Reserve whose registration failed.
	Release(ctx context.Context, name string) error
	// GetRegistration returns core.NotFound `registration "id" not found`.
	GetRegistration(ctx context.Context, enrollment, id string) (Registration, error)
	// PutRegistration creates or replaces (Thing, Credential) a
	// registration; the thing must exist.
	PutRegistration(ctx context.Context, r Registration) (Registration, error)

	CreateClaim(ctx context.Context, c Claim) (Claim, error)
	GetClaim(ctx context.Context, id string) (Claim, error)
	// FindClaim returns the claim whose TokenHash is hash.
	FindClaim(ctx context.Context, hash []byte) (Claim, error)
	ListClaims(ctx context.Context, after string, limit int) ([]Claim, error)
	DeleteClaim(ctx context.Context, id string) error
	// RedeemClaim marks the claim redeemed by thing at at, atomically: one
	// already redeemed is a core.Conflict `claim "id" was already redeemed`.
	RedeemClaim(ctx context.Context, id, thing string, at time.Time) (Claim, error)
	// UnredeemClaim undoes a RedeemClaim whose registration failed.
	UnredeemClaim(ctx context.Context, id string) error
}
