package provisioning_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/daemontest"
	"github.com/moteiot/mote/internal/provisioning"
)

type auditPage struct {
	Items []struct {
		Actor struct {
			Kind string `json:"kind"`
			Name string `json:"name"`
			ID   string `json:"id"`
		} `json:"actor"`
		Action string `json:"action"`
		Target struct {
			Kind string `json:"kind"`
			Name string `json:"name"`
		} `json:"target"`
		Status int    `json:"status"`
		After  string `json:"after"`
	} `json:"items"`
}

// TestProvisioningAuditActor: a device that registers over HTTP, one that
// is refused, and a redeemed claim token are in the audit log with the
// device as the actor and what admitted it as the actor's id; no secret
// (derived key, claim token) appears there.
func TestProvisioningAuditActor(t *testing.T) {
	s := daemontest.Start(t, noRateLimit)
	var g enrollmentAnswer
	if st := call(t, s, s.Token, "POST", "/enrollments", map[string]any{"name": "plant", "attestation": map[string]any{"type": "symmetricKey"}}, &g); st != 201 {
		t.Fatalf("create group: %d", st)
	}
	key := g.Attestation.PrimaryKey
	good := derive(t, key, "dev-1")
	if st := call(t, s, "", "POST", "/provisioning/register", map[string]any{"registrationId": "dev-1", "enrollment": "plant", "key": good}, nil); st != 201 {
		t.Fatalf("register dev-1: %d", st)
	}
	// Another device's derived key: refused, and recorded as dev-2's try.
	if st := call(t, s, "", "POST", "/provisioning/register", map[string]any{"registrationId": "dev-2", "enrollment": "plant", "key": good}, nil); st != 401 && st != 403 {
		t.Fatalf("register dev-2 with dev-1's key: %d; want a refusal", st)
	}
	var cl struct {
		ID    string `json:"id"`
		Token string `json:"token"`
	}
	if st := call(t, s, s.Token, "POST", "/claims", map[string]any{"thing": "kiosk-1", "ttl": "1h"}, &cl); st != 201 {
		t.Fatalf("create claim: %d", st)
	}
	pem, _ := csr(t, "", nil)
	if st := call(t, s, "", "POST", "/provisioning/claim", map[string]string{"token": cl.Token, "csr": pem}, nil); st != 201 {
		t.Fatalf("redeem: %d", st)
	}
	if st := call(t, s, "", "POST", "/provisioning/claim", map[string]string{"token": "mclaim_nope", "csr": pem}, nil); st < 400 {
		t.Fatalf("redeem an unknown token: %d", st)
	}

	var page auditPage
	if st := call(t, s, s.Token, "GET", "/audit?action=provisioning.*", nil, &page); st != 200 {
		t.Fatalf("GET /audit: %d", st)
	}
	type want struct{ kind, name, id, target string }
	got := map[string]want{}
	for _, e := range page.Items {
		key := e.Action + " " + e.Target.Name
		if e.Status >= 400 {
			key = e.Action + " refused " + e.Actor.Name
		}
		got[key] = want{e.Actor.Kind, e.Actor.Name, e.Actor.ID, e.Target.Kind + ":" + e.Target.Name}
	}
	for k, w := range map[string]want{
		"provisioning.register dev-1":         {"device", "dev-1", provisioning.AuditActorID("plant", ""), "thing:dev-1"},
		"provisioning.register refused dev-2": {"device", "dev-2", "enrollment:plant", "provisioning.register:"},
		"provisioning.claim kiosk-1":          {"device", "kiosk-1", "claim:" + cl.ID, "thing:kiosk-1"},
		"provisioning.claim refused ":         {"device", "", "", "provisioning.claim:"},
	} {
		if g, ok := got[k]; !ok || g != w {
			t.Errorf("audit %q = %+v (found %v); want %+v\nall: %+v", k, g, ok, w, got)
		}
	}
	// And the device's own trail.
	if st := call(t, s, s.Token, "GET", "/audit?actor=dev-1", nil, &page); st != 200 || len(page.Items) != 1 || page.Items[0].Action != "provisioning.register" {
		t.Errorf("GET /audit?actor=dev-1 = %d, %+v; want its registration", st, page.Items)
	}
	exp := callRaw(t, s, s.Token, "GET", "/audit/export")
	for _, secret := range []string{good, cl.Token, key} {
		if strings.Contains(exp, secret) {
			i := strings.Index(exp, secret)
			t.Errorf("a secret %.8q… appears in the audit log: …%s…", secret, exp[max(0, i-300):i])
		}
	}
}

// callRaw GETs an API path and returns its body.
func callRaw(t *testing.T, s *daemontest.Server, token, method, path string) string {
	t.Helper()
	req, _ := http.NewRequest(method, s.API+"/api/v1"+path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, b)
	}
	return string(b)
}

// TestProvisioningAuditOverMQTT: a registration over MQTT, which the REST
// API's audit edge never sees, is recorded by provisioning itself with the
// device and its enrollment as the actor and no secret.
func TestProvisioningAuditOverMQTT(t *testing.T) {
	s := daemontest.Start(t, noRateLimit)
	var g enrollmentAnswer
	if st := call(t, s, s.Token, "POST", "/enrollments", map[string]any{"name": "fleet", "attestation": map[string]any{"type": "symmetricKey"}}, &g); st != 201 {
		t.Fatalf("create group: %d", st)
	}
	dk := derive(t, g.Attestation.PrimaryKey, "sensor-1")
	p, err := s.DialV5(t, daemontest.V5Options{ClientID: "sensor-1", Username: "enrollment:fleet", Password: dk, CleanStart: true})
	if err != nil {
		t.Fatalf("provisioning connect: %v", err)
	}
	if code := p.Sub(t, provisioning.TopicRegister+"/+"); code >= 0x80 {
		t.Fatalf("subscribe to the answers = %#x", code)
	}
	p.Pub(t, provisioning.TopicRegister, 1, false, `{}`)
	m := p.Inbox.Wait(t, provisioning.TopicRegister+"/accepted", 5*time.Second)
	var a regAnswer
	if err := json.Unmarshal([]byte(m.Payload), &a); err != nil || a.Secret == "" {
		t.Fatalf("accepted = %s", m.Payload)
	}
	var page auditPage
	if st := call(t, s, s.Token, "GET", "/audit?action="+provisioning.AuditActionMQTTRegister, nil, &page); st != 200 || len(page.Items) != 1 {
		t.Fatalf("GET /audit = %d, %+v; want the MQTT registration", st, page.Items)
	}
	e := page.Items[0]
	if e.Actor.Kind != "device" || e.Actor.Name != "sensor-1" || e.Actor.ID != "enrollment:fleet" || e.Target.Kind != "thing" || e.Target.Name != "sensor-1" || e.Status != 201 {
		t.Errorf("entry = %+v; want device sensor-1 of enrollment:fleet creating thing sensor-1", e)
	}
	exp := callRaw(t, s, s.Token, "GET", "/audit/export")
	for _, secret := range []string{dk, a.Secret} {
		if strings.Contains(exp, secret) {
			t.Errorf("a secret %.8q… appears in the audit log", secret)
		}
	}
}
