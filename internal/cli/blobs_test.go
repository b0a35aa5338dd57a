package cli_test

import (
	"bytes"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moteiot/mote/internal/daemontest"
)

// TestArtifactAndFileCommands: upload, list, get, url, firmware and
// delete an artifact; list, download and delete a device's file.
func TestArtifactAndFileCommands(t *testing.T) {
	t.Parallel()
	s := daemontest.Start(t)
	mote := func(args ...string) (string, string, int) {
		t.Helper()
		return run(t, append([]string{"--server", s.API, "--token", s.Token}, args...)...)
	}
	dir := t.TempDir()
	fw := filepath.Join(dir, "fw.bin")
	os.WriteFile(fw, bytes.Repeat([]byte("firmware"), 10000), 0o600)
	out, errOut, code := mote("artifact", "upload", "thermo", "1.0.0", fw)
	if code != 0 || !strings.Contains(out, "80000") {
		t.Fatalf("upload: exit %d %s %s", code, out, errOut)
	}
	out, _, code = mote("artifact", "list")
	if code != 0 || !strings.Contains(out, "thermo") || !strings.Contains(out, "1.0.0") {
		t.Errorf("list: exit %d %s", code, out)
	}
	out, _, code = mote("artifact", "url", "thermo", "latest")
	if code != 0 || !strings.Contains(out, "/api/v1/artifacts/thermo/1.0.0/download?exp=") {
		t.Errorf("url: exit %d %s", code, out)
	}
	_, _, code = mote("artifact", "upload", "thermo", "1.0.0", fw)
	if code != 4 {
		t.Errorf("duplicate upload: exit %d; want 4 (conflict)", code)
	}
	if _, errOut, code := mote("artifact", "delete", "thermo", "1.0.0"); code != 0 {
		t.Errorf("delete: exit %d %s", code, errOut)
	}
	if _, _, code := mote("artifact", "get", "thermo", "1.0.0"); code != 3 {
		t.Errorf("get after delete: exit %d; want 3", code)
	}

	secret := s.Device(t, "cam")
	out, _, code = mote("artifact", "firmware")
	if code != 0 || !strings.Contains(out, "(none reported)") {
		t.Errorf("firmware: exit %d %s", code, out)
	}
	req, _ := http.NewRequest("PUT", s.API+"/api/v1/devices/cam/files/boot.log", strings.NewReader("booted ok\n"))
	req.Header.Set("Authorization", "Bearer "+secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 201 {
		t.Fatalf("device upload: %v %v", resp, err)
	}
	resp.Body.Close()
	out, _, code = mote("file", "list", "cam")
	if code != 0 || !strings.Contains(out, "boot.log") {
		t.Errorf("file list: exit %d %s", code, out)
	}
	out, _, code = mote("file", "download", "cam", "boot.log")
	if code != 0 || out != "booted ok\n" {
		t.Errorf("file download: exit %d %q", code, out)
	}
	if _, errOut, code := mote("file", "delete", "cam", "boot.log"); code != 0 {
		t.Errorf("file delete: exit %d %s", code, errOut)
	}
	if _, _, code := mote("file", "get", "cam", "boot.log"); code != 3 {
		t.Errorf("file get after delete: exit %d; want 3", code)
	}
}
