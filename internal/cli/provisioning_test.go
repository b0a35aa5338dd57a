package cli_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moteiot/mote/internal/daemontest"
	"github.com/moteiot/mote/internal/provisioning"
)

func TestEnrollmentAndClaimCommands(t *testing.T) {
	t.Parallel()
	s := daemontest.Start(t)
	mote := func(args ...string) (string, string, int) {
		t.Helper()
		return run(t, append([]string{"--server", s.API, "--token", s.Token}, args...)...)
	}
	out, errOut, code := mote("-o", "json", "enrollment", "create", "plant", "--symmetric-key", "--attr", "site=lyon", "--max-devices", "10")
	if code != 0 {
		t.Fatalf("enrollment create: exit %d %s %s", code, out, errOut)
	}
	e := decode[map[string]any](t, out)
	key, _ := e["attestation"].(map[string]any)["primaryKey"].(string)
	if key == "" {
		t.Fatalf("create: %s; want the primary key", out)
	}
	// The key registers a device (the service, as a device would over HTTP).
	dk, _ := provisioning.DeriveKey(key, "dev-1")
	if _, err := s.Provisioning().Register(t.Context(), provisioning.RegisterRequest{RegistrationID: "dev-1", Enrollment: "plant", Key: dk}); err != nil {
		t.Fatalf("register with the printed key: %v", err)
	}
	out, _, code = mote("enrollment", "list")
	if code != 0 || !strings.Contains(out, "plant") || !strings.Contains(out, "REGISTERED") {
		t.Errorf("enrollment list: exit %d %s", code, out)
	}
	out, _, code = mote("enrollment", "disable", "plant")
	if code != 0 || !strings.Contains(out, "false") {
		t.Errorf("disable: exit %d %s", code, out)
	}
	_, _, code = mote("enrollment", "create", "bad", "--symmetric-key", "--ca-file", "x.pem")
	if code != 2 {
		t.Errorf("both attestations: exit %d; want 2", code)
	}
	_, _, code = mote("enrollment", "get", "nope")
	if code != 3 {
		t.Errorf("unknown group: exit %d; want 3", code)
	}

	qr := filepath.Join(t.TempDir(), "claim.png")
	out, errOut, code = mote("claim", "create", "--thing", "kiosk-1", "--ttl", "2h", "--qr", qr)
	if code != 0 || !strings.Contains(out, "mclaim_") {
		t.Fatalf("claim create: exit %d %s %s", code, out, errOut)
	}
	if b, err := os.ReadFile(qr); err != nil || !bytes.HasPrefix(b, []byte("\x89PNG")) {
		t.Errorf("QR file: %v; want a PNG", err)
	}
	out, _, code = mote("claim", "list")
	if code != 0 || !strings.Contains(out, "kiosk-1") || strings.Contains(out, "mclaim_") {
		t.Errorf("claim list: exit %d %s; want the claim, never its token", code, out)
	}
	if out, _, code = mote("enrollment", "delete", "plant"); code != 0 {
		t.Errorf("delete: exit %d %s", code, out)
	}
	if _, err := s.Provisioning().GetEnrollment(t.Context(), "plant"); err == nil {
		t.Error("the group still exists after delete")
	}
}
