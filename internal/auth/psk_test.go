package auth

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/store"
)

func TestPSK(t *testing.T) {
	e := newDevEnv(t)
	ctx := context.Background()
	e.thing(t, "dev", "", true)
	e.thing(t, "off", "", false)
	e.thing(t, "certonly", "", true)
	e.cert(t, e.ca, "certonly", true)

	mk := func(thing string, created time.Time) (string, []byte) {
		s := NewSecret()
		c, err := e.st.Credentials().Create(ctx, store.Credential{ID: NewID("cred"), Thing: thing, Type: store.CredentialSecret, SecretHash: e.hasher.Hash(s), CreatedAt: created})
		if err != nil {
			t.Fatal(err)
		}
		return c.ID, e.hasher.DerivePSK(e.hasher.Hash(s))
	}
	now := time.Now()
	oldID, oldPSK := mk("dev", now.Add(-time.Hour))
	newID, newPSK := mk("dev", now)

	key, id, err := e.d.PSK(ctx, "dev")
	if err != nil || !bytes.Equal(key, newPSK) || id.Thing != "dev" || id.Credential != newID {
		t.Fatalf("PSK(dev) = %x, %+v, %v; want the newest secret's PSK", key, id, err)
	}
	if bytes.Equal(oldPSK, newPSK) || len(newPSK) != 32 {
		t.Fatalf("PSKs of two secrets: %x and %x; want two different 32-byte keys", oldPSK, newPSK)
	}
	// The key depends on the hash key, not only on the stored hash: a
	// stolen database does not give it.
	other, _ := NewHasher(bytes.Repeat([]byte{7}, 32))
	if bytes.Equal(other.DerivePSK(e.hasher.Hash("x")), e.hasher.DerivePSK(e.hasher.Hash("x"))) {
		t.Error("DerivePSK does not depend on the hash key")
	}
	// Revoking the newest falls back to the older one; revoking both
	// leaves no key.
	if _, err := e.st.Credentials().Revoke(ctx, newID, now); err != nil {
		t.Fatal(err)
	}
	if key, _, err := e.d.PSK(ctx, "dev"); err != nil || !bytes.Equal(key, oldPSK) {
		t.Errorf("PSK after revoking the newest = %x, %v; want the older secret's", key, err)
	}
	if _, err := e.st.Credentials().Revoke(ctx, oldID, now); err != nil {
		t.Fatal(err)
	}
	for _, thing := range []string{"dev", "certonly", "nobody", ""} {
		if key, _, err := e.d.PSK(ctx, thing); !errors.Is(err, ErrBadSecret) || key != nil {
			t.Errorf("PSK(%q) = %x, %v; want no key, ErrBadSecret", thing, key, err)
		}
	}
	mk("off", now)
	if key, _, err := e.d.PSK(ctx, "off"); !errors.Is(err, ErrDisabled) || key != nil {
		t.Errorf("PSK(disabled thing) = %x, %v; want ErrDisabled", key, err)
	}
	// CredentialPSK: only a live secret of that thing.
	if _, err := e.d.CredentialPSK(ctx, "other", oldID); err == nil {
		t.Error("CredentialPSK of another thing's credential succeeded")
	}
	if _, err := e.d.CredentialPSK(ctx, "dev", oldID); err == nil {
		t.Error("CredentialPSK of a revoked secret succeeded")
	}
}
