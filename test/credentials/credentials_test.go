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
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	piondtls "github.com/pion/dtls/v2"
	"github.com/plgd-dev/go-coap/v3/dtls"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	udpclient "github.com/plgd-dev/go-coap/v3/udp/client"

	"github.com/moteiot/mote/internal/azureiot"
	"github.com/moteiot/mote/internal/config"
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
	Key         string     `json:"key"`
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

// listenerCheck reports nil once a listener refused or closed what used a
// revoked credential.
type listenerCheck struct {
	name string
	gone func() error
}

// allGone waits until every check passed, within d of the revocation.
func allGone(t *testing.T, d time.Duration, checks []listenerCheck) {
	t.Helper()
	done := make([]bool, len(checks))
	daemontest.WaitFor(t, d, func() error {
		var errs []error
		for i, c := range checks {
			if done[i] {
				continue
			}
			if err := c.gone(); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", c.name, err))
				continue
			}
			done[i] = true
		}
		if len(errs) > 0 {
			return fmt.Errorf("%v", errs)
		}
		return nil
	})
}

func v5Gone(c *daemontest.V5) func() error {
	return func() error {
		select {
		case <-c.Disconnected:
			return nil
		case <-c.Done():
			return nil
		default:
			return fmt.Errorf("still connected")
		}
	}
}

// deviceGet is a GET of the HTTP device API; it returns the status.
func deviceGet(client *http.Client, url string, auth func(*http.Request)) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return 0, err
	}
	if auth != nil {
		auth(req)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

func httpGone(client *http.Client, url string, auth func(*http.Request)) func() error {
	return func() error {
		code, err := deviceGet(client, url, auth)
		if err != nil {
			return nil // a connection refused is gone too
		}
		if code != http.StatusUnauthorized {
			return fmt.Errorf("device API answered %d; want 401", code)
		}
		return nil
	}
}

func coapGone(cc *udpclient.Conn, thing string) func() error {
	return func() error {
		c, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		if _, err := cc.Post(c, "/things/"+thing+"/telemetry", message.AppJSON, bytes.NewReader([]byte(`{}`))); err == nil {
			return fmt.Errorf("the DTLS session is still served")
		}
		return nil
	}
}

// TestRevokeClosesEveryListener revokes a secret, a certificate and a
// symmetric key while devices use them on every listener, and checks that
// each listener closed or refused them within a second of the revocation.
func TestRevokeClosesEveryListener(t *testing.T) {
	s := daemontest.Start(t)
	s.Thing(t, "rev")
	secretID, secret := s.Secret(t, "rev")
	certID, cert := s.ClientCert(t, "rev")
	psk := pskOf(t, s, "rev", secretID)
	s.Thing(t, "az")
	var sym credential
	if code := api(t, s, "POST", "/things/az/credentials", map[string]any{"type": "symmetricKey"}, &sym); code != http.StatusCreated {
		t.Fatalf("create a symmetric key = %d", code)
	}
	symKey, err := base64.StdEncoding.DecodeString(sym.Key)
	if err != nil || len(symKey) == 0 {
		t.Fatalf("symmetric key %q: %v", sym.Key, err)
	}

	// The secret: MQTT over TCP and WebSocket, the HTTP device API, DTLS-PSK.
	tcp := s.V5(t, "rev", secret)
	ws, _, err := s.DialV3(t, daemontest.V3Options{ClientID: "rev-ws", Username: "rev", Password: secret, Broker: s.WSURL()})
	if err != nil {
		t.Fatalf("MQTT over WebSocket: %v", err)
	}
	basic := func(r *http.Request) { r.SetBasicAuth("rev", secret) }
	shadowURL := "/api/v1/devices/rev/shadows/none"
	if code, err := deviceGet(http.DefaultClient, s.API+shadowURL, basic); err != nil || code != http.StatusNotFound {
		t.Fatalf("HTTP device API with the secret = %d, %v; want 404 (no such shadow)", code, err)
	}
	dtlsPSK := dialPSK(t, s, "rev", psk)

	// The certificate: MQTTS, the Azure IoT protocol on MQTTS, the HTTPS
	// device API, DTLS.
	mqtts, err := s.DialV5(t, daemontest.V5Options{ClientID: "rev-tls", TLS: s.TLSConfig(&cert), CleanStart: true})
	if err != nil {
		t.Fatalf("MQTTS with the certificate: %v", err)
	}
	azureCert, err := s.DialV5(t, daemontest.V5Options{ClientID: "rev", Username: azureUser("rev"), TLS: s.TLSConfig(&cert), CleanStart: true})
	if err != nil {
		t.Fatalf("Azure IoT with the certificate: %v", err)
	}
	httpsClient := &http.Client{Transport: &http.Transport{TLSClientConfig: s.TLSConfig(&cert)}}
	defer httpsClient.CloseIdleConnections()
	if code, err := deviceGet(httpsClient, s.HTTPS+shadowURL, nil); err != nil || code != http.StatusNotFound {
		t.Fatalf("HTTPS device API with the certificate = %d, %v; want 404 (no such shadow)", code, err)
	}
	dtlsCert := dialCert(t, s, "rev", cert)

	// The symmetric key: Azure IoT SAS on MQTTS.
	sas := azureiot.NewSAS(symKey, "localhost", "az", time.Now().Add(time.Hour))
	azureSASConn, err := s.DialV5(t, daemontest.V5Options{ClientID: "az", Username: azureUser("az"), Password: sas, TLS: s.TLSConfig(nil), CleanStart: true})
	if err != nil {
		t.Fatalf("Azure IoT with a SAS token: %v", err)
	}

	for _, id := range []struct{ thing, id string }{{"rev", secretID}, {"rev", certID}, {"az", sym.ID}} {
		if code := api(t, s, "POST", "/things/"+id.thing+"/credentials/"+id.id+"/revoke", nil, nil); code != http.StatusOK {
			t.Fatalf("revoke %s = %d", id.id, code)
		}
	}
	allGone(t, revokeDeadline, []listenerCheck{
		{"MQTT over TCP", v5Gone(tcp)},
		{"MQTT over WebSocket", func() error {
			if ws.IsConnectionOpen() {
				return fmt.Errorf("still connected")
			}
			return nil
		}},
		{"HTTP device API", httpGone(http.DefaultClient, s.API+shadowURL, basic)},
		{"CoAP DTLS-PSK", coapGone(dtlsPSK, "rev")},
		{"MQTTS", v5Gone(mqtts)},
		{"Azure IoT (certificate)", v5Gone(azureCert)},
		{"HTTPS device API", httpGone(httpsClient, s.HTTPS+shadowURL, nil)},
		{"CoAP DTLS (certificate)", coapGone(dtlsCert, "rev")},
		{"Azure IoT (SAS)", v5Gone(azureSASConn)},
	})

	// New connects are refused.
	if c, err := s.DialV5(t, daemontest.V5Options{ClientID: "rev-again", Username: "rev", Password: secret, CleanStart: true}); err == nil || c.Connack == nil || c.Connack.ReasonCode != 0x87 {
		t.Errorf("connect with the revoked secret = %v; want CONNACK 0x87", err)
	}
	if _, err := s.DialV5(t, daemontest.V5Options{ClientID: "rev-tls-again", TLS: s.TLSConfig(&cert), CleanStart: true}); err == nil {
		t.Errorf("the revoked certificate connected")
	}
	if c, err := s.DialV5(t, daemontest.V5Options{ClientID: "az", Username: azureUser("az"), Password: sas, TLS: s.TLSConfig(nil), CleanStart: true}); err == nil || c.Connack == nil || c.Connack.ReasonCode != 0x87 {
		t.Errorf("Azure SAS of the revoked key = %v; want CONNACK 0x87", err)
	}
}

func azureUser(dev string) string {
	return "localhost/" + dev + "/?api-version=2021-04-12&DeviceClientType=go-test"
}

// getPublic GETs a public route without a token.
func getPublic(t *testing.T, s *daemontest.Server, path string) []byte {
	t.Helper()
	resp, err := http.Get(s.API + "/api/v1" + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s = %d %s", path, resp.StatusCode, b)
	}
	return b
}

// parseCRL parses a PEM CRL and checks its signature against the CA.
func parseCRL(t *testing.T, crlPEM []byte, ca *x509.Certificate) *x509.RevocationList {
	t.Helper()
	b, _ := pem.Decode(crlPEM)
	if b == nil || b.Type != "X509 CRL" {
		t.Fatalf("CRL is not a PEM X509 CRL: %q", crlPEM)
	}
	crl, err := x509.ParseRevocationList(b.Bytes)
	if err != nil {
		t.Fatalf("ParseRevocationList: %v", err)
	}
	if err := crl.CheckSignatureFrom(ca); err != nil {
		t.Fatalf("CRL signature against the CA: %v", err)
	}
	return crl
}

func serials(crl *x509.RevocationList) map[string]bool {
	m := map[string]bool{}
	for _, e := range crl.RevokedCertificateEntries {
		m[e.SerialNumber.String()] = true
	}
	return m
}

func TestCRL(t *testing.T) {
	s := daemontest.Start(t)
	s.Thing(t, "c1")
	caPEM := getPublic(t, s, "/ca.pem")
	cb, _ := pem.Decode(caPEM)
	ca, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	leaf := func(p tls.Certificate) *x509.Certificate {
		c, err := x509.ParseCertificate(p.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	id1, p1 := s.ClientCert(t, "c1")
	id2, p2 := s.ClientCert(t, "c1")
	_, p3 := s.ClientCert(t, "c1")

	empty := parseCRL(t, getPublic(t, s, "/crl.pem"), ca)
	if len(empty.RevokedCertificateEntries) != 0 {
		t.Errorf("CRL before any revocation lists %d certificates", len(empty.RevokedCertificateEntries))
	}
	if got := empty.NextUpdate.Sub(empty.ThisUpdate); got != s.Config.CRLValidity {
		t.Errorf("nextUpdate - thisUpdate = %v; want --crl-validity %v", got, s.Config.CRLValidity)
	}
	// Cached: the same bytes until something is revoked.
	a, b := getPublic(t, s, "/crl.pem"), getPublic(t, s, "/crl.pem")
	if !bytes.Equal(a, b) {
		t.Errorf("two CRL reads without a revocation differ: it is rebuilt per request")
	}

	if code := api(t, s, "POST", "/things/c1/credentials/"+id1+"/revoke", nil, nil); code != http.StatusOK {
		t.Fatalf("revoke = %d", code)
	}
	crlPEM := getPublic(t, s, "/crl.pem")
	first := parseCRL(t, crlPEM, ca)
	if got := serials(first); !got[leaf(p1).SerialNumber.String()] || len(got) != 1 {
		t.Errorf("CRL serials = %v; want only the revoked certificate's %s", got, leaf(p1).SerialNumber)
	}
	if first.Number.Cmp(empty.Number) <= 0 {
		t.Errorf("CRL number %v after a revocation; want more than %v", first.Number, empty.Number)
	}

	if code := api(t, s, "POST", "/things/c1/credentials/"+id2+"/revoke", nil, nil); code != http.StatusOK {
		t.Fatalf("revoke = %d", code)
	}
	second := parseCRL(t, getPublic(t, s, "/crl.pem"), ca)
	got := serials(second)
	if !got[leaf(p1).SerialNumber.String()] || !got[leaf(p2).SerialNumber.String()] || got[leaf(p3).SerialNumber.String()] {
		t.Errorf("CRL serials = %v; want %s and %s, not the live %s", got, leaf(p1).SerialNumber, leaf(p2).SerialNumber, leaf(p3).SerialNumber)
	}
	if second.Number.Cmp(first.Number) <= 0 {
		t.Errorf("CRL number %v after a second revocation; want more than %v", second.Number, first.Number)
	}

	// The same CRL checked by OpenSSL.
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl is not installed: the CRL was checked with crypto/x509 only")
	}
	dir := t.TempDir()
	crlFile, caFile := filepath.Join(dir, "crl.pem"), filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(crlFile, crlPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(caFile, caPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(openssl, "crl", "-in", crlFile, "-CAfile", caFile, "-noout").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "verify OK") {
		t.Errorf("openssl crl -CAfile: %v\n%s\nwant verify OK", err, out)
	}
	out, err = exec.Command(openssl, "crl", "-in", crlFile, "-noout", "-text").CombinedOutput()
	if want := strings.ToUpper(leaf(p1).SerialNumber.Text(16)); err != nil || !strings.Contains(strings.ReplaceAll(string(out), ":", ""), want) {
		t.Errorf("openssl crl -text lacks the revoked serial %s: %v\n%s", want, err, out)
	}
}

// rsaCSR makes a CSR with an RSA key of bits bits.
func rsaCSR(t *testing.T, cn string, bits int) string {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}}, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

type rotateAnswer struct {
	Credential       string    `json:"credential"`
	Certificate      string    `json:"certificate"`
	Previous         string    `json:"previous"`
	PreviousNotAfter time.Time `json:"previousNotAfter"`
	StatusCode       int       `json:"statusCode"`
	ErrorMessage     string    `json:"errorMessage"`
}

// mqttRotate publishes a rotation request and returns the answer's topic
// suffix (accepted or rejected) and payload.
func mqttRotate(t *testing.T, c *daemontest.V5, thing, payload string) (string, rotateAnswer) {
	t.Helper()
	before := len(c.Inbox.All())
	if code := c.Pub(t, "$mote/things/"+thing+"/certificate/rotate", 1, false, payload); code != 0 {
		t.Fatalf("publish the rotation request: PUBACK 0x%02X", code)
	}
	var m daemontest.Msg
	daemontest.WaitFor(t, 10*time.Second, func() error {
		all := c.Inbox.All()
		if len(all) <= before {
			return fmt.Errorf("no answer to the rotation request")
		}
		m = all[before]
		return nil
	})
	var a rotateAnswer
	if err := json.Unmarshal([]byte(m.Payload), &a); err != nil {
		t.Fatalf("answer %s: %v", m.Payload, err)
	}
	base := "$mote/things/" + thing + "/certificate/rotate/"
	if !strings.HasPrefix(m.Topic, base) {
		t.Fatalf("answer on %s; want %s...", m.Topic, base)
	}
	return strings.TrimPrefix(m.Topic, base), a
}

func csrJSON(csr string) string {
	b, _ := json.Marshal(map[string]string{"csr": csr})
	return string(b)
}

func TestDeviceRotatesItsCertificate(t *testing.T) {
	s := daemontest.Start(t, func(c *config.Config) { c.DeviceRotationLimit = 5 })
	s.Thing(t, "dev")
	s.Thing(t, "other")
	oldID, oldPair := s.ClientCert(t, "dev")
	_, otherPair := s.ClientCert(t, "other")
	_, devSecret := s.Secret(t, "dev")

	dev, err := s.DialV5(t, daemontest.V5Options{ClientID: "dev", TLS: s.TLSConfig(&oldPair), CleanStart: true})
	if err != nil {
		t.Fatalf("connect with the certificate: %v", err)
	}
	if code := dev.Sub(t, "$mote/things/dev/certificate/rotate/+"); code >= 0x80 {
		t.Fatalf("subscribe to its own rotation answers: SUBACK 0x%02X", code)
	}

	// Over MQTT: a new certificate from a CSR; the old one stays valid.
	key, csr := newCSR(t, "dev")
	got, a := mqttRotate(t, dev, "dev", csrJSON(csr))
	if got != "accepted" || a.Certificate == "" || a.Previous != oldID {
		t.Fatalf("MQTT rotation = %s %+v; want accepted with a certificate replacing %s", got, a, oldID)
	}
	if left := time.Until(a.PreviousNotAfter); left <= 0 || left > s.Config.CredentialRotationWindow {
		t.Errorf("old certificate valid for %v more; want within --credential-rotation-window %v", left, s.Config.CredentialRotationWindow)
	}
	newPair := pair(t, a.Certificate, key)
	if _, err := s.DialV5(t, daemontest.V5Options{ClientID: "dev-new", TLS: s.TLSConfig(&newPair), CleanStart: true}); err != nil {
		t.Errorf("connect with the rotated certificate: %v", err)
	}
	if _, err := s.DialV5(t, daemontest.V5Options{ClientID: "dev-old", TLS: s.TLSConfig(&oldPair), CleanStart: true}); err != nil {
		t.Errorf("the old certificate within its window: %v", err)
	}

	// A weak key, another subject, a malformed request: rejected.
	for _, c := range []struct{ name, payload string }{
		{"RSA-1024 key", csrJSON(rsaCSR(t, "dev", 1024))},
		{"subject of another thing", csrJSON(func() string { _, c := newCSR(t, "other"); return c }())},
		{"not JSON", "csr please"},
	} {
		if got, a := mqttRotate(t, dev, "dev", c.payload); got != "rejected" || a.StatusCode != 400 {
			t.Errorf("%s: %s %+v; want rejected with 400", c.name, got, a)
		}
	}

	// Another thing may not rotate dev's certificate, nor read its answers.
	other, err := s.DialV5(t, daemontest.V5Options{ClientID: "other", TLS: s.TLSConfig(&otherPair), CleanStart: true})
	if err != nil {
		t.Fatal(err)
	}
	if code := other.Pub(t, "$mote/things/dev/certificate/rotate", 1, false, csrJSON(csr)); code != 0x87 {
		t.Errorf("other publishing dev's rotation request: PUBACK 0x%02X; want 0x87", code)
	}
	if code := other.Sub(t, "$mote/things/dev/certificate/rotate/+"); code < 0x80 {
		t.Errorf("other subscribing to dev's rotation answers: SUBACK 0x%02X; want a refusal", code)
	}
	if code := dev.Pub(t, "$mote/things/dev/certificate/rotate/accepted", 1, false, "{}"); code != 0x87 {
		t.Errorf("publishing on an answer topic: PUBACK 0x%02X; want 0x87", code)
	}
	// A connection authenticated with a secret cannot rotate a certificate.
	bySecret, err := s.DialV5(t, daemontest.V5Options{ClientID: "dev-secret", Username: "dev", Password: devSecret, CleanStart: true})
	if err != nil {
		t.Fatal(err)
	}
	bySecret.Sub(t, "$mote/things/dev/certificate/rotate/+")
	if got, a := mqttRotate(t, bySecret, "dev", csrJSON(csr)); got != "rejected" || a.StatusCode != 403 {
		t.Errorf("rotation over a secret-authenticated connection: %s %+v; want rejected with 403", got, a)
	}

	// Over HTTPS with the new certificate.
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: s.TLSConfig(&newPair)}}
	defer client.CloseIdleConnections()
	post := func(thing, body string) (int, rotateAnswer) {
		t.Helper()
		resp, err := client.Post(s.HTTPS+"/api/v1/devices/"+thing+"/certificate", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var a rotateAnswer
		_ = json.NewDecoder(resp.Body).Decode(&a)
		return resp.StatusCode, a
	}
	key2, csr2 := newCSR(t, "")
	code, a2 := post("dev", csrJSON(csr2))
	if code != http.StatusCreated || a2.Previous != a.Credential {
		t.Fatalf("HTTPS rotation = %d %+v; want 201 replacing %s", code, a2, a.Credential)
	}
	p2 := pair(t, a2.Certificate, key2)
	if _, err := s.DialV5(t, daemontest.V5Options{ClientID: "dev-https", TLS: s.TLSConfig(&p2), CleanStart: true}); err != nil {
		t.Errorf("connect with the certificate rotated over HTTPS: %v", err)
	}
	if code, _ := post("other", csrJSON(csr2)); code != http.StatusForbidden {
		t.Errorf("dev rotating other's certificate over HTTPS = %d; want 403", code)
	}
	// A flood: the sixth rotation within the hour is refused (5 were
	// counted: 1 accepted and 3 rejected over MQTT, 1 over HTTPS; the
	// refusals before the limit, another thing and a secret, take none).
	code, _ = post("dev", csrJSON(csr2))
	if code != http.StatusTooManyRequests {
		t.Errorf("rotation beyond --device-rotation-limit = %d; want 429", code)
	}

	// Audit: the device is the actor.
	daemontest.WaitFor(t, 5*time.Second, func() error {
		var page struct {
			Items []struct {
				Actor struct {
					Kind, Name string
				} `json:"actor"`
				Action string `json:"action"`
				Status int    `json:"status"`
			} `json:"items"`
		}
		if code := api(t, s, "GET", "/audit?action=thing.credential.rotate&actor=dev", nil, &page); code != http.StatusOK {
			return fmt.Errorf("GET /audit = %d", code)
		}
		accepted := 0
		for _, e := range page.Items {
			if e.Actor.Kind != "device" || e.Actor.Name != "dev" {
				return fmt.Errorf("audit entry by %+v; want the device dev", e.Actor)
			}
			if e.Status == 201 {
				accepted++
			}
		}
		if accepted != 2 || len(page.Items) < 6 {
			return fmt.Errorf("audit has %d rotation entries, %d accepted; want at least 6, 2 accepted", len(page.Items), accepted)
		}
		return nil
	})
}
