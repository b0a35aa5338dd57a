package files_test

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/moteiot/mote/internal/blob"
	"github.com/moteiot/mote/internal/blob/fsblob"
	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/files"
	"github.com/moteiot/mote/internal/store"
	"github.com/moteiot/mote/internal/store/sqlite"
	"github.com/moteiot/mote/internal/store/sqlite/sqlitetest"
)

type events struct {
	mu  sync.Mutex
	got []string
}

func (e *events) Publish(topic string, payload []byte, retain bool, qos byte) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.got = append(e.got, topic+" "+string(payload))
	return nil
}

type env struct {
	svc   *files.Service
	blobs blob.Store
	dir   string
	ev    *events
}

func newEnv(t *testing.T, mod func(*files.Options)) *env {
	t.Helper()
	dir := t.TempDir()
	sqlitetest.Seed(t, dir+"/mote.db")
	st, err := sqlite.Open(dir + "/mote.db")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	for _, th := range []string{"dev", "other:1"} {
		if _, err := st.Things().Create(t.Context(), store.Thing{Name: th}); err != nil {
			t.Fatal(err)
		}
	}
	bs, err := fsblob.Open(dir + "/blobs")
	if err != nil {
		t.Fatal(err)
	}
	key, err := files.LoadOrCreateKey(dir + "/files.key")
	if err != nil {
		t.Fatal(err)
	}
	ev := &events{}
	o := files.Options{Store: st.Files(), Blobs: bs, Key: key, MaxFileSize: 1 << 20, QuotaPerThing: 3 << 20, MaxFiles: 5, Events: ev}
	if mod != nil {
		mod(&o)
	}
	svc, err := files.New(o)
	if err != nil {
		t.Fatal(err)
	}
	return &env{svc: svc, blobs: bs, dir: dir, ev: ev}
}

func data(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func hexsum(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

func (e *env) read(t *testing.T, thing, name string, off int64) []byte {
	t.Helper()
	f, err := e.svc.Get(t.Context(), thing, name)
	if err != nil {
		t.Fatal(err)
	}
	c, err := e.svc.Open(t.Context(), f)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Seek(off, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read %s: %v", name, err)
	}
	return b
}

func (e *env) blobKeys(t *testing.T) []string {
	t.Helper()
	l, err := e.blobs.List(t.Context(), "")
	if err != nil {
		t.Fatal(err)
	}
	var ks []string
	for _, b := range l {
		ks = append(ks, b.Key)
	}
	return ks
}

func TestWholeUploadEncryptedAtRest(t *testing.T) {
	e := newEnv(t, nil)
	b := bytes.Repeat([]byte("plaintext log line\n"), 20000) // 380 KB, several chunks
	f, err := e.svc.Put(t.Context(), files.Upload{Thing: "dev", Name: "app.log", ContentType: "text/plain", Length: int64(len(b))}, bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if !f.Complete || f.Size != int64(len(b)) || f.SHA256 != hexsum(b) || f.ContentType != "text/plain" {
		t.Fatalf("Put = %+v", f)
	}
	if got := e.read(t, "dev", "app.log", 0); !bytes.Equal(got, b) {
		t.Fatalf("read back %d bytes; want %d equal", len(got), len(b))
	}
	if got := e.read(t, "dev", "app.log", 200_000); !bytes.Equal(got, b[200_000:]) {
		t.Fatalf("read from 200000: %d bytes", len(got))
	}
	// At rest: no plaintext anywhere under the blob directory.
	found := false
	filepath.Walk(e.dir+"/blobs", func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			raw, _ := os.ReadFile(p)
			if bytes.Contains(raw, []byte("plaintext log line")) {
				found = true
			}
		}
		return nil
	})
	if found {
		t.Fatal("the file's plaintext is stored on disk")
	}
	if len(e.ev.got) != 1 || !strings.HasPrefix(e.ev.got[0], "$mote/events/files/dev/app.log ") {
		t.Fatalf("events = %v; want one file-uploaded event", e.ev.got)
	}
	var ev files.Event
	json.Unmarshal([]byte(strings.SplitN(e.ev.got[0], " ", 2)[1]), &ev)
	if ev.Event != "file-uploaded" || ev.SHA256 != f.SHA256 || ev.Size != f.Size {
		t.Fatalf("event = %+v", ev)
	}
}

// failAfter returns n bytes of b, then err: a connection cut mid-body.
type failAfter struct {
	r   io.Reader
	n   int
	err error
}

func (f *failAfter) Read(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, f.err
	}
	if len(p) > f.n {
		p = p[:f.n]
	}
	n, err := f.r.Read(p)
	f.n -= n
	return n, err
}

// TestResumableUpload: three pieces with Content-Range, the second cut
// short; the device resumes where the server says and the composed file
// is byte-identical, with the parts gone.
func TestResumableUpload(t *testing.T) {
	e := newEnv(t, nil)
	b := data(600_000)
	total := int64(len(b))
	put := func(start, end int64, body io.Reader) (store.File, error) {
		return e.svc.Put(t.Context(), files.Upload{Thing: "dev", Name: "dump.bin", Range: &files.ContentRange{Start: start, End: end, Total: total}, Length: -1}, body)
	}
	f, err := put(0, 199_999, bytes.NewReader(b[:200_000]))
	if err != nil || f.Complete || f.Received != 200_000 {
		t.Fatalf("piece 1: %+v, %v", f, err)
	}
	// Piece 2 declared up to 399999, the connection drops after 150000.
	cut := errors.New("connection reset")
	f, err = put(200_000, 399_999, &failAfter{r: bytes.NewReader(b[200_000:400_000]), n: 150_000, err: cut})
	var ue *files.UploadError
	if !errors.As(err, &ue) || !errors.Is(err, cut) || ue.File.Received != 350_000 {
		t.Fatalf("cut piece: %+v, %v; want an UploadError with 350000 kept", f, err)
	}
	// A resume at the wrong offset is refused and says where to go on.
	if _, err := put(400_000, total-1, bytes.NewReader(b[400_000:])); core.KindOf(err) != core.KindConflict || !strings.Contains(err.Error(), "350000") {
		t.Fatalf("resume at a wrong offset = %v; want a conflict naming 350000", err)
	}
	got, _ := e.svc.Get(t.Context(), "dev", "dump.bin")
	if got.Received != 350_000 || got.Complete {
		t.Fatalf("status = %+v", got)
	}
	f, err = put(350_000, total-1, bytes.NewReader(b[350_000:]))
	if err != nil || !f.Complete || f.Size != total || f.SHA256 != hexsum(b) {
		t.Fatalf("last piece: %+v, %v", f, err)
	}
	if r := e.read(t, "dev", "dump.bin", 0); !bytes.Equal(r, b) {
		t.Fatal("composed file differs")
	}
	if ks := e.blobKeys(t); len(ks) != 1 || !strings.HasSuffix(ks[0], ".data") {
		t.Fatalf("blobs after completion = %v; want only the composed file", ks)
	}
}

func TestLimits(t *testing.T) {
	e := newEnv(t, nil)
	// Declared past the per-file limit: refused before reading.
	_, err := e.svc.Put(t.Context(), files.Upload{Thing: "dev", Name: "big", Length: 2 << 20}, strings.NewReader("x"))
	if core.KindOf(err) != core.KindTooLarge {
		t.Fatalf("declared 2 MiB = %v; want too large", err)
	}
	// Undeclared, and longer than the limit: refused once past it.
	_, err = e.svc.Put(t.Context(), files.Upload{Thing: "dev", Name: "big", Length: -1}, bytes.NewReader(data(1<<20+1)))
	if core.KindOf(err) != core.KindTooLarge {
		t.Fatalf("streamed 1 MiB + 1 = %v; want too large", err)
	}
	if ks := e.blobKeys(t); len(ks) != 0 {
		t.Fatalf("blobs after refused uploads: %v", ks)
	}
	// Quota per thing: 3 MiB; three files of 1 MiB fit, the fourth does not.
	for _, n := range []string{"a", "b", "c"} {
		if _, err := e.svc.Put(t.Context(), files.Upload{Thing: "dev", Name: n, Length: -1}, bytes.NewReader(data(1<<20))); err != nil {
			t.Fatalf("file %s: %v", n, err)
		}
	}
	_, err = e.svc.Put(t.Context(), files.Upload{Thing: "dev", Name: "d", Length: 10}, bytes.NewReader(data(10)))
	if core.KindOf(err) != core.KindTooLarge || !strings.Contains(err.Error(), "quota") {
		t.Fatalf("past the quota = %v; want too large naming the quota", err)
	}
	// Another thing's quota is its own.
	if _, err := e.svc.Put(t.Context(), files.Upload{Thing: "other:1", Name: "d", Length: -1}, bytes.NewReader(data(10))); err != nil {
		t.Fatalf("other thing: %v", err)
	}
	// A thing's files are its own.
	if _, err := e.svc.Get(t.Context(), "other:1", "a"); !core.IsNotFound(err) {
		t.Fatalf("another thing's file = %v; want not found", err)
	}
	// Count limit.
	e2 := newEnv(t, func(o *files.Options) { o.MaxFiles = 2 })
	for i, n := range []string{"x", "y", "z"} {
		_, err := e2.svc.Put(t.Context(), files.Upload{Thing: "dev", Name: n, Length: -1}, strings.NewReader("1"))
		if (i < 2) != (err == nil) {
			t.Fatalf("file %d: %v", i, err)
		}
	}
}

func TestCorruptBlobDetected(t *testing.T) {
	e := newEnv(t, nil)
	b := data(200_000)
	if _, err := e.svc.Put(t.Context(), files.Upload{Thing: "dev", Name: "img", Length: -1}, bytes.NewReader(b)); err != nil {
		t.Fatal(err)
	}
	ks := e.blobKeys(t)
	p := filepath.Join(e.dir, "blobs", "objects", ks[0]+".blob")
	raw, _ := os.ReadFile(p)
	raw[len(raw)-1000] ^= 0x40 // inside the last chunk
	os.WriteFile(p, raw, 0o600)
	f, _ := e.svc.Get(t.Context(), "dev", "img")
	c, err := e.svc.Open(t.Context(), f)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got, err := io.ReadAll(c)
	if !errors.Is(err, files.ErrDecrypt) {
		t.Fatalf("read of a damaged file: %d bytes, %v; want ErrDecrypt", len(got), err)
	}
	// A blob moved under another thing's key does not open either.
	if len(got) >= len(b) {
		t.Fatal("the damaged chunk was returned")
	}
}

func TestDeleteAndDeleteThing(t *testing.T) {
	e := newEnv(t, nil)
	for _, n := range []string{"a", "b"} {
		if _, err := e.svc.Put(t.Context(), files.Upload{Thing: "dev", Name: n, Length: -1}, strings.NewReader(n)); err != nil {
			t.Fatal(err)
		}
	}
	// A pending upload too.
	e.svc.Put(t.Context(), files.Upload{Thing: "dev", Name: "p", Range: &files.ContentRange{Start: 0, End: 1, Total: 10}, Length: -1}, strings.NewReader("ab"))
	if err := e.svc.Delete(t.Context(), "dev", "a"); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.Delete(t.Context(), "dev", "p"); err != nil {
		t.Fatal(err)
	}
	if ks := e.blobKeys(t); len(ks) != 1 {
		t.Fatalf("blobs after deletes = %v; want b only", ks)
	}
	if err := e.svc.DeleteThing(t.Context(), "dev"); err != nil {
		t.Fatal(err)
	}
	if ks := e.blobKeys(t); len(ks) != 0 {
		t.Fatalf("blobs after DeleteThing = %v", ks)
	}
}

func TestEmptyFile(t *testing.T) {
	e := newEnv(t, nil)
	f, err := e.svc.Put(t.Context(), files.Upload{Thing: "dev", Name: "empty", Length: 0}, strings.NewReader(""))
	if err != nil || !f.Complete || f.Size != 0 || f.SHA256 != hexsum(nil) {
		t.Fatalf("empty: %+v, %v", f, err)
	}
	if got := e.read(t, "dev", "empty", 0); len(got) != 0 {
		t.Fatalf("read %q", got)
	}
}
