package registry

import (
	"context"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/store"
)

func TestRotateCredential(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	mustThing(t, e, store.Thing{Name: "dev", Enabled: true})
	mustThing(t, e, store.Thing{Name: "other", Enabled: true})
	old, err := e.reg.CreateSecret(ctx, "dev", nil)
	if err != nil {
		t.Fatal(err)
	}
	e.events.take()

	// Refusals change nothing.
	long := DefaultMaxRotationWindow + time.Hour
	if _, _, err := e.reg.RotateCredential(ctx, "dev", old.ID, Rotation{Window: &long}); core.KindOf(err) != core.KindInvalid {
		t.Errorf("window beyond the maximum = %v; want invalid", err)
	}
	if _, _, err := e.reg.RotateCredential(ctx, "other", old.ID, Rotation{}); !core.IsNotFound(err) {
		t.Errorf("rotate dev's credential as other = %v; want not found", err)
	}
	if _, _, err := e.reg.RotateCredential(ctx, "dev", old.ID, Rotation{CSR: []byte("x")}); core.KindOf(err) != core.KindInvalid {
		t.Errorf("a csr for a secret = %v; want invalid", err)
	}
	if list, _ := e.reg.ListCredentials(ctx, "dev"); len(list) != 1 || list[0].NotAfter != nil {
		t.Fatalf("after refused rotations: %+v; want the one credential unchanged", list)
	}

	// The default window: the old one ends in 24h, an event says so.
	before := time.Now()
	nc, prev, err := e.reg.RotateCredential(ctx, "dev", old.ID, Rotation{})
	if err != nil {
		t.Fatal(err)
	}
	if nc.Secret == "" || nc.Type != store.CredentialSecret || nc.ID == old.ID {
		t.Errorf("new credential = %+v; want a new secret", nc)
	}
	if prev.NotAfter == nil || prev.NotAfter.Before(before.Add(DefaultRotationWindow-time.Second)) || prev.NotAfter.After(time.Now().Add(DefaultRotationWindow)) {
		t.Errorf("old credential's NotAfter = %v; want now + %v", prev.NotAfter, DefaultRotationWindow)
	}
	evs := e.events.take()
	if len(evs) != 1 || evs[0].Kind != CredentialRotated || evs[0].Credential != old.ID || !evs[0].Expires.Equal(*prev.NotAfter) {
		t.Errorf("events = %+v; want one CredentialRotated of %s expiring %v", evs, old.ID, prev.NotAfter)
	}

	// A second rotation never extends it; a zero window ends it now, and
	// then it cannot be rotated again.
	zero := time.Duration(0)
	if _, prev2, err := e.reg.RotateCredential(ctx, "dev", old.ID, Rotation{Window: &zero}); err != nil || prev2.NotAfter.After(time.Now()) {
		t.Errorf("rotate with a zero window = %v, %v; want it ended now", prev2.NotAfter, err)
	}
	if _, _, err := e.reg.RotateCredential(ctx, "dev", old.ID, Rotation{}); core.KindOf(err) != core.KindConflict {
		t.Errorf("rotate an expired credential = %v; want conflict", err)
	}
	if _, err := e.reg.RevokeCredential(ctx, "dev", nc.ID); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.reg.RotateCredential(ctx, "dev", nc.ID, Rotation{}); core.KindOf(err) != core.KindConflict {
		t.Errorf("rotate a revoked credential = %v; want conflict", err)
	}
}

func TestCRLCachedAndRebuilt(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	mustThing(t, e, store.Thing{Name: "dev", Enabled: true})
	c1, err := e.reg.IssueCertificate(ctx, "dev", 0)
	if err != nil {
		t.Fatal(err)
	}
	a, err := e.reg.CRL(ctx)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := e.reg.CRL(ctx)
	if string(a) != string(b) {
		t.Errorf("CRL rebuilt without a change")
	}
	if _, err := e.reg.RevokeCredential(ctx, "dev", c1.ID); err != nil {
		t.Fatal(err)
	}
	c, _ := e.reg.CRL(ctx)
	if string(c) == string(a) {
		t.Errorf("CRL not rebuilt after a revocation")
	}
	// Half its validity later it is signed again.
	e.reg.now = func() time.Time { return time.Now().Add(DefaultCRLValidity/2 + time.Minute) }
	d, _ := e.reg.CRL(ctx)
	if string(d) == string(c) {
		t.Errorf("CRL not signed again after half its validity")
	}
}
