package pki

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/core"
)

// serverCert calls LoadOrCreateServerCert and fails the test on error.
func serverCert(t *testing.T, dir string, ca *CA, hosts ...string) tls.Certificate {
	t.Helper()
	c, err := LoadOrCreateServerCert(dir, ca, hosts)
	if err != nil {
		t.Fatalf("LoadOrCreateServerCert(%q) = %v", hosts, err)
	}
	return c
}

// writeServerCert stores a server certificate for localhost issued by ca
// with the given validity in dir, as LoadOrCreateServerCert would.
func writeServerCert(t *testing.T, dir string, ca *CA, validity time.Duration) {
	t.Helper()
	names, ips, err := serverNames(nil)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := ca.issueServerCert(names, ips, time.Now(), validity)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "server.crt"), certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "server.key"), keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestLoadOrCreateServerCert(t *testing.T) {
	ca := newTestCA(t)
	dir := filepath.Join(t.TempDir(), "tls")
	c := serverCert(t, dir, ca, "Mote.Example.com", " 10.0.0.5 ", "[fd00::7]")
	checkMode(t, filepath.Join(dir, "server.key"), 0o600)

	leaf := c.Leaf
	if leaf == nil {
		t.Fatal("Leaf = nil; want the parsed leaf certificate")
	}
	if len(c.Certificate) != 2 || string(c.Certificate[0]) != string(leaf.Raw) || string(c.Certificate[1]) != string(ca.Certificate().Raw) {
		t.Errorf("Certificate chain has %d entries; want leaf and CA", len(c.Certificate))
	}
	names := []string{"localhost", "127.0.0.1", "::1", "mote.example.com", "10.0.0.5", "fd00::7"}
	if host, err := os.Hostname(); err == nil {
		names = append(names, host)
	}
	for _, name := range names {
		if err := leaf.VerifyHostname(name); err != nil {
			t.Errorf("VerifyHostname(%q) = %v; want nil", name, err)
		}
	}
	if len(leaf.ExtKeyUsage) != 1 || leaf.ExtKeyUsage[0] != x509.ExtKeyUsageServerAuth {
		t.Errorf("ExtKeyUsage = %v; want [ServerAuth]", leaf.ExtKeyUsage)
	}
	checkAround(t, "NotAfter", leaf.NotAfter, time.Now().Add(365*24*time.Hour))
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: ca.Pool(), DNSName: "localhost"}); err != nil {
		t.Errorf("server certificate does not verify against the CA: %v", err)
	}

	// Asking for the same names, a subset or none reuses the certificate.
	for _, hosts := range [][]string{{"mote.example.com", "10.0.0.5", "fd00::7"}, {"MOTE.example.com"}, nil} {
		again := serverCert(t, dir, ca, hosts...)
		if got, want := Fingerprint(again.Leaf), Fingerprint(leaf); got != want {
			t.Errorf("LoadOrCreateServerCert(%q) issued a new certificate; want the stored one reused", hosts)
		}
		if len(again.Certificate) != 2 {
			t.Errorf("reloaded chain has %d entries; want 2", len(again.Certificate))
		}
	}

	// A new name gets a new certificate, which is then reused.
	renewed := serverCert(t, dir, ca, "other.example.com")
	if Fingerprint(renewed.Leaf) == Fingerprint(leaf) {
		t.Fatalf("LoadOrCreateServerCert(new host) reused the certificate; want a new one")
	}
	for _, name := range []string{"other.example.com", "localhost", "127.0.0.1", "::1"} {
		if err := renewed.Leaf.VerifyHostname(name); err != nil {
			t.Errorf("renewed VerifyHostname(%q) = %v; want nil", name, err)
		}
	}
	if again := serverCert(t, dir, ca, "other.example.com"); Fingerprint(again.Leaf) != Fingerprint(renewed.Leaf) {
		t.Errorf("renewed certificate was not reused")
	}
}

func TestLoadOrCreateServerCertReplaces(t *testing.T) {
	ca := newTestCA(t)
	other := newTestCA(t)
	tests := []struct {
		name        string
		setup       func(t *testing.T, dir string)
		wantReplace bool
	}{
		{"valid for 60 days", func(t *testing.T, dir string) { writeServerCert(t, dir, ca, 60*24*time.Hour) }, false},
		{"expires in 10 days", func(t *testing.T, dir string) { writeServerCert(t, dir, ca, 10*24*time.Hour) }, true},
		{"issued by another CA", func(t *testing.T, dir string) { writeServerCert(t, dir, other, 60*24*time.Hour) }, true},
		{"corrupt certificate", func(t *testing.T, dir string) {
			writeServerCert(t, dir, ca, 60*24*time.Hour)
			if err := os.WriteFile(filepath.Join(dir, "server.crt"), []byte("junk"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"key missing", func(t *testing.T, dir string) {
			writeServerCert(t, dir, ca, 60*24*time.Hour)
			if err := os.Remove(filepath.Join(dir, "server.key")); err != nil {
				t.Fatal(err)
			}
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			tt.setup(t, dir)
			before, _ := os.ReadFile(filepath.Join(dir, "server.crt"))

			c := serverCert(t, dir, ca)
			after, err := os.ReadFile(filepath.Join(dir, "server.crt"))
			if err != nil {
				t.Fatal(err)
			}
			if replaced := string(before) != string(after); replaced != tt.wantReplace {
				t.Errorf("certificate replaced = %v; want %v", replaced, tt.wantReplace)
			}
			if err := c.Leaf.CheckSignatureFrom(ca.Certificate()); err != nil {
				t.Errorf("returned certificate is not issued by the CA: %v", err)
			}
			if stored, err := ParseCertificatePEM(after); err != nil || !stored.Equal(c.Leaf) {
				t.Errorf("stored certificate is not the returned one (err %v)", err)
			}
		})
	}
}

func TestLoadOrCreateServerCertBadHost(t *testing.T) {
	ca := newTestCA(t)
	for _, host := range []string{"exa mple.com", "a/b", "fe80::1%eth0", "müll.de"} {
		_, err := LoadOrCreateServerCert(t.TempDir(), ca, []string{host})
		checkKind(t, err, core.KindInvalid, "hosts")
	}
}

func TestLoadKeyPair(t *testing.T) {
	ca := newTestCA(t)
	dir := t.TempDir()
	want := serverCert(t, dir, ca)
	certFile := filepath.Join(dir, "server.crt")
	keyFile := filepath.Join(dir, "server.key")

	c, err := LoadKeyPair(certFile, keyFile)
	if err != nil {
		t.Fatalf("LoadKeyPair = %v", err)
	}
	if c.Leaf == nil || !c.Leaf.Equal(want.Leaf) || len(c.Certificate) != 1 {
		t.Errorf("LoadKeyPair returned Leaf %v with %d certificates; want the stored leaf alone", c.Leaf, len(c.Certificate))
	}

	// A full chain file keeps every certificate.
	chainFile := filepath.Join(dir, "chain.crt")
	leafPEM, _ := os.ReadFile(certFile)
	if err := os.WriteFile(chainFile, append(leafPEM, ca.CertPEM()...), 0o644); err != nil {
		t.Fatal(err)
	}
	if c, err := LoadKeyPair(chainFile, keyFile); err != nil || len(c.Certificate) != 2 {
		t.Errorf("LoadKeyPair(chain) = %d certificates, %v; want 2, nil", len(c.Certificate), err)
	}

	junk := filepath.Join(dir, "junk.pem")
	if err := os.WriteFile(junk, []byte("junk"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, otherKey, _, err := ca.IssueClientCert("x", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	otherKeyFile := filepath.Join(dir, "other.key")
	if err := os.WriteFile(otherKeyFile, otherKey, 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")

	tests := []struct {
		name, certFile, keyFile, wantFile string
	}{
		{"missing certificate", missing, keyFile, missing},
		{"missing key", certFile, missing, missing},
		{"corrupt certificate", junk, keyFile, junk},
		{"corrupt key", certFile, junk, junk},
		{"key swapped for a key file", keyFile, keyFile, keyFile},
		{"key of another certificate", certFile, otherKeyFile, otherKeyFile},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadKeyPair(tt.certFile, tt.keyFile)
			if err == nil || !strings.Contains(err.Error(), tt.wantFile) {
				t.Errorf("LoadKeyPair(%s, %s) = %v; want an error naming %s", tt.certFile, tt.keyFile, err, tt.wantFile)
			}
		})
	}
}

func TestServerNames(t *testing.T) {
	names, ips, err := serverNames([]string{"a.example", "A.EXAMPLE", "127.0.0.1", "::1", "[::1]", "", "10.1.2.3"})
	if err != nil {
		t.Fatal(err)
	}
	if names[0] != "localhost" {
		t.Errorf("first DNS name = %q; want localhost", names[0])
	}
	seen := map[string]bool{}
	for _, n := range names {
		if seen[n] {
			t.Errorf("DNS name %q listed twice in %q", n, names)
		}
		seen[n] = true
	}
	if !seen["a.example"] {
		t.Errorf("DNS names %q lack a.example", names)
	}
	want := []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1"), net.ParseIP("10.1.2.3")}
	if len(ips) != len(want) {
		t.Fatalf("serverNames IPs = %v; want %v", ips, want)
	}
	for i := range want {
		if !ips[i].Equal(want[i]) {
			t.Errorf("serverNames IPs = %v; want %v", ips, want)
		}
	}
}
