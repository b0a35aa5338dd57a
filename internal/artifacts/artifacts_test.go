package artifacts_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/artifacts"
	"github.com/moteiot/mote/internal/blob"
	"github.com/moteiot/mote/internal/blob/fsblob"
	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/store"
	"github.com/moteiot/mote/internal/store/sqlite"
	"github.com/moteiot/mote/internal/store/sqlite/sqlitetest"
)

type env struct {
	svc   *artifacts.Service
	blobs blob.Store
	st    store.Store
	priv  ed25519.PrivateKey
}

type inUse map[string]string

func (u inUse) ArtifactInUse(_ context.Context, name, version string) (string, error) {
	return u[name+"@"+version], nil
}

func newEnv(t *testing.T, mod func(*artifacts.Options)) *env {
	t.Helper()
	dir := t.TempDir()
	sqlitetest.Seed(t, dir+"/mote.db")
	st, err := sqlite.Open(dir + "/mote.db")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	bs, err := fsblob.Open(dir + "/blobs")
	if err != nil {
		t.Fatal(err)
	}
	key, err := artifacts.LoadOrCreateURLKey(dir + "/artifact-url.key")
	if err != nil {
		t.Fatal(err)
	}
	signer, _ := artifacts.NewURLSigner(key)
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	o := artifacts.Options{Store: st.Artifacts(), Blobs: bs, Signer: signer, SigningKeys: []artifacts.SigningKey{artifacts.NewSigningKey(pub)}, MaxSize: 1 << 20}
	if mod != nil {
		mod(&o)
	}
	svc, err := artifacts.New(o)
	if err != nil {
		t.Fatal(err)
	}
	return &env{svc: svc, blobs: bs, st: st, priv: priv}
}

func content(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func (e *env) sign(b []byte) string {
	sum := sha256.Sum256(b)
	return base64.StdEncoding.EncodeToString(ed25519.Sign(e.priv, sum[:]))
}

func (e *env) blobCount(t *testing.T) int {
	t.Helper()
	l, err := e.blobs.List(t.Context(), "")
	if err != nil {
		t.Fatal(err)
	}
	return len(l)
}

func TestCreateSigned(t *testing.T) {
	e := newEnv(t, nil)
	b := content(5000)
	sum := sha256.Sum256(b)
	a, err := e.svc.Create(t.Context(), artifacts.Upload{Name: "fw", Version: "1.0.0", SHA256: hex.EncodeToString(sum[:]), Signature: e.sign(b)}, bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if a.Size != 5000 || a.SHA256 != hex.EncodeToString(sum[:]) || a.SigningKey == "" || a.ContentType != "application/octet-stream" {
		t.Fatalf("Create = %+v", a)
	}
	rs, err := e.svc.Open(t.Context(), a, "api")
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	got, err := io.ReadAll(rs)
	if err != nil || !bytes.Equal(got, b) {
		t.Fatalf("read back %d bytes, %v", len(got), err)
	}
	if _, err := e.svc.Create(t.Context(), artifacts.Upload{Name: "fw", Version: "1.0.0"}, bytes.NewReader(b)); core.KindOf(err) != core.KindConflict {
		t.Fatalf("second Create = %v; want conflict", err)
	}
	if n := e.blobCount(t); n != 1 {
		t.Fatalf("%d blobs; want 1", n)
	}
}

// TestRefusedUploadsStoreNothing: a wrong sha256, a signature by another
// key, a tampered body, an unsigned upload where signatures are required
// and a body past the limit all leave no row and no blob.
func TestRefusedUploadsStoreNothing(t *testing.T) {
	e := newEnv(t, nil)
	b := content(3000)
	_, otherPriv, _ := ed25519.GenerateKey(rand.Reader)
	sum := sha256.Sum256(b)
	forged := base64.StdEncoding.EncodeToString(ed25519.Sign(otherPriv, sum[:]))
	tampered := append([]byte{}, b...)
	tampered[7] ^= 1
	cases := []struct {
		name string
		u    artifacts.Upload
		body []byte
		kind core.Kind
	}{
		{"wrong sha256", artifacts.Upload{SHA256: strings.Repeat("ab", 32)}, b, core.KindInvalid},
		{"other key", artifacts.Upload{Signature: forged}, b, core.KindInvalid},
		{"tampered body", artifacts.Upload{Signature: e.sign(b)}, tampered, core.KindInvalid},
		{"garbage signature", artifacts.Upload{Signature: "!!"}, b, core.KindInvalid},
		{"too large", artifacts.Upload{}, content(1<<20 + 1), core.KindTooLarge},
		{"bad name", artifacts.Upload{Name: "a/b"}, b, core.KindInvalid},
		{"bad version", artifacts.Upload{Version: "../x"}, b, core.KindInvalid},
	}
	for _, c := range cases {
		if c.u.Name == "" {
			c.u.Name = "fw"
		}
		if c.u.Version == "" {
			c.u.Version = "1"
		}
		_, err := e.svc.Create(t.Context(), c.u, bytes.NewReader(c.body))
		if core.KindOf(err) != c.kind {
			t.Errorf("%s: Create = %v; want kind %v", c.name, err, c.kind)
		}
	}
	if n := e.blobCount(t); n != 0 {
		t.Fatalf("%d blobs after refused uploads; want 0", n)
	}
	if l, _ := e.st.Artifacts().List(t.Context(), store.ArtifactFilter{}); len(l) != 0 {
		t.Fatalf("rows after refused uploads: %+v", l)
	}

	req := newEnv(t, func(o *artifacts.Options) { o.RequireSignature = true })
	if _, err := req.svc.Create(t.Context(), artifacts.Upload{Name: "fw", Version: "1"}, bytes.NewReader(b)); core.KindOf(err) != core.KindInvalid {
		t.Fatalf("unsigned upload with signatures required = %v; want invalid", err)
	}
	if _, err := req.svc.Create(t.Context(), artifacts.Upload{Name: "fw", Version: "1", Signature: req.sign(b)}, bytes.NewReader(b)); err != nil {
		t.Fatalf("signed upload with signatures required: %v", err)
	}
}

func TestDeleteInUse(t *testing.T) {
	u := inUse{"fw@1": "rollout-7"}
	e := newEnv(t, func(o *artifacts.Options) { o.InUse = u })
	for _, v := range []string{"1", "2"} {
		if _, err := e.svc.Create(t.Context(), artifacts.Upload{Name: "fw", Version: v}, strings.NewReader("x"+v)); err != nil {
			t.Fatal(err)
		}
	}
	err := e.svc.Delete(t.Context(), "fw", "1")
	if core.KindOf(err) != core.KindConflict || !strings.Contains(err.Error(), "rollout-7") {
		t.Fatalf("Delete of an artifact in use = %v; want a conflict naming the job", err)
	}
	if err := e.svc.Delete(t.Context(), "fw", "2"); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.Delete(t.Context(), "fw", "2"); !core.IsNotFound(err) {
		t.Fatalf("second Delete = %v; want not found", err)
	}
	if n := e.blobCount(t); n != 1 {
		t.Fatalf("%d blobs; want 1 (the deleted version's blob is gone)", n)
	}
}

// TestResolve: the link the jobs package puts in a job document (through
// the daemon's adapter, for ${mote:artifact:NAME[:VERSION]}): the newest
// version when none is named, a signed URL that verifies for that version
// only, its SHA-256 and size.
func TestResolve(t *testing.T) {
	e := newEnv(t, func(o *artifacts.Options) { o.URLBase = "https://mote.example"; o.URLTTL = time.Minute })
	a1, _ := e.svc.Create(t.Context(), artifacts.Upload{Name: "fw", Version: "1"}, bytes.NewReader(content(100)))
	a2, _ := e.svc.Create(t.Context(), artifacts.Upload{Name: "fw", Version: "2"}, strings.NewReader("two"))
	l, err := e.svc.Resolve(t.Context(), "fw", "")
	if err != nil {
		t.Fatal(err)
	}
	if l.Version != "2" || l.SHA256 != a2.SHA256 || l.Size != 3 ||
		!strings.HasPrefix(l.URL, "https://mote.example/api/v1/artifacts/fw/2/download?exp=") {
		t.Fatalf("Resolve(fw) = %+v; want fw@2 with its digest, size and signed URL", l)
	}
	old, err := e.svc.Resolve(t.Context(), "fw", "1")
	if err != nil || old.Version != "1" || old.SHA256 != a1.SHA256 || old.Size != 100 {
		t.Fatalf("Resolve(fw, 1) = %+v, %v", old, err)
	}
	// The URL verifies for the version it names and no other.
	q := l.URL[strings.Index(l.URL, "?")+1:]
	exp := strings.TrimPrefix(strings.Split(q, "&")[0], "exp=")
	sig := strings.TrimPrefix(strings.Split(q, "&")[1], "sig=")
	if err := e.svc.VerifyURL("fw", "2", exp, sig); err != nil {
		t.Fatalf("VerifyURL of a fresh link: %v", err)
	}
	if err := e.svc.VerifyURL("fw", "1", exp, sig); core.KindOf(err) != core.KindForbidden {
		t.Fatalf("VerifyURL for another version = %v; want forbidden", err)
	}
	if _, err := e.svc.Resolve(t.Context(), "nope", ""); !core.IsNotFound(err) {
		t.Fatalf("Resolve of a missing artifact = %v; want not found", err)
	}
}

func TestSweepRemovesOrphans(t *testing.T) {
	e := newEnv(t, nil)
	if _, err := e.svc.Create(t.Context(), artifacts.Upload{Name: "fw", Version: "1"}, strings.NewReader("x")); err != nil {
		t.Fatal(err)
	}
	// A blob whose row never got written (a crash between the two).
	if _, err := e.blobs.Put(t.Context(), "artifacts/fw/orphan", strings.NewReader("y"), 0); err != nil {
		t.Fatal(err)
	}
	if n, err := e.svc.Sweep(t.Context(), time.Hour); err != nil || n != 0 {
		t.Fatalf("Sweep within the grace period = %d, %v; want 0", n, err)
	}
	if n, err := e.svc.Sweep(t.Context(), -time.Second); err != nil || n != 1 {
		t.Fatalf("Sweep = %d, %v; want 1", n, err)
	}
	if n := e.blobCount(t); n != 1 {
		t.Fatalf("%d blobs after Sweep; want 1", n)
	}
}
