package registry

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"time"

	"github.com/moteiot/mote/internal/auth"
	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/store"
)

// SymmetricKeyBytes is the size of a generated symmetric key: 256 bits,
// as IoT Hub generates them.
const SymmetricKeyBytes = 32

// CreateSymmetricKey creates a symmetricKey credential for a thing: a
// random key, returned once (base64, as in an Azure connection string's
// SharedAccessKey) and kept sealed with the data directory's seal.key, so
// that SAS tokens signed with it can be verified (auth.Devices.SAS).
// expires may be nil.
func (r *Registry) CreateSymmetricKey(ctx context.Context, thing string, expires *time.Time) (NewCredential, error) {
	if r.sealer == nil {
		return NewCredential{}, core.Errorf(core.KindUnavailable, "symmetric keys need the data directory's seal.key")
	}
	if expires != nil && !expires.After(r.now()) {
		return NewCredential{}, core.Invalid("expiresAt", "expiresAt must be in the future")
	}
	if _, err := r.st.Things().Get(ctx, thing); err != nil {
		return NewCredential{}, err
	}
	b := make([]byte, SymmetricKeyBytes)
	if _, err := rand.Read(b); err != nil {
		return NewCredential{}, err
	}
	key := base64.StdEncoding.EncodeToString(b)
	c, err := r.st.Credentials().Create(ctx, store.Credential{
		ID:        auth.NewID("cred"),
		Thing:     thing,
		Type:      store.CredentialSymmetricKey,
		SealedKey: r.sealer.Seal(key),
		NotAfter:  expires,
	})
	if err != nil {
		return NewCredential{}, err
	}
	return NewCredential{Credential: c, Key: key}, nil
}
