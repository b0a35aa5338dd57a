package httpapi

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
)

func parseCert(t *testing.T, s string) *x509.Certificate {
	t.Helper()
	b, _ := pem.Decode([]byte(s))
	if b == nil || b.Type != "CERTIFICATE" {
		t.Fatalf("not a PEM certificate: %q", s)
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// caPool fetches GET /ca.pem without a token.
func caPool(t *testing.T, e *env) (*x509.CertPool, string) {
	t.Helper()
	res, err := http.Get(e.srv.URL + "/api/v1/ca.pem")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != "application/x-pem-file" {
		t.Fatalf("GET /ca.pem: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		t.Fatalf("ca.pem: %s", b)
	}
	return pool, string(b)
}

func verifyClient(t *testing.T, cert *x509.Certificate, pool *x509.CertPool) {
	t.Helper()
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatalf("certificate does not verify against the CA: %v", err)
	}
}

func TestSecretCredential(t *testing.T) {
	e := newEnv(t)
	e.ok(t, "POST", "/things", map[string]any{"name": "dev"}, 201, nil)

	c := e.obj(t, "POST", "/things/dev/credentials", map[string]any{"type": "secret"}, 201)
	if got, want := keys(c), "createdAt,id,revoked,secret,thing,type"; got != want {
		t.Fatalf("keys %s, want %s: %v", got, want, c)
	}
	id := c["id"].(string)
	if !strings.HasPrefix(id, "cred_") || c["thing"] != "dev" || c["type"] != "secret" || c["revoked"] != false || len(c["secret"].(string)) < 40 {
		t.Fatalf("credential %v", c)
	}
	secret := c["secret"].(string)

	exp := time.Now().Add(48 * time.Hour).UTC().Truncate(time.Second)
	c2 := e.obj(t, "POST", "/things/dev/credentials", map[string]any{"type": "secret", "expiresAt": exp.Format(time.RFC3339)}, 201)
	if na, err := time.Parse(time.RFC3339, c2["notAfter"].(string)); err != nil || !na.Equal(exp) {
		t.Fatalf("notAfter %v, want %v", c2["notAfter"], exp)
	}

	items, _ := e.items(t, "/things/dev/credentials")
	if len(items) != 2 {
		t.Fatalf("list: %v", items)
	}
	r := e.ok(t, "GET", "/things/dev/credentials", nil, 200, nil)
	if strings.Contains(r.String(), secret) || strings.Contains(r.String(), `"secret":`) {
		t.Fatalf("list shows the secret: %s", r)
	}
	got := e.obj(t, "GET", "/things/dev/credentials/"+id, nil, 200)
	if _, ok := got["secret"]; ok || got["id"] != id {
		t.Fatalf("get: %v", got)
	}

	got = e.obj(t, "POST", "/things/dev/credentials/"+id+"/revoke", nil, 200)
	if got["revoked"] != true || got["revokedAt"] == nil {
		t.Fatalf("revoke: %v", got)
	}
	e.obj(t, "POST", "/things/dev/credentials/"+id+"/revoke", "{}", 200) // again, with an empty object
	wantProblem(t, e.req(t, "POST", "/things/dev/credentials/"+id+"/revoke", e.admin, `{"why":"x"}`), 400, "invalid", "why")

	e.ok(t, "DELETE", "/things/dev/credentials/"+id, nil, 204, nil)
	wantProblem(t, e.req(t, "GET", "/things/dev/credentials/"+id, e.admin, nil), 404, "not_found", "")
	wantProblem(t, e.req(t, "DELETE", "/things/dev/credentials/"+id, e.admin, nil), 404, "not_found", "")
	wantProblem(t, e.req(t, "POST", "/things/dev/credentials/"+id+"/revoke", e.admin, nil), 404, "not_found", "")

	// A credential is only found under its own thing.
	e.ok(t, "POST", "/things", map[string]any{"name": "other"}, 201, nil)
	wantProblem(t, e.req(t, "GET", "/things/other/credentials/"+c2["id"].(string), e.admin, nil), 404, "not_found", "")
	wantProblem(t, e.req(t, "DELETE", "/things/other/credentials/"+c2["id"].(string), e.admin, nil), 404, "not_found", "")

	// Deleting the thing deletes its credentials.
	e.ok(t, "DELETE", "/things/dev", nil, 204, nil)
	wantProblem(t, e.req(t, "GET", "/things/dev/credentials", e.admin, nil), 404, "not_found", "")
	e.ok(t, "POST", "/things", map[string]any{"name": "dev"}, 201, nil)
	if items, _ := e.items(t, "/things/dev/credentials"); len(items) != 0 {
		t.Fatalf("credentials outlived their thing: %v", items)
	}
}

func TestCredentialCreateErrors(t *testing.T) {
	e := newEnv(t)
	e.ok(t, "POST", "/things", map[string]any{"name": "dev"}, 201, nil)
	past := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	for body, field := range map[string]string{
		`{}`:                  "type",
		`{"type":"password"}`: "type",
		`{"type":"secret","expiresAt":"tomorrow"}`:           "expiresAt",
		`{"type":"secret","expiresAt":"` + past + `"}`:       "expiresAt",
		`{"type":"secret","validityDays":30}`:                "validityDays",
		`{"type":"secret","csr":"x"}`:                        "csr",
		`{"type":"x509","expiresAt":"2099-01-01T00:00:00Z"}`: "expiresAt",
		`{"type":"x509","validityDays":0}`:                   "validityDays",
		`{"type":"x509","validityDays":-1}`:                  "validityDays",
		`{"type":"x509","validityDays":3651}`:                "validityDays",
		`{"type":"x509","validityDays":1e300}`:               "validityDays",
		`{"type":"x509","validityDays":"30"}`:                "validityDays",
		`{"type":"x509","csr":""}`:                           "csr",
		`{"type":"x509","csr":"not a csr"}`:                  "csr",
		`{"type":"x509","csr":"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"}`: "csr",
		`{"type":"secret","kind":"x"}`: "kind",
	} {
		r := e.req(t, "POST", "/things/dev/credentials", e.admin, body)
		t.Run(body, func(t *testing.T) { wantProblem(t, r, 400, "invalid", field) })
	}
	for _, typ := range []string{"secret", "x509"} {
		wantProblem(t, e.req(t, "POST", "/things/ghost/credentials", e.admin, `{"type":"`+typ+`"}`), 404, "not_found", "")
	}
	wantProblem(t, e.req(t, "GET", "/things/ghost/credentials", e.admin, nil), 404, "not_found", "")
	if items, _ := e.items(t, "/things/dev/credentials"); len(items) != 0 {
		t.Fatalf("a failed request made a credential: %v", items)
	}
}

func TestX509Issue(t *testing.T) {
	e := newEnv(t)
	e.ok(t, "POST", "/things", map[string]any{"name": "cam-7"}, 201, nil)
	pool, caPEM := caPool(t, e)

	c := e.obj(t, "POST", "/things/cam-7/credentials", map[string]any{"type": "x509", "validityDays": 30}, 201)
	if got, want := keys(c), "caCertificate,certificate,createdAt,fingerprint,id,notAfter,privateKey,revoked,thing,type"; got != want {
		t.Fatalf("keys %s, want %s", got, want)
	}
	if c["caCertificate"] != caPEM {
		t.Errorf("caCertificate differs from /ca.pem")
	}
	cert := parseCert(t, c["certificate"].(string))
	verifyClient(t, cert, pool)
	if cert.Subject.CommonName != "cam-7" {
		t.Errorf("subject %v", cert.Subject)
	}
	if d := time.Until(cert.NotAfter); d < 29*24*time.Hour || d > 31*24*time.Hour {
		t.Errorf("validity %v, want 30 days", d)
	}
	if na, _ := time.Parse(time.RFC3339, c["notAfter"].(string)); !na.Equal(cert.NotAfter.UTC()) {
		t.Errorf("notAfter %v, certificate %v", c["notAfter"], cert.NotAfter)
	}
	kb, _ := pem.Decode([]byte(c["privateKey"].(string)))
	if kb == nil {
		t.Fatal("privateKey is not PEM")
	}
	key, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if !key.(*ecdsa.PrivateKey).PublicKey.Equal(cert.PublicKey) {
		t.Fatal("privateKey does not belong to the certificate")
	}

	// The key is shown once: neither list nor get has it.
	id := c["id"].(string)
	r := e.ok(t, "GET", "/things/cam-7/credentials/"+id, nil, 200, nil)
	if strings.Contains(r.String(), "PRIVATE KEY") || strings.Contains(r.String(), "privateKey") {
		t.Fatalf("get shows the key: %s", r)
	}
	got := e.obj(t, "GET", "/things/cam-7/credentials/"+id, nil, 200)
	if got["fingerprint"] != c["fingerprint"] || got["certificate"] != c["certificate"] {
		t.Fatalf("get: %v", got)
	}
	r = e.ok(t, "GET", "/things/cam-7/credentials", nil, 200, nil)
	if strings.Contains(r.String(), "PRIVATE KEY") {
		t.Fatalf("list shows the key: %s", r)
	}

	// Default validity: a year.
	c = e.obj(t, "POST", "/things/cam-7/credentials", map[string]any{"type": "x509"}, 201)
	if d := time.Until(parseCert(t, c["certificate"].(string)).NotAfter); d < 364*24*time.Hour || d > 366*24*time.Hour {
		t.Errorf("default validity %v", d)
	}
}

func TestX509SignCSR(t *testing.T) {
	e := newEnv(t)
	e.ok(t, "POST", "/things", map[string]any{"name": "dev-1"}, 201, nil)
	pool, _ := caPool(t, e)

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject:  pkix.Name{CommonName: "someone-else", Organization: []string{"Evil"}},
		DNSNames: []string{"evil.example"},
	}, key)
	if err != nil {
		t.Fatal(err)
	}
	csrPEM := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))

	c := e.obj(t, "POST", "/things/dev-1/credentials", map[string]any{"type": "x509", "csr": csrPEM, "validityDays": 7}, 201)
	if _, ok := c["privateKey"]; ok {
		t.Fatal("a CSR credential came with a private key")
	}
	if c["caCertificate"] == nil || c["certificate"] == nil || c["fingerprint"] == nil {
		t.Fatalf("credential %v", c)
	}
	cert := parseCert(t, c["certificate"].(string))
	verifyClient(t, cert, pool)
	if !key.PublicKey.Equal(cert.PublicKey) {
		t.Fatal("the certificate's public key is not the CSR's")
	}
	if cert.Subject.CommonName != "dev-1" || len(cert.DNSNames) != 0 {
		t.Errorf("subject %v, DNS %v: the thing name must win", cert.Subject, cert.DNSNames)
	}
	if d := time.Until(cert.NotAfter); d < 6*24*time.Hour || d > 8*24*time.Hour {
		t.Errorf("validity %v", d)
	}

	// Revoke, then delete.
	id := c["id"].(string)
	got := e.obj(t, "POST", "/things/dev-1/credentials/"+id+"/revoke", nil, 200)
	if got["revoked"] != true {
		t.Fatalf("revoke: %v", got)
	}
	e.ok(t, "DELETE", "/things/dev-1/credentials/"+id, nil, 204, nil)
	if items, _ := e.items(t, "/things/dev-1/credentials"); len(items) != 0 {
		t.Fatalf("after delete: %v", items)
	}
}

func TestCredentialPagination(t *testing.T) {
	e := newEnv(t)
	e.ok(t, "POST", "/things", map[string]any{"name": "dev"}, 201, nil)
	var ids []string
	for range 7 {
		ids = append(ids, e.obj(t, "POST", "/things/dev/credentials", map[string]any{"type": "secret"}, 201)["id"].(string))
	}
	var got []string
	q := "/things/dev/credentials?limit=3"
	for page := 0; ; page++ {
		items, next := e.items(t, q)
		for _, it := range items {
			got = append(got, it["id"].(string))
		}
		if next == "" {
			break
		}
		if page == 0 {
			// The cursor survives the deletion of the item it points at.
			e.ok(t, "DELETE", "/things/dev/credentials/"+got[len(got)-1], nil, 204, nil)
		}
		q = "/things/dev/credentials?limit=3&cursor=" + url.QueryEscape(next)
	}
	// Creation order, ties (same millisecond) broken by id: compare as sets.
	if len(got) != len(ids) || !slices.Equal(slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(ids))) {
		t.Fatalf("pages gave %v, want each of %v once", got, ids)
	}
	wantProblem(t, e.req(t, "GET", "/things/dev/credentials?cursor=nonsense", e.admin, nil), 400, "invalid", "cursor")
	wantProblem(t, e.req(t, "GET", "/things/dev/credentials?limit=0", e.admin, nil), 400, "invalid", "limit")
	wantProblem(t, e.req(t, "GET", "/things/dev/credentials?type=secret", e.admin, nil), 400, "invalid", "type")
}
