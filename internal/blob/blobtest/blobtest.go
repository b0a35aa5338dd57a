// Package blobtest is the conformance suite every blob.Store passes.
package blobtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/moteiot/mote/internal/blob"
	"github.com/moteiot/mote/internal/core"
)

// Backend opens a fresh store for one subtest. Damage, when set, alters
// the stored bytes of an object behind the store's back: mode "flip"
// changes one content byte, "truncate" drops the last bytes.
type Backend struct {
	Open   func(t *testing.T) blob.Store
	Damage func(t *testing.T, s blob.Store, key, mode string)
}

// Run runs the suite.
func Run(t *testing.T, b Backend) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s blob.Store)
	}{
		{"PutGetStat", testPutGetStat},
		{"Range", testRange},
		{"Replace", testReplace},
		{"ListDelete", testListDelete},
		{"NotFound", testNotFound},
		{"TooLarge", testTooLarge},
		{"FailingReader", testFailingReader},
		{"CanceledContext", testCanceled},
		{"InvalidKey", testInvalidKey},
		{"ServeContentRange", testServeContent},
		{"Empty", testEmpty},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := b.Open(t)
			t.Cleanup(func() { s.Close() })
			tc.fn(t, s)
		})
	}
	if b.Damage != nil {
		for _, mode := range []string{"flip", "truncate"} {
			t.Run("Corrupt/"+mode, func(t *testing.T) {
				s := b.Open(t)
				t.Cleanup(func() { s.Close() })
				testCorrupt(t, s, b.Damage, mode)
			})
		}
	}
}

func data(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func sum(b []byte) string { h := sha256.Sum256(b); return hex.EncodeToString(h[:]) }

func readAll(t *testing.T, s blob.Store, key string, off, n int64) ([]byte, error) {
	t.Helper()
	rc, err := s.Get(context.Background(), key, off, n)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

func testPutGetStat(t *testing.T, s blob.Store) {
	ctx := context.Background()
	content := data(300_000)
	info, err := s.Put(ctx, "a/b/c.bin", bytes.NewReader(content), 0)
	if err != nil {
		t.Fatal(err)
	}
	if info.Size != int64(len(content)) || info.SHA256 != sum(content) || info.Key != "a/b/c.bin" {
		t.Fatalf("Put = %+v; want size %d sha %s", info, len(content), sum(content))
	}
	st, err := s.Stat(ctx, "a/b/c.bin")
	if err != nil || st.Size != info.Size || st.SHA256 != info.SHA256 {
		t.Fatalf("Stat = %+v, %v; want %+v", st, err, info)
	}
	got, err := readAll(t, s, "a/b/c.bin", 0, -1)
	if err != nil || !bytes.Equal(got, content) {
		t.Fatalf("Get whole: %d bytes, %v; want %d bytes equal", len(got), err, len(content))
	}
}

func testRange(t *testing.T, s blob.Store) {
	content := data(100_000)
	if _, err := s.Put(context.Background(), "r", bytes.NewReader(content), 0); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ off, n int64 }{{0, 10}, {5, 1000}, {99_990, -1}, {99_990, 50}, {100_000, -1}, {12345, 70000}} {
		got, err := readAll(t, s, "r", c.off, c.n)
		end := int64(len(content))
		if c.n >= 0 && c.off+c.n < end {
			end = c.off + c.n
		}
		if err != nil || !bytes.Equal(got, content[c.off:end]) {
			t.Errorf("Get(%d, %d) = %d bytes, %v; want content[%d:%d]", c.off, c.n, len(got), err, c.off, end)
		}
	}
	if _, err := s.Get(context.Background(), "r", 100_001, -1); err == nil {
		t.Error("Get past the end: no error")
	}
}

func testReplace(t *testing.T, s blob.Store) {
	ctx := context.Background()
	s.Put(ctx, "k", strings.NewReader("first"), 0)
	if _, err := s.Put(ctx, "k", strings.NewReader("second!"), 0); err != nil {
		t.Fatal(err)
	}
	got, err := readAll(t, s, "k", 0, -1)
	if err != nil || string(got) != "second!" {
		t.Fatalf("after replace: %q, %v; want second!", got, err)
	}
}

func testListDelete(t *testing.T, s blob.Store) {
	ctx := context.Background()
	for _, k := range []string{"files/t1/a", "files/t1/b", "files/t2/a", "artifacts/x"} {
		if _, err := s.Put(ctx, k, strings.NewReader(k), 0); err != nil {
			t.Fatal(err)
		}
	}
	keys := func(prefix string) string {
		l, err := s.List(ctx, prefix)
		if err != nil {
			t.Fatalf("List(%q): %v", prefix, err)
		}
		var ks []string
		for _, i := range l {
			ks = append(ks, i.Key)
			if i.Size != int64(len(i.Key)) {
				t.Errorf("List(%q): %s size %d; want %d", prefix, i.Key, i.Size, len(i.Key))
			}
		}
		return strings.Join(ks, ",")
	}
	if got, want := keys("files/t1/"), "files/t1/a,files/t1/b"; got != want {
		t.Errorf("List(files/t1/) = %s; want %s", got, want)
	}
	if got, want := keys(""), "artifacts/x,files/t1/a,files/t1/b,files/t2/a"; got != want {
		t.Errorf("List() = %s; want %s", got, want)
	}
	if got := keys("nothing/"); got != "" {
		t.Errorf("List(nothing/) = %s; want none", got)
	}
	if err := s.Delete(ctx, "files/t1/a"); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "files/t1/a"); err != nil {
		t.Fatalf("second Delete: %v; want nil", err)
	}
	if got, want := keys("files/"), "files/t1/b,files/t2/a"; got != want {
		t.Errorf("after Delete: %s; want %s", got, want)
	}
}

func testNotFound(t *testing.T, s blob.Store) {
	if _, err := s.Stat(context.Background(), "missing"); !core.IsNotFound(err) {
		t.Errorf("Stat(missing) = %v; want not found", err)
	}
	if _, err := s.Get(context.Background(), "missing", 0, -1); !core.IsNotFound(err) {
		t.Errorf("Get(missing) = %v; want not found", err)
	}
}

func testTooLarge(t *testing.T, s blob.Store) {
	_, err := s.Put(context.Background(), "big", bytes.NewReader(data(1001)), 1000)
	if core.KindOf(err) != core.KindTooLarge {
		t.Fatalf("Put 1001 bytes with max 1000 = %v; want too large", err)
	}
	if _, err := s.Stat(context.Background(), "big"); !core.IsNotFound(err) {
		t.Fatalf("after a refused Put: Stat = %v; want not found (nothing stored)", err)
	}
	if _, err := s.Put(context.Background(), "fits", bytes.NewReader(data(1000)), 1000); err != nil {
		t.Fatalf("Put exactly max: %v", err)
	}
}

// failingReader returns n bytes and then err: a client that disconnects,
// or a disk that fills up under a proxy.
type failingReader struct {
	n   int
	err error
}

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n == 0 {
		return 0, f.err
	}
	k := min(len(p), f.n)
	rand.Read(p[:k])
	f.n -= k
	return k, nil
}

func testFailingReader(t *testing.T, s blob.Store) {
	ctx := context.Background()
	s.Put(ctx, "keep", strings.NewReader("old"), 0)
	boom := errors.New("no space left on device")
	_, err := s.Put(ctx, "keep", &failingReader{n: 200_000, err: boom}, 0)
	if !errors.Is(err, boom) {
		t.Fatalf("Put from a failing reader = %v; want it to wrap %v", err, boom)
	}
	got, err := readAll(t, s, "keep", 0, -1)
	if err != nil || string(got) != "old" {
		t.Fatalf("after a failed replace: %q, %v; want the old object", got, err)
	}
	if _, err := s.Put(ctx, "new", &failingReader{n: 10, err: boom}, 0); err == nil {
		t.Fatal("Put: no error")
	}
	if _, err := s.Stat(ctx, "new"); !core.IsNotFound(err) {
		t.Fatalf("after a failed Put: Stat = %v; want not found", err)
	}
	if l, _ := s.List(ctx, ""); len(l) != 1 {
		t.Fatalf("List after failed Puts = %+v; want only keep", l)
	}
}

func testCanceled(t *testing.T, s blob.Store) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Put(ctx, "c", bytes.NewReader(data(10)), 0); err == nil {
		t.Fatal("Put with a canceled context: no error")
	}
	if _, err := s.Stat(context.Background(), "c"); !core.IsNotFound(err) {
		t.Fatalf("Stat = %v; want not found", err)
	}
}

func testInvalidKey(t *testing.T, s blob.Store) {
	for _, k := range []string{"", "../x", "a//b", "a/./b", "/abs", "a b", "a\x00", strings.Repeat("x", blob.MaxKeyLen+1)} {
		if _, err := s.Put(context.Background(), k, strings.NewReader("x"), 0); core.KindOf(err) != core.KindInvalid {
			t.Errorf("Put(%q) = %v; want invalid", k, err)
		}
	}
}

func testEmpty(t *testing.T, s blob.Store) {
	info, err := s.Put(context.Background(), "empty", bytes.NewReader(nil), 0)
	if err != nil || info.Size != 0 || info.SHA256 != sum(nil) {
		t.Fatalf("Put empty = %+v, %v", info, err)
	}
	got, err := readAll(t, s, "empty", 0, -1)
	if err != nil || len(got) != 0 {
		t.Fatalf("Get empty = %q, %v", got, err)
	}
}

// testServeContent serves an object with http.ServeContent through
// blob.ReadSeeker and resumes a download with Range.
func testServeContent(t *testing.T, s blob.Store) {
	content := data(200_000)
	info, err := s.Put(context.Background(), "fw", bytes.NewReader(content), 0)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rs := blob.NewReadSeeker(r.Context(), s, info)
		defer rs.Close()
		http.ServeContent(w, r, "fw", info.Created, rs)
	}))
	defer srv.Close()
	req, _ := http.NewRequest("GET", srv.URL, nil)
	req.Header.Set("Range", "bytes=150000-")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(got, content[150000:]) {
		t.Fatalf("Range bytes=150000-: %d, %d bytes; want 206 and the last 50000 bytes", resp.StatusCode, len(got))
	}
	resp, err = http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	got, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Equal(got, content) {
		t.Fatalf("whole GET: %d, %d bytes", resp.StatusCode, len(got))
	}
}

func testCorrupt(t *testing.T, s blob.Store, damage func(*testing.T, blob.Store, string, string), mode string) {
	content := data(100_000)
	if _, err := s.Put(context.Background(), "bad", bytes.NewReader(content), 0); err != nil {
		t.Fatal(err)
	}
	damage(t, s, "bad", mode)
	got, err := readAll(t, s, "bad", 0, -1)
	if !blob.IsCorrupt(err) {
		t.Fatalf("whole read of a %s object: %d bytes, %v; want ErrCorrupt", mode, len(got), err)
	}
}
