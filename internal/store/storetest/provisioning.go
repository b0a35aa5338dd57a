package storetest

import (
	"sync"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/store"
)

func testProvisioning(t *testing.T, open func(t *testing.T) store.Store) {
	t.Run("Enrollments", func(t *testing.T) {
		s, ctx := open(t), t.Context()
		ps := s.Provisioning()
		exp := base.Add(time.Hour)
		e, err := ps.CreateEnrollment(ctx, store.Enrollment{Name: "fleet", Attestation: store.AttestationSymmetricKey,
			SealedKey: "sealed:abc", Spec: []byte(`{"type":"sensor"}`), Enabled: true, MaxDevices: 2, ExpiresAt: &exp, CreatedAt: base})
		must(t, "create", err)
		eq(t, "Attestation", e.Attestation, store.AttestationSymmetricKey)
		eq(t, "SealedKey", e.SealedKey, "sealed:abc")
		eq(t, "Spec", string(e.Spec), `{"type":"sensor"}`)
		eq(t, "MaxDevices", e.MaxDevices, 2)
		eq(t, "Registered", e.Registered, 0)
		eqTime(t, "ExpiresAt", *e.ExpiresAt, ms(exp))
		eqTime(t, "CreatedAt", e.CreatedAt, ms(base))
		_, err = ps.CreateEnrollment(ctx, store.Enrollment{Name: "fleet", Attestation: store.AttestationX509CA})
		wantConflict(t, "create duplicate", err, "fleet")
		_, err = ps.GetEnrollment(ctx, "nope")
		wantNotFound(t, "get missing", err, "enrollment", "nope")

		e.CACert, e.CAVerified, e.VerificationCode, e.Enabled, e.MaxDevices = "PEM", true, "nonce", false, 3
		e.Registered = 99 // not written by Update
		u, err := ps.UpdateEnrollment(ctx, e)
		must(t, "update", err)
		eq(t, "CAVerified", u.CAVerified, true)
		eq(t, "Enabled", u.Enabled, false)
		eq(t, "Registered after update", u.Registered, 0)
		_, err = ps.UpdateEnrollment(ctx, store.Enrollment{Name: "nope"})
		wantNotFound(t, "update missing", err, "enrollment", "nope")

		_, err = ps.CreateEnrollment(ctx, store.Enrollment{Name: "a-first", Attestation: store.AttestationX509CA})
		must(t, "create a-first", err)
		list, err := ps.ListEnrollments(ctx, "", 0)
		must(t, "list", err)
		eq(t, "list len", len(list), 2)
		eq(t, "list[0]", list[0].Name, "a-first")
		list, err = ps.ListEnrollments(ctx, "a-first", 0)
		must(t, "list after", err)
		eq(t, "list after len", len(list), 1)

		must(t, "delete", ps.DeleteEnrollment(ctx, "a-first"))
		wantNotFound(t, "delete again", ps.DeleteEnrollment(ctx, "a-first"), "enrollment", "a-first")
	})

	t.Run("ReserveIsBoundedUnderConcurrency", func(t *testing.T) {
		s, ctx := open(t), t.Context()
		ps := s.Provisioning()
		_, err := ps.CreateEnrollment(ctx, store.Enrollment{Name: "g", Attestation: store.AttestationSymmetricKey, Enabled: true, MaxDevices: 5})
		must(t, "create", err)
		var (
			wg           sync.WaitGroup
			mu           sync.Mutex
			ok, conflict int
		)
		for range 12 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := ps.Reserve(ctx, "g")
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					ok++
				case core.KindOf(err) == core.KindConflict:
					conflict++
				default:
					t.Errorf("reserve: %v", err)
				}
			}()
		}
		wg.Wait()
		eq(t, "reserved", ok, 5)
		eq(t, "refused as full", conflict, 7)
		must(t, "release", ps.Release(ctx, "g"))
		e, err := ps.Reserve(ctx, "g")
		must(t, "reserve after release", err)
		eq(t, "Registered", e.Registered, 5)
		_, err = ps.Reserve(ctx, "nope")
		wantNotFound(t, "reserve missing", err, "enrollment", "nope")
	})

	t.Run("Registrations", func(t *testing.T) {
		s, ctx := open(t), t.Context()
		ps := s.Provisioning()
		_, err := ps.CreateEnrollment(ctx, store.Enrollment{Name: "g", Attestation: store.AttestationSymmetricKey, Enabled: true})
		must(t, "create group", err)
		_, err = s.Things().Create(ctx, store.Thing{Name: "dev-1", Enabled: true})
		must(t, "create thing", err)
		_, err = ps.GetRegistration(ctx, "g", "dev-1")
		wantNotFound(t, "get missing", err, "registration", "dev-1")
		_, err = ps.PutRegistration(ctx, store.Registration{Enrollment: "g", ID: "dev-1", Thing: "ghost"})
		wantNotFound(t, "put for missing thing", err, "thing", "ghost")
		r, err := ps.PutRegistration(ctx, store.Registration{Enrollment: "g", ID: "dev-1", Thing: "dev-1", Credential: "cred_1"})
		must(t, "put", err)
		eq(t, "Credential", r.Credential, "cred_1")
		r, err = ps.PutRegistration(ctx, store.Registration{Enrollment: "g", ID: "dev-1", Thing: "dev-1", Credential: "cred_2"})
		must(t, "put again", err)
		eq(t, "Credential replaced", r.Credential, "cred_2")
		// A registration goes with its thing.
		must(t, "delete thing", s.Things().Delete(ctx, "dev-1"))
		_, err = ps.GetRegistration(ctx, "g", "dev-1")
		wantNotFound(t, "get after thing deleted", err, "registration", "dev-1")
	})

	t.Run("Claims", func(t *testing.T) {
		s, ctx := open(t), t.Context()
		ps := s.Provisioning()
		c, err := ps.CreateClaim(ctx, store.Claim{ID: "clm_1", TokenHash: []byte{1, 2, 3}, Thing: "dev-9", ExpiresAt: base, CreatedAt: base})
		must(t, "create", err)
		eq(t, "Thing", c.Thing, "dev-9")
		eqTime(t, "ExpiresAt", c.ExpiresAt, ms(base))
		if c.RedeemedAt != nil {
			t.Errorf("RedeemedAt: got %v; want nil", c.RedeemedAt)
		}
		_, err = ps.CreateClaim(ctx, store.Claim{ID: "clm_2", TokenHash: []byte{1, 2, 3}, ExpiresAt: base})
		wantKind(t, "create with the same hash", err, core.KindConflict)
		got, err := ps.FindClaim(ctx, []byte{1, 2, 3})
		must(t, "find", err)
		eq(t, "found", got.ID, "clm_1")
		_, err = ps.FindClaim(ctx, []byte{9})
		wantKind(t, "find missing", err, core.KindNotFound)

		r, err := ps.RedeemClaim(ctx, "clm_1", "dev-9", base.Add(time.Minute))
		must(t, "redeem", err)
		eq(t, "RedeemedThing", r.RedeemedThing, "dev-9")
		eqTime(t, "RedeemedAt", *r.RedeemedAt, ms(base.Add(time.Minute)))
		_, err = ps.RedeemClaim(ctx, "clm_1", "dev-9", base)
		wantConflict(t, "redeem twice", err, "already redeemed")
		must(t, "unredeem", ps.UnredeemClaim(ctx, "clm_1"))
		_, err = ps.RedeemClaim(ctx, "clm_1", "dev-9", base)
		must(t, "redeem after unredeem", err)
		_, err = ps.RedeemClaim(ctx, "nope", "x", base)
		wantNotFound(t, "redeem missing", err, "claim", "nope")

		list, err := ps.ListClaims(ctx, "", 0)
		must(t, "list", err)
		eq(t, "list len", len(list), 1)
		must(t, "delete", ps.DeleteClaim(ctx, "clm_1"))
		wantNotFound(t, "delete again", ps.DeleteClaim(ctx, "clm_1"), "claim", "clm_1")
	})
}
