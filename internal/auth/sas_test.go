package auth

import (
	"context"
	"encoding/base64"
	"errors"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/azureiot"
	"github.com/moteiot/mote/internal/seal"
	"github.com/moteiot/mote/internal/store"
)

func newBox(tb testing.TB, b byte) *seal.Box {
	tb.Helper()
	key := make([]byte, seal.KeySize)
	for i := range key {
		key[i] = b
	}
	box, err := seal.New(key)
	if err != nil {
		tb.Fatal(err)
	}
	return box
}

// symKey stores a symmetricKey credential sealed with box.
func (e *devEnv) symKey(tb testing.TB, box *seal.Box, id, thing string, key []byte, notAfter *time.Time) {
	tb.Helper()
	_, err := e.st.Credentials().Create(context.Background(), store.Credential{ID: id, Thing: thing,
		Type: store.CredentialSymmetricKey, SealedKey: box.Seal(base64.StdEncoding.EncodeToString(key)), NotAfter: notAfter})
	if err != nil {
		tb.Fatal(err)
	}
}

func TestSAS(t *testing.T) {
	e := newDevEnv(t)
	box := newBox(t, 1)
	e.d.SetSealer(box)
	ctx := context.Background()
	now := time.Now()
	e.thing(t, "dev1", "", true)
	e.thing(t, "dev2", "", true)
	e.thing(t, "off", "", false)
	k1, k1b, k2 := []byte("key one key one key one key one!"), []byte("secondary key of dev1..........."), []byte("key two key two key two key two!")
	credExp := now.Add(30 * time.Minute)
	e.symKey(t, box, "c1", "dev1", k1, nil)
	e.symKey(t, box, "c1b", "dev1", k1b, &credExp)
	e.symKey(t, box, "c2", "dev2", k2, nil)
	e.symKey(t, box, "c3", "off", k2, nil)
	e.symKey(t, newBox(t, 2), "c4", "dev2", k1, nil) // sealed with another seal.key: opens nothing

	id, err := e.d.SAS(ctx, "hub", "dev1", azureiot.NewSAS(k1, "hub", "dev1", now.Add(time.Hour)))
	if err != nil || id.Thing != "dev1" || id.Credential != "c1" || id.Method != store.CredentialSymmetricKey {
		t.Fatalf("SAS(primary) = %+v, %v", id, err)
	}
	if d := id.Expires.Sub(now.Add(time.Hour)); d > time.Second || d < -time.Second {
		t.Errorf("Expires = %v; want the token's expiry", id.Expires)
	}
	// The secondary key expires before the token: the identity with it.
	id, err = e.d.SAS(ctx, "hub", "dev1", azureiot.NewSAS(k1b, "hub", "dev1", now.Add(time.Hour)))
	if err != nil || id.Credential != "c1b" || !id.Expires.Equal(credExp.Truncate(time.Millisecond)) {
		t.Fatalf("SAS(secondary) = %+v, %v; want Expires %v", id, err, credExp)
	}
	for _, tc := range []struct {
		name, device, token string
		want                error
	}{
		{"expired", "dev1", azureiot.NewSAS(k1, "hub", "dev1", now.Add(-time.Minute)), ErrSASExpired},
		{"another device's token", "dev1", azureiot.NewSAS(k2, "hub", "dev2", now.Add(time.Hour)), ErrSASWrongDevice},
		{"another device's key", "dev1", azureiot.NewSAS(k2, "hub", "dev1", now.Add(time.Hour)), ErrBadSecret},
		{"key sealed with another seal.key", "dev2", azureiot.NewSAS(k1, "hub", "dev2", now.Add(time.Hour)), ErrBadSecret},
		{"disabled thing", "off", azureiot.NewSAS(k2, "hub", "off", now.Add(time.Hour)), ErrDisabled},
		{"unknown thing", "ghost", azureiot.NewSAS(k2, "hub", "ghost", now.Add(time.Hour)), ErrBadSecret},
		{"not a token", "dev1", "SharedAccessSignature nope", ErrBadSecret},
	} {
		if _, err := e.d.SAS(ctx, "hub", tc.device, tc.token); !errors.Is(err, tc.want) {
			t.Errorf("%s: SAS = %v; want %v", tc.name, err, tc.want)
		}
	}
	// Revocation reaches a cached token once the registry invalidates.
	tok := azureiot.NewSAS(k2, "hub", "dev2", now.Add(time.Hour))
	if _, err := e.d.SAS(ctx, "hub", "dev2", tok); err != nil {
		t.Fatal(err)
	}
	if _, err := e.st.Credentials().Revoke(ctx, "c2", now); err != nil {
		t.Fatal(err)
	}
	e.d.Invalidate("dev2")
	if _, err := e.d.SAS(ctx, "hub", "dev2", tok); !errors.Is(err, ErrRevoked) {
		t.Errorf("revoked: SAS = %v; want ErrRevoked", err)
	}
	// Without a sealer nothing is accepted.
	bare := NewDevices(e.st, e.hasher, e.ca)
	if _, err := bare.SAS(ctx, "hub", "dev1", azureiot.NewSAS(k1, "hub", "dev1", now.Add(time.Hour))); !errors.Is(err, ErrBadSecret) {
		t.Errorf("no sealer: SAS = %v; want ErrBadSecret", err)
	}
}
