package files_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/blob/fsblob"
	"github.com/moteiot/mote/internal/config"
	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/daemontest"
	"github.com/moteiot/mote/internal/datadir"
	"github.com/moteiot/mote/internal/store"
	"github.com/moteiot/mote/internal/store/sqlite"
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

// TestFilesEndToEnd: a device uploads a file in two pieces, asks where to
// resume, the file-uploaded event reaches the bus, an application lists,
// downloads (with Range) and deletes it; another device cannot see or
// write it; a file past the quota is 413.
func TestFilesEndToEnd(t *testing.T) {
	t.Parallel()
	s := daemontest.Start(t, func(c *config.Config) { c.FileQuotaPerThing = 1 << 20; c.FileMaxSize = 1 << 20 })
	app := map[string]string{"Authorization": "Bearer " + s.Token}
	secret := s.Device(t, "cam")
	other := s.Device(t, "cam2")
	dev := func(extra map[string]string) map[string]string {
		h := map[string]string{"Authorization": "Bearer " + secret}
		for k, v := range extra {
			h[k] = v
		}
		return h
	}
	events := make(chan core.Message, 4)
	unsub := s.Bus().Subscribe("$mote/events/files/#", func(m core.Message) {
		select {
		case events <- m:
		default:
		}
	})
	defer unsub()

	content := data(300_000)
	u := s.API + "/api/v1/devices/cam/files/crash.dump"
	resp, b := do(t, "PUT", u, bytes.NewReader(content[:100_000]), dev(map[string]string{"Content-Range": "bytes 0-99999/300000", "Content-Type": "application/x-core"}))
	if resp.StatusCode != 202 || resp.Header.Get("Upload-Offset") != "100000" {
		t.Fatalf("piece 1: %d %s (Upload-Offset %q)", resp.StatusCode, b, resp.Header.Get("Upload-Offset"))
	}
	resp, _ = do(t, "HEAD", u, nil, dev(nil))
	if resp.StatusCode != 200 || resp.Header.Get("Upload-Offset") != "100000" {
		t.Fatalf("HEAD: %d, Upload-Offset %q", resp.StatusCode, resp.Header.Get("Upload-Offset"))
	}
	// Not complete yet: no download.
	if resp, _ := do(t, "GET", s.API+"/api/v1/things/cam/files/crash.dump/content", nil, app); resp.StatusCode != 404 {
		t.Fatalf("download before completion: %d; want 404", resp.StatusCode)
	}
	// Another device can neither resume nor read it.
	// (One byte: the server refuses before it reads a body, and a large one
	// could still be in the client's write when it closes: broken pipe.)
	if resp, _ := do(t, "PUT", u, bytes.NewReader(content[100_000:100_001]), map[string]string{"Authorization": "Bearer " + other, "Content-Range": "bytes 100000-100000/300000"}); resp.StatusCode != 401 && resp.StatusCode != 403 {
		t.Fatalf("cam2 writing cam's file: %d", resp.StatusCode)
	}
	if resp, _ := do(t, "GET", s.API+"/api/v1/devices/cam2/files/crash.dump", nil, map[string]string{"Authorization": "Bearer " + other}); resp.StatusCode != 404 {
		t.Fatalf("cam2's view of crash.dump: %d; want 404 (its own files only)", resp.StatusCode)
	}
	resp, b = do(t, "PUT", u, bytes.NewReader(content[100_000:]), dev(map[string]string{"Content-Range": "bytes 100000-299999/300000"}))
	if resp.StatusCode != 201 {
		t.Fatalf("piece 2: %d %s", resp.StatusCode, b)
	}
	var f struct {
		Size     int64
		SHA256   string
		Complete bool
	}
	json.Unmarshal(b, &f)
	if !f.Complete || f.Size != 300_000 || f.SHA256 != hexsum(content) {
		t.Fatalf("complete = %s; want sha256 %s", b, hexsum(content))
	}
	select {
	case m := <-events:
		if m.Topic != "$mote/events/files/cam/crash.dump" || !strings.Contains(string(m.Payload), `"event":"file-uploaded"`) || !strings.Contains(string(m.Payload), f.SHA256) {
			t.Fatalf("event %s %s", m.Topic, m.Payload)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no file-uploaded event on the bus")
	}

	resp, b = do(t, "GET", s.API+"/api/v1/things/cam/files", nil, app)
	if resp.StatusCode != 200 || !strings.Contains(string(b), `"name":"crash.dump"`) || !strings.Contains(string(b), `"contentType":"application/x-core"`) {
		t.Fatalf("list: %d %s", resp.StatusCode, b)
	}
	resp, b = do(t, "GET", s.API+"/api/v1/things/cam/files/crash.dump/content", nil, map[string]string{"Authorization": app["Authorization"], "Range": "bytes=70000-200000"})
	if resp.StatusCode != 206 || !bytes.Equal(b, content[70000:200001]) {
		t.Fatalf("Range download: %d, %d bytes", resp.StatusCode, len(b))
	}
	// Another thing's path does not reach it.
	if resp, _ := do(t, "GET", s.API+"/api/v1/things/cam2/files/crash.dump/content", nil, app); resp.StatusCode != 404 {
		t.Fatalf("cam2's crash.dump: %d; want 404", resp.StatusCode)
	}
	// Quota: 1 MiB per thing, 300000 used.
	resp, b = do(t, "PUT", s.API+"/api/v1/devices/cam/files/big.bin", bytes.NewReader(data(800_000)), dev(nil))
	if resp.StatusCode != 413 {
		t.Fatalf("past the quota: %d %s; want 413", resp.StatusCode, b)
	}
	if resp, b := do(t, "DELETE", s.API+"/api/v1/things/cam/files/crash.dump", nil, app); resp.StatusCode != 204 {
		t.Fatalf("delete: %d %s", resp.StatusCode, b)
	}
	if resp, _ := do(t, "GET", s.API+"/api/v1/things/cam/files/crash.dump", nil, app); resp.StatusCode != 404 {
		t.Fatalf("after delete: %d", resp.StatusCode)
	}
	bs, _ := fsblob.Open(filepath.Join(s.Dir, "blobs"))
	if l, _ := bs.List(t.Context(), "files/"); len(l) != 0 {
		t.Fatalf("blobs after delete: %+v", l)
	}
}

// TestTrickledUploadKeepsWhatArrived: a device that sends a few bytes and
// stalls is cut off by the HTTP body timeout; what arrived is kept and
// the device resumes from it.
func TestTrickledUploadKeepsWhatArrived(t *testing.T) {
	t.Parallel()
	s := daemontest.Start(t, func(c *config.Config) { c.HTTPBodyTimeout = 300 * time.Millisecond; c.UploadMinRate = 0 })
	secret := s.Device(t, "slow")
	conn, err := net.Dial("tcp", strings.TrimPrefix(s.API, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "PUT /api/v1/devices/slow/files/log.txt HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Range: bytes 0-999/1000\r\nContent-Length: 1000\r\n\r\n0123456789", secret)
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer to a stalled upload: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 || resp.Header.Get("Upload-Offset") != "10" {
		t.Fatalf("stalled upload: %d, Upload-Offset %q; want 400 and 10 kept", resp.StatusCode, resp.Header.Get("Upload-Offset"))
	}
	rest := bytes.Repeat([]byte("x"), 990)
	r2, b := do(t, "PUT", s.API+"/api/v1/devices/slow/files/log.txt", bytes.NewReader(rest), map[string]string{"Authorization": "Bearer " + secret, "Content-Range": "bytes 10-999/1000"})
	if r2.StatusCode != 201 || !strings.Contains(string(b), hexsum(append([]byte("0123456789"), rest...))) {
		t.Fatalf("resume: %d %s", r2.StatusCode, b)
	}
}

// TestCrashDuringUploadLeavesNothing kills (SIGKILL) a real server
// process while a device's upload is half-way through its body: after a
// restart nothing of it is visible, neither a file row nor a blob.
func TestCrashDuringUploadLeavesNothing(t *testing.T) {
	if os.Getenv("FILES_CRASH_CHILD") != "" {
		crashChild(t)
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashDuringUploadLeavesNothing$")
	cmd.Env = append(os.Environ(), "FILES_CRASH_CHILD=1")
	stdin, _ := cmd.StdinPipe()
	defer stdin.Close()
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	var dir, api, secret string
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if _, err := fmt.Sscanf(sc.Text(), "READY %s %s %s", &dir, &api, &secret); err == nil {
			break
		}
	}
	if api == "" {
		t.Fatal("child server did not start")
	}
	t.Cleanup(func() { os.RemoveAll(dir) })

	pr, pw := io.Pipe()
	go func() {
		req, _ := http.NewRequest("PUT", api+"/api/v1/devices/dev/files/big.bin", pr)
		req.Header.Set("Authorization", "Bearer "+secret)
		req.ContentLength = 8 << 20
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	chunk := data(64 << 10)
	tmp := filepath.Join(dir, "blobs", "tmp")
	sent := 0
	daemontest.WaitFor(t, 20*time.Second, func() error {
		if sent < 6<<20 {
			pw.Write(chunk)
			sent += len(chunk)
		}
		es, _ := os.ReadDir(tmp)
		for _, e := range es {
			if fi, err := e.Info(); err == nil && fi.Size() > 1<<20 {
				return nil
			}
		}
		return fmt.Errorf("no half-written blob in %s yet (%d bytes sent)", tmp, sent)
	})
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	pw.CloseWithError(io.ErrClosedPipe)

	// Restart the stores on the data directory, as the server would.
	bs, err := fsblob.Open(datadir.Blobs(dir))
	if err != nil {
		t.Fatal(err)
	}
	if l, err := bs.List(context.Background(), ""); err != nil || len(l) != 0 {
		t.Fatalf("blobs after the crash: %+v, %v; want none", l, err)
	}
	if es, _ := os.ReadDir(tmp); len(es) != 0 {
		t.Fatalf("temporary files after reopening: %d", len(es))
	}
	st, err := sqlite.Open(datadir.DB(dir))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if l, err := st.Files().List(context.Background(), "dev"); err != nil || len(l) != 0 {
		t.Fatalf("file rows after the crash: %+v, %v; want none", l, err)
	}
}

// crashChild runs a server in a directory that outlives this process,
// prints where it is and waits to be killed (or for its stdin to close).
func crashChild(t *testing.T) {
	dir, err := os.MkdirTemp("", "mote-files-crash-")
	if err != nil {
		t.Fatal(err)
	}
	s := daemontest.Start(t, func(c *config.Config) { c.DataDir = dir; c.HTTPBodyTimeout = time.Minute })
	secret := s.Device(t, "dev")
	fmt.Printf("READY %s %s %s\n", dir, s.API, secret)
	io.Copy(io.Discard, os.Stdin)
}

// TestRuleSeesFileUploaded: a rule on $mote/events/files/# acts on a
// completed upload.
func TestRuleSeesFileUploaded(t *testing.T) {
	t.Parallel()
	s := daemontest.Start(t)
	secret := s.Device(t, "cam")
	wsecret := s.Device(t, "watcher")
	w := s.V5(t, "watcher", wsecret)
	w.Sub(t, "things/watcher/alerts")
	_, err := s.Rules().Create(t.Context(), store.Rule{Name: "files", Enabled: true,
		SQL:     `SELECT thing, name, size FROM '$mote/events/files/#'`,
		Actions: []byte(`[{"type": "republish", "topic": "things/watcher/alerts", "qos": 1}]`)})
	if err != nil {
		t.Fatal(err)
	}
	resp, b := do(t, "PUT", s.API+"/api/v1/devices/cam/files/shot.jpg", strings.NewReader("jpeg"), map[string]string{"Authorization": "Bearer " + secret})
	if resp.StatusCode != 201 {
		t.Fatalf("upload: %d %s", resp.StatusCode, b)
	}
	m := w.Inbox.Wait(t, "things/watcher/alerts", 10*time.Second)
	if !strings.Contains(m.Payload, `"name":"shot.jpg"`) || !strings.Contains(m.Payload, `"size":4`) {
		t.Fatalf("rule output = %s", m.Payload)
	}
}
