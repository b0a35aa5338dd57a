package artifacts_test

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/config"
	"github.com/moteiot/mote/internal/daemontest"
)

func do(t *testing.T, method, u string, body io.Reader, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

// stallingReader yields first, then waits until ready() (or a deadline),
// then yields rest: it proves the server stores the body while it is
// still arriving.
type stallingReader struct {
	first, rest io.Reader
	ready       func() bool
	waited      bool
	sawReady    bool
}

func (s *stallingReader) Read(p []byte) (int, error) {
	if n, err := s.first.Read(p); n > 0 || err != io.EOF {
		return n, err
	}
	if !s.waited {
		s.waited = true
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			if s.ready() {
				s.sawReady = true
				break
			}
			time.Sleep(5 * time.Millisecond) // polling the server's temp dir, not a condition of ours
		}
	}
	return s.rest.Read(p)
}

// TestArtifactEndToEnd: a signed artifact is streamed in (the server has
// most of it on disk before the client sends the end), listed, downloaded
// by a device with Range (a resumed download), through a signed URL
// without a token, and refused with a forged URL, a wrong sha256 or
// another key's signature.
func TestArtifactEndToEnd(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(pub)
	keyFile := filepath.Join(t.TempDir(), "keys.pem")
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600)
	s := daemontest.Start(t, func(c *config.Config) { c.ArtifactSigningKeys = keyFile })
	auth := map[string]string{"Authorization": "Bearer " + s.Token}

	const size = 12 << 20
	content := make([]byte, size)
	rand.Read(content)
	sum := sha256.Sum256(content)
	sig := base64.StdEncoding.EncodeToString(ed25519.Sign(priv, sum[:]))
	tmp := filepath.Join(s.Dir, "blobs", "tmp")
	body := &stallingReader{first: bytes.NewReader(content[:8<<20]), rest: bytes.NewReader(content[8<<20:]), ready: func() bool {
		es, _ := os.ReadDir(tmp)
		for _, e := range es {
			if fi, err := e.Info(); err == nil && fi.Size() >= 4<<20 {
				return true
			}
		}
		return false
	}}
	q := url.Values{"name": {"fw"}, "version": {"1.2.0"}, "sha256": {hex.EncodeToString(sum[:])}, "signature": {sig}}
	resp, b := do(t, "POST", s.API+"/api/v1/artifacts?"+q.Encode(), body, map[string]string{"Authorization": auth["Authorization"], "Content-Type": "application/x-firmware"})
	if resp.StatusCode != 201 {
		t.Fatalf("upload: %d %s", resp.StatusCode, b)
	}
	if !body.sawReady {
		t.Fatal("the server did not have 4 MiB of the artifact on disk while the client held back the rest: the upload is not streamed")
	}
	var a struct {
		Size    int64
		SHA256  string
		Signed  bool
		Version string
	}
	json.Unmarshal(b, &a)
	if a.Size != size || a.SHA256 != hex.EncodeToString(sum[:]) || !a.Signed {
		t.Fatalf("created = %s", b)
	}

	// Refusals store nothing.
	for name, q := range map[string]url.Values{
		"unsigned":    {"name": {"fw"}, "version": {"9"}},
		"wrong sha":   {"name": {"fw"}, "version": {"9"}, "signature": {sig}, "sha256": {strings.Repeat("0", 64)}},
		"bad sig":     {"name": {"fw"}, "version": {"9"}, "signature": {base64.StdEncoding.EncodeToString(make([]byte, 64))}},
		"duplicate":   {"name": {"fw"}, "version": {"1.2.0"}, "signature": {sig}},
		"unknown arg": {"name": {"fw"}, "version": {"9"}, "signature": {sig}, "x": {"1"}},
	} {
		resp, b := do(t, "POST", s.API+"/api/v1/artifacts?"+q.Encode(), bytes.NewReader(content[:1000]), auth)
		if resp.StatusCode != 400 && resp.StatusCode != 409 {
			t.Errorf("%s: %d %s; want 400 or 409", name, resp.StatusCode, b)
		}
	}
	resp, b = do(t, "GET", s.API+"/api/v1/artifacts", nil, auth)
	if resp.StatusCode != 200 || strings.Count(string(b), `"version"`) != 1 {
		t.Fatalf("list after refusals: %d %s", resp.StatusCode, b)
	}

	// A device downloads with its own credentials and resumes with Range.
	secret := s.Device(t, "dev1")
	resp, b = do(t, "GET", s.API+"/api/v1/devices/dev1/artifacts/fw/latest", nil, map[string]string{"Authorization": "Bearer " + secret, "Range": "bytes=5000000-"})
	if resp.StatusCode != 206 || !bytes.Equal(b, content[5000000:]) || resp.Header.Get("X-Mote-SHA256") != a.SHA256 {
		t.Fatalf("device Range download: %d, %d bytes", resp.StatusCode, len(b))
	}
	// Without credentials, or as another thing: refused.
	if resp, _ := do(t, "GET", s.API+"/api/v1/devices/dev1/artifacts/fw/1.2.0", nil, nil); resp.StatusCode != 401 {
		t.Fatalf("no credentials: %d; want 401", resp.StatusCode)
	}
	s.Device(t, "dev2")
	if resp, _ := do(t, "GET", s.API+"/api/v1/devices/dev2/artifacts/fw/1.2.0", nil, map[string]string{"Authorization": "Bearer " + secret}); resp.StatusCode != 401 && resp.StatusCode != 403 {
		t.Fatalf("dev1's secret for dev2: %d; want 401 or 403", resp.StatusCode)
	}

	// A signed URL works without a token; a forged one does not.
	resp, b = do(t, "POST", s.API+"/api/v1/artifacts/fw/1.2.0/url", nil, auth)
	var link struct{ URL string }
	json.Unmarshal(b, &link)
	if resp.StatusCode != 200 || !strings.HasPrefix(link.URL, "/api/v1/artifacts/fw/1.2.0/download?exp=") {
		t.Fatalf("url: %d %s", resp.StatusCode, b)
	}
	resp, b = do(t, "GET", s.API+link.URL, nil, map[string]string{"Range": "bytes=0-99"})
	if resp.StatusCode != 206 || !bytes.Equal(b, content[:100]) {
		t.Fatalf("signed URL download: %d, %d bytes", resp.StatusCode, len(b))
	}
	forged := strings.Replace(link.URL, "/1.2.0/", "/1.3.0/", 1)
	if resp, _ := do(t, "GET", s.API+forged, nil, nil); resp.StatusCode != 403 {
		t.Fatalf("URL for another version: %d; want 403", resp.StatusCode)
	}
	i := strings.Index(link.URL, "sig=") + 4
	flipped := link.URL[:i] + "A" + link.URL[i+1:]
	if link.URL[i] == 'A' {
		flipped = link.URL[:i] + "B" + link.URL[i+1:]
	}
	if resp, _ := do(t, "GET", s.API+flipped, nil, nil); resp.StatusCode != 403 {
		t.Fatalf("forged signature: %d; want 403", resp.StatusCode)
	}
	if resp, _ := do(t, "GET", s.API+"/api/v1/artifacts/fw/1.2.0/download?exp=9999999999&sig=x", nil, nil); resp.StatusCode != 403 {
		t.Fatalf("made-up signature: %d; want 403", resp.StatusCode)
	}

	// The fleet's firmware: dev1 reports 1.2.0.
	s.Shadows().Update(t.Context(), "dev1", "", []byte(`{"state":{"reported":{"firmware":"1.2.0"}}}`))
	daemontest.WaitFor(t, 5*time.Second, func() error {
		_, b := do(t, "GET", s.API+"/api/v1/fleet/firmware", nil, auth)
		if !strings.Contains(string(b), `{"version":"1.2.0","things":1}`) {
			return fmt.Errorf("fleet firmware = %s", b)
		}
		return nil
	})

	// Delete; the content is gone.
	if resp, b := do(t, "DELETE", s.API+"/api/v1/artifacts/fw/1.2.0", nil, auth); resp.StatusCode != 204 {
		t.Fatalf("delete: %d %s", resp.StatusCode, b)
	}
	if resp, _ := do(t, "GET", s.API+link.URL, nil, nil); resp.StatusCode != 404 {
		t.Fatalf("signed URL after delete: %d; want 404", resp.StatusCode)
	}
}

// TestTrickledArtifactUpload: an upload whose body stalls is cut off by
// the HTTP body timeout and leaves nothing: no artifact, no blob, no
// temporary file.
func TestTrickledArtifactUpload(t *testing.T) {
	s := daemontest.Start(t, func(c *config.Config) { c.HTTPBodyTimeout = 300 * time.Millisecond; c.UploadMinRate = 0 })
	conn, err := net.Dial("tcp", strings.TrimPrefix(s.API, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /api/v1/artifacts?name=fw&version=1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Length: 100000\r\n\r\n%s", s.Token, strings.Repeat("x", 5000))
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	start := time.Now()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode < 400 {
			t.Fatalf("stalled upload answered %d", resp.StatusCode)
		}
	} else if time.Since(start) > 9*time.Second {
		t.Fatalf("the stalled upload held the connection: %v", err)
	}
	_, b := do(t, "GET", s.API+"/api/v1/artifacts", nil, map[string]string{"Authorization": "Bearer " + s.Token})
	if !strings.Contains(string(b), `"items":[]`) {
		t.Fatalf("artifacts after a stalled upload: %s", b)
	}
	daemontest.WaitFor(t, 5*time.Second, func() error {
		for _, d := range []string{"tmp", "objects"} {
			var n int
			filepath.Walk(filepath.Join(s.Dir, "blobs", d), func(_ string, fi os.FileInfo, err error) error {
				if err == nil && !fi.IsDir() {
					n++
				}
				return nil
			})
			if n != 0 {
				return fmt.Errorf("%d files left in blobs/%s", n, d)
			}
		}
		return nil
	})
}
