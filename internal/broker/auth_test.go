package broker_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"path/filepath"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/moteiot/mote/internal/config"
	"github.com/moteiot/mote/internal/daemontest"
	"github.com/moteiot/mote/internal/pki"
	"github.com/moteiot/mote/internal/store"
)

func TestSecretAuth(t *testing.T) {
	s := daemontest.Start(t)
	secret := s.Device(t, "dev1")

	t.Run("v3 ok", func(t *testing.T) {
		s.V3(t, "dev1", secret)
	})
	t.Run("v5 ok", func(t *testing.T) {
		s.V5(t, "dev1", secret)
	})
	t.Run("v3 wrong secret", func(t *testing.T) {
		_, code, err := s.DialV3(t, daemontest.V3Options{ClientID: "dev1", Username: "dev1", Password: "wrong"})
		if err == nil || code != 4 {
			t.Fatalf("connect with wrong secret = code %d, %v; want return code 4 (bad user name or password)", code, err)
		}
	})
	t.Run("v5 wrong secret", func(t *testing.T) {
		c, err := s.DialV5(t, daemontest.V5Options{ClientID: "dev1", Username: "dev1", Password: "wrong"})
		if err == nil || c.Connack == nil || c.Connack.ReasonCode != 0x86 {
			t.Fatalf("connect with wrong secret = %+v, %v; want reason 0x86", c.Connack, err)
		}
	})
	t.Run("v5 secret of another thing", func(t *testing.T) {
		s.Thing(t, "dev2")
		c, err := s.DialV5(t, daemontest.V5Options{ClientID: "x", Username: "dev2", Password: secret})
		if err == nil || c.Connack.ReasonCode != 0x86 {
			t.Fatalf("dev2 with dev1's secret = %+v, %v; want reason 0x86", c.Connack, err)
		}
	})
	t.Run("v5 no credentials", func(t *testing.T) {
		c, err := s.DialV5(t, daemontest.V5Options{ClientID: "anon"})
		if err == nil || c.Connack.ReasonCode != 0x86 {
			t.Fatalf("anonymous = %+v, %v; want reason 0x86", c.Connack, err)
		}
	})
	t.Run("v5 bad client id", func(t *testing.T) {
		c, err := s.DialV5(t, daemontest.V5Options{ClientID: "a/b", Username: "dev1", Password: secret})
		if err == nil || c.Connack.ReasonCode != 0x85 {
			t.Fatalf("client id a/b = %+v, %v; want reason 0x85", c.Connack, err)
		}
	})
	t.Run("failures are counted", func(t *testing.T) {
		body := getMetrics(t, s)
		want := `mote_mqtt_auth_failures_total{reason="bad_credentials"}`
		if !containsLine(body, want) {
			t.Fatalf("metrics lack %s:\n%s", want, body)
		}
	})
}

func TestSecretExpiry(t *testing.T) {
	s := daemontest.Start(t)
	s.Thing(t, "dev")
	exp := time.Now().Add(1500 * time.Millisecond)
	c, err := s.Registry().CreateSecret(context.Background(), "dev", &exp)
	if err != nil {
		t.Fatal(err)
	}
	s.V5(t, "dev", c.Secret)
	// Accepted until it expires, refused with 0x87 from then on.
	// The store keeps the expiry in milliseconds.
	stored := exp.Truncate(time.Millisecond)
	daemontest.WaitFor(t, time.Until(exp)+5*time.Second, func() error {
		v, err := s.DialV5(t, daemontest.V5Options{ClientID: "dev-2", Username: "dev", Password: c.Secret})
		at := time.Now()
		if err == nil {
			_ = v.Disconnect(&paho.Disconnect{})
			return errorf("the secret is still accepted at %v (it expires at %v)", at, exp)
		}
		if v == nil || v.Connack == nil || v.Connack.ReasonCode != 0x87 {
			t.Fatalf("expired secret = %+v, %v; want reason 0x87", v, err)
		}
		if at.Before(stored) {
			t.Fatalf("secret refused at %v, before it expires at %v", at, stored)
		}
		return nil
	})
}

func TestCertificateAuth(t *testing.T) {
	s := daemontest.Start(t)
	s.Thing(t, "cam")
	credID, cert := s.ClientCert(t, "cam")

	t.Run("v5 over TLS, username ignored", func(t *testing.T) {
		c, err := s.DialV5(t, daemontest.V5Options{ClientID: "cam", Username: "whatever", TLS: s.TLSConfig(&cert), CleanStart: true})
		if err != nil {
			t.Fatalf("connect with certificate: %v", err)
		}
		if rc := c.Pub(t, "things/cam/x", 1, false, "hi"); rc != 0 {
			t.Fatalf("publish to own topic = reason %#x; want 0", rc)
		}
	})
	t.Run("v3 over TLS", func(t *testing.T) {
		if _, code, err := s.DialV3(t, daemontest.V3Options{ClientID: "cam3", TLS: s.TLSConfig(&cert)}); err != nil {
			t.Fatalf("v3 connect with certificate = %d, %v", code, err)
		}
	})
	t.Run("TLS without certificate needs a secret", func(t *testing.T) {
		c, err := s.DialV5(t, daemontest.V5Options{ClientID: "cam", TLS: s.TLSConfig(nil)})
		if err == nil || c.Connack.ReasonCode != 0x86 {
			t.Fatalf("TLS without cert or secret = %+v, %v; want 0x86", c.Connack, err)
		}
	})
	t.Run("certificate from a foreign CA", func(t *testing.T) {
		other, err := pki.LoadOrCreateCA(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		certPEM, keyPEM, _, err := other.IssueClientCert("cam", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		pair, _ := tls.X509KeyPair(certPEM, keyPEM)
		// The TLS handshake itself refuses it (the server verifies client
		// certificates against its CA), so the connect fails either way.
		c, err := s.DialV5(t, daemontest.V5Options{ClientID: "cam", TLS: s.TLSConfig(&pair)})
		if err == nil {
			t.Fatalf("foreign certificate accepted: %+v", c.Connack)
		}
	})
	t.Run("revoked certificate", func(t *testing.T) {
		if _, err := s.Registry().RevokeCredential(context.Background(), "cam", credID); err != nil {
			t.Fatal(err)
		}
		c, err := s.DialV5(t, daemontest.V5Options{ClientID: "cam", TLS: s.TLSConfig(&cert)})
		if err == nil || c.Connack.ReasonCode != 0x87 {
			t.Fatalf("revoked certificate = %+v, %v; want 0x87", c.Connack, err)
		}
	})
}

func TestDisableDisconnects(t *testing.T) {
	s := daemontest.Start(t)
	secret := s.Device(t, "dev")
	v5 := s.V5(t, "dev", secret)
	v3, _, err := s.DialV3(t, daemontest.V3Options{ClientID: "dev-v3", Username: "dev", Password: secret})
	if err != nil {
		t.Fatal(err)
	}
	off := false
	start := time.Now()
	if _, err := s.Registry().UpdateThing(context.Background(), "dev", store.ThingPatch{Enabled: &off}); err != nil {
		t.Fatal(err)
	}
	select {
	case d := <-v5.Disconnected:
		if d.ReasonCode != 0x87 {
			t.Errorf("DISCONNECT reason = %#x; want 0x87", d.ReasonCode)
		}
	case <-time.After(time.Second):
		t.Fatal("v5 client not disconnected within 1s of disabling its thing")
	}
	select {
	case <-v3.Lost:
	case <-time.After(time.Second - time.Since(start)):
		t.Fatal("v3 client not disconnected within 1s of disabling its thing")
	}
	c, err := s.DialV5(t, daemontest.V5Options{ClientID: "dev", Username: "dev", Password: secret})
	if err == nil || c.Connack.ReasonCode != 0x8A {
		t.Fatalf("reconnect of disabled thing = %+v, %v; want 0x8A (banned)", c.Connack, err)
	}
	if _, code, err := s.DialV3(t, daemontest.V3Options{ClientID: "dev", Username: "dev", Password: secret}); err == nil || code != 5 {
		t.Fatalf("v3 reconnect of disabled thing = %d, %v; want return code 5 (not authorized)", code, err)
	}
	on := true
	if _, err := s.Registry().UpdateThing(context.Background(), "dev", store.ThingPatch{Enabled: &on}); err != nil {
		t.Fatal(err)
	}
	s.V5(t, "dev", secret)
}

func TestRevokeDisconnects(t *testing.T) {
	s := daemontest.Start(t)
	s.Thing(t, "dev")
	id1, secret1 := s.Secret(t, "dev")
	_, secret2 := s.Secret(t, "dev")
	a, err := s.DialV5(t, daemontest.V5Options{ClientID: "a", Username: "dev", Password: secret1})
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.DialV5(t, daemontest.V5Options{ClientID: "b", Username: "dev", Password: secret2})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Registry().RevokeCredential(context.Background(), "dev", id1); err != nil {
		t.Fatal(err)
	}
	select {
	case <-a.Disconnected:
	case <-time.After(5 * time.Second): // a deadline, not a speed goal (test/credentials holds the 1 s)
		t.Fatal("connection with revoked secret still open after 5s")
	}
	select {
	case <-b.Disconnected:
		t.Fatal("connection with the other, valid secret was closed")
	case <-time.After(200 * time.Millisecond):
	}
	if rc := b.Pub(t, "things/dev/t", 1, false, "x"); rc != 0 {
		t.Fatalf("publish on surviving connection = %#x", rc)
	}
	c, err := s.DialV5(t, daemontest.V5Options{ClientID: "a", Username: "dev", Password: secret1})
	if err == nil || c.Connack.ReasonCode != 0x87 {
		t.Fatalf("reconnect with revoked secret = %+v, %v; want 0x87", c.Connack, err)
	}
	_ = paho.Connack{}
}

// A user-supplied server certificate replaces the generated one; device
// certificates still chain to Mote's own CA.
func TestOwnServerCertificate(t *testing.T) {
	dir := t.TempDir()
	theirs, err := pki.LoadOrCreateCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pki.LoadOrCreateServerCert(dir, theirs, []string{"mqtt.example"}); err != nil {
		t.Fatal(err)
	}
	s := daemontest.Start(t, func(c *config.Config) {
		c.TLSCert = filepath.Join(dir, "server.crt")
		c.TLSKey = filepath.Join(dir, "server.key")
	})
	secret := s.Device(t, "dev")
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(theirs.CertPEM())
	tc := &tls.Config{RootCAs: pool, ServerName: "mqtt.example", MinVersion: tls.VersionTLS12}
	if _, err := s.DialV5(t, daemontest.V5Options{ClientID: "dev", Username: "dev", Password: secret, TLS: tc}); err != nil {
		t.Fatalf("TLS with the user's certificate: %v", err)
	}
	// Mote's generated certificate is not served.
	if _, err := s.DialV5(t, daemontest.V5Options{ClientID: "dev2", Username: "dev", Password: secret, TLS: s.TLSConfig(nil)}); err == nil {
		t.Fatal("the server still presents a certificate from Mote's CA")
	}
	s.Thing(t, "cam")
	_, cert := s.ClientCert(t, "cam")
	tc.Certificates = []tls.Certificate{cert}
	if _, err := s.DialV5(t, daemontest.V5Options{ClientID: "cam", TLS: tc}); err != nil {
		t.Fatalf("device certificate with a user-supplied server certificate: %v", err)
	}
}
