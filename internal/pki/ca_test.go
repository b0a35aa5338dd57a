package pki

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/core"
)

// newTestCA creates a CA in a fresh temporary directory.
func newTestCA(t *testing.T) *CA {
	t.Helper()
	ca, err := LoadOrCreateCA(t.TempDir())
	if err != nil {
		t.Fatalf("LoadOrCreateCA: %v", err)
	}
	return ca
}

// checkKind fails the test unless err is a *core.Error of the given kind
// (and field, if field is not "").
func checkKind(t *testing.T, err error, kind core.Kind, field string) {
	t.Helper()
	if err == nil {
		t.Fatalf("err = nil; want a %v error", kind)
	}
	if got := core.KindOf(err); got != kind {
		t.Errorf("KindOf(%v) = %v; want %v", err, got, kind)
	}
	if field != "" {
		if got := core.FieldOf(err); got != field {
			t.Errorf("FieldOf(%v) = %q; want %q", err, got, field)
		}
	}
}

// checkMode fails the test unless path has the permission bits want.
func checkMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != want {
		t.Errorf("mode of %s = %v; want %v", path, got, want)
	}
}

// checkAround fails the test unless got is within 10 seconds of want.
func checkAround(t *testing.T, name string, got, want time.Time) {
	t.Helper()
	if d := got.Sub(want); d < -10*time.Second || d > 10*time.Second {
		t.Errorf("%s = %v; want about %v", name, got, want)
	}
}

func TestLoadOrCreateCA(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca") // does not exist yet
	ca, err := LoadOrCreateCA(dir)
	if err != nil {
		t.Fatalf("LoadOrCreateCA(new dir) = %v", err)
	}
	checkMode(t, dir, 0o700)
	checkMode(t, filepath.Join(dir, "ca.key"), 0o600)

	cert := ca.Certificate()
	host, _ := os.Hostname()
	if want := strings.TrimSpace("Mote CA " + host); cert.Subject.CommonName != want {
		t.Errorf("CommonName = %q; want %q", cert.Subject.CommonName, want)
	}
	if got := cert.Subject.Organization; len(got) != 1 || got[0] != "Mote" {
		t.Errorf("Organization = %q; want [Mote]", got)
	}
	if !cert.IsCA || !cert.BasicConstraintsValid || cert.MaxPathLen != 0 || !cert.MaxPathLenZero {
		t.Errorf("IsCA, BasicConstraintsValid, MaxPathLen, MaxPathLenZero = %v, %v, %d, %v; want true, true, 0, true",
			cert.IsCA, cert.BasicConstraintsValid, cert.MaxPathLen, cert.MaxPathLenZero)
	}
	if want := x509.KeyUsageCertSign | x509.KeyUsageCRLSign; cert.KeyUsage != want {
		t.Errorf("KeyUsage = %v; want %v", cert.KeyUsage, want)
	}
	if pub, ok := cert.PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P256() {
		t.Errorf("PublicKey = %T; want ECDSA P-256", cert.PublicKey)
	}
	now := time.Now()
	checkAround(t, "NotBefore", cert.NotBefore, now.Add(-time.Minute))
	checkAround(t, "NotAfter", cert.NotAfter, now.Add(10*365*24*time.Hour))
	if err := cert.CheckSignatureFrom(cert); err != nil {
		t.Errorf("CA certificate is not self-signed: %v", err)
	}
	if got, err := ParseCertificatePEM(ca.CertPEM()); err != nil || !got.Equal(cert) {
		t.Errorf("ParseCertificatePEM(CertPEM()) = %v, %v; want the CA certificate", got, err)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: ca.Pool()}); err != nil {
		t.Errorf("CA certificate does not verify against Pool(): %v", err)
	}

	// Loading gives the same CA, able to issue certificates that the first
	// one trusts.
	loaded, err := LoadOrCreateCA(dir)
	if err != nil {
		t.Fatalf("LoadOrCreateCA(existing dir) = %v", err)
	}
	if !bytes.Equal(loaded.CertPEM(), ca.CertPEM()) {
		t.Errorf("loaded CA certificate differs from the created one")
	}
	_, _, client, err := loaded.IssueClientCert("dev1", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.VerifyClient(client, time.Now()); err != nil {
		t.Errorf("VerifyClient(cert from loaded CA) = %v; want nil", err)
	}
}

func TestLoadOrCreateCAErrors(t *testing.T) {
	other := t.TempDir()
	if _, err := LoadOrCreateCA(other); err != nil {
		t.Fatal(err)
	}
	otherKey, err := os.ReadFile(filepath.Join(other, "ca.key"))
	if err != nil {
		t.Fatal(err)
	}
	ca := newTestCA(t)
	clientPEM, _, _, err := ca.IssueClientCert("dev1", time.Hour)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name     string
		file     string // the file to break
		contents []byte // nil removes the file
		wantFile string // the file the error must name
	}{
		{"corrupt key", "ca.key", []byte("not a key"), "ca.key"},
		{"truncated key", "ca.key", []byte("-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49\n-----END PRIVATE KEY-----\n"), "ca.key"},
		{"corrupt certificate", "ca.crt", []byte("garbage"), "ca.crt"},
		{"key of another CA", "ca.key", otherKey, "ca.key"},
		{"not a CA certificate", "ca.crt", clientPEM, "ca.crt"},
		{"missing key", "ca.key", nil, "ca.key"},
		{"missing certificate", "ca.crt", nil, "ca.crt"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if _, err := LoadOrCreateCA(dir); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, tt.file)
			if tt.contents == nil {
				if err := os.Remove(path); err != nil {
					t.Fatal(err)
				}
			} else if err := os.WriteFile(path, tt.contents, 0o600); err != nil {
				t.Fatal(err)
			}
			before := readDir(t, dir)

			_, err := LoadOrCreateCA(dir)
			if err == nil {
				t.Fatalf("LoadOrCreateCA = nil error; want an error naming %s", tt.wantFile)
			}
			if want := filepath.Join(dir, tt.wantFile); !strings.Contains(err.Error(), want) {
				t.Errorf("LoadOrCreateCA = %q; want an error naming %s", err, want)
			}
			if after := readDir(t, dir); !equalMaps(before, after) {
				t.Errorf("LoadOrCreateCA modified %s after an error", dir)
			}
		})
	}
}

// readDir returns the contents of the files in dir by name.
func readDir(t *testing.T, dir string) map[string]string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	files := make(map[string]string)
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		files[e.Name()] = string(b)
	}
	return files
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func TestIssueClientCert(t *testing.T) {
	ca := newTestCA(t)
	certPEM, keyPEM, cert, err := ca.IssueClientCert("thing-1", 24*time.Hour)
	if err != nil {
		t.Fatalf("IssueClientCert = %v", err)
	}
	now := time.Now()
	if cert.Subject.CommonName != "thing-1" {
		t.Errorf("CommonName = %q; want %q", cert.Subject.CommonName, "thing-1")
	}
	if len(cert.ExtKeyUsage) != 1 || cert.ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth {
		t.Errorf("ExtKeyUsage = %v; want [ClientAuth]", cert.ExtKeyUsage)
	}
	if cert.IsCA {
		t.Errorf("IsCA = true; want false")
	}
	if cert.SerialNumber.Sign() <= 0 || cert.SerialNumber.BitLen() > 128 {
		t.Errorf("SerialNumber = %v; want a positive number of at most 128 bits", cert.SerialNumber)
	}
	checkAround(t, "NotBefore", cert.NotBefore, now.Add(-time.Minute))
	checkAround(t, "NotAfter", cert.NotAfter, now.Add(24*time.Hour))

	parsed, err := ParseCertificatePEM(certPEM)
	if err != nil || !parsed.Equal(cert) {
		t.Errorf("ParseCertificatePEM(certPEM) = %v, %v; want the returned certificate", parsed, err)
	}
	block, _ := pem.Decode(keyPEM)
	if block == nil || block.Type != "PRIVATE KEY" {
		t.Fatalf("keyPEM is not a PEM PRIVATE KEY: %q", keyPEM)
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatalf("ParsePKCS8PrivateKey(keyPEM) = %v", err)
	}
	ecKey, ok := key.(*ecdsa.PrivateKey)
	if !ok || ecKey.Curve != elliptic.P256() || !ecKey.PublicKey.Equal(cert.PublicKey) {
		t.Errorf("key is %T; want the ECDSA P-256 key of the certificate", key)
	}
	if err := ca.VerifyClient(cert, now); err != nil {
		t.Errorf("VerifyClient = %v; want nil", err)
	}

	_, _, cert2, err := ca.IssueClientCert("thing-1", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if cert2.SerialNumber.Cmp(cert.SerialNumber) == 0 {
		t.Errorf("two certificates have the same serial number %v", cert.SerialNumber)
	}

	// The validity never extends beyond the CA's.
	_, _, long, err := ca.IssueClientCert("thing-1", 100*365*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if !long.NotAfter.Equal(ca.Certificate().NotAfter) {
		t.Errorf("NotAfter of a 100-year certificate = %v; want the CA's %v", long.NotAfter, ca.Certificate().NotAfter)
	}
}

func TestIssueClientCertErrors(t *testing.T) {
	ca := newTestCA(t)
	tests := []struct {
		name      string
		cn        string
		validity  time.Duration
		wantField string
	}{
		{"empty common name", "", time.Hour, "commonName"},
		{"zero validity", "dev", 0, "validity"},
		{"negative validity", "dev", -time.Hour, "validity"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, _, err := ca.IssueClientCert(tt.cn, tt.validity)
			checkKind(t, err, core.KindInvalid, tt.wantField)
			_, _, err = ca.SignCSR(newCSR(t, "x"), tt.cn, tt.validity)
			checkKind(t, err, core.KindInvalid, tt.wantField)
		})
	}
}

// newCSR returns a PEM certificate signing request for a new P-256 key with
// the common name cn.
func newCSR(t *testing.T, cn string) []byte {
	t.Helper()
	csrPEM, _ := newCSRWithKey(t, cn)
	return csrPEM
}

func newCSRWithKey(t *testing.T, cn string) ([]byte, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject:  pkix.Name{CommonName: cn, Organization: []string{"Evil Corp"}},
		DNSNames: []string{"evil.example.com"},
	}, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), key
}

func TestSignCSR(t *testing.T) {
	ca := newTestCA(t)
	csrPEM, key := newCSRWithKey(t, "admin")
	certPEM, cert, err := ca.SignCSR(csrPEM, "thing-7", time.Hour)
	if err != nil {
		t.Fatalf("SignCSR = %v", err)
	}
	if cert.Subject.CommonName != "thing-7" {
		t.Errorf("CommonName = %q; want %q (the CSR's subject must be ignored)", cert.Subject.CommonName, "thing-7")
	}
	if len(cert.Subject.Organization) != 0 || len(cert.DNSNames) != 0 {
		t.Errorf("Organization, DNSNames = %q, %q; want none (the CSR's request must be ignored)", cert.Subject.Organization, cert.DNSNames)
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		t.Errorf("certificate public key is not the CSR's")
	}
	if len(cert.ExtKeyUsage) != 1 || cert.ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth {
		t.Errorf("ExtKeyUsage = %v; want [ClientAuth]", cert.ExtKeyUsage)
	}
	if parsed, err := ParseCertificatePEM(certPEM); err != nil || !parsed.Equal(cert) {
		t.Errorf("ParseCertificatePEM(certPEM) = %v, %v; want the returned certificate", parsed, err)
	}
	if err := ca.VerifyClient(cert, time.Now()); err != nil {
		t.Errorf("VerifyClient = %v; want nil", err)
	}
}

func TestSignCSRRejects(t *testing.T) {
	ca := newTestCA(t)
	good := newCSR(t, "x")
	block, _ := pem.Decode(good)

	badSig := bytes.Clone(block.Bytes)
	badSig[len(badSig)-1] ^= 0xff // the signature is at the end

	weakKey, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	weakDER, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, weakKey)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		in      []byte
		wantMsg string
	}{
		{"empty", nil, "no PEM data"},
		{"not PEM", []byte("hello"), "no PEM data"},
		{"certificate instead of CSR", ca.CertPEM(), `"CERTIFICATE"`},
		{"malformed DER", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: []byte{0x30, 0x03, 1, 2, 3}}), "malformed"},
		{"broken signature", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: badSig}), "signature is invalid"},
		{"weak RSA key", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: weakDER}), "too weak"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			certPEM, cert, err := ca.SignCSR(tt.in, "dev", time.Hour)
			if certPEM != nil || cert != nil {
				t.Errorf("SignCSR returned a certificate for a bad CSR")
			}
			checkKind(t, err, core.KindInvalid, "csr")
			if err != nil && !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("SignCSR = %q; want an error containing %q", err, tt.wantMsg)
			}
		})
	}

	// The older "NEW CERTIFICATE REQUEST" header is accepted.
	legacy := pem.EncodeToMemory(&pem.Block{Type: "NEW CERTIFICATE REQUEST", Bytes: block.Bytes})
	if _, _, err := ca.SignCSR(legacy, "dev", time.Hour); err != nil {
		t.Errorf("SignCSR(NEW CERTIFICATE REQUEST) = %v; want nil", err)
	}
}

func TestVerifyClient(t *testing.T) {
	ca := newTestCA(t)
	other := newTestCA(t)
	now := time.Now()
	_, _, good, err := ca.IssueClientCert("dev", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	_, _, foreign, err := other.IssueClientCert("dev", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	serverPEM, _, err := ca.issueServerCert([]string{"localhost"}, nil, now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	server, err := ParseCertificatePEM(serverPEM)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		cert    *x509.Certificate
		now     time.Time
		wantErr bool
	}{
		{"issued by the CA", good, now, false},
		{"issued by another CA", foreign, now, true},
		{"expired", good, now.Add(2 * time.Hour), true},
		{"not yet valid", good, now.Add(-time.Hour), true},
		{"server certificate", server, now, true},
		{"the CA itself", other.Certificate(), now, true},
		{"its own CA certificate", ca.Certificate(), now, true},
		{"nil", nil, now, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ca.VerifyClient(tt.cert, tt.now)
			if !tt.wantErr {
				if err != nil {
					t.Errorf("VerifyClient = %v; want nil", err)
				}
				return
			}
			checkKind(t, err, core.KindUnauthorized, "")
		})
	}
}

func TestFingerprint(t *testing.T) {
	ca := newTestCA(t)
	_, _, cert, err := ca.IssueClientCert("dev", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(cert.Raw)
	want := hex.EncodeToString(sum[:])
	if got := Fingerprint(cert); got != want {
		t.Errorf("Fingerprint(cert) = %q; want %q", got, want)
	}
	if got := Fingerprint(ca.Certificate()); got == want || len(got) != 64 || strings.ToLower(got) != got {
		t.Errorf("Fingerprint(CA) = %q; want 64 lower-case hex digits, different from the client's", got)
	}
}

func TestParseCertificatePEM(t *testing.T) {
	ca := newTestCA(t)
	certPEM := ca.CertPEM()
	block, _ := pem.Decode(certPEM)

	tests := []struct {
		name    string
		in      []byte
		wantErr bool
	}{
		{"one certificate", certPEM, false},
		{"trailing white space", append(bytes.Clone(certPEM), "\n\n  \t\n"...), false},
		{"leading text", append([]byte("Certificate:\n  subject: x\n"), certPEM...), false},
		{"empty", nil, true},
		{"not PEM", []byte("MIIB..."), true},
		{"two certificates", append(bytes.Clone(certPEM), certPEM...), true},
		{"trailing garbage", append(bytes.Clone(certPEM), "junk"...), true},
		{"wrong block type", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: block.Bytes}), true},
		{"malformed DER", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: block.Bytes[:50]}), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cert, err := ParseCertificatePEM(tt.in)
			if !tt.wantErr {
				if err != nil || !cert.Equal(ca.Certificate()) {
					t.Errorf("ParseCertificatePEM = %v, %v; want the certificate", cert, err)
				}
				return
			}
			if cert != nil {
				t.Errorf("ParseCertificatePEM returned a certificate for bad input")
			}
			checkKind(t, err, core.KindInvalid, "certificate")
		})
	}
}
