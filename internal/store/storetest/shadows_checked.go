package storetest

import (
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/moteiot/mote/internal/store"
)

// testShadowsChecked checks ShadowStore.WriteChecked, the compare-and-set
// that keeps the nodes of a cluster from forking a shadow's versions.
func testShadowsChecked(t *testing.T, open func(t *testing.T) store.Store) {
	t.Run("CompareAndSet", func(t *testing.T) {
		s, ctx := open(t), t.Context()
		_, err := s.Things().Create(ctx, store.Thing{Name: "dev"})
		must(t, "Create thing", err)
		sh := s.Shadows()
		doc := func(v int) []byte { return fmt.Appendf(nil, `{"v":%d}`, v) }

		// A new shadow: expected absent (version 0, deleted).
		skipped, conflicts, err := sh.WriteChecked(ctx, []store.ShadowWrite{
			{Thing: "dev", Version: 1, Document: doc(1), Checked: true, IfVersion: 0, IfDeleted: true},
		})
		must(t, "WriteChecked create", err)
		eq(t, "skipped", len(skipped), 0)
		eq(t, "conflicts", len(conflicts), 0)

		// Another writer that read the same absent shadow loses.
		skipped, conflicts, err = sh.WriteChecked(ctx, []store.ShadowWrite{
			{Thing: "dev", Version: 1, Document: doc(99), Checked: true, IfVersion: 0, IfDeleted: true},
		})
		must(t, "WriteChecked second create", err)
		eq(t, "skipped", len(skipped), 0)
		eq(t, "conflicts", fmt.Sprint(conflicts), "[0]")

		// A batch: 1→2 applies, a stale 1→2 of the same shadow conflicts,
		// and so does the write computed from it (2→3 expects version 2,
		// which does hold now, but it was built on the stale write);
		// another shadow's write and a missing thing's are independent.
		skipped, conflicts, err = sh.WriteChecked(ctx, []store.ShadowWrite{
			{Thing: "dev", Version: 2, Document: doc(2), Checked: true, IfVersion: 1},
			{Thing: "dev", Version: 2, Document: doc(-2), Checked: true, IfVersion: 1},
			{Thing: "dev", Version: 3, Document: doc(-3), Checked: true, IfVersion: 2},
			{Thing: "dev", Name: "cfg", Version: 1, Document: doc(1), Checked: true, IfDeleted: true},
			{Thing: "nobody", Version: 1, Document: doc(1), Checked: true, IfDeleted: true},
		})
		must(t, "WriteChecked batch", err)
		eq(t, "skipped", fmt.Sprint(skipped), "[4]")
		eq(t, "conflicts", fmt.Sprint(conflicts), "[1 2]")
		got, err := sh.Get(ctx, "dev", "")
		must(t, "Get", err)
		eq(t, "Version", got.Version, int64(2))
		eqJSON(t, "Document", got.Document, doc(2))
		got, err = sh.Get(ctx, "dev", "cfg")
		must(t, "Get cfg", err)
		eq(t, "cfg Version", got.Version, int64(1))

		// Deletion expects a live shadow; a second deletion of the same
		// version conflicts with the tombstone.
		del := store.ShadowWrite{Thing: "dev", Version: 2, Deleted: true, Checked: true, IfVersion: 2}
		_, conflicts, err = sh.WriteChecked(ctx, []store.ShadowWrite{del})
		must(t, "WriteChecked delete", err)
		eq(t, "conflicts", len(conflicts), 0)
		_, conflicts, err = sh.WriteChecked(ctx, []store.ShadowWrite{del})
		must(t, "WriteChecked delete again", err)
		eq(t, "conflicts", fmt.Sprint(conflicts), "[0]")
		// Created again from the tombstone.
		_, conflicts, err = sh.WriteChecked(ctx, []store.ShadowWrite{
			{Thing: "dev", Version: 3, Document: doc(3), Checked: true, IfVersion: 2, IfDeleted: true},
		})
		must(t, "WriteChecked from the tombstone", err)
		eq(t, "conflicts", len(conflicts), 0)

		// Unchecked writes never conflict.
		skipped, conflicts, err = sh.WriteChecked(ctx, []store.ShadowWrite{{Thing: "dev", Version: 9, Document: doc(9)}})
		must(t, "WriteChecked unchecked", err)
		eq(t, "skipped", len(skipped), 0)
		eq(t, "conflicts", len(conflicts), 0)
		got, err = sh.Get(ctx, "dev", "")
		must(t, "Get", err)
		eq(t, "Version", got.Version, int64(9))
	})

	t.Run("ConcurrentWritersNeverFork", func(t *testing.T) {
		// Writers that each read, then write version+1 with a check and
		// retry on conflict, give one version sequence with no gaps or
		// repeats: every write is applied exactly once.
		s, ctx := open(t), t.Context()
		_, err := s.Things().Create(ctx, store.Thing{Name: "dev"})
		must(t, "Create thing", err)
		const writers, rounds = 4, 10
		var (
			wg      sync.WaitGroup
			mu      sync.Mutex
			applied []int64
			retries int
		)
		errs := make(chan error, writers)
		for range writers {
			wg.Go(func() {
				for range rounds {
					for {
						cur, err := s.Shadows().Get(ctx, "dev", "")
						if err != nil && !cur.Deleted && cur.Version != 0 {
							errs <- err
							return
						}
						w := store.ShadowWrite{Thing: "dev", Version: cur.Version + 1, Document: fmt.Appendf(nil, `{"v":%d}`, cur.Version+1),
							Checked: true, IfVersion: cur.Version, IfDeleted: err != nil}
						_, conflicts, err := s.Shadows().WriteChecked(ctx, []store.ShadowWrite{w})
						if err != nil {
							errs <- err
							return
						}
						mu.Lock()
						if len(conflicts) == 0 {
							applied = append(applied, w.Version)
							mu.Unlock()
							break
						}
						retries++
						mu.Unlock()
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("writer: %v", err)
		}
		slices.Sort(applied)
		for i, v := range applied {
			if v != int64(i+1) {
				t.Fatalf("applied versions %v; want 1..%d without gaps or repeats", applied, writers*rounds)
			}
		}
		eq(t, "writes applied", len(applied), writers*rounds)
		got, err := s.Shadows().Get(ctx, "dev", "")
		must(t, "Get", err)
		eq(t, "final Version", got.Version, int64(writers*rounds))
		t.Logf("%d conflicts retried", retries)
	})
}
