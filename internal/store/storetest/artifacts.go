package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/store"
)

// testArtifacts checks store.ArtifactStore: round trip, duplicates,
// Latest, List with its cursor, Delete and the firmware counts over
// reported shadows.
func testArtifacts(t *testing.T, open func(t *testing.T) store.Store) {
	s, ctx := open(t), t.Context()
	as := s.Artifacts()
	a := store.Artifact{Name: "fw", Version: "1.0.0", ContentType: "application/octet-stream", Size: 42,
		SHA256: "ab", Signature: "c2ln", SigningKey: "k1", BlobKey: "artifacts/x", CreatedAt: base}
	got, err := as.Create(ctx, a)
	must(t, "Create", err)
	eqTime(t, "CreatedAt", got.CreatedAt, ms(base))
	_, err = as.Create(ctx, a)
	wantKind(t, "Create duplicate", err, core.KindConflict)
	_, err = as.Create(ctx, store.Artifact{Name: "fw", Version: "1.1.0", BlobKey: "artifacts/y", SHA256: "cd", CreatedAt: base.Add(time.Minute)})
	must(t, "Create 1.1.0", err)
	_, err = as.Create(ctx, store.Artifact{Name: "boot", Version: "2", BlobKey: "artifacts/z", SHA256: "ef", CreatedAt: base})
	must(t, "Create boot", err)

	got, err = as.Get(ctx, "fw", "1.0.0")
	must(t, "Get", err)
	eq(t, "Signature", got.Signature, "c2ln")
	eq(t, "SigningKey", got.SigningKey, "k1")
	eq(t, "Size", got.Size, int64(42))
	eq(t, "BlobKey", got.BlobKey, "artifacts/x")
	eq(t, "ContentType", got.ContentType, "application/octet-stream")
	_, err = as.Get(ctx, "fw", "9")
	wantKind(t, "Get missing", err, core.KindNotFound)

	latest, err := as.Latest(ctx, "fw")
	must(t, "Latest", err)
	eq(t, "Latest version", latest.Version, "1.1.0")
	_, err = as.Latest(ctx, "none")
	wantKind(t, "Latest missing", err, core.KindNotFound)

	page, err := as.List(ctx, store.ArtifactFilter{Limit: 2})
	must(t, "List", err)
	if len(page) != 2 || page[0].Name != "boot" || page[1].Version != "1.0.0" {
		t.Fatalf("List page 1 = %+v; want boot@2, fw@1.0.0", page)
	}
	page, err = as.List(ctx, store.ArtifactFilter{Limit: 2, After: store.ArtifactCursor(page[1])})
	must(t, "List page 2", err)
	if len(page) != 1 || page[0].Version != "1.1.0" {
		t.Fatalf("List page 2 = %+v; want fw@1.1.0", page)
	}
	page, err = as.List(ctx, store.ArtifactFilter{Name: "fw"})
	must(t, "List fw", err)
	eq(t, "List fw len", len(page), 2)

	must(t, "Delete", as.Delete(ctx, "fw", "1.0.0"))
	wantKind(t, "Delete again", as.Delete(ctx, "fw", "1.0.0"), core.KindNotFound)

	// Firmware distribution over the classic shadows' reported state.
	for _, th := range []string{"a", "b", "c", "d", "e"} {
		_, err := s.Things().Create(ctx, store.Thing{Name: th})
		must(t, "Create thing", err)
	}
	_, err = s.Shadows().Write(ctx, []store.ShadowWrite{
		{Thing: "a", Version: 1, Document: []byte(`{"state":{"reported":{"firmware":"1.1.0"}}}`)},
		{Thing: "b", Version: 1, Document: []byte(`{"state":{"reported":{"firmware":"1.1.0"}}}`)},
		{Thing: "c", Version: 1, Document: []byte(`{"state":{"reported":{"firmware":"1.0.0"}}}`)},
		{Thing: "d", Version: 1, Document: []byte(`{"state":{"reported":{"firmware":{"x":1}}}}`)},
		{Thing: "e", Name: "other", Version: 1, Document: []byte(`{"state":{"reported":{"firmware":"9"}}}`)},
	})
	must(t, "Write shadows", err)
	counts, err := as.FirmwareCounts(ctx, "firmware")
	must(t, "FirmwareCounts", err)
	want := []store.FirmwareCount{{Version: "", Things: 2}, {Version: "1.1.0", Things: 2}, {Version: "1.0.0", Things: 1}}
	if fmt.Sprint(counts) != fmt.Sprint(want) {
		t.Errorf("FirmwareCounts = %v; want %v", counts, want)
	}
}

// testFiles checks store.FileStore: the thing must exist, upsert keeps
// CreatedAt, Usage, Delete and the cascade from things.
func testFiles(t *testing.T, open func(t *testing.T) store.Store) {
	s, ctx := open(t), t.Context()
	fs := s.Files()
	_, err := fs.Put(ctx, store.File{Thing: "ghost", Name: "log.txt"})
	wantKind(t, "Put for a missing thing", err, core.KindNotFound)
	_, err = s.Things().Create(ctx, store.Thing{Name: "dev"})
	must(t, "Create thing", err)
	_, err = s.Things().Create(ctx, store.Thing{Name: "other"})
	must(t, "Create thing", err)

	f := store.File{Thing: "dev", Name: "log.txt", ContentType: "text/plain", UploadID: "u1", Received: 100, Total: -1, Parts: 1, CreatedAt: base}
	got, err := fs.Put(ctx, f)
	must(t, "Put", err)
	eqTime(t, "CreatedAt", got.CreatedAt, ms(base))
	eq(t, "Total", got.Total, int64(-1))
	eq(t, "Complete", got.Complete, false)
	f.UploadID, f.Received, f.Total, f.Parts = "", 0, 0, 0
	f.Complete, f.Size, f.SHA256, f.BlobKey, f.CreatedAt = true, 300, "ff", "files/dev/x", time.Time{}
	got, err = fs.Put(ctx, f)
	must(t, "Put complete", err)
	eqTime(t, "CreatedAt kept", got.CreatedAt, ms(base))
	eq(t, "Complete", got.Complete, true)
	eq(t, "SHA256", got.SHA256, "ff")
	eq(t, "UploadID", got.UploadID, "")
	_, err = fs.Put(ctx, store.File{Thing: "dev", Name: "b.bin", Received: 50, Total: 70, UploadID: "u2"})
	must(t, "Put b", err)
	_, err = fs.Put(ctx, store.File{Thing: "other", Name: "log.txt", Size: 1000, Complete: true})
	must(t, "Put other", err)

	n, err := fs.Usage(ctx, "dev")
	must(t, "Usage", err)
	eq(t, "Usage", n, int64(350))
	list, err := fs.List(ctx, "dev")
	must(t, "List", err)
	if len(list) != 2 || list[0].Name != "b.bin" || list[1].Name != "log.txt" {
		t.Fatalf("List = %+v; want b.bin, log.txt", list)
	}
	_, err = fs.Get(ctx, "dev", "nope")
	wantKind(t, "Get missing", err, core.KindNotFound)
	_, err = fs.Get(ctx, "other", "b.bin")
	wantKind(t, "Get another thing's file", err, core.KindNotFound)

	must(t, "Delete", fs.Delete(ctx, "dev", "b.bin"))
	wantKind(t, "Delete again", fs.Delete(ctx, "dev", "b.bin"), core.KindNotFound)
	must(t, "Delete thing", s.Things().Delete(ctx, "dev"))
	list, err = fs.List(ctx, "dev")
	must(t, "List after thing deleted", err)
	eq(t, "files of a deleted thing", len(list), 0)
	n, _ = fs.Usage(ctx, "other")
	eq(t, "Usage other", n, int64(1000))
}
