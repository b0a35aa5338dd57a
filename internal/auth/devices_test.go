package auth

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/pki"
	"github.com/moteiot/mote/internal/store"
	"github.com/moteiot/mote/internal/store/sqlite"
	"github.com/moteiot/mote/internal/store/sqlite/sqlitetest"
)

// devEnv is a Devices over a real SQLite store, CA and hasher.
type devEnv struct {
	d      *Devices
	st     *sqlite.Store
	ca     *pki.CA
	hasher *Hasher
}

func newDevEnv(tb testing.TB) *devEnv {
	tb.Helper()
	dir := tb.TempDir()
	sqlitetest.Seed(tb, filepath.Join(dir, "mote.db"))
	st, err := sqlite.Open(filepath.Join(dir, "mote.db"))
	if err != nil {
		tb.Fatalf("sqlite.Open: %v", err)
	}
	tb.Cleanup(func() { st.Close() })
	ca, err := pki.LoadOrCreateCA(filepath.Join(dir, "ca"))
	if err != nil {
		tb.Fatalf("pki.LoadOrCreateCA: %v", err)
	}
	h, err := LoadOrCreateHasher(filepath.Join(dir, "hash.key"))
	if err != nil {
		tb.Fatalf("LoadOrCreateHasher: %v", err)
	}
	return &devEnv{d: NewDevices(st, h, ca), st: st, ca: ca, hasher: h}
}

func (e *devEnv) thing(tb testing.TB, name, typ string, enabled bool) {
	tb.Helper()
	ctx := context.Background()
	if typ != "" {
		if _, err := e.st.Types().Get(ctx, typ); core.IsNotFound(err) {
			if _, err := e.st.Types().Create(ctx, store.ThingType{Name: typ}); err != nil {
				tb.Fatal(err)
			}
		}
	}
	if _, err := e.st.Things().Create(ctx, store.Thing{Name: name, Type: typ, Enabled: enabled}); err != nil {
		tb.Fatalf("create thing %s: %v", name, err)
	}
}

// secret stores a secret credential for thing and returns the secret and
// the credential id.
func (e *devEnv) secret(tb testing.TB, thing string, notAfter *time.Time) (string, string) {
	tb.Helper()
	s := NewSecret()
	c, err := e.st.Credentials().Create(context.Background(), store.Credential{
		ID: NewID("cred"), Thing: thing, Type: store.CredentialSecret, SecretHash: e.hasher.Hash(s), NotAfter: notAfter,
	})
	if err != nil {
		tb.Fatalf("create secret credential: %v", err)
	}
	return s, c.ID
}

// cert issues a certificate for thing from ca and, if register, stores it
// as a credential of thing.
func (e *devEnv) cert(tb testing.TB, ca *pki.CA, thing string, register bool) (*x509.Certificate, string) {
	tb.Helper()
	_, _, cert, err := ca.IssueClientCert(thing, time.Hour)
	if err != nil {
		tb.Fatal(err)
	}
	if !register {
		return cert, ""
	}
	notAfter := cert.NotAfter
	c, err := e.st.Credentials().Create(context.Background(), store.Credential{
		ID: NewID("cred"), Thing: thing, Type: store.CredentialX509, Fingerprint: pki.Fingerprint(cert), NotAfter: &notAfter,
	})
	if err != nil {
		tb.Fatalf("create certificate credential: %v", err)
	}
	return cert, c.ID
}

func (e *devEnv) revoke(t *testing.T, id string) {
	t.Helper()
	if _, err := e.st.Credentials().Revoke(context.Background(), id, time.Now()); err != nil {
		t.Fatal(err)
	}
}

func (e *devEnv) enable(t *testing.T, thing string, on bool) {
	t.Helper()
	if _, err := e.st.Things().Update(context.Background(), thing, store.ThingPatch{Enabled: &on}); err != nil {
		t.Fatal(err)
	}
}

func TestSecret(t *testing.T) {
	t.Parallel()
	e := newDevEnv(t)
	ctx := context.Background()
	e.thing(t, "dev", "sensor", true)
	e.thing(t, "other", "", true)
	e.thing(t, "off", "", false)
	e.thing(t, "rev", "", true)
	e.thing(t, "old", "", true)

	devSecret, devCred := e.secret(t, "dev", nil)
	later := time.Now().Add(time.Hour)
	otherSecret, _ := e.secret(t, "other", &later)
	offSecret, _ := e.secret(t, "off", nil)
	revSecret, revCred := e.secret(t, "rev", nil)
	e.revoke(t, revCred)
	past := time.Now().Add(-time.Second)
	oldSecret, _ := e.secret(t, "old", &past)

	id, err := e.d.Secret(ctx, "dev", devSecret)
	if err != nil {
		t.Fatalf("Secret(dev, its secret) = %v; want nil", err)
	}
	if want := (Identity{Thing: "dev", Credential: devCred, Method: store.CredentialSecret, Type: "sensor"}); id != want {
		t.Errorf("Secret(dev, its secret) = %+v; want %+v", id, want)
	}
	if id, err := e.d.Secret(ctx, "other", otherSecret); err != nil || id.Thing != "other" || id.Expires.Sub(later).Abs() > time.Millisecond {
		t.Errorf("Secret(other, unexpired secret) = %+v, %v; want other, expiring at %v", id, err, later)
	}

	tests := []struct {
		name             string
		username, secret string
		want             error
	}{
		{"wrong secret", "dev", NewSecret(), ErrBadSecret},
		{"another thing's secret", "dev", otherSecret, ErrBadSecret},
		{"own secret, other user name", "other", devSecret, ErrBadSecret},
		{"unknown user name", "nosuch", devSecret, ErrBadSecret},
		{"empty user name", "", devSecret, ErrBadSecret},
		{"empty secret", "dev", "", ErrBadSecret},
		{"secret with a suffix", "dev", devSecret + "x", ErrBadSecret},
		{"disabled thing", "off", offSecret, ErrDisabled},
		{"revoked", "rev", revSecret, ErrRevoked},
		{"expired", "old", oldSecret, ErrExpired},
	}
	for _, tt := range tests {
		for _, pass := range []string{"first", "again"} { // nothing bad may be cached
			id, err := e.d.Secret(ctx, tt.username, tt.secret)
			if !errors.Is(err, tt.want) {
				t.Errorf("Secret(%s, %s) %s = %+v, %v; want %v", tt.name, tt.username, pass, id, err, tt.want)
			}
			if id != (Identity{}) {
				t.Errorf("Secret(%s) %s returned identity %+v with an error", tt.name, pass, id)
			}
		}
	}
	if k := core.KindOf(ErrDisabled); k != core.KindForbidden {
		t.Errorf("KindOf(ErrDisabled) = %v; want %v", k, core.KindForbidden)
	}
	for _, err := range []error{ErrBadSecret, ErrRevoked, ErrExpired, ErrUnknownCertificate, ErrInvalidCertificate} {
		if k := core.KindOf(err); k != core.KindUnauthorized {
			t.Errorf("KindOf(%v) = %v; want %v", err, k, core.KindUnauthorized)
		}
	}
}

// TestSecretCache documents the cache contract: a successful lookup is
// reused until Invalidate is called for the thing; the registry's events
// are what call it.
func TestSecretCache(t *testing.T) {
	t.Parallel()
	e := newDevEnv(t)
	ctx := context.Background()
	e.thing(t, "dev", "", true)
	e.thing(t, "other", "", true)
	devSecret, devCred := e.secret(t, "dev", nil)
	otherSecret, _ := e.secret(t, "other", nil)

	steps := []struct {
		name string
		do   func()
		want error
	}{
		{"first use", func() {}, nil},
		{"disabled in the store, not invalidated: cached", func() { e.enable(t, "dev", false) }, nil},
		{"another thing invalidated: still cached", func() { e.d.Invalidate("other") }, nil},
		{"invalidated", func() { e.d.Invalidate("dev") }, ErrDisabled},
		{"enabled again, not invalidated: refusals are not cached", func() { e.enable(t, "dev", true) }, nil},
		{"revoked, not invalidated: cached", func() { e.revoke(t, devCred) }, nil},
		{"everything invalidated", func() { e.d.Invalidate("") }, ErrRevoked},
	}
	for _, s := range steps {
		s.do()
		if _, err := e.d.Secret(ctx, "dev", devSecret); !errors.Is(err, s.want) {
			t.Errorf("Secret(dev) after %s = %v; want %v", s.name, err, s.want)
		}
	}

	// A cached secret still only works with its own user name.
	if _, err := e.d.Secret(ctx, "other", otherSecret); err != nil {
		t.Fatal(err)
	}
	if _, err := e.d.Secret(ctx, "dev", otherSecret); !errors.Is(err, ErrBadSecret) {
		t.Errorf("Secret(dev, other's cached secret) = %v; want %v", err, ErrBadSecret)
	}
}

// TestSecretCacheExpiry checks that a cached secret stops working when the
// credential expires, without any invalidation.
func TestSecretCacheExpiry(t *testing.T) {
	t.Parallel()
	e := newDevEnv(t)
	ctx := context.Background()
	now := time.Now()
	e.d.now = func() time.Time { return now }
	e.thing(t, "dev", "", true)
	exp := now.Add(time.Minute)
	secret, _ := e.secret(t, "dev", &exp)
	if _, err := e.d.Secret(ctx, "dev", secret); err != nil {
		t.Fatalf("Secret(dev) before expiry = %v", err)
	}
	now = now.Add(time.Minute)
	if _, err := e.d.Secret(ctx, "dev", secret); !errors.Is(err, ErrExpired) {
		t.Errorf("Secret(dev) at expiry (cached) = %v; want %v", err, ErrExpired)
	}
}

func TestCertificate(t *testing.T) {
	t.Parallel()
	e := newDevEnv(t)
	ctx := context.Background()
	e.thing(t, "dev", "cam", true)
	e.thing(t, "off", "", false)
	e.thing(t, "rev", "", true)
	foreign, err := pki.LoadOrCreateCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}

	devCert, devCred := e.cert(t, e.ca, "dev", true)
	id, err := e.d.Certificate(ctx, devCert)
	if err != nil {
		t.Fatalf("Certificate(dev's registered certificate) = %v; want nil", err)
	}
	if !id.Expires.Equal(devCert.NotAfter) {
		t.Errorf("Certificate(dev's certificate).Expires = %v; want the certificate's NotAfter %v", id.Expires, devCert.NotAfter)
	}
	id.Expires = time.Time{}
	if want := (Identity{Thing: "dev", Credential: devCred, Method: store.CredentialX509, Type: "cam"}); id != want {
		t.Errorf("Certificate(dev's certificate) = %+v; want %+v", id, want)
	}

	unregistered, _ := e.cert(t, e.ca, "dev", false)
	offCert, _ := e.cert(t, e.ca, "off", true)
	revCert, revCred := e.cert(t, e.ca, "rev", true)
	e.revoke(t, revCred)
	foreignCert, _ := e.cert(t, foreign, "dev", false)
	tests := []struct {
		name string
		cert *x509.Certificate
		want error
	}{
		{"unregistered, same CA", unregistered, ErrUnknownCertificate},
		{"foreign CA", foreignCert, ErrInvalidCertificate},
		{"nil", nil, ErrInvalidCertificate},
		{"disabled thing", offCert, ErrDisabled},
		{"revoked", revCert, ErrRevoked},
	}
	for _, tt := range tests {
		if id, err := e.d.Certificate(ctx, tt.cert); !errors.Is(err, tt.want) || id != (Identity{}) {
			t.Errorf("Certificate(%s) = %+v, %v; want %v", tt.name, id, err, tt.want)
		}
	}

	// The CA certificate itself is refused. (pki.VerifyClient accepts it, as
	// it has no extended key usage; it is refused as unregistered.)
	if id, err := e.d.Certificate(ctx, e.ca.Certificate()); !IsRefusal(err) {
		t.Errorf("Certificate(the CA's own certificate) = %+v, %v; want a refusal", id, err)
	}

	// The certificate path is cached like the secret path.
	e.enable(t, "dev", false)
	if _, err := e.d.Certificate(ctx, devCert); err != nil {
		t.Errorf("Certificate(dev) disabled, not invalidated = %v; want the cached identity", err)
	}
	e.d.Invalidate("dev")
	if _, err := e.d.Certificate(ctx, devCert); !errors.Is(err, ErrDisabled) {
		t.Errorf("Certificate(dev) disabled and invalidated = %v; want %v", err, ErrDisabled)
	}

	// A cached certificate is still checked against the CA and its expiry.
	e.enable(t, "dev", true)
	e.d.Invalidate("dev")
	if _, err := e.d.Certificate(ctx, devCert); err != nil {
		t.Fatal(err)
	}
	e.d.now = func() time.Time { return devCert.NotAfter.Add(time.Second) }
	if _, err := e.d.Certificate(ctx, devCert); !errors.Is(err, ErrInvalidCertificate) {
		t.Errorf("Certificate(dev) after it expired = %v; want %v", err, ErrInvalidCertificate)
	}
}

func TestIsRefusal(t *testing.T) {
	t.Parallel()
	tests := []struct {
		err  error
		want bool
	}{
		{ErrBadSecret, true},
		{ErrUnknownCertificate, true},
		{ErrInvalidCertificate, true},
		{ErrRevoked, true},
		{ErrExpired, true},
		{ErrDisabled, true},
		{fmt.Errorf("connect: %w", ErrRevoked), true},
		{nil, false},
		{errors.New("bad user name or secret"), false},
		{&core.Error{Kind: core.KindUnauthorized, Msg: "bad user name or secret"}, false}, // equal, not the same
		{core.NotFound("thing", "x"), false},
		{fmt.Errorf("sqlite: %w", context.DeadlineExceeded), false},
	}
	for _, tt := range tests {
		if got := IsRefusal(tt.err); got != tt.want {
			t.Errorf("IsRefusal(%v) = %v; want %v", tt.err, got, tt.want)
		}
	}
}

// BenchmarkSecretCached is the device connect path with a warm cache: one
// keyed hash and a map lookup.
func BenchmarkSecretCached(b *testing.B) {
	e := newDevEnv(b)
	ctx := context.Background()
	e.thing(b, "dev", "", true)
	secret, _ := e.secret(b, "dev", nil)
	if _, err := e.d.Secret(ctx, "dev", secret); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.d.Secret(ctx, "dev", secret); err != nil {
			b.Fatal(err)
		}
	}
}
