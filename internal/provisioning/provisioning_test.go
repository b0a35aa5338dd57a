package provisioning_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/moteiot/mote/internal/config"
	"github.com/moteiot/mote/internal/daemontest"
	"github.com/moteiot/mote/internal/provisioning"
)

type regAnswer struct {
	Thing         string `json:"thing"`
	Secret        string `json:"secret"`
	Certificate   string `json:"certificate"`
	CACertificate string `json:"caCertificate"`
}

type enrollmentAnswer struct {
	Name        string `json:"name"`
	Attestation struct {
		Type       string `json:"type"`
		PrimaryKey string `json:"primaryKey"`
		Verified   *bool  `json:"verified"`
	} `json:"attestation"`
	Registered int  `json:"registered"`
	Enabled    bool `json:"enabled"`
}

func derive(t *testing.T, key, id string) string {
	t.Helper()
	k, err := provisioning.DeriveKey(key, id)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestSymmetricKeyOverHTTP registers devices of a symmetric-key group over
// HTTP (secret and CSR), again (idempotent), and refuses every bad input
// without creating anything.
func TestSymmetricKeyOverHTTP(t *testing.T) {
	s := daemontest.Start(t, noRateLimit)
	var g enrollmentAnswer
	if st := call(t, s, s.Token, "POST", "/enrollments", map[string]any{"name": "plant", "attestation": map[string]any{"type": "symmetricKey"},
		"attributes": map[string]string{"site": "lyon"}, "desired": map[string]any{"rate": 5}, "maxDevices": 3, "namePattern": "dev-*"}, &g); st != 201 {
		t.Fatalf("create group: %d", st)
	}
	raw, err := base64.StdEncoding.DecodeString(g.Attestation.PrimaryKey)
	if err != nil || len(raw) != 32 {
		t.Fatalf("primaryKey %q: want 256 bits of base64", g.Attestation.PrimaryKey)
	}
	key := g.Attestation.PrimaryKey
	var again enrollmentAnswer
	call(t, s, s.Token, "GET", "/enrollments/plant", nil, &again)
	if again.Attestation.PrimaryKey != "" {
		t.Errorf("GET shows the primary key; want it only in the creation's answer")
	}

	// A secret.
	var a regAnswer
	if st := call(t, s, "", "POST", "/provisioning/register", map[string]any{"registrationId": "dev-1", "enrollment": "plant", "key": derive(t, key, "dev-1")}, &a); st != 201 {
		t.Fatalf("register dev-1: %d", st)
	}
	if a.Thing != "dev-1" || a.Secret == "" {
		t.Fatalf("register = %+v; want thing dev-1 and a secret", a)
	}
	th, err := s.Registry().GetThing(t.Context(), "dev-1")
	if err != nil || th.Attributes["site"] != "lyon" {
		t.Fatalf("thing dev-1 = %+v, %v; want attribute site=lyon from the group", th, err)
	}
	doc, err := s.Shadows().Get(t.Context(), "dev-1", "")
	if err != nil || !strings.Contains(string(doc), `"rate":5`) {
		t.Errorf("shadow of dev-1 = %s, %v; want the group's desired state", doc, err)
	}
	s.V5(t, "dev-1", a.Secret) // the secret works

	// Again: the same thing, a new secret; the old one stops working.
	var b regAnswer
	if st := call(t, s, "", "POST", "/provisioning/register", map[string]any{"registrationId": "dev-1", "enrollment": "plant", "key": derive(t, key, "dev-1")}, &b); st != 200 {
		t.Fatalf("register dev-1 again: %d; want 200", st)
	}
	if b.Thing != "dev-1" || b.Secret == "" || b.Secret == a.Secret {
		t.Fatalf("register again = %+v; want dev-1 with a new secret", b)
	}
	if c, err := s.DialV5(t, daemontest.V5Options{ClientID: "dev-1", Username: "dev-1", Password: a.Secret, CleanStart: true}); err == nil {
		t.Errorf("the previous secret still connects (%+v); want it replaced", c.Connack)
	}

	// A CSR: a certificate for the thing, usable on MQTTS.
	req, k := csr(t, "", nil)
	var c regAnswer
	if st := call(t, s, "", "POST", "/provisioning/register", map[string]any{"registrationId": "dev-2", "enrollment": "plant", "key": derive(t, key, "dev-2"), "csr": req}, &c); st != 201 {
		t.Fatalf("register dev-2 with a CSR: %d", st)
	}
	if c.Certificate == "" || c.Secret != "" {
		t.Fatalf("register with CSR = %+v; want a certificate, no secret", c)
	}
	pair := pairFrom(t, c.Certificate, k)
	if _, err := s.DialV5(t, daemontest.V5Options{ClientID: "dev-2", TLS: s.TLSConfig(&pair), CleanStart: true}); err != nil {
		t.Fatalf("connect with the signed certificate: %v", err)
	}

	// Refusals: nothing is created.
	weak, _ := csr(t, "dev-3", weakRSA(t))
	curve, _ := csr(t, "dev-3", p224(t))
	wrongCN, _ := csr(t, "someone-else", nil)
	for _, tc := range []struct {
		name, id, key, csr string
		want               int
	}{
		{"derived key of another registration id", "dev-3", derive(t, key, "dev-4"), "", 401},
		{"garbage key", "dev-3", "not base64!", "", 401},
		{"unknown group", "dev-3", derive(t, key, "dev-3"), "", 401},
		{"weak RSA key", "dev-3", derive(t, key, "dev-3"), weak, 400},
		{"P-224 key", "dev-3", derive(t, key, "dev-3"), curve, 400},
		{"wrong subject", "dev-3", derive(t, key, "dev-3"), wrongCN, 400},
		{"malformed CSR", "dev-3", derive(t, key, "dev-3"), "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n", 400},
		{"name outside the pattern", "other-3", derive(t, key, "other-3"), "", 403},
	} {
		group := "plant"
		if tc.name == "unknown group" {
			group = "nope"
		}
		var p problem
		if st := call(t, s, "", "POST", "/provisioning/register", map[string]any{"registrationId": tc.id, "enrollment": group, "key": tc.key, "csr": tc.csr}, &p); st != tc.want {
			t.Errorf("%s: status %d (%s); want %d", tc.name, st, p.Detail, tc.want)
		}
		noThing(t, s, tc.id)
	}

	// maxDevices (3): dev-1 and dev-2 count; dev-3 fits, dev-4 does not.
	if st := call(t, s, "", "POST", "/provisioning/register", map[string]any{"registrationId": "dev-3", "enrollment": "plant", "key": derive(t, key, "dev-3")}, nil); st != 201 {
		t.Fatalf("register dev-3: %d", st)
	}
	var p problem
	if st := call(t, s, "", "POST", "/provisioning/register", map[string]any{"registrationId": "dev-4", "enrollment": "plant", "key": derive(t, key, "dev-4")}, &p); st != 403 || !strings.Contains(p.Detail, "maxDevices") {
		t.Errorf("register beyond maxDevices: %d %q; want 403 naming maxDevices", st, p.Detail)
	}
	noThing(t, s, "dev-4")

	// Disabled: refused; the count stays.
	if st := call(t, s, s.Token, "PATCH", "/enrollments/plant", map[string]any{"enabled": false, "maxDevices": 0}, nil); st != 200 {
		t.Fatalf("disable: %d", st)
	}
	if st := call(t, s, "", "POST", "/provisioning/register", map[string]any{"registrationId": "dev-5", "enrollment": "plant", "key": derive(t, key, "dev-5")}, &p); st != 403 || !strings.Contains(p.Detail, "disabled") {
		t.Errorf("register in a disabled group: %d %q; want 403 disabled", st, p.Detail)
	}
	noThing(t, s, "dev-5")
	call(t, s, s.Token, "GET", "/enrollments/plant", nil, &again)
	if again.Registered != 3 {
		t.Errorf("registered = %d; want 3", again.Registered)
	}
	// Expired.
	past := time.Now().Add(-time.Minute)
	call(t, s, s.Token, "PATCH", "/enrollments/plant", map[string]any{"enabled": true, "expiresAt": past}, nil)
	if st := call(t, s, "", "POST", "/provisioning/register", map[string]any{"registrationId": "dev-5", "enrollment": "plant", "key": derive(t, key, "dev-5")}, &p); st != 403 || !strings.Contains(p.Detail, "expired") {
		t.Errorf("register in an expired group: %d %q; want 403 expired", st, p.Detail)
	}
	noThing(t, s, "dev-5")
}

// TestSymmetricKeyOverMQTT registers over the $mote/provisioning topics
// with paho, then connects as the new thing.
func TestSymmetricKeyOverMQTT(t *testing.T) {
	// Five provisioning requests per address (no refill to speak of): the
	// three connects below, then the rate limit's own check at the end.
	s := daemontest.Start(t, func(c *config.Config) { c.ProvisioningRateLimit, c.ProvisioningRateBurst = 0.001, 5 })
	var g enrollmentAnswer
	if st := call(t, s, s.Token, "POST", "/enrollments", map[string]any{"name": "fleet", "attestation": map[string]any{"type": "symmetricKey"}}, &g); st != 201 {
		t.Fatalf("create group: %d", st)
	}
	key := g.Attestation.PrimaryKey

	// A wrong key is refused at CONNECT (0x86).
	c, err := s.DialV5(t, daemontest.V5Options{ClientID: "sensor-9", Username: "enrollment:fleet", Password: derive(t, key, "sensor-1"), CleanStart: true})
	if err == nil || c.Connack == nil || c.Connack.ReasonCode != 0x86 {
		t.Fatalf("wrong derived key: %+v, %v; want CONNACK 0x86", c, err)
	}
	noThing(t, s, "sensor-9")

	p, err := s.DialV5(t, daemontest.V5Options{ClientID: "sensor-1", Username: "enrollment:fleet", Password: derive(t, key, "sensor-1"), CleanStart: true})
	if err != nil {
		t.Fatalf("provisioning connect: %v", err)
	}
	if code := p.Sub(t, "#"); code < 0x80 {
		t.Errorf("subscribe # = %#x; want a refusal", code)
	}
	if code := p.Pub(t, "things/sensor-1/telemetry", 1, false, `{"t":1}`); code != 0x87 {
		t.Errorf("publish telemetry as a provisioning client = %#x; want 0x87", code)
	}
	if code := p.Sub(t, provisioning.TopicRegister+"/+"); code >= 0x80 {
		t.Fatalf("subscribe to the answers = %#x", code)
	}
	p.Pub(t, provisioning.TopicRegister, 1, false, `{}`)
	m := p.Inbox.Wait(t, provisioning.TopicRegister+"/accepted", 5*time.Second)
	var a regAnswer
	if err := json.Unmarshal([]byte(m.Payload), &a); err != nil || a.Thing != "sensor-1" || a.Secret == "" {
		t.Fatalf("accepted = %s; want thing sensor-1 with a secret", m.Payload)
	}
	_ = p.Disconnect(&paho.Disconnect{})
	s.V5(t, "sensor-1", a.Secret)

	// A bad request is answered on /rejected in the AWS shape.
	p2, err := s.DialV5(t, daemontest.V5Options{ClientID: "sensor-2", Username: "enrollment:fleet", Password: derive(t, key, "sensor-2"), CleanStart: true})
	if err != nil {
		t.Fatal(err)
	}
	p2.Sub(t, provisioning.TopicRegister+"/+")
	weak, _ := csr(t, "", weakRSA(t))
	body, _ := json.Marshal(map[string]string{"csr": weak})
	p2.Pub(t, provisioning.TopicRegister, 1, false, string(body))
	m = p2.Inbox.Wait(t, provisioning.TopicRegister+"/rejected", 5*time.Second)
	var rej provisioning.Rejection
	if err := json.Unmarshal([]byte(m.Payload), &rej); err != nil || rej.StatusCode != 400 || !strings.Contains(rej.ErrorMessage, "too weak") {
		t.Errorf("rejected = %s; want 400 naming the weak key", m.Payload)
	}
	noThing(t, s, "sensor-2")

	// --provisioning-rate-limit, per source address, HTTP and MQTT
	// together: two more requests pass (refused for their key), then 429
	// with Retry-After, and a provisioning connect gets CONNACK 0x9F.
	codes := map[int]int{}
	var retry string
	for range 4 {
		b, _ := json.Marshal(map[string]string{"registrationId": "x", "enrollment": "fleet", "key": "AAAA"})
		resp, err := http.Post(s.API+"/api/v1/provisioning/register", "application/json", bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		codes[resp.StatusCode]++
		if resp.StatusCode == 429 {
			retry = resp.Header.Get("Retry-After")
		}
	}
	if codes[401] != 2 || codes[429] != 2 || retry == "" {
		t.Errorf("statuses %v, Retry-After %q; want 2 × 401 then 2 × 429 with Retry-After", codes, retry)
	}
	c, err = s.DialV5(t, daemontest.V5Options{ClientID: "sensor-3", Username: "enrollment:fleet", Password: derive(t, key, "sensor-3"), CleanStart: true})
	if err == nil || c.Connack == nil || c.Connack.ReasonCode != 0x9F {
		t.Errorf("provisioning connect beyond the rate: %+v, %v; want CONNACK 0x9F", c, err)
	}
}

// verifyCA creates an x509CA group for ca and proves possession.
func verifyCA(t *testing.T, s *daemontest.Server, name string, ca *testCA, extra map[string]any) {
	t.Helper()
	body := map[string]any{"name": name, "attestation": map[string]any{"type": "x509CA", "caCertificate": ca.pem}}
	for k, v := range extra {
		if k == "mode" {
			body["attestation"].(map[string]any)["mode"] = v
			continue
		}
		body[k] = v
	}
	if st := call(t, s, s.Token, "POST", "/enrollments", body, nil); st != 201 {
		t.Fatalf("create x509CA group: %d", st)
	}
	var code struct {
		VerificationCode string `json:"verificationCode"`
	}
	if st := call(t, s, s.Token, "GET", "/enrollments/"+name+"/verification-code", nil, &code); st != 200 || code.VerificationCode == "" {
		t.Fatalf("verification code: %d", st)
	}
	// A certificate over the code signed by another CA is refused.
	other := newCA(t, "other")
	_, bad := other.issue(t, code.VerificationCode, time.Now().Add(-time.Minute), time.Now().Add(time.Hour))
	if st := call(t, s, s.Token, "POST", "/enrollments/"+name+"/verify", map[string]string{"certificate": strings.Split(bad, "\x00")[0]}, nil); st != 400 {
		t.Errorf("verify with a foreign CA's certificate: %d; want 400", st)
	}
	_, good := ca.issue(t, code.VerificationCode, time.Now().Add(-time.Minute), time.Now().Add(time.Hour))
	var e enrollmentAnswer
	if st := call(t, s, s.Token, "POST", "/enrollments/"+name+"/verify", map[string]string{"certificate": strings.Split(good, "\x00")[0]}, &e); st != 200 || e.Attestation.Verified == nil || !*e.Attestation.Verified {
		t.Fatalf("verify: %d %+v", st, e)
	}
}

// TestJITR registers devices whose certificates chain to a verified CA on
// their first TLS connect (paho over MQTTS, HTTPS, mosquitto_pub) and
// refuses expired and foreign certificates with CONNACK 0x87.
func TestJITR(t *testing.T) {
	s := daemontest.Start(t)
	ca := newCA(t, "maker")
	// Before verification the CA is not trusted.
	if st := call(t, s, s.Token, "POST", "/enrollments", map[string]any{"name": "unverified", "attestation": map[string]any{"type": "x509CA", "caCertificate": newCA(t, "u").pem}}, nil); st != 201 {
		t.Fatalf("create: %d", st)
	}
	verifyCA(t, s, "maker", ca, map[string]any{"attributes": map[string]string{"maker": "acme"}})

	cert := ca.leaf(t, "jit-1")
	c, err := s.DialV5(t, daemontest.V5Options{ClientID: "jit-1", TLS: s.TLSConfig(&cert), CleanStart: true})
	if err != nil {
		t.Fatalf("first connect with a certificate of the verified CA: %v", err)
	}
	th, err := s.Registry().GetThing(t.Context(), "jit-1")
	if err != nil || th.Attributes["maker"] != "acme" {
		t.Fatalf("thing jit-1 = %+v, %v; want it registered with the group's attributes", th, err)
	}
	if code := c.Pub(t, "things/jit-1/telemetry", 1, false, `{"t":1}`); code >= 0x80 {
		t.Errorf("publish as the registered thing = %#x", code)
	}
	_ = c.Disconnect(&paho.Disconnect{})
	// The second connect finds the registered certificate.
	if _, err := s.DialV5(t, daemontest.V5Options{ClientID: "jit-1", TLS: s.TLSConfig(&cert), CleanStart: true}); err != nil {
		t.Fatalf("second connect: %v", err)
	}
	// The registration is in the audit log, once, with the device as the actor.
	var page auditPage
	if st := call(t, s, s.Token, "GET", "/audit?action="+provisioning.AuditActionJITR, nil, &page); st != 200 || len(page.Items) != 1 ||
		page.Items[0].Actor.Kind != "device" || page.Items[0].Actor.Name != "jit-1" || page.Items[0].Actor.ID != "enrollment:maker" || page.Items[0].Target.Name != "jit-1" {
		t.Errorf("audit of the JITR = %d %+v; want one entry by device jit-1 of enrollment:maker", st, page.Items)
	}

	expired, _ := ca.issue(t, "jit-old", time.Now().Add(-2*time.Hour), time.Now().Add(-time.Hour))
	foreign := newCA(t, "foreign").leaf(t, "jit-foreign")
	unverified := newCA(t, "u2").leaf(t, "jit-u")
	for _, tc := range []struct {
		name  string
		cert  tls.Certificate
		thing string
	}{{"expired", expired, "jit-old"}, {"foreign CA", foreign, "jit-foreign"}, {"another CA", unverified, "jit-u"}} {
		c, err := s.DialV5(t, daemontest.V5Options{ClientID: tc.thing, TLS: alwaysSend(s, tc.cert), CleanStart: true})
		if err == nil || c == nil || c.Connack == nil || c.Connack.ReasonCode != 0x87 {
			t.Errorf("%s certificate: %+v, %v; want CONNACK 0x87", tc.name, c, err)
		}
		noThing(t, s, tc.thing)
	}

	// HTTPS device API: registered on the first request.
	httpsCert := ca.leaf(t, "jit-http")
	cl := &http.Client{Transport: &http.Transport{TLSClientConfig: s.TLSConfig(&httpsCert)}}
	resp, err := cl.Post(s.HTTPS+"/api/v1/devices/jit-http/messages?topic=things/jit-http/telemetry", "application/json", strings.NewReader(`{"t":2}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode >= 300 {
		t.Errorf("HTTPS publish with a JIT certificate: %d", resp.StatusCode)
	}
	if _, err := s.Registry().GetThing(t.Context(), "jit-http"); err != nil {
		t.Errorf("thing jit-http after an HTTPS request: %v; want it registered", err)
	}
	foreignHTTP := &http.Client{Transport: &http.Transport{TLSClientConfig: alwaysSend(s, foreign)}}
	resp, err = foreignHTTP.Post(s.HTTPS+"/api/v1/devices/jit-foreign/messages?topic=things/jit-foreign/telemetry", "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Errorf("HTTPS with a foreign certificate: %d; want 401", resp.StatusCode)
	}
	noThing(t, s, "jit-foreign")

	t.Run("mosquitto_pub", func(t *testing.T) {
		bin, err := exec.LookPath("mosquitto_pub")
		if err != nil {
			t.Skip("mosquitto_pub not installed (apt-get install mosquitto-clients; .ci/run installs it)")
		}
		dir := t.TempDir()
		_, both := ca.issue(t, "jit-mosq", time.Now().Add(-time.Minute), time.Now().Add(time.Hour))
		parts := strings.Split(both, "\x00")
		write := func(name, data string) string {
			p := filepath.Join(dir, name)
			if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
				t.Fatal(err)
			}
			return p
		}
		host, port, _ := strings.Cut(s.MQTTS, ":")
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, bin, "-h", host, "-p", port, "-i", "jit-mosq", "-q", "1",
			"--cafile", write("ca.pem", string(s.CACertPEM())), "--cert", write("cert.pem", parts[0]), "--key", write("key.pem", parts[1]),
			"--insecure", "-t", "things/jit-mosq/telemetry", "-m", `{"t":3}`).CombinedOutput()
		if err != nil {
			t.Fatalf("mosquitto_pub: %v\n%s", err, out)
		}
		if _, err := s.Registry().GetThing(t.Context(), "jit-mosq"); err != nil {
			t.Errorf("thing jit-mosq after mosquitto_pub: %v; want it registered", err)
		}
	})
}

// TestAWSFleetProvisioning follows the AWS fleet-provisioning flow with
// paho: connect with a claim certificate, CreateCertificateFromCsr,
// RegisterThing, connect with the new certificate.
func TestAWSFleetProvisioning(t *testing.T) {
	s := daemontest.Start(t)
	ca := newCA(t, "claims")
	verifyCA(t, s, "factory", ca, map[string]any{"mode": "claim", "nameTemplate": "meter-{SerialNumber}",
		"deviceConfiguration": map[string]string{"fallback": "true"}})
	claim := ca.leaf(t, "claim-batch-7")
	c, err := s.DialV5(t, daemontest.V5Options{ClientID: "claim-session-1", TLS: s.TLSConfig(&claim), CleanStart: true})
	if err != nil {
		t.Fatalf("connect with the claim certificate: %v", err)
	}
	noThing(t, s, "claim-batch-7") // a claim certificate registers nothing
	for _, f := range []string{"$aws/certificates/create-from-csr/json/accepted", "$aws/certificates/create-from-csr/json/rejected",
		"$aws/provisioning-templates/factory/provision/json/accepted", "$aws/provisioning-templates/factory/provision/json/rejected"} {
		if code := c.Sub(t, f); code >= 0x80 {
			t.Fatalf("subscribe %s = %#x", f, code)
		}
	}
	if code := c.Sub(t, "$aws/provisioning-templates/other/provision/json/accepted"); code < 0x80 {
		t.Errorf("subscribe to another template's answers = %#x; want a refusal", code)
	}
	req, key := csr(t, "", nil)
	b, _ := json.Marshal(map[string]string{"certificateSigningRequest": req})
	c.Pub(t, "$aws/certificates/create-from-csr/json", 1, false, string(b))
	m := c.Inbox.Wait(t, "$aws/certificates/create-from-csr/json/accepted", 5*time.Second)
	var created provisioning.CreatedCertificate
	if err := json.Unmarshal([]byte(m.Payload), &created); err != nil || created.CertificateOwnershipToken == "" || created.CertificatePEM == "" || len(created.CertificateID) != 64 {
		t.Fatalf("create-from-csr accepted = %s", m.Payload)
	}

	// Another template than the connection's group is refused.
	b, _ = json.Marshal(map[string]any{"certificateOwnershipToken": created.CertificateOwnershipToken, "parameters": map[string]string{"SerialNumber": "1"}})
	c.Pub(t, "$aws/provisioning-templates/other/provision/json", 1, false, string(b))
	b2, _ := json.Marshal(map[string]any{"certificateOwnershipToken": "forged", "parameters": map[string]string{"SerialNumber": "2"}})
	c.Pub(t, "$aws/provisioning-templates/factory/provision/json", 1, false, string(b2))
	m = c.Inbox.Wait(t, "$aws/provisioning-templates/factory/provision/json/rejected", 5*time.Second)
	var rej provisioning.Rejection
	if json.Unmarshal([]byte(m.Payload), &rej); rej.StatusCode != 400 {
		t.Errorf("forged ownership token: %s; want 400", m.Payload)
	}
	noThing(t, s, "meter-2")

	b, _ = json.Marshal(map[string]any{"certificateOwnershipToken": created.CertificateOwnershipToken, "parameters": map[string]string{"SerialNumber": "1001"}})
	c.Pub(t, "$aws/provisioning-templates/factory/provision/json", 1, false, string(b))
	m = c.Inbox.Wait(t, "$aws/provisioning-templates/factory/provision/json/accepted", 5*time.Second)
	var reg provisioning.RegisterThingResponse
	if err := json.Unmarshal([]byte(m.Payload), &reg); err != nil || reg.ThingName != "meter-1001" || reg.DeviceConfiguration["fallback"] != "true" {
		t.Fatalf("provision accepted = %s; want thingName meter-1001 and the device configuration", m.Payload)
	}
	pair := pairFrom(t, created.CertificatePEM, key)
	if _, err := s.DialV5(t, daemontest.V5Options{ClientID: "meter-1001", TLS: s.TLSConfig(&pair), CleanStart: true}); err != nil {
		t.Fatalf("connect with the new certificate: %v", err)
	}
	// The ownership token is used up.
	c.Pub(t, "$aws/provisioning-templates/factory/provision/json", 1, false, string(b))
	c.Inbox.Wait(t, "$aws/provisioning-templates/factory/provision/json/rejected", 5*time.Second)
}

// TestClaims redeems a claim token once (the second time 409), refuses an
// expired one (410), and draws its QR code.
func TestClaims(t *testing.T) {
	s := daemontest.Start(t)
	var cl struct {
		ID    string `json:"id"`
		Token string `json:"token"`
		QR    struct {
			Payload string `json:"payload"`
			PNG     string `json:"png"`
		} `json:"qr"`
	}
	if st := call(t, s, s.Token, "POST", "/claims", map[string]any{"thing": "kiosk-1", "ttl": "1h"}, &cl); st != 201 {
		t.Fatalf("create claim: %d", st)
	}
	var qr provisioning.QRPayload
	if err := json.Unmarshal([]byte(cl.QR.Payload), &qr); err != nil || qr.Token != cl.Token || !strings.HasPrefix(qr.CAFingerprint, "sha256:") || qr.Endpoint != s.API {
		t.Errorf("QR payload = %s; want endpoint, token and CA fingerprint", cl.QR.Payload)
	}
	// The PNG, drawn again for whoever holds the token.
	req, _ := http.NewRequest("GET", s.API+"/api/v1/claims/"+cl.ID+"/qr.png", nil)
	req.Header.Set("Authorization", "Bearer "+s.Token)
	req.Header.Set("Mote-Claim-Token", cl.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	png := make([]byte, 8)
	_, _ = resp.Body.Read(png)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Equal(png, []byte("\x89PNG\r\n\x1a\n")) {
		t.Errorf("qr.png: %d %q; want a PNG", resp.StatusCode, png)
	}
	req.Header.Set("Mote-Claim-Token", "mclaim_wrong")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 403 {
		t.Errorf("qr.png with a wrong token: %v %v; want 403", resp.StatusCode, err)
	}

	good, key := csr(t, "", nil)
	var a regAnswer
	if st := call(t, s, "", "POST", "/provisioning/claim", map[string]string{"token": cl.Token, "csr": good}, &a); st != 201 || a.Thing != "kiosk-1" || a.Certificate == "" {
		t.Fatalf("redeem: %d %+v", st, a)
	}
	pair := pairFrom(t, a.Certificate, key)
	if _, err := s.DialV5(t, daemontest.V5Options{ClientID: "kiosk-1", TLS: s.TLSConfig(&pair), CleanStart: true}); err != nil {
		t.Fatalf("connect with the claimed certificate: %v", err)
	}
	var p problem
	if st := call(t, s, "", "POST", "/provisioning/claim", map[string]string{"token": cl.Token, "csr": good}, &p); st != 409 {
		t.Errorf("second redeem: %d %q; want 409", st, p.Detail)
	}

	// A bad CSR gives the token back; the wrong subject is refused.
	var c2 struct {
		ID    string `json:"id"`
		Token string `json:"token"`
	}
	call(t, s, s.Token, "POST", "/claims", map[string]any{"thing": "kiosk-2"}, &c2)
	wrong, _ := csr(t, "kiosk-3", nil)
	if st := call(t, s, "", "POST", "/provisioning/claim", map[string]string{"token": c2.Token, "csr": wrong}, nil); st != 400 {
		t.Errorf("redeem with a wrong-subject CSR: %d; want 400", st)
	}
	noThing(t, s, "kiosk-2")
	noThing(t, s, "kiosk-3")

	// Expired: the service's clock moves past the expiry.
	provisioning.SetNow(s.Provisioning(), func() time.Time { return time.Now().Add(25 * time.Hour) })
	t.Cleanup(func() { provisioning.SetNow(s.Provisioning(), time.Now) })
	if st := call(t, s, "", "POST", "/provisioning/claim", map[string]string{"token": c2.Token, "csr": good}, &p); st != 410 {
		t.Errorf("redeem after expiry: %d %q; want 410", st, p.Detail)
	}
	noThing(t, s, "kiosk-2")
	if st := call(t, s, "", "POST", "/provisioning/claim", map[string]string{"token": "mclaim_nope", "csr": good}, nil); st != 401 {
		t.Errorf("unknown token: %d; want 401", st)
	}
	// Counted by result.
	var sb strings.Builder
	resp, err = http.Get(s.API + "/metrics")
	if err == nil {
		buf := new(bytes.Buffer)
		_, _ = buf.ReadFrom(resp.Body)
		resp.Body.Close()
		sb.WriteString(buf.String())
	}
	for _, want := range []string{`mote_provisioning_registrations_total{method="claim",result="created"} 1`, `mote_provisioning_registrations_total{method="claim",result="used"} 1`,
		`mote_provisioning_registrations_total{method="claim",result="expired"} 1`} {
		if !strings.Contains(sb.String(), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

var _ = errors.New

// noRateLimit lifts --provisioning-rate-limit for tests that register
// many devices from one address.
func noRateLimit(c *config.Config) { c.ProvisioningRateLimit, c.ProvisioningRateBurst = 10_000, 10_000 }

// alwaysSend presents cert whatever CAs the server asks for, as OpenSSL
// clients do (Go's client would send none for a CA the server does not
// name).
func alwaysSend(s *daemontest.Server, cert tls.Certificate) *tls.Config {
	c := s.TLSConfig(nil)
	c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }
	return c
}
