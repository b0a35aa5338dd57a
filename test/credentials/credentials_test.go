// Package credentials_test checks credential rotation, revocation and the
// CRL end to end (docs/credentials.md): a whole server, real MQTT, HTTP
// and CoAP clients.
package credentials_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	piondtls "github.com/pion/dtls/v2"
	"github.com/plgd-dev/go-coap/v3/dtls"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	udpclient "github.com/plgd-dev/go-coap/v3/udp/client"

	"github.com/moteiot/mote/internal/daemontest"
)

// api calls the REST API with the admin token and decodes the answer into
// out (if not nil); it returns the status.
func api(t *testing.T, s *daemontest.Server, method, path string, body, out any) int {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, s.API+"/api/v1"+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+s.Token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: decode %s: %v", method, path, b, err)
		}
	}
	if resp.StatusCode >= 300 && out != nil {
		t.Logf("%s %s = %d %s", method, path, resp.StatusCode, b)
	}
	return resp.StatusCode
}

// credential is the API's answer for a credential.
type credential struct {
	ID          string     `json:"id"`
	Type        string     `json:"type"`
	Secret      string     `json:"secret"`
	Certificate string     `json:"certificate"`
	PrivateKey  string     `json:"privateKey"`
	NotAfter    *time.Time `json:"notAfter"`
	Revoked     bool       `json:"revoked"`
	Previous    *struct {
		ID       string     `json:"id"`
		NotAfter *time.Time `json:"notAfter"`
	} `json:"previous"`
}

// newCSR makes a P-256 key and a certificate request for cn.
func newCSR(t *testing.T, cn string) (*ecdsa.PrivateKey, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}}, key)
	if err != nil {
		t.Fatal(err)
	}
	return key, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

// pair is a TLS client certificate of a PEM certificate and its key.
func pair(t *testing.T, certPEM string, key any) tls.Certificate {
	t.Helper()
	b, _ := pem.Decode([]byte(certPEM))
	if b == nil {
		t.Fatalf("no PEM certificate in %q", certPEM)
	}
	return tls.Certificate{Certificate: [][]byte{b.Bytes}, PrivateKey: key}
}

// closed waits until the server closed c, at most within.
func closed(t *testing.T, what string, c *daemontest.V5, within time.Duration) *paho.Disconnect {
	t.Helper()
	select {
	case d := <-c.Disconnected:
		return d
	case <-c.Done():
		return nil
	case <-time.After(within):
		t.Fatalf("%s: still connected after %v", what, within)
		return nil
	}
}

func TestRotationWindow(t *testing.T) {
	s := daemontest.Start(t)
	s.Thing(t, "dev")
	oldSecretID, oldSecret := s.Secret(t, "dev")
	oldCertID, oldPair := s.ClientCert(t, "dev")
	psk := pskOf(t, s, "dev", oldSecretID)

	// Connections made with the old credentials before the rotation.
	liveSecret := s.V5(t, "dev", oldSecret)
	liveCert, err := s.DialV5(t, daemontest.V5Options{ClientID: "dev-tls", TLS: s.TLSConfig(&oldPair), CleanStart: true})
	if err != nil {
		t.Fatalf("connect with the old certificate: %v", err)
	}
	livePSK := dialPSK(t, s, "dev", psk)

	// A window too long, on an unknown or another thing's credential, is
	// refused; nothing is rotated.
	if code := api(t, s, "POST", "/things/dev/credentials/"+oldSecretID+"/rotate", map[string]any{"window": "100000h"}, nil); code != http.StatusBadRequest {
		t.Errorf("rotate with a window beyond the maximum = %d; want 400", code)
	}
	s.Thing(t, "other")
	if code := api(t, s, "POST", "/things/other/credentials/"+oldSecretID+"/rotate", nil, nil); code != http.StatusNotFound {
		t.Errorf("rotate dev's credential through another thing = %d; want 404", code)
	}
	if code := api(t, s, "POST", "/things/dev/credentials/"+oldSecretID+"/rotate", map[string]any{"csr": "x"}, nil); code != http.StatusBadRequest {
		t.Errorf("rotate a secret with a csr = %d; want 400", code)
	}

	const window = 3 * time.Second
	var newSecret, newCert credential
	if code := api(t, s, "POST", "/things/dev/credentials/"+oldSecretID+"/rotate", map[string]any{"window": window.String()}, &newSecret); code != http.StatusCreated {
		t.Fatalf("rotate the secret = %d; want 201", code)
	}
	key, csr := newCSR(t, "dev")
	if code := api(t, s, "POST", "/things/dev/credentials/"+oldCertID+"/rotate", map[string]any{"window": window.String(), "csr": csr}, &newCert); code != http.StatusCreated {
		t.Fatalf("rotate the certificate with a CSR = %d; want 201", code)
	}
	rotated := time.Now()
	if newSecret.Secret == "" || newSecret.Type != "secret" || newSecret.ID == oldSecretID {
		t.Fatalf("rotated secret = %+v; want a new secret credential", newSecret)
	}
	if newCert.Certificate == "" || newCert.PrivateKey != "" || newCert.Type != "x509" {
		t.Fatalf("rotated certificate = %+v; want a certificate from the CSR and no private key", newCert)
	}
	for _, c := range []credential{newSecret, newCert} {
		if c.Previous == nil || c.Previous.NotAfter == nil || c.Previous.NotAfter.Sub(rotated) > window {
			t.Errorf("rotation answer's previous = %+v; want the old credential expiring within %v", c.Previous, window)
		}
	}
	newPair := pair(t, newCert.Certificate, key)

	// During the window both credentials connect.
	for _, o := range []daemontest.V5Options{
		{ClientID: "dev-new", Username: "dev", Password: newSecret.Secret},
		{ClientID: "dev-old", Username: "dev", Password: oldSecret},
		{ClientID: "dev-tls-new", TLS: s.TLSConfig(&newPair)},
		{ClientID: "dev-tls-old", TLS: s.TLSConfig(&oldPair)},
	} {
		o.CleanStart = true
		c, err := s.DialV5(t, o)
		if err != nil {
			t.Fatalf("during the window, %s: %v", o.ClientID, err)
		}
		if o.ClientID != "dev-new" {
			_ = c.Disconnect(&paho.Disconnect{})
		}
	}
	if elapsed := time.Since(rotated); elapsed >= window {
		t.Skipf("the connects during the window took %v (≥ the %v window): the machine is too slow for this test", elapsed, window)
	}

	// When the window ends, the connections that use the old credentials
	// are closed (MQTT 5: DISCONNECT 0xA0) and the old ones are refused.
	for _, c := range []struct {
		name string
		c    *daemontest.V5
	}{{"old secret", liveSecret}, {"old certificate", liveCert}} {
		if d := closed(t, c.name, c.c, window+5*time.Second); d != nil && d.ReasonCode != 0xA0 {
			t.Errorf("%s connection closed with 0x%02X; want 0xA0 (maximum connect time)", c.name, d.ReasonCode)
		}
	}
	daemontest.WaitFor(t, 5*time.Second, func() error {
		c, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if _, err := livePSK.Post(c, "/things/dev/telemetry", message.AppJSON, bytes.NewReader([]byte(`{}`))); err == nil {
			return fmt.Errorf("the DTLS session of the rotated secret is still served after its window")
		}
		return nil
	})
	if c, err := s.DialV5(t, daemontest.V5Options{ClientID: "dev-old2", Username: "dev", Password: oldSecret, CleanStart: true}); err == nil {
		t.Errorf("the old secret connected after its window")
	} else if c != nil && c.Connack != nil && c.Connack.ReasonCode != 0x87 {
		t.Errorf("old secret after its window: CONNACK 0x%02X; want 0x87", c.Connack.ReasonCode)
	}
	if _, err := s.DialV5(t, daemontest.V5Options{ClientID: "dev-tls-old2", TLS: s.TLSConfig(&oldPair), CleanStart: true}); err == nil {
		t.Errorf("the old certificate connected after its window")
	}
	// The new ones keep working.
	if _, err := s.DialV5(t, daemontest.V5Options{ClientID: "dev-tls-new2", TLS: s.TLSConfig(&newPair), CleanStart: true}); err != nil {
		t.Errorf("the new certificate after the window: %v", err)
	}
	if _, err := s.DialV5(t, daemontest.V5Options{ClientID: "dev-new2", Username: "dev", Password: newSecret.Secret, CleanStart: true}); err != nil {
		t.Errorf("the new secret after the window: %v", err)
	}
	// A rotated, expired credential cannot be rotated again.
	if code := api(t, s, "POST", "/things/dev/credentials/"+oldSecretID+"/rotate", nil, nil); code != http.StatusConflict {
		t.Errorf("rotate an expired credential = %d; want 409", code)
	}
}

// pskOf reads the DTLS PSK of a secret credential.
func pskOf(t *testing.T, s *daemontest.Server, thing, id string) []byte {
	t.Helper()
	var out struct {
		PSK string `json:"psk"`
	}
	if code := api(t, s, "GET", "/things/"+thing+"/credentials/"+id+"/psk", nil, &out); code != http.StatusOK {
		t.Fatalf("GET psk = %d", code)
	}
	key, err := hex.DecodeString(out.PSK)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// handshakeTimeout bounds a DTLS handshake.
func handshakeTimeout() (context.Context, func()) {
	return context.WithTimeout(context.Background(), 5*time.Second)
}

// dialPSK opens a DTLS-PSK session and checks it is served.
func dialPSK(t *testing.T, s *daemontest.Server, identity string, key []byte) *udpclient.Conn {
	t.Helper()
	cc, err := dtls.Dial(s.Addrs().CoAPS, &piondtls.Config{
		PSK:                 func([]byte) ([]byte, error) { return key, nil },
		PSKIdentityHint:     []byte(identity),
		CipherSuites:        []piondtls.CipherSuiteID{piondtls.TLS_PSK_WITH_AES_128_CCM_8},
		ConnectContextMaker: handshakeTimeout,
	})
	if err != nil {
		t.Fatalf("DTLS-PSK handshake: %v", err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	servedOverCoAP(t, cc, identity)
	return cc
}

// dialCert opens a DTLS session with a client certificate and checks it
// is served.
func dialCert(t *testing.T, s *daemontest.Server, thing string, cert tls.Certificate) *udpclient.Conn {
	t.Helper()
	tc := s.TLSConfig(&cert)
	cc, err := dtls.Dial(s.Addrs().CoAPS, &piondtls.Config{Certificates: tc.Certificates, RootCAs: tc.RootCAs,
		ServerName: "localhost", ConnectContextMaker: handshakeTimeout})
	if err != nil {
		t.Fatalf("DTLS handshake with a certificate: %v", err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	servedOverCoAP(t, cc, thing)
	return cc
}

func servedOverCoAP(t *testing.T, cc *udpclient.Conn, thing string) {
	t.Helper()
	c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := cc.Post(c, "/things/"+thing+"/telemetry", message.AppJSON, bytes.NewReader([]byte(`{"v":1}`)))
	if err != nil || resp.Code() != codes.Changed {
		t.Fatalf("POST over DTLS = %v, %v; want 2.04", resp, err)
	}
}
