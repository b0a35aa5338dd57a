package provisioning

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/auth"
	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/pki"
	"github.com/moteiot/mote/internal/registry"
	"github.com/moteiot/mote/internal/seal"
	"github.com/moteiot/mote/internal/store"
	"github.com/moteiot/mote/internal/store/sqlite"
	"github.com/moteiot/mote/internal/store/sqlite/sqlitetest"
)

// newService is a Service on a fresh SQLite store, for unit and fuzz tests.
func newService(tb testing.TB) *Service {
	tb.Helper()
	dir := tb.TempDir()
	sqlitetest.Seed(tb, filepath.Join(dir, "mote.db"))
	st, err := sqlite.Open(filepath.Join(dir, "mote.db"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	ca, err := pki.LoadOrCreateCA(filepath.Join(dir, "pki"))
	if err != nil {
		tb.Fatal(err)
	}
	h, _ := auth.NewHasher(make([]byte, 32))
	box, _ := seal.New(make([]byte, seal.KeySize))
	reg := registry.New(registry.Options{Store: st, Hasher: h, CA: ca, Sealer: box})
	if err := reg.Bootstrap(context.Background()); err != nil {
		tb.Fatal(err)
	}
	s := New(Options{Store: st, Registry: reg, Sealer: box, Hasher: h, CA: ca})
	if err := s.Start(context.Background()); err != nil {
		tb.Fatal(err)
	}
	return s
}

func testCSR(tb testing.TB, cn string) string {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}}, k)
	if err != nil {
		tb.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

// FuzzParseCSR: any input is a CSR accepted for the thing (a valid
// signature, a strong key, the thing's CN or none) or an invalid-kind
// error; never a panic.
func FuzzParseCSR(f *testing.F) {
	f.Add([]byte(testCSR(f, "dev-1")), "dev-1")
	f.Add([]byte(testCSR(f, "")), "dev-1")
	f.Add([]byte(testCSR(f, "other")), "dev-1")
	f.Add([]byte("-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n"), "")
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), "x")
	f.Add([]byte{}, "")
	f.Fuzz(func(t *testing.T, b []byte, thing string) {
		csr, err := ParseCSR(b, thing)
		if err != nil {
			if core.KindOf(err) != core.KindInvalid {
				t.Fatalf("ParseCSR error %v of kind %s; want invalid", err, core.KindOf(err))
			}
			return
		}
		if csr.CheckSignature() != nil {
			t.Fatal("accepted a CSR with a bad signature")
		}
		if thing != "" && csr.Subject.CommonName != "" && csr.Subject.CommonName != thing {
			t.Fatalf("accepted CN %q for thing %q", csr.Subject.CommonName, thing)
		}
	})
}

// FuzzMQTTRequest: a provisioning request of any topic and payload from a
// symmetric-key session is answered on /accepted or /rejected (or not at
// all for a non-request topic), and an accepted registration is the
// session's own registration id.
func FuzzMQTTRequest(f *testing.F) {
	s := newService(f)
	e, key, err := s.CreateEnrollment(context.Background(), NewEnrollment{Name: "g", Attestation: store.AttestationSymmetricKey, Enabled: true})
	if err != nil {
		f.Fatal(err)
	}
	_ = key
	m := MQTT{S: s}
	sess := &Session{Enrollment: e.Name, RegistrationID: "dev-f"}
	csrBody, _ := json.Marshal(map[string]string{"csr": testCSR(f, "dev-f")})
	f.Add(TopicRegister, []byte(`{}`))
	f.Add(TopicRegister, csrBody)
	f.Add(TopicRegister, []byte(`{"csr":"x","extra":1}`))
	f.Add(TopicCreateFromCSR, []byte(`{"certificateSigningRequest":"`+strings.ReplaceAll(testCSR(f, ""), "\n", `\n`)+`"}`))
	f.Add("$aws/provisioning-templates/g/provision/json", []byte(`{"certificateOwnershipToken":"t","parameters":{"SerialNumber":"1"}}`))
	f.Add("$aws/provisioning-templates/h/provision/json", []byte(`{"parameters":{}}`))
	f.Add("$mote/provisioning/other", []byte(`[]`))
	f.Fuzz(func(t *testing.T, topic string, payload []byte) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		answer, body := m.ProvisioningRequest(ctx, sess, topic, payload)
		if answer == "" {
			return
		}
		if answer != topic+"/accepted" && answer != topic+"/rejected" {
			t.Fatalf("answer topic %q for %q", answer, topic)
		}
		if !json.Valid(body) {
			t.Fatalf("answer %q is not JSON", body)
		}
		if topic == TopicRegister && strings.HasSuffix(answer, "/accepted") {
			var a RegisterAnswer
			if err := json.Unmarshal(body, &a); err != nil || a.Thing != "dev-f" {
				t.Fatalf("accepted %s; want thing dev-f", body)
			}
		}
	})
}

// FuzzRedeemClaim: a claim redeem request (JSON {token, csr}) of any
// content either registers the claim's one thing once, or is refused with
// a client error and leaves no other thing behind.
func FuzzRedeemClaim(f *testing.F) {
	s := newService(f)
	ctx := context.Background()
	_, token, err := s.CreateClaim(ctx, NewClaim{Thing: "kiosk-f", TTL: time.Hour})
	if err != nil {
		f.Fatal(err)
	}
	good, _ := json.Marshal(map[string]string{"token": token, "csr": testCSR(f, "")})
	f.Add(good)
	f.Add([]byte(`{"token":"` + token + `","csr":"junk"}`))
	f.Add([]byte(`{"token":"mclaim_x","csr":""}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`not json`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var in struct {
			Token string `json:"token"`
			CSR   string `json:"csr"`
		}
		if err := decode(body, &in); err != nil {
			return
		}
		res, err := s.RedeemClaim(ctx, in.Token, in.CSR)
		if err == nil {
			if res.Thing != "kiosk-f" || res.Certificate == "" {
				t.Fatalf("redeemed %+v; want kiosk-f with a certificate", res)
			}
			return
		}
		switch core.KindOf(err) {
		case core.KindInvalid, core.KindUnauthorized, core.KindConflict, core.KindForbidden:
		default:
			t.Fatalf("redeem error %v of kind %s", err, core.KindOf(err))
		}
		things, _, _ := s.reg.ListThings(ctx, store.ThingFilter{})
		for _, th := range things {
			if th.Name != "kiosk-f" {
				t.Fatalf("a refused redeem left thing %q", th.Name)
			}
		}
	})
}

// TestTemplate covers name templates.
func TestTemplate(t *testing.T) {
	for _, tc := range []struct {
		tmpl string
		vars map[string]string
		want string
		ok   bool
	}{
		{"{CN}", map[string]string{"CN": "a"}, "a", true},
		{"m-{SerialNumber}-x", map[string]string{"SerialNumber": "7"}, "m-7-x", true},
		{"{CN}", map[string]string{}, "", false},
		{"{CN", nil, "", false},
		{"CN}", nil, "", false},
		{"{}", nil, "", false},
	} {
		got, err := expandTemplate(tc.tmpl, tc.vars, false)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("expandTemplate(%q) = %q, %v; want %q ok=%v", tc.tmpl, got, err, tc.want, tc.ok)
		}
	}
	if !matchName("dev-*", "dev-1") || matchName("dev-*", "x") || !matchName("^d[0-9]+$", "d12") || matchName("^d[0-9]+$", "d1x") {
		t.Error("matchName")
	}
}
