package registry

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/pki"
	"github.com/moteiot/mote/internal/store"
)

func TestCreateSecret(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	mustThing(t, e, store.Thing{Name: "dev", Enabled: true})

	nc, err := e.reg.CreateSecret(ctx, "dev", nil)
	if err != nil {
		t.Fatalf("CreateSecret(dev) = %v; want nil", err)
	}
	if len(nc.Secret) != 43 {
		t.Errorf("CreateSecret(dev).Secret = %q (%d characters); want 43", nc.Secret, len(nc.Secret))
	}
	if nc.Thing != "dev" || nc.Type != store.CredentialSecret || nc.Revoked || nc.NotAfter != nil {
		t.Errorf("CreateSecret(dev) = %+v; want an unrevoked secret credential of dev without expiry", nc.Credential)
	}
	stored, err := e.st.Credentials().Get(ctx, nc.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(stored.SecretHash, e.hasher.Hash(nc.Secret)) {
		t.Errorf("stored SecretHash = %x; want the keyed hash of the secret", stored.SecretHash)
	}
	if found, err := e.st.Credentials().FindSecret(ctx, e.hasher.Hash(nc.Secret)); err != nil || found.ID != nc.ID {
		t.Errorf("FindSecret(hash of the secret) = %s, %v; want %s", found.ID, err, nc.ID)
	}
	// The plaintext is nowhere in the database files.
	files, _ := filepath.Glob(filepath.Join(e.dir, "mote.db*"))
	if len(files) == 0 {
		t.Fatal("no database files found")
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(b, []byte(nc.Secret)) {
			t.Errorf("%s contains the plaintext secret", filepath.Base(f))
		}
	}
	list, err := e.reg.ListCredentials(ctx, "dev")
	if err != nil || len(list) != 1 || list[0].ID != nc.ID {
		t.Errorf("ListCredentials(dev) = %+v, %v; want the one secret", list, err)
	}

	nc2, err := e.reg.CreateSecret(ctx, "dev", nil)
	if err != nil || nc2.Secret == nc.Secret || nc2.ID == nc.ID {
		t.Errorf("CreateSecret(dev) again = %s %q, %v; want a new id and secret", nc2.ID, nc2.Secret, err)
	}

	exp := time.Now().Add(time.Hour).UTC().Truncate(time.Millisecond)
	nc3, err := e.reg.CreateSecret(ctx, "dev", &exp)
	if err != nil || nc3.NotAfter == nil || !nc3.NotAfter.Equal(exp) {
		t.Errorf("CreateSecret(dev, expires %v) = NotAfter %v, %v; want %v", exp, nc3.NotAfter, err, exp)
	}

	past := time.Now().Add(-time.Minute)
	tests := []struct {
		name    string
		thing   string
		expires *time.Time
		kind    core.Kind
		field   string
	}{
		{"past expiry", "dev", &past, core.KindInvalid, "expiresAt"},
		{"unknown thing", "nosuch", nil, core.KindNotFound, ""},
		{"empty thing", "", nil, core.KindNotFound, ""},
	}
	for _, tt := range tests {
		nc, err := e.reg.CreateSecret(ctx, tt.thing, tt.expires)
		checkErr(t, "CreateSecret("+tt.name+")", err, tt.kind, tt.field)
		if nc.Secret != "" {
			t.Errorf("CreateSecret(%s) returned a secret with an error", tt.name)
		}
	}
	if _, err := e.reg.CreateSecret(ctx, "nosuch", nil); err == nil || err.Error() != `thing "nosuch" not found` {
		t.Errorf("CreateSecret(nosuch) = %v; want thing \"nosuch\" not found", err)
	}
}

// parseCert parses a PEM certificate.
func parseCert(t *testing.T, certPEM string) *x509.Certificate {
	t.Helper()
	cert, err := pki.ParseCertificatePEM([]byte(certPEM))
	if err != nil {
		t.Fatalf("ParseCertificatePEM = %v", err)
	}
	return cert
}

// verifyClientCert checks that cert chains to ca, is for client auth and
// names the thing.
func verifyClientCert(t *testing.T, ca *pki.CA, cert *x509.Certificate, thing string) {
	t.Helper()
	if _, err := cert.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("certificate of %s does not verify against the CA: %v", thing, err)
	}
	if cert.Subject.CommonName != thing {
		t.Errorf("certificate CN = %q; want %q", cert.Subject.CommonName, thing)
	}
}

func TestIssueCertificate(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	mustThing(t, e, store.Thing{Name: "dev", Enabled: true})

	nc, err := e.reg.IssueCertificate(ctx, "dev", 0)
	if err != nil {
		t.Fatalf("IssueCertificate(dev, 0) = %v; want nil", err)
	}
	cert := parseCert(t, nc.CertPEM)
	verifyClientCert(t, e.ca, cert, "dev")
	if nc.CACert != string(e.ca.CertPEM()) {
		t.Errorf("IssueCertificate.CACert is not the CA certificate")
	}
	if nc.Fingerprint != pki.Fingerprint(cert) || nc.Type != store.CredentialX509 || nc.Thing != "dev" {
		t.Errorf("IssueCertificate = fingerprint %s type %s thing %s; want %s x509 dev", nc.Fingerprint, nc.Type, nc.Thing, pki.Fingerprint(cert))
	}
	if nc.NotAfter == nil || nc.NotAfter.Sub(cert.NotAfter).Abs() > time.Millisecond {
		t.Errorf("IssueCertificate.NotAfter = %v; want the certificate's %v", nc.NotAfter, cert.NotAfter)
	}
	if d := time.Until(cert.NotAfter) - DefaultCertValidity; d > time.Minute || d < -time.Minute {
		t.Errorf("certificate valid until %v; want about %v from now", cert.NotAfter, DefaultCertValidity)
	}

	block, _ := pem.Decode([]byte(nc.PrivateKey))
	if block == nil {
		t.Fatalf("IssueCertificate.PrivateKey = %q; want PEM", nc.PrivateKey)
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatalf("ParsePKCS8PrivateKey = %v", err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		t.Fatalf("private key is a %T; want a crypto.Signer", key)
	}
	if pub, ok := cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(signer.Public()) {
		t.Errorf("the private key does not match the certificate's public key")
	}

	stored, err := e.st.Credentials().FindCertificate(ctx, pki.Fingerprint(cert))
	if err != nil || stored.ID != nc.ID || stored.CertPEM != nc.CertPEM {
		t.Errorf("FindCertificate(fingerprint) = %s, %v; want %s with the certificate", stored.ID, err, nc.ID)
	}

	nc2, err := e.reg.IssueCertificate(ctx, "dev", 2*time.Hour)
	if err != nil {
		t.Fatalf("IssueCertificate(dev, 2h) = %v", err)
	}
	if d := time.Until(parseCert(t, nc2.CertPEM).NotAfter) - 2*time.Hour; d > time.Minute || d < -time.Minute {
		t.Errorf("IssueCertificate(dev, 2h) certificate expires in %v; want 2h", d+2*time.Hour)
	}
}

func TestSignCSR(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	mustThing(t, e, store.Thing{Name: "dev", Enabled: true})

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "someone-else"}}, key)
	if err != nil {
		t.Fatal(err)
	}
	csrPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})

	nc, err := e.reg.SignCSR(ctx, "dev", csrPEM, 48*time.Hour)
	if err != nil {
		t.Fatalf("SignCSR(dev) = %v; want nil", err)
	}
	cert := parseCert(t, nc.CertPEM)
	verifyClientCert(t, e.ca, cert, "dev") // the CN the device asked for is ignored
	if !key.PublicKey.Equal(cert.PublicKey) {
		t.Errorf("SignCSR certificate is not for the CSR's key")
	}
	if nc.PrivateKey != "" {
		t.Errorf("SignCSR returned a private key")
	}
	if nc.Fingerprint != pki.Fingerprint(cert) || nc.CACert != string(e.ca.CertPEM()) {
		t.Errorf("SignCSR = fingerprint %s, CA %d bytes; want %s and the CA", nc.Fingerprint, len(nc.CACert), pki.Fingerprint(cert))
	}
	// The same CSR again gives a new certificate (a new serial number).
	if again, err := e.reg.SignCSR(ctx, "dev", csrPEM, 48*time.Hour); err != nil || again.Fingerprint == nc.Fingerprint {
		t.Errorf("SignCSR(same CSR) = %s, %v; want a new certificate", again.Fingerprint, err)
	}

	tests := []struct {
		name  string
		thing string
		csr   []byte
		kind  core.Kind
		field string
	}{
		{"garbage", "dev", []byte("not a csr"), core.KindInvalid, "csr"},
		{"certificate instead", "dev", []byte(nc.CertPEM), core.KindInvalid, "csr"},
		{"unknown thing", "nosuch", csrPEM, core.KindNotFound, ""},
	}
	for _, tt := range tests {
		_, err := e.reg.SignCSR(ctx, tt.thing, tt.csr, 0)
		checkErr(t, "SignCSR("+tt.name+")", err, tt.kind, tt.field)
	}
}

func TestCertificateValidity(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	mustThing(t, e, store.Thing{Name: "dev", Enabled: true})
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	csrPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})

	tests := []struct {
		validity time.Duration
		ok       bool
	}{
		{0, true},
		{time.Hour, true},
		{MaxCertValidity, true},
		{time.Hour - time.Second, false},
		{-time.Hour, false},
		{MaxCertValidity + time.Hour, false},
	}
	for _, tt := range tests {
		_, err := e.reg.IssueCertificate(ctx, "dev", tt.validity)
		_, err2 := e.reg.SignCSR(ctx, "dev", csrPEM, tt.validity)
		for i, err := range []error{err, err2} {
			op := [...]string{"IssueCertificate", "SignCSR"}[i]
			if tt.ok {
				if err != nil {
					t.Errorf("%s(validity %v) = %v; want nil", op, tt.validity, err)
				}
				continue
			}
			checkErr(t, op+"(validity "+tt.validity.String()+")", err, core.KindInvalid, "validityDays")
		}
	}
	// Validity is checked before the thing.
	_, err := e.reg.IssueCertificate(ctx, "nosuch", time.Minute)
	checkErr(t, "IssueCertificate(nosuch, 1m)", err, core.KindInvalid, "validityDays")
	if _, err := e.reg.IssueCertificate(ctx, "nosuch", 0); !core.IsNotFound(err) {
		t.Errorf("IssueCertificate(nosuch) = %v; want not found", err)
	}
}

func TestRevokeAndDeleteCredential(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	mustThing(t, e, store.Thing{Name: "dev", Enabled: true})
	mustThing(t, e, store.Thing{Name: "other", Enabled: true})
	a, err := e.reg.CreateSecret(ctx, "dev", nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := e.reg.IssueCertificate(ctx, "dev", 0)
	if err != nil {
		t.Fatal(err)
	}
	o, err := e.reg.CreateSecret(ctx, "other", nil)
	if err != nil {
		t.Fatal(err)
	}
	e.checkEvents(t, "creating credentials")

	// Another thing's credential is not found through this thing.
	if _, err := e.reg.GetCredential(ctx, "dev", o.ID); !core.IsNotFound(err) {
		t.Errorf("GetCredential(dev, other's) = %v; want not found", err)
	}
	if _, err := e.reg.RevokeCredential(ctx, "dev", o.ID); !core.IsNotFound(err) {
		t.Errorf("RevokeCredential(dev, other's) = %v; want not found", err)
	}
	if err := e.reg.DeleteCredential(ctx, "dev", o.ID); !core.IsNotFound(err) {
		t.Errorf("DeleteCredential(dev, other's) = %v; want not found", err)
	}
	if _, err := e.reg.RevokeCredential(ctx, "dev", "cred_nosuch"); !core.IsNotFound(err) {
		t.Errorf("RevokeCredential(dev, nosuch) = %v; want not found", err)
	}
	e.checkEvents(t, "refused revocations")

	c, err := e.reg.RevokeCredential(ctx, "dev", a.ID)
	if err != nil || !c.Revoked || c.RevokedAt == nil {
		t.Errorf("RevokeCredential(dev, %s) = revoked %v at %v, %v; want revoked now", a.ID, c.Revoked, c.RevokedAt, err)
	}
	e.checkEvents(t, "RevokeCredential", Event{Kind: CredentialRevoked, Thing: "dev", Credential: a.ID})

	if err := e.reg.DeleteCredential(ctx, "dev", b.ID); err != nil {
		t.Errorf("DeleteCredential(dev, %s) = %v", b.ID, err)
	}
	e.checkEvents(t, "DeleteCredential", Event{Kind: CredentialRevoked, Thing: "dev", Credential: b.ID})
	if _, err := e.reg.GetCredential(ctx, "dev", b.ID); !core.IsNotFound(err) {
		t.Errorf("GetCredential(deleted) = %v; want not found", err)
	}
	got, err := e.reg.GetCredential(ctx, "dev", a.ID)
	if err != nil || !got.Revoked {
		t.Errorf("GetCredential(revoked) = %+v, %v; want it revoked", got, err)
	}
	if _, err := e.reg.ListCredentials(ctx, "nosuch"); !core.IsNotFound(err) {
		t.Errorf("ListCredentials(nosuch) = %v; want not found", err)
	}
}
