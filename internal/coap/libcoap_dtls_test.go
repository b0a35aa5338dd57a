package coap_test

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// coapClientDTLS returns the path of a libcoap coap-client built with a
// DTLS library, or skips.
func coapClientDTLS(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"coap-client-openssl", "coap-client-gnutls"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("coap-client-openssl (Debian libcoap3-bin) is not installed; .ci/run installs it")
	return ""
}

// TestCoAPClientDTLSCertificate: libcoap's coap-client, over DTLS with the
// device's certificate from Mote's CA and checking the server's
// certificate against that CA, posts telemetry and reads the shadow; with
// a certificate another CA signed it gets no answer.
func TestCoAPClientDTLSCertificate(t *testing.T) {
	client := coapClientDTLS(t)
	s := start(t)
	s.Thing(t, "dtls-dev")
	c, err := s.Registry().IssueCertificate(ctx(t), "dtls-dev", 0)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	files := map[string]string{"cert.pem": c.CertPEM, "key.pem": c.PrivateKey, "ca.pem": string(s.CACertPEM())}
	for name, pem := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(pem), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	msgs := watch(t, s, "things/#")
	_, port, _ := strings.Cut(coapsAddr(s), ":")
	base := "coaps://localhost:" + port
	tls := []string{"-c", filepath.Join(dir, "cert.pem"), "-j", filepath.Join(dir, "key.pem"), "-C", filepath.Join(dir, "ca.pem")}

	out := runCoAPClientWith(t, client, append(tls, "-m", "post", "-t", "json", "-e", `{"v":3}`, base+"/things/dtls-dev/telemetry")...)
	if m := next(t, msgs); m.Topic != "things/dtls-dev/telemetry" || m.Thing != "dtls-dev" || string(m.Payload) != `{"v":3}` {
		t.Fatalf("bus = %s %q from %s; want the DTLS post (client printed %q)", m.Topic, m.Payload, m.Thing, out)
	}
	runCoAPClientWith(t, client, append(tls, "-m", "put", "-t", "json", "-e", `{"state":{"reported":{"fw":"1.2"}}}`, base+"/things/dtls-dev/shadow")...)
	if got := runCoAPClientWith(t, client, append(tls, "-m", "get", base+"/things/dtls-dev/shadow")...); !strings.Contains(got, `"fw":"1.2"`) {
		t.Errorf("GET the shadow over DTLS = %q; want the reported fw", got)
	}

	// A certificate no Mote CA signed gets no session: coap-client fails
	// and nothing is published.
	other := selfSigned(t)
	otherCert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: other.Certificate[0]})
	der, err := x509.MarshalPKCS8PrivateKey(other.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	otherKey := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	for name, b := range map[string][]byte{"other.pem": otherCert, "other-key.pem": otherKey} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c2, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out2, err := exec.CommandContext(c2, client, "-c", filepath.Join(dir, "other.pem"), "-j", filepath.Join(dir, "other-key.pem"),
		"-C", filepath.Join(dir, "ca.pem"), "-B", "3", "-m", "post", "-t", "json", "-e", `{"v":4}`, base+"/things/dtls-dev/telemetry").CombinedOutput()
	t.Logf("coap-client with a foreign certificate: %v: %s", err, out2)
	// The next message on the bus is the good certificate's next post,
	// not the foreign one's.
	runCoAPClientWith(t, client, append(tls, "-m", "post", "-t", "json", "-e", `{"v":5}`, base+"/things/dtls-dev/telemetry")...)
	if m := next(t, msgs); string(m.Payload) != `{"v":5}` {
		t.Errorf("a post with a foreign certificate was published: %s %q", m.Topic, m.Payload)
	}
	if n := metric(t, s, `mote_coap_auth_failures_total{method="dtls"}`); n < 1 {
		t.Errorf("dtls auth failures = %v; want at least 1 (the foreign certificate)", n)
	}
}
