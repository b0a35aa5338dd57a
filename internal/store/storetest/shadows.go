package storetest

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/store"
)

// testShadows checks store.ShadowStore: round trips of documents,
// tombstones that keep the version, batches with skipped writes, List,
// the cascade from things, and concurrent batches.
func testShadows(t *testing.T, open func(t *testing.T) store.Store) {
	t.Run("RoundTrip", func(t *testing.T) {
		s, ctx := open(t), t.Context()
		_, err := s.Things().Create(ctx, store.Thing{Name: "dev"})
		must(t, "Create thing", err)
		sh := s.Shadows()

		_, err = sh.Get(ctx, "dev", "")
		wantKind(t, "Get of a missing classic shadow", err, core.KindNotFound)
		if err != nil {
			eq(t, "message", err.Error(), `classic shadow of thing "dev" not found`)
		}
		_, err = sh.Get(ctx, "dev", "cfg")
		wantKind(t, "Get of a missing named shadow", err, core.KindNotFound)
		if err != nil {
			eq(t, "message", err.Error(), `shadow "cfg" of thing "dev" not found`)
		}

		doc := []byte(`{"state":{"desired":{"on":true}},"version":3}`)
		skipped, err := sh.Write(ctx, []store.ShadowWrite{
			{Thing: "dev", Name: "", Version: 3, Document: doc, At: base},
			{Thing: "dev", Name: "cfg", Version: 1, Document: []byte(`{"a":1}`), At: base.Add(time.Second)},
		})
		must(t, "Write", err)
		if len(skipped) != 0 {
			t.Errorf("Write: skipped %v; want none", skipped)
		}
		got, err := sh.Get(ctx, "dev", "")
		must(t, "Get classic", err)
		eq(t, "Thing", got.Thing, "dev")
		eq(t, "Name", got.Name, "")
		eq(t, "Version", got.Version, int64(3))
		eq(t, "Deleted", got.Deleted, false)
		eqJSON(t, "Document", got.Document, doc)
		eqTime(t, "UpdatedAt", got.UpdatedAt, ms(base))

		// Overwrite.
		_, err = sh.Write(ctx, []store.ShadowWrite{{Thing: "dev", Name: "", Version: 4, Document: []byte(`{"v":4}`)}})
		must(t, "Write v4", err)
		w := startWindow()
		got, err = sh.Get(ctx, "dev", "")
		must(t, "Get classic v4", err)
		eq(t, "Version", got.Version, int64(4))
		eqJSON(t, "Document", got.Document, []byte(`{"v":4}`))
		if got.UpdatedAt.After(w.end().to) {
			t.Errorf("UpdatedAt %v is in the future", got.UpdatedAt)
		}

		list, err := sh.List(ctx, "dev")
		must(t, "List", err)
		names := make([]string, len(list))
		for i, si := range list {
			names[i] = si.Name
		}
		eqList(t, "List names", names, []string{"", "cfg"})
		eq(t, "List[0].Version", list[0].Version, int64(4))
		eq(t, "List[1].Version", list[1].Version, int64(1))
		eqTime(t, "List[1].UpdatedAt", list[1].UpdatedAt, ms(base.Add(time.Second)))

		list, err = sh.List(ctx, "nobody")
		must(t, "List of an unknown thing", err)
		if list == nil || len(list) != 0 {
			t.Errorf("List of an unknown thing: got %v; want an empty, non-nil list", list)
		}
	})

	t.Run("Tombstone", func(t *testing.T) {
		s, ctx := open(t), t.Context()
		_, err := s.Things().Create(ctx, store.Thing{Name: "dev"})
		must(t, "Create thing", err)
		sh := s.Shadows()
		_, err = sh.Write(ctx, []store.ShadowWrite{{Thing: "dev", Name: "cfg", Version: 7, Document: []byte(`{}`)}})
		must(t, "Write", err)
		_, err = sh.Write(ctx, []store.ShadowWrite{{Thing: "dev", Name: "cfg", Version: 7, Deleted: true}})
		must(t, "Write deletion", err)
		got, err := sh.Get(ctx, "dev", "cfg")
		wantKind(t, "Get of a deleted shadow", err, core.KindNotFound)
		eq(t, "Deleted", got.Deleted, true)
		eq(t, "Version kept", got.Version, int64(7))
		if got.Document != nil {
			t.Errorf("Document of a tombstone: got %q; want nil", got.Document)
		}
		list, err := sh.List(ctx, "dev")
		must(t, "List", err)
		if len(list) != 0 {
			t.Errorf("List: got %v; want no live shadows", list)
		}
		// Re-created, it continues.
		_, err = sh.Write(ctx, []store.ShadowWrite{{Thing: "dev", Name: "cfg", Version: 8, Document: []byte(`{"x":1}`)}})
		must(t, "Write again", err)
		got, err = sh.Get(ctx, "dev", "cfg")
		must(t, "Get re-created", err)
		eq(t, "Version", got.Version, int64(8))
		eq(t, "Deleted", got.Deleted, false)
	})

	t.Run("Batch", func(t *testing.T) {
		s, ctx := open(t), t.Context()
		for _, n := range []string{"a", "b"} {
			_, err := s.Things().Create(ctx, store.Thing{Name: n})
			must(t, "Create thing "+n, err)
		}
		sh := s.Shadows()
		skipped, err := sh.Write(ctx, []store.ShadowWrite{
			{Thing: "a", Version: 1, Document: []byte(`{"n":1}`)},
			{Thing: "ghost", Version: 1, Document: []byte(`{"n":1}`)},
			{Thing: "b", Name: "x", Version: 1, Document: []byte(`{"n":1}`)},
			{Thing: "a", Version: 2, Document: []byte(`{"n":2}`)}, // later entries win
			{Thing: "ghost2", Version: 1, Deleted: true},
		})
		must(t, "Write", err)
		if !slices.Equal(skipped, []int{1, 4}) {
			t.Errorf("skipped: got %v; want [1 4]", skipped)
		}
		got, err := sh.Get(ctx, "a", "")
		must(t, "Get a", err)
		eq(t, "a.Version", got.Version, int64(2))
		eqJSON(t, "a.Document", got.Document, []byte(`{"n":2}`))
		_, err = sh.Get(ctx, "b", "x")
		must(t, "Get b/x", err)
		_, err = sh.Get(ctx, "ghost", "")
		wantKind(t, "Get ghost", err, core.KindNotFound)

		skipped, err = sh.Write(ctx, nil)
		must(t, "Write of an empty batch", err)
		if len(skipped) != 0 {
			t.Errorf("empty batch: skipped %v", skipped)
		}
		_, err = sh.Write(ctx, []store.ShadowWrite{{Thing: "a", Version: 3}})
		wantKind(t, "Write without a document", err, core.KindInvalid)
		_, err = sh.Write(ctx, []store.ShadowWrite{{Thing: "", Version: 3, Document: []byte(`{}`)}})
		wantKind(t, "Write without a thing", err, core.KindInvalid)
		got, err = sh.Get(ctx, "a", "")
		must(t, "Get a after refused batches", err)
		eq(t, "a.Version after refused batches", got.Version, int64(2))
	})

	t.Run("CascadeFromThing", func(t *testing.T) {
		s, ctx := open(t), t.Context()
		_, err := s.Things().Create(ctx, store.Thing{Name: "dev"})
		must(t, "Create thing", err)
		sh := s.Shadows()
		_, err = sh.Write(ctx, []store.ShadowWrite{
			{Thing: "dev", Version: 5, Document: []byte(`{}`)},
			{Thing: "dev", Name: "gone", Version: 2, Deleted: true},
		})
		must(t, "Write", err)
		must(t, "Delete thing", s.Things().Delete(ctx, "dev"))
		_, err = s.Things().Create(ctx, store.Thing{Name: "dev"})
		must(t, "Create thing again", err)
		got, err := sh.Get(ctx, "dev", "")
		wantKind(t, "Get after the thing was deleted", err, core.KindNotFound)
		eq(t, "Deleted", got.Deleted, false) // no tombstone either: it went with the thing
		got, err = sh.Get(ctx, "dev", "gone")
		wantKind(t, "Get tombstone after the thing was deleted", err, core.KindNotFound)
		eq(t, "tombstone Version", got.Version, int64(0))
	})

	t.Run("Concurrent", func(t *testing.T) {
		s, ctx := open(t), t.Context()
		const writers, rounds = 8, 20
		for i := range writers {
			_, err := s.Things().Create(ctx, store.Thing{Name: fmt.Sprintf("t%d", i)})
			must(t, "Create thing", err)
		}
		var wg sync.WaitGroup
		errs := make(chan error, writers*rounds)
		for i := range writers {
			wg.Go(func() {
				for r := 1; r <= rounds; r++ {
					_, err := s.Shadows().Write(ctx, []store.ShadowWrite{
						{Thing: fmt.Sprintf("t%d", i), Version: int64(r), Document: fmt.Appendf(nil, `{"r":%d}`, r)},
						{Thing: fmt.Sprintf("t%d", i), Name: "n", Version: int64(r), Document: fmt.Appendf(nil, `{"r":%d}`, r)},
					})
					if err != nil {
						errs <- err
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Errorf("concurrent Write: %v", err)
		}
		for i := range writers {
			for _, name := range []string{"", "n"} {
				got, err := s.Shadows().Get(ctx, fmt.Sprintf("t%d", i), name)
				must(t, "Get", err)
				eq(t, "Version", got.Version, int64(rounds))
			}
		}
	})
}
