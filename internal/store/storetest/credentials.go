package storetest

import (
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/store"
)

// hashOf returns a 32-byte test hash starting with b, with zero and high
// bytes in it.
func hashOf(b byte) []byte {
	h := make([]byte, 32)
	for i := range h {
		h[i] = b + byte(i*37)
	}
	h[0], h[5], h[31] = b, 0x00, 0xff
	return h
}

const testPEM = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUXbF0\n-----END CERTIFICATE-----\n"

func testCredentials(t *testing.T, open func(t *testing.T) store.Store) {
	t.Run("RoundTrip", func(t *testing.T) {
		s, ctx := open(t), t.Context()
		_, err := s.Things().Create(ctx, store.Thing{Name: "dev"})
		must(t, "Create thing", err)
		secret := store.Credential{ID: "c-secret", Thing: "dev", Type: store.CredentialSecret, SecretHash: hashOf(1),
			NotAfter: ptr(base.Add(24 * time.Hour)), CreatedAt: base}
		cert := store.Credential{ID: "c-cert", Thing: "dev", Type: store.CredentialX509,
			Fingerprint: strings.Repeat("ab", 32), CertPEM: testPEM, NotAfter: ptr(base.Add(365 * 24 * time.Hour)), CreatedAt: base.Add(time.Second)}
		var want []store.Credential
		for _, in := range []store.Credential{secret, cert} {
			w := in
			w.NotAfter = msPtr(*in.NotAfter)
			w.CreatedAt = ms(in.CreatedAt)
			got, err := s.Credentials().Create(ctx, in)
			must(t, "Create "+in.ID, err)
			checkCredential(t, "Create result "+in.ID, got, w)
			got, err = s.Credentials().Get(ctx, in.ID)
			must(t, "Get "+in.ID, err)
			checkCredential(t, "Get "+in.ID, got, w)
			want = append(want, w)
		}
		got, err := s.Credentials().FindSecret(ctx, hashOf(1))
		must(t, "FindSecret", err)
		checkCredential(t, "FindSecret", got, want[0])
		got, err = s.Credentials().FindCertificate(ctx, strings.Repeat("ab", 32))
		must(t, "FindCertificate", err)
		checkCredential(t, "FindCertificate", got, want[1])
		list, err := s.Credentials().ListByThing(ctx, "dev")
		must(t, "ListByThing", err)
		if len(list) != 2 {
			t.Fatalf("ListByThing: got %d credentials; want 2", len(list))
		}
		for i := range list {
			checkCredential(t, fmt.Sprintf("ListByThing[%d]", i), list[i], want[i])
		}
	})

	t.Run("SymmetricKey", func(t *testing.T) {
		// A symmetricKey credential keeps its sealed key (opaque to the
		// store), has no hash or fingerprint, and coexists with others.
		s, ctx := open(t), t.Context()
		_, err := s.Things().Create(ctx, store.Thing{Name: "dev"})
		must(t, "Create thing", err)
		sealed := "mote:sealed:v1:" + strings.Repeat("Zz0-_", 20)
		for i, id := range []string{"k1", "k2"} {
			got, err := s.Credentials().Create(ctx, store.Credential{ID: id, Thing: "dev", Type: store.CredentialSymmetricKey,
				SealedKey: sealed + id, CreatedAt: base.Add(time.Duration(i) * time.Second)})
			must(t, "Create "+id, err)
			eq(t, "Create SealedKey", got.SealedKey, sealed+id)
		}
		_, err = s.Credentials().Create(ctx, store.Credential{ID: "s1", Thing: "dev", Type: store.CredentialSecret, SecretHash: hashOf(3)})
		must(t, "Create secret", err)
		got, err := s.Credentials().Get(ctx, "k2")
		must(t, "Get", err)
		eq(t, "Get Type", got.Type, store.CredentialSymmetricKey)
		eq(t, "Get SealedKey", got.SealedKey, sealed+"k2")
		eq(t, "Get Fingerprint", got.Fingerprint, "")
		list, err := s.Credentials().ListByThing(ctx, "dev")
		must(t, "ListByThing", err)
		if len(list) != 3 || list[0].SealedKey != sealed+"k1" || list[2].SealedKey != "" {
			t.Fatalf("ListByThing = %+v; want k1, k2 with their sealed keys, then s1 without", list)
		}
		_, err = s.Credentials().Revoke(ctx, "k1", base)
		must(t, "Revoke", err)
		got, err = s.Credentials().Get(ctx, "k1")
		must(t, "Get revoked", err)
		eq(t, "revoked keeps SealedKey", got.SealedKey, sealed+"k1")
		eq(t, "Revoked", got.Revoked, true)
	})

	t.Run("Defaults", func(t *testing.T) {
		s, ctx := open(t), t.Context()
		_, err := s.Things().Create(ctx, store.Thing{Name: "dev"})
		must(t, "Create thing", err)
		w := startWindow()
		got, err := s.Credentials().Create(ctx, store.Credential{ID: "c1", Thing: "dev", Type: store.CredentialSecret, SecretHash: hashOf(1)})
		w = w.end()
		must(t, "Create", err)
		checkNow(t, "CreatedAt", got.CreatedAt, w)
		eq(t, "Revoked", got.Revoked, false)
		eqTimePtr(t, "RevokedAt", got.RevokedAt, nil)
		eqTimePtr(t, "NotAfter", got.NotAfter, nil)
		eq(t, "Fingerprint", got.Fingerprint, "")
		eq(t, "CertPEM", got.CertPEM, "")
	})

	t.Run("Errors", func(t *testing.T) {
		s, ctx := open(t), t.Context()
		_, err := s.Things().Create(ctx, store.Thing{Name: "dev"})
		must(t, "Create thing", err)
		_, err = s.Credentials().Create(ctx, store.Credential{ID: "c0", Thing: "ghost", Type: store.CredentialSecret, SecretHash: hashOf(9)})
		wantNotFound(t, "Create for missing thing", err, "thing", "ghost")
		_, err = s.Credentials().Get(ctx, "c0")
		wantNotFound(t, "Get after failed Create", err, "credential", "c0")

		orig, err := s.Credentials().Create(ctx, store.Credential{ID: "c1", Thing: "dev", Type: store.CredentialSecret, SecretHash: hashOf(1)})
		must(t, "Create c1", err)
		_, err = s.Credentials().Create(ctx, store.Credential{ID: "c1", Thing: "dev", Type: store.CredentialSecret, SecretHash: hashOf(2)})
		wantConflict(t, "Create same ID", err, `credential "c1" already exists`)
		got, err := s.Credentials().Get(ctx, "c1")
		must(t, "Get c1", err)
		checkCredential(t, "Get after failed Create", got, orig)

		_, err = s.Credentials().Create(ctx, store.Credential{ID: "c2", Thing: "dev", Type: store.CredentialSecret, SecretHash: hashOf(1)})
		wantConflict(t, "Create same secret hash", err)
		if err != nil {
			noSecretIn(t, "Create same secret hash", err, hashOf(1))
		}
		_, err = s.Credentials().Get(ctx, "c2")
		wantNotFound(t, "Get after failed Create", err, "credential", "c2")

		fp := strings.Repeat("cd", 32)
		_, err = s.Credentials().Create(ctx, store.Credential{ID: "x1", Thing: "dev", Type: store.CredentialX509, Fingerprint: fp, CertPEM: testPEM})
		must(t, "Create x1", err)
		_, err = s.Credentials().Create(ctx, store.Credential{ID: "x2", Thing: "dev", Type: store.CredentialX509, Fingerprint: fp, CertPEM: testPEM})
		wantConflict(t, "Create same fingerprint", err)

		_, err = s.Credentials().Get(ctx, "ghost")
		wantNotFound(t, "Get missing", err, "credential", "ghost")
		_, err = s.Credentials().Revoke(ctx, "ghost", base)
		wantNotFound(t, "Revoke missing", err, "credential", "ghost")
		err = s.Credentials().Delete(ctx, "ghost")
		wantNotFound(t, "Delete missing", err, "credential", "ghost")
	})

	t.Run("SecretsAndCertificatesCoexist", func(t *testing.T) {
		// Absent hashes and fingerprints must not collide with each other.
		s, ctx := open(t), t.Context()
		_, err := s.Things().Create(ctx, store.Thing{Name: "dev"})
		must(t, "Create thing", err)
		for i := range 3 {
			_, err := s.Credentials().Create(ctx, store.Credential{ID: fmt.Sprintf("s%d", i), Thing: "dev",
				Type: store.CredentialSecret, SecretHash: hashOf(byte(i + 1))})
			must(t, "Create secret", err)
			_, err = s.Credentials().Create(ctx, store.Credential{ID: fmt.Sprintf("x%d", i), Thing: "dev",
				Type: store.CredentialX509, Fingerprint: strings.Repeat(fmt.Sprintf("%02x", i), 32), CertPEM: testPEM})
			must(t, "Create certificate", err)
		}
		list, err := s.Credentials().ListByThing(ctx, "dev")
		must(t, "ListByThing", err)
		eq(t, "number of credentials", len(list), 6)
	})

	t.Run("FindSecretExact", func(t *testing.T) {
		s, ctx := open(t), t.Context()
		_, err := s.Things().Create(ctx, store.Thing{Name: "dev"})
		must(t, "Create thing", err)
		for i := byte(1); i <= 3; i++ {
			_, err := s.Credentials().Create(ctx, store.Credential{ID: fmt.Sprintf("c%d", i), Thing: "dev",
				Type: store.CredentialSecret, SecretHash: hashOf(i)})
			must(t, "Create", err)
		}
		for i := byte(1); i <= 3; i++ {
			got, err := s.Credentials().FindSecret(ctx, hashOf(i))
			must(t, "FindSecret", err)
			eq(t, fmt.Sprintf("FindSecret(hash %d).ID", i), got.ID, fmt.Sprintf("c%d", i))
		}
		h := hashOf(1)
		flipped := hashOf(1)
		flipped[17] ^= 0x01
		ascii := []byte("abcdefghijklmnopqrstuvwxyz012345")
		_, err = s.Credentials().Create(ctx, store.Credential{ID: "c-ascii", Thing: "dev", Type: store.CredentialSecret, SecretHash: ascii})
		must(t, "Create c-ascii", err)
		for _, tc := range []struct {
			name string
			hash []byte
		}{
			{"prefix", h[:31]},
			{"extended", append(hashOf(1), 0x00)},
			{"one bit different", flipped},
			{"case-folded", []byte(strings.ToUpper(string(ascii)))},
			{"unknown", hashOf(200)},
			{"empty", []byte{}},
			{"nil", nil},
		} {
			_, err := s.Credentials().FindSecret(ctx, tc.hash)
			wantKind(t, "FindSecret "+tc.name, err, core.KindNotFound)
			if err != nil {
				noSecretIn(t, "FindSecret "+tc.name, err, tc.hash)
			}
		}
		// Credentials without a fingerprint are not found by an empty one.
		_, err = s.Credentials().FindCertificate(ctx, "")
		wantKind(t, "FindCertificate empty", err, core.KindNotFound)
	})

	t.Run("FindCertificate", func(t *testing.T) {
		s, ctx := open(t), t.Context()
		_, err := s.Things().Create(ctx, store.Thing{Name: "dev"})
		must(t, "Create thing", err)
		fp := strings.Repeat("0f", 32)
		_, err = s.Credentials().Create(ctx, store.Credential{ID: "x", Thing: "dev", Type: store.CredentialX509, Fingerprint: fp, CertPEM: testPEM})
		must(t, "Create", err)
		_, err = s.Credentials().Create(ctx, store.Credential{ID: "s", Thing: "dev", Type: store.CredentialSecret, SecretHash: hashOf(3)})
		must(t, "Create", err)
		got, err := s.Credentials().FindCertificate(ctx, fp)
		must(t, "FindCertificate", err)
		eq(t, "FindCertificate.ID", got.ID, "x")
		for _, miss := range []string{fp[:63], strings.Repeat("0e", 32), strings.Repeat("0F", 32)} {
			_, err := s.Credentials().FindCertificate(ctx, miss)
			wantKind(t, fmt.Sprintf("FindCertificate(%q)", miss), err, core.KindNotFound)
		}
	})

	t.Run("ListByThingOrder", func(t *testing.T) {
		s, ctx := open(t), t.Context()
		for _, n := range []string{"dev", "other", "empty"} {
			_, err := s.Things().Create(ctx, store.Thing{Name: n})
			must(t, "Create thing", err)
		}
		for i, c := range []store.Credential{
			{ID: "c-late", CreatedAt: base.Add(time.Hour)},
			{ID: "c-b", CreatedAt: base},
			{ID: "c-a", CreatedAt: base},
			{ID: "c-early", CreatedAt: base.Add(-time.Hour)},
		} {
			c.Thing, c.Type, c.SecretHash = "dev", store.CredentialSecret, hashOf(byte(10+i))
			_, err := s.Credentials().Create(ctx, c)
			must(t, "Create "+c.ID, err)
		}
		_, err := s.Credentials().Create(ctx, store.Credential{ID: "c-other", Thing: "other", Type: store.CredentialSecret,
			SecretHash: hashOf(50), CreatedAt: base})
		must(t, "Create c-other", err)
		list, err := s.Credentials().ListByThing(ctx, "dev")
		must(t, "ListByThing", err)
		ids := make([]string, len(list))
		for i, c := range list {
			ids[i] = c.ID
		}
		eqList(t, "ListByThing(dev) IDs", ids, []string{"c-early", "c-a", "c-b", "c-late"})
		list, err = s.Credentials().ListByThing(ctx, "empty")
		must(t, "ListByThing(empty)", err)
		if list == nil || len(list) != 0 {
			t.Errorf("ListByThing(empty): got %v; want an empty, non-nil slice", list)
		}
	})

	t.Run("Revoke", func(t *testing.T) {
		s, ctx := open(t), t.Context()
		_, err := s.Things().Create(ctx, store.Thing{Name: "dev"})
		must(t, "Create thing", err)
		want, err := s.Credentials().Create(ctx, store.Credential{ID: "c1", Thing: "dev", Type: store.CredentialSecret, SecretHash: hashOf(1), CreatedAt: base})
		must(t, "Create", err)
		other, err := s.Credentials().Create(ctx, store.Credential{ID: "c2", Thing: "dev", Type: store.CredentialSecret, SecretHash: hashOf(2), CreatedAt: base})
		must(t, "Create", err)

		at := base.Add(time.Hour)
		got, err := s.Credentials().Revoke(ctx, "c1", at)
		must(t, "Revoke", err)
		want.Revoked, want.RevokedAt = true, msPtr(at)
		checkCredential(t, "Revoke result", got, want)
		got, err = s.Credentials().Get(ctx, "c1")
		must(t, "Get", err)
		checkCredential(t, "Get after Revoke", got, want)
		// FindSecret still finds a revoked credential: the caller decides.
		got, err = s.Credentials().FindSecret(ctx, hashOf(1))
		must(t, "FindSecret", err)
		checkCredential(t, "FindSecret after Revoke", got, want)
		got, err = s.Credentials().Get(ctx, "c2")
		must(t, "Get c2", err)
		checkCredential(t, "other credential after Revoke", got, other)

		// Revoking again keeps the time of the first revocation.
		got, err = s.Credentials().Revoke(ctx, "c1", at.Add(time.Hour))
		must(t, "Revoke again", err)
		checkCredential(t, "Revoke again result", got, want)

		w := startWindow()
		got, err = s.Credentials().Revoke(ctx, "c2", time.Time{})
		w = w.end()
		must(t, "Revoke with zero time", err)
		eq(t, "Revoked", got.Revoked, true)
		if got.RevokedAt == nil {
			t.Errorf("RevokedAt after Revoke with zero time: got nil; want now")
		} else {
			checkNow(t, "RevokedAt after Revoke with zero time", *got.RevokedAt, w)
		}
	})

	t.Run("Expire", func(t *testing.T) {
		s, ctx := open(t), t.Context()
		_, err := s.Things().Create(ctx, store.Thing{Name: "dev"})
		must(t, "Create thing", err)
		_, err = s.Credentials().Create(ctx, store.Credential{ID: "never", Thing: "dev", Type: store.CredentialSecret, SecretHash: hashOf(1), CreatedAt: base})
		must(t, "Create", err)
		_, err = s.Credentials().Create(ctx, store.Credential{ID: "soon", Thing: "dev", Type: store.CredentialSecret, SecretHash: hashOf(2),
			NotAfter: ptr(base.Add(time.Minute)), CreatedAt: base})
		must(t, "Create", err)
		at := base.Add(time.Hour)
		got, err := s.Credentials().Expire(ctx, "never", at)
		must(t, "Expire never", err)
		eqTimePtr(t, "NotAfter after Expire of a credential without one", got.NotAfter, msPtr(at))
		got, err = s.Credentials().Get(ctx, "never")
		must(t, "Get", err)
		eqTimePtr(t, "NotAfter read back", got.NotAfter, msPtr(at))
		// An earlier NotAfter stays: a rotation never extends a credential.
		got, err = s.Credentials().Expire(ctx, "soon", at)
		must(t, "Expire soon", err)
		eqTimePtr(t, "NotAfter already earlier", got.NotAfter, msPtr(base.Add(time.Minute)))
		got, err = s.Credentials().Expire(ctx, "never", base.Add(30*time.Minute))
		must(t, "Expire again", err)
		eqTimePtr(t, "NotAfter brought forward again", got.NotAfter, msPtr(base.Add(30*time.Minute)))
		_, err = s.Credentials().Expire(ctx, "ghost", at)
		wantNotFound(t, "Expire missing", err, "credential", "ghost")
	})

	t.Run("ListRevokedCertificates", func(t *testing.T) {
		s, ctx := open(t), t.Context()
		_, err := s.Things().Create(ctx, store.Thing{Name: "dev"})
		must(t, "Create thing", err)
		list, err := s.Credentials().ListRevokedCertificates(ctx)
		must(t, "ListRevokedCertificates empty", err)
		if list == nil || len(list) != 0 {
			t.Errorf("ListRevokedCertificates on an empty store: got %v; want an empty, non-nil slice", list)
		}
		for i, id := range []string{"x-b", "x-a", "x-live"} {
			_, err = s.Credentials().Create(ctx, store.Credential{ID: id, Thing: "dev", Type: store.CredentialX509,
				Fingerprint: strings.Repeat(string(rune('a'+i)), 64), CertPEM: testPEM, CreatedAt: base})
			must(t, "Create "+id, err)
		}
		_, err = s.Credentials().Create(ctx, store.Credential{ID: "s-1", Thing: "dev", Type: store.CredentialSecret, SecretHash: hashOf(1), CreatedAt: base})
		must(t, "Create secret", err)
		_, err = s.Credentials().Revoke(ctx, "x-b", base.Add(time.Minute))
		must(t, "Revoke x-b", err)
		_, err = s.Credentials().Revoke(ctx, "x-a", base.Add(2*time.Minute))
		must(t, "Revoke x-a", err)
		_, err = s.Credentials().Revoke(ctx, "s-1", base)
		must(t, "Revoke s-1", err)
		list, err = s.Credentials().ListRevokedCertificates(ctx)
		must(t, "ListRevokedCertificates", err)
		var ids []string
		for _, c := range list {
			ids = append(ids, c.ID)
		}
		eqList(t, "ListRevokedCertificates IDs", ids, []string{"x-b", "x-a"})
		if len(list) > 0 && list[0].CertPEM != testPEM {
			t.Errorf("ListRevokedCertificates: CertPEM not returned")
		}
	})

	t.Run("Delete", func(t *testing.T) {
		s, ctx := open(t), t.Context()
		_, err := s.Things().Create(ctx, store.Thing{Name: "dev"})
		must(t, "Create thing", err)
		fp := strings.Repeat("ee", 32)
		for _, c := range []store.Credential{
			{ID: "s1", Thing: "dev", Type: store.CredentialSecret, SecretHash: hashOf(1)},
			{ID: "x1", Thing: "dev", Type: store.CredentialX509, Fingerprint: fp, CertPEM: testPEM},
		} {
			_, err := s.Credentials().Create(ctx, c)
			must(t, "Create "+c.ID, err)
		}
		must(t, "Delete s1", s.Credentials().Delete(ctx, "s1"))
		_, err = s.Credentials().Get(ctx, "s1")
		wantNotFound(t, "Get after Delete", err, "credential", "s1")
		_, err = s.Credentials().FindSecret(ctx, hashOf(1))
		wantKind(t, "FindSecret after Delete", err, core.KindNotFound)
		err = s.Credentials().Delete(ctx, "s1")
		wantNotFound(t, "Delete again", err, "credential", "s1")
		if _, err := s.Credentials().FindCertificate(ctx, fp); err != nil {
			t.Errorf("FindCertificate of the other credential: got %v; want no error", err)
		}
		// The secret can be registered again.
		_, err = s.Credentials().Create(ctx, store.Credential{ID: "s2", Thing: "dev", Type: store.CredentialSecret, SecretHash: hashOf(1)})
		must(t, "Create with the deleted secret", err)
		if _, err := s.Things().Get(ctx, "dev"); err != nil {
			t.Errorf("Get thing after deleting a credential: got %v; want no error", err)
		}
	})
}

// noSecretIn checks that err does not reveal hash, raw or hex-encoded.
func noSecretIn(t *testing.T, op string, err error, hash []byte) {
	t.Helper()
	if len(hash) < 4 {
		return
	}
	msg := err.Error()
	for _, enc := range []string{string(hash), hex.EncodeToString(hash), strings.ToUpper(hex.EncodeToString(hash)), fmt.Sprintf("%v", hash)} {
		if strings.Contains(msg, enc) {
			t.Errorf("%s: error message %q reveals the secret hash", op, msg)
			return
		}
	}
}

func testTokens(t *testing.T, open func(t *testing.T) store.Store) {
	t.Run("RoundTrip", func(t *testing.T) {
		s, ctx := open(t), t.Context()
		in := store.Token{ID: "tok1", Name: "CI deploy", Hash: hashOf(7), Role: "operator", CreatedAt: base,
			ExpiresAt: ptr(base.Add(30 * 24 * time.Hour)), LastUsedAt: ptr(base.Add(time.Minute))}
		want := in
		want.CreatedAt, want.ExpiresAt, want.LastUsedAt = ms(in.CreatedAt), msPtr(*in.ExpiresAt), msPtr(*in.LastUsedAt)
		got, err := s.Tokens().Create(ctx, in)
		must(t, "Create", err)
		checkToken(t, "Create result", got, want)
		got, err = s.Tokens().Get(ctx, "tok1")
		must(t, "Get", err)
		checkToken(t, "Get", got, want)
		list, err := s.Tokens().List(ctx)
		must(t, "List", err)
		if len(list) != 1 {
			t.Fatalf("List: got %d tokens; want 1", len(list))
		}
		checkToken(t, "List[0]", list[0], want)
	})

	t.Run("Defaults", func(t *testing.T) {
		s, ctx := open(t), t.Context()
		list, err := s.Tokens().List(ctx)
		must(t, "List", err)
		if list == nil || len(list) != 0 {
			t.Errorf("List of no tokens: got %v; want an empty, non-nil slice", list)
		}
		w := startWindow()
		got, err := s.Tokens().Create(ctx, store.Token{ID: "t", Hash: hashOf(1), Role: "viewer"})
		w = w.end()
		must(t, "Create", err)
		checkNow(t, "CreatedAt", got.CreatedAt, w)
		eqTimePtr(t, "ExpiresAt", got.ExpiresAt, nil)
		eqTimePtr(t, "LastUsedAt", got.LastUsedAt, nil)
	})

	t.Run("Errors", func(t *testing.T) {
		s, ctx := open(t), t.Context()
		_, err := s.Tokens().Create(ctx, store.Token{ID: "tok1", Name: "a", Hash: hashOf(1), Role: "admin"})
		must(t, "Create", err)
		_, err = s.Tokens().Create(ctx, store.Token{ID: "tok1", Name: "b", Hash: hashOf(2), Role: "viewer"})
		wantConflict(t, "Create duplicate", err, `token "tok1" already exists`)
		got, err := s.Tokens().Get(ctx, "tok1")
		must(t, "Get", err)
		eq(t, "Role after failed Create", got.Role, "admin")
		_, err = s.Tokens().Get(ctx, "ghost")
		wantNotFound(t, "Get missing", err, "token", "ghost")
		err = s.Tokens().Touch(ctx, "ghost", base)
		wantNotFound(t, "Touch missing", err, "token", "ghost")
		err = s.Tokens().Delete(ctx, "ghost")
		wantNotFound(t, "Delete missing", err, "token", "ghost")
	})

	t.Run("Touch", func(t *testing.T) {
		s, ctx := open(t), t.Context()
		want, err := s.Tokens().Create(ctx, store.Token{ID: "tok1", Hash: hashOf(1), Role: "admin", CreatedAt: base})
		must(t, "Create", err)
		other, err := s.Tokens().Create(ctx, store.Token{ID: "tok2", Hash: hashOf(2), Role: "admin", CreatedAt: base})
		must(t, "Create", err)
		for _, at := range []time.Time{base.Add(time.Hour), base.Add(2 * time.Hour)} {
			must(t, "Touch", s.Tokens().Touch(ctx, "tok1", at))
			got, err := s.Tokens().Get(ctx, "tok1")
			must(t, "Get", err)
			want.LastUsedAt = msPtr(at)
			checkToken(t, fmt.Sprintf("Get after Touch(%v)", at), got, want)
		}
		got, err := s.Tokens().Get(ctx, "tok2")
		must(t, "Get tok2", err)
		checkToken(t, "other token after Touch", got, other)
	})

	t.Run("ListOrder", func(t *testing.T) {
		s, ctx := open(t), t.Context()
		for i, tk := range []store.Token{
			{ID: "t-late", CreatedAt: base.Add(time.Hour)},
			{ID: "t-b", CreatedAt: base},
			{ID: "t-a", CreatedAt: base},
			{ID: "t-early", CreatedAt: base.Add(-time.Hour)},
		} {
			tk.Hash, tk.Role = hashOf(byte(i+1)), "viewer"
			_, err := s.Tokens().Create(ctx, tk)
			must(t, "Create "+tk.ID, err)
		}
		list, err := s.Tokens().List(ctx)
		must(t, "List", err)
		ids := make([]string, len(list))
		for i, tk := range list {
			ids[i] = tk.ID
		}
		eqList(t, "List IDs", ids, []string{"t-early", "t-a", "t-b", "t-late"})
	})

	t.Run("Delete", func(t *testing.T) {
		s, ctx := open(t), t.Context()
		for i, id := range []string{"t1", "t2"} {
			_, err := s.Tokens().Create(ctx, store.Token{ID: id, Hash: hashOf(byte(i + 1)), Role: "viewer"})
			must(t, "Create", err)
		}
		must(t, "Delete", s.Tokens().Delete(ctx, "t1"))
		_, err := s.Tokens().Get(ctx, "t1")
		wantNotFound(t, "Get after Delete", err, "token", "t1")
		err = s.Tokens().Delete(ctx, "t1")
		wantNotFound(t, "Delete again", err, "token", "t1")
		list, err := s.Tokens().List(ctx)
		must(t, "List", err)
		eq(t, "tokens left", len(list), 1)
	})
}
