package apiclient

import (
	"context"
	"net/http"
	"time"

	"github.com/moteiot/mote/internal/registry"
	"github.com/moteiot/mote/internal/store"
)

// newCredential is the body of POST /things/{name}/credentials.
type newCredential struct {
	Type         string     `json:"type"`
	ExpiresAt    *time.Time `json:"expiresAt,omitempty"`
	CSR          string     `json:"csr,omitempty"`
	ValidityDays int        `json:"validityDays,omitempty"`
}

func credPath(thing string) string { return "/things/" + seg(thing) + "/credentials" }

func (c *Client) createCredential(ctx context.Context, thing string, body newCredential) (registry.NewCredential, error) {
	var out registry.NewCredential
	err := c.do(ctx, request{method: http.MethodPost, path: credPath(thing), body: body}, &out)
	return out, err
}

// CreateSecret creates a secret credential; the answer's Secret is shown
// only this once. expiresAt may be nil (never expires). The device connects
// with user name = thing name and password = secret.
func (c *Client) CreateSecret(ctx context.Context, thing string, expiresAt *time.Time) (registry.NewCredential, error) {
	var exp *time.Time
	if expiresAt != nil {
		t := expiresAt.UTC()
		exp = &t
	}
	return c.createCredential(ctx, thing, newCredential{Type: store.CredentialSecret, ExpiresAt: exp})
}

// CreateSymmetricKey creates a symmetricKey credential (Azure IoT Hub SAS
// tokens, docs/azure.md): the answer's Key (base64) is shown only once.
func (c *Client) CreateSymmetricKey(ctx context.Context, thing string, expiresAt *time.Time) (registry.NewCredential, error) {
	var exp *time.Time
	if expiresAt != nil {
		t := expiresAt.UTC()
		exp = &t
	}
	return c.createCredential(ctx, thing, newCredential{Type: store.CredentialSymmetricKey, ExpiresAt: exp})
}

// IssueCertificate has the server create a key pair and a client
// certificate: the answer has Certificate (CertPEM), PrivateKey (shown only
// once, not kept) and CACert. validityDays 0 means the server default (365).
func (c *Client) IssueCertificate(ctx context.Context, thing string, validityDays int) (registry.NewCredential, error) {
	return c.createCredential(ctx, thing, newCredential{Type: store.CredentialX509, ValidityDays: validityDays})
}

// SignCSR has the CA sign the device's certificate signing request (PEM);
// the private key never leaves the device. The certificate's subject is the
// thing name whatever the CSR says.
func (c *Client) SignCSR(ctx context.Context, thing string, csrPEM []byte, validityDays int) (registry.NewCredential, error) {
	return c.createCredential(ctx, thing, newCredential{Type: store.CredentialX509, CSR: string(csrPEM), ValidityDays: validityDays})
}

// ListCredentials lists a thing's credentials (never secrets or keys).
func (c *Client) ListCredentials(ctx context.Context, thing string) ([]store.Credential, error) {
	items, _, err := list[store.Credential](ctx, c, credPath(thing), nil)
	return items, err
}

// GetCredential returns one credential of a thing.
func (c *Client) GetCredential(ctx context.Context, thing, id string) (store.Credential, error) {
	var out store.Credential
	err := c.do(ctx, request{method: http.MethodGet, path: credPath(thing) + "/" + seg(id)}, &out)
	return out, err
}

// RevokeCredential revokes a credential; a live connection that used it is
// closed within a second. It returns the revoked credential.
func (c *Client) RevokeCredential(ctx context.Context, thing, id string) (store.Credential, error) {
	var out store.Credential
	err := c.do(ctx, request{method: http.MethodPost, path: credPath(thing) + "/" + seg(id) + "/revoke"}, &out)
	return out, err
}

// DeleteCredential deletes a credential and disconnects a live connection
// that used it.
func (c *Client) DeleteCredential(ctx context.Context, thing, id string) error {
	return c.do(ctx, request{method: http.MethodDelete, path: credPath(thing) + "/" + seg(id)}, nil)
}

// CredentialPSK is the CoAP DTLS pre-shared key of a secret credential.
type CredentialPSK struct {
	Identity string `json:"identity"` // the thing name
	PSK      string `json:"psk"`      // hex
}

// GetCredentialPSK returns the DTLS-PSK a device uses on the CoAPS port
// with this secret credential (admin only; docs/coap.md).
func (c *Client) GetCredentialPSK(ctx context.Context, thing, id string) (CredentialPSK, error) {
	var out CredentialPSK
	err := c.do(ctx, request{method: http.MethodGet, path: credPath(thing) + "/" + seg(id) + "/psk"}, &out)
	return out, err
}

// Rotation is the body of a credential rotation; zero fields take the
// server's defaults.
type Rotation struct {
	Window       string `json:"window,omitempty"` // Go duration; "" the server's --credential-rotation-window
	CSR          string `json:"csr,omitempty"`
	ValidityDays int    `json:"validityDays,omitempty"`
}

// RotatedCredential is a rotation's answer: the new credential (its
// secret, key or private key shown once) and the old one with its new
// expiry.
type RotatedCredential struct {
	registry.NewCredential
	Previous store.Credential `json:"previous"`
}

// RotateCredential replaces a credential by a new one of its type; the
// old one stays valid for the rotation window (docs/credentials.md).
func (c *Client) RotateCredential(ctx context.Context, thing, id string, r Rotation) (RotatedCredential, error) {
	var out RotatedCredential
	err := c.do(ctx, request{method: http.MethodPost, path: credPath(thing) + "/" + seg(id) + "/rotate", body: r}, &out)
	return out, err
}
