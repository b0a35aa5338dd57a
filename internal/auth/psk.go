package auth

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/store"
)

// pskLabel separates the DTLS pre-shared keys from every other use of the
// hash key.
const pskLabel = "mote coaps psk v1\x00"

// DerivePSK returns the DTLS pre-shared key of a secret credential: a
// keyed hash, under the hash key, of the secret's stored keyed hash.
//
// Secrets are stored only as HMAC(key, secret), so the server cannot
// recover a secret to use it as a PSK. The PSK is instead derived from
// what the server does keep, with the key that lives outside the
// database: a stolen database alone yields no PSK, revoking or rotating
// the secret revokes or rotates its PSK, and the secret itself never
// travels (a PSK identity is sent in clear, the key is not). The device
// is given its PSK by an administrator (mote cred psk THING ID), alongside or
// instead of the secret (docs/coap.md).
func (h *Hasher) DerivePSK(secretHash []byte) []byte {
	m := hmac.New(sha256.New, h.key)
	m.Write([]byte(pskLabel))
	m.Write(secretHash)
	return m.Sum(nil)
}

// PSK returns the DTLS pre-shared key of a thing and the identity it
// proves: that of the thing's newest secret credential that is neither
// revoked nor expired. A thing without one, or disabled, is refused like
// a bad secret (ErrBadSecret, ErrDisabled), never with a key.
func (d *Devices) PSK(ctx context.Context, thing string) ([]byte, Identity, error) {
	if thing == "" {
		return nil, Identity{}, ErrBadSecret
	}
	creds, err := d.st.Credentials().ListByThing(ctx, thing)
	if core.IsNotFound(err) {
		return nil, Identity{}, ErrBadSecret
	}
	if err != nil {
		return nil, Identity{}, err
	}
	var best *store.Credential
	now := d.now()
	for i := range creds {
		c := &creds[i]
		if c.Type != store.CredentialSecret || c.Revoked || len(c.SecretHash) == 0 || (c.NotAfter != nil && !c.NotAfter.After(now)) {
			continue
		}
		if best == nil || c.CreatedAt.After(best.CreatedAt) {
			best = c
		}
	}
	if best == nil {
		return nil, Identity{}, ErrBadSecret
	}
	id, err := d.check(ctx, *best)
	if err != nil {
		return nil, Identity{}, err
	}
	return d.hasher.DerivePSK(best.SecretHash), id, nil
}

// CredentialPSK returns the PSK of one secret credential (for the
// administrator who hands it to the device).
func (d *Devices) CredentialPSK(ctx context.Context, thing, id string) ([]byte, error) {
	c, err := d.st.Credentials().Get(ctx, id)
	if err != nil {
		return nil, err
	}
	if c.Thing != thing {
		return nil, core.Errorf(core.KindNotFound, "credential %q not found", id)
	}
	if c.Type != store.CredentialSecret || len(c.SecretHash) == 0 {
		return nil, core.Invalid("id", "credential %q is not a secret; only secrets have a CoAP PSK", id)
	}
	if c.Revoked {
		return nil, core.Conflict("credential %q is revoked", id)
	}
	return d.hasher.DerivePSK(c.SecretHash), nil
}
