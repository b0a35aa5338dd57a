package registry

import (
	"context"
	"time"

	"github.com/moteiot/mote/internal/auth"
	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/pki"
	"github.com/moteiot/mote/internal/store"
)

// Credential validity bounds.
const (
	DefaultCertValidity = 365 * 24 * time.Hour
	MaxCertValidity     = 10 * 365 * 24 * time.Hour
)

// NewCredential is a freshly created credential with the parts that are
// shown only once.
type NewCredential struct {
	store.Credential
	Secret     string `json:"secret,omitempty"`     // secret credentials
	PrivateKey string `json:"privateKey,omitempty"` // server-generated key pairs
	Key        string `json:"key,omitempty"`        // symmetricKey credentials (base64)
	CACert     string `json:"caCertificate,omitempty"`
}

// CreateSecret creates a secret credential for a thing; the secret is
// returned once and only its keyed hash is kept. expires may be nil.
func (r *Registry) CreateSecret(ctx context.Context, thing string, expires *time.Time) (NewCredential, error) {
	if expires != nil && !expires.After(r.now()) {
		return NewCredential{}, core.Invalid("expiresAt", "expiresAt must be in the future")
	}
	if _, err := r.st.Things().Get(ctx, thing); err != nil {
		return NewCredential{}, err
	}
	secret := auth.NewSecret()
	c, err := r.st.Credentials().Create(ctx, store.Credential{
		ID:         auth.NewID("cred"),
		Thing:      thing,
		Type:       store.CredentialSecret,
		SecretHash: r.hasher.Hash(secret),
		NotAfter:   expires,
	})
	if err != nil {
		return NewCredential{}, err
	}
	return NewCredential{Credential: c, Secret: secret}, nil
}

// IssueCertificate creates a key pair and a client certificate for a thing
// from the built-in CA. The private key is returned once and not kept.
func (r *Registry) IssueCertificate(ctx context.Context, thing string, validity time.Duration) (NewCredential, error) {
	validity, err := checkValidity(validity)
	if err != nil {
		return NewCredential{}, err
	}
	if _, err := r.st.Things().Get(ctx, thing); err != nil {
		return NewCredential{}, err
	}
	certPEM, keyPEM, cert, err := r.ca.IssueClientCert(thing, validity)
	if err != nil {
		return NewCredential{}, err
	}
	nc, err := r.storeCert(ctx, thing, certPEM, cert.NotAfter, pki.Fingerprint(cert))
	if err != nil {
		return NewCredential{}, err
	}
	nc.PrivateKey = string(keyPEM)
	return nc, nil
}

// SignCSR signs a device's certificate signing request: the device keeps
// its private key.
func (r *Registry) SignCSR(ctx context.Context, thing string, csrPEM []byte, validity time.Duration) (NewCredential, error) {
	validity, err := checkValidity(validity)
	if err != nil {
		return NewCredential{}, err
	}
	if _, err := r.st.Things().Get(ctx, thing); err != nil {
		return NewCredential{}, err
	}
	certPEM, cert, err := r.ca.SignCSR(csrPEM, thing, validity)
	if err != nil {
		return NewCredential{}, err
	}
	return r.storeCert(ctx, thing, certPEM, cert.NotAfter, pki.Fingerprint(cert))
}

func (r *Registry) storeCert(ctx context.Context, thing string, certPEM []byte, notAfter time.Time, fp string) (NewCredential, error) {
	c, err := r.st.Credentials().Create(ctx, store.Credential{
		ID:          auth.NewID("cred"),
		Thing:       thing,
		Type:        store.CredentialX509,
		Fingerprint: fp,
		CertPEM:     string(certPEM),
		NotAfter:    &notAfter,
	})
	if err != nil {
		return NewCredential{}, err
	}
	return NewCredential{Credential: c, CACert: string(r.ca.CertPEM())}, nil
}

func checkValidity(d time.Duration) (time.Duration, error) {
	switch {
	case d == 0:
		return DefaultCertValidity, nil
	case d < time.Hour || d > MaxCertValidity:
		return 0, core.Invalid("validityDays", "validity must be between 1 hour and 10 years")
	}
	return d, nil
}

// ListCredentials lists a thing's credentials (never their secrets).
func (r *Registry) ListCredentials(ctx context.Context, thing string) ([]store.Credential, error) {
	if _, err := r.st.Things().Get(ctx, thing); err != nil {
		return nil, err
	}
	return r.st.Credentials().ListByThing(ctx, thing)
}

// GetCredential returns one credential of a thing.
func (r *Registry) GetCredential(ctx context.Context, thing, id string) (store.Credential, error) {
	c, err := r.st.Credentials().Get(ctx, id)
	if err != nil {
		return store.Credential{}, err
	}
	if c.Thing != thing {
		return store.Credential{}, core.NotFound("credential", id)
	}
	return c, nil
}

// RevokeCredential revokes a credential; a connection that used it is
// closed at once.
func (r *Registry) RevokeCredential(ctx context.Context, thing, id string) (store.Credential, error) {
	if _, err := r.GetCredential(ctx, thing, id); err != nil {
		return store.Credential{}, err
	}
	c, err := r.st.Credentials().Revoke(ctx, id, r.now())
	if err != nil {
		return store.Credential{}, err
	}
	r.crl.invalidate()
	r.emit(Event{Kind: CredentialRevoked, Thing: thing, Credential: id})
	return c, nil
}

// DeleteCredential deletes a credential; a connection that used it is
// closed at once.
func (r *Registry) DeleteCredential(ctx context.Context, thing, id string) error {
	if _, err := r.GetCredential(ctx, thing, id); err != nil {
		return err
	}
	if err := r.st.Credentials().Delete(ctx, id); err != nil {
		return err
	}
	r.emit(Event{Kind: CredentialRevoked, Thing: thing, Credential: id})
	return nil
}

// CACertPEM returns the built-in CA certificate devices should trust.
func (r *Registry) CACertPEM() []byte { return r.ca.CertPEM() }
