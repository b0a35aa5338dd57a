package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/moteiot/mote/internal/core"
)

// File names of the server certificate inside its directory.
const (
	serverCertFile = "server.crt"
	serverKeyFile  = "server.key"
)

const (
	serverValidity = 365 * 24 * time.Hour
	// renewBefore is how long before expiry the server certificate is replaced.
	renewBefore = 30 * 24 * time.Hour
)

// LoadOrCreateServerCert returns the TLS server certificate kept in
// dir/server.crt and dir/server.key, issuing a new one from ca when absent,
// when it does not cover every name in hosts, or when it expires within 30
// days. A certificate that cannot be read, does not match its key or was not
// issued by ca is replaced as well: it is derived data.
//
// hosts may hold DNS names and IP addresses; a host that is neither is a
// core.KindInvalid error. The certificate always also names "localhost",
// 127.0.0.1, ::1 and os.Hostname(). It is valid for 1 year, for server
// authentication. The returned tls.Certificate has the chain (leaf + CA) and
// Leaf set.
func LoadOrCreateServerCert(dir string, ca *CA, hosts []string) (tls.Certificate, error) {
	dnsNames, ips, err := serverNames(hosts)
	if err != nil {
		return tls.Certificate{}, err
	}
	certPath := filepath.Join(dir, serverCertFile)
	keyPath := filepath.Join(dir, serverKeyFile)
	now := time.Now()
	if c, ok := loadServerCert(certPath, keyPath, ca); ok &&
		coversNames(c.Leaf, dnsNames, ips) && now.Add(renewBefore).Before(c.Leaf.NotAfter) {
		return c, nil
	}

	certPEM, keyPEM, err := ca.issueServerCert(dnsNames, ips, now, serverValidity)
	if err != nil {
		return tls.Certificate{}, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return tls.Certificate{}, fmt.Errorf("create certificate directory: %w", err)
	}
	if err := writeFileAtomic(keyPath, keyPEM, 0o600); err != nil {
		return tls.Certificate{}, err
	}
	if err := writeFileAtomic(certPath, certPEM, 0o644); err != nil {
		return tls.Certificate{}, err
	}
	return serverKeyPair(certPEM, keyPEM, ca)
}

// LoadKeyPair loads a user-supplied certificate (the leaf, optionally
// followed by intermediates) and its private key, both PEM files, for the
// server. Errors name the offending file.
func LoadKeyPair(certFile, keyFile string) (tls.Certificate, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return tls.Certificate{}, err
	}
	chain, err := parseCertificateChain(certPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("%s: %w", certFile, err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return tls.Certificate{}, err
	}
	key, err := parseKeyPEM(keyPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("%s: %w", keyFile, err)
	}
	if !publicKeysEqual(chain[0].PublicKey, key.Public()) {
		return tls.Certificate{}, fmt.Errorf("%s does not belong to the certificate in %s", keyFile, certFile)
	}
	c := tls.Certificate{PrivateKey: key, Leaf: chain[0]}
	for _, cert := range chain {
		c.Certificate = append(c.Certificate, cert.Raw)
	}
	return c, nil
}

// parseCertificateChain parses the PEM CERTIFICATE blocks in b, skipping
// other blocks; there must be at least one.
func parseCertificateChain(b []byte) ([]*x509.Certificate, error) {
	var chain []*x509.Certificate
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", len(chain)+1, err)
		}
		chain = append(chain, cert)
	}
	if len(chain) == 0 {
		return nil, errors.New("no PEM certificate found")
	}
	return chain, nil
}

// issueServerCert creates a key and a server certificate for the given names.
func (ca *CA) issueServerCert(dnsNames []string, ips []net.IP, now time.Time, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate server key: %w", err)
	}
	keyPEM, err = marshalKeyPEM(key)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: dnsNames[0], Organization: []string{"Mote"}},
		DNSNames:    dnsNames,
		IPAddresses: ips,
		NotBefore:   now.Add(-backdate),
		NotAfter:    now.Add(validity),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	certPEM, _, err = ca.issue(tmpl, key.Public())
	if err != nil {
		return nil, nil, err
	}
	return certPEM, keyPEM, nil
}

// loadServerCert loads the server certificate and reports whether it is
// usable: readable, matching its key and issued by ca.
func loadServerCert(certPath, keyPath string, ca *CA) (tls.Certificate, bool) {
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return tls.Certificate{}, false
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return tls.Certificate{}, false
	}
	c, err := serverKeyPair(certPEM, keyPEM, ca)
	return c, err == nil
}

// serverKeyPair builds the tls.Certificate of a server certificate issued by
// ca: leaf and CA in the chain, Leaf set.
func serverKeyPair(certPEM, keyPEM []byte, ca *CA) (tls.Certificate, error) {
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, err
	}
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		return tls.Certificate{}, err
	}
	if err := leaf.CheckSignatureFrom(ca.cert); err != nil {
		return tls.Certificate{}, err
	}
	c.Leaf = leaf
	c.Certificate = [][]byte{leaf.Raw, ca.cert.Raw}
	return c, nil
}

// serverNames returns the DNS names and IP addresses the server certificate
// must cover: the defaults and hosts, without duplicates. DNS names are
// lower-cased; the first is "localhost".
func serverNames(hosts []string) ([]string, []net.IP, error) {
	dnsNames := []string{"localhost"}
	ips := []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	if h, err := os.Hostname(); err == nil && validDNSName(strings.ToLower(h)) {
		dnsNames = appendUnique(dnsNames, strings.ToLower(h))
	}
	for _, h := range hosts {
		h = strings.TrimSpace(h)
		if strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]") {
			h = h[1 : len(h)-1] // [::1]
		}
		if h == "" {
			continue
		}
		if ip := net.ParseIP(h); ip != nil {
			if !slices.ContainsFunc(ips, ip.Equal) {
				ips = append(ips, ip)
			}
			continue
		}
		h = strings.ToLower(h)
		if !validDNSName(h) {
			return nil, nil, core.Invalid("hosts", "%q is neither an IP address nor a DNS name", h)
		}
		dnsNames = appendUnique(dnsNames, h)
	}
	return dnsNames, ips, nil
}

// coversNames reports whether cert names all of dnsNames and ips.
func coversNames(cert *x509.Certificate, dnsNames []string, ips []net.IP) bool {
	for _, name := range dnsNames {
		if !slices.Contains(cert.DNSNames, name) {
			return false
		}
	}
	for _, ip := range ips {
		if !slices.ContainsFunc(cert.IPAddresses, ip.Equal) {
			return false
		}
	}
	return true
}

// validDNSName reports whether s looks like a lower-case DNS name: 1 to 253
// bytes of letters, digits, '-', '_', '.' and '*' (for a wildcard label).
func validDNSName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == '*') {
			return false
		}
	}
	return true
}

func appendUnique(list []string, s string) []string {
	if slices.Contains(list, s) {
		return list
	}
	return append(list, s)
}
