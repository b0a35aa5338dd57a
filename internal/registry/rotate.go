package registry

import (
	"context"
	"time"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/store"
)

// Rotation window defaults (--credential-rotation-window,
// --credential-rotation-max-window).
const (
	DefaultRotationWindow    = 24 * time.Hour
	DefaultMaxRotationWindow = 30 * 24 * time.Hour
)

// Rotation asks for a credential to be replaced.
type Rotation struct {
	// Window is how long the old credential stays valid beside the new
	// one; nil: the registry's default. Zero ends it at once.
	Window *time.Duration
	// CSR, for an x509 credential, is the device's certificate request
	// (its key never leaves it); nil: the server makes the key pair.
	CSR []byte
	// Validity of a new certificate; 0: the default (365 days).
	Validity time.Duration
}

// RotateCredential replaces a thing's credential with a new one of the
// same type and brings the old one's expiry forward to the end of the
// rotation window: both are valid until then, the old one is refused
// after it, and connections that use it are closed when it ends (event
// CredentialRotated). A revoked or expired credential cannot be rotated
// (core.Conflict). It returns the new credential (its secret or key
// shown once) and the old one as it is now.
func (r *Registry) RotateCredential(ctx context.Context, thing, id string, rot Rotation) (NewCredential, store.Credential, error) {
	window := r.rotationWindow
	if rot.Window != nil {
		window = *rot.Window
	}
	if window < 0 || window > r.maxRotationWindow {
		return NewCredential{}, store.Credential{}, core.Invalid("window", "window must be from 0s to %s (--credential-rotation-max-window)", r.maxRotationWindow)
	}
	old, err := r.GetCredential(ctx, thing, id)
	if err != nil {
		return NewCredential{}, store.Credential{}, err
	}
	now := r.now()
	switch {
	case old.Revoked:
		return NewCredential{}, store.Credential{}, core.Conflict("credential %q is revoked: create a new one instead", id)
	case old.NotAfter != nil && !old.NotAfter.After(now):
		return NewCredential{}, store.Credential{}, core.Conflict("credential %q has expired: create a new one instead", id)
	}
	if rot.CSR != nil && old.Type != store.CredentialX509 {
		return NewCredential{}, store.Credential{}, core.Invalid("csr", "csr applies to x509 credentials only")
	}
	var nc NewCredential
	switch old.Type {
	case store.CredentialSecret:
		nc, err = r.CreateSecret(ctx, thing, nil)
	case store.CredentialSymmetricKey:
		nc, err = r.CreateSymmetricKey(ctx, thing, nil)
	case store.CredentialX509:
		if rot.CSR != nil {
			nc, err = r.SignCSR(ctx, thing, rot.CSR, rot.Validity)
		} else {
			nc, err = r.IssueCertificate(ctx, thing, rot.Validity)
		}
	default:
		return NewCredential{}, store.Credential{}, core.Errorf(core.KindInvalid, "credential %q of type %q cannot be rotated", id, old.Type)
	}
	if err != nil {
		return NewCredential{}, store.Credential{}, err
	}
	ends := now.Add(window)
	old, err = r.st.Credentials().Expire(ctx, id, ends)
	if err != nil {
		return NewCredential{}, store.Credential{}, err
	}
	r.emit(Event{Kind: CredentialRotated, Thing: thing, Credential: id, Expires: *old.NotAfter})
	return nc, old, nil
}
