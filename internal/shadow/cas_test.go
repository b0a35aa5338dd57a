package shadow_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"

	"github.com/moteiot/mote/internal/shadow"
)

// TestTwoServicesNeverFork: two shadow services on one store stand for two
// cluster nodes, each with its own cached copy and no relay telling it
// of the other's changes. Updates alternating between them, then
// concurrent ones, give versions 1..N without gaps or repeats and a
// document with every field: a stale cache loses the store's
// compare-and-set and the update runs again on a fresh read.
func TestTwoServicesNeverFork(t *testing.T) {
	st := openStore(t, "d")
	log := slog.New(slog.DiscardHandler)
	a := shadow.New(shadow.Options{Store: st.Shadows(), Logger: log})
	defer a.Close()
	b := shadow.New(shadow.Options{Store: st.Shadows(), Logger: log})
	defer b.Close()
	ctx := context.Background()
	nodes := []*shadow.Service{a, b}

	var (
		mu       sync.Mutex
		versions []int64
	)
	update := func(s *shadow.Service, field string) error {
		body, err := s.Update(ctx, "d", "", fmt.Appendf(nil, `{"state":{"reported":{%q:1}}}`, field))
		if err != nil {
			return fmt.Errorf("update %s: %w", field, err)
		}
		var r struct {
			Version int64 `json:"version"`
		}
		if err := json.Unmarshal(body, &r); err != nil {
			return err
		}
		mu.Lock()
		versions = append(versions, r.Version)
		mu.Unlock()
		return nil
	}
	const sequential, concurrent = 6, 24
	for i := range sequential {
		if err := update(nodes[i%2], fmt.Sprintf("s%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, concurrent)
	for i := range concurrent {
		wg.Go(func() {
			if err := update(nodes[i%2], fmt.Sprintf("c%d", i)); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	slices.Sort(versions)
	for i, v := range versions {
		if v != int64(i+1) {
			t.Fatalf("accepted versions %v; want 1..%d, each once", versions, sequential+concurrent)
		}
	}
	stored, err := st.Shadows().Get(ctx, "d", "")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		State struct {
			Reported map[string]int `json:"reported"`
		} `json:"state"`
	}
	if err := json.Unmarshal(stored.Document, &doc); err != nil {
		t.Fatal(err)
	}
	if stored.Version != sequential+concurrent || len(doc.State.Reported) != sequential+concurrent {
		t.Errorf("stored version %d with %d fields; want %d and %d: %s", stored.Version, len(doc.State.Reported),
			sequential+concurrent, sequential+concurrent, stored.Document)
	}
	// Alternating between stale caches must have lost the compare-and-set,
	// or this test proved nothing.
	if a.Conflicts()+b.Conflicts() == 0 {
		t.Error("no write conflicted: the stale caches were never caught")
	}
}

// TestSharedServiceRereadsStaleCopy: node B changes a shadow node A has
// cached and A never hears of it (B died before relaying its answer). A
// shared service (cluster mode) reads the store again for a get, for a
// versioned update whose version is not its cached one, and for a delete;
// a service that is not shared, with the same stale copy, answers from it
// — which is what makes this test able to fail.
func TestSharedServiceRereadsStaleCopy(t *testing.T) {
	st := openStore(t, "d")
	log := slog.New(slog.DiscardHandler)
	ctx := context.Background()
	a := shadow.New(shadow.Options{Store: st.Shadows(), Logger: log, Shared: true})
	defer a.Close()
	alone := shadow.New(shadow.Options{Store: st.Shadows(), Logger: log})
	defer alone.Close()
	b := shadow.New(shadow.Options{Store: st.Shadows(), Logger: log})
	defer b.Close()
	version := func(body []byte) int64 {
		t.Helper()
		var r struct {
			Version int64 `json:"version"`
		}
		if err := json.Unmarshal(body, &r); err != nil {
			t.Fatal(err)
		}
		return r.Version
	}
	mustUpdate := func(s *shadow.Service, doc string) int64 {
		t.Helper()
		body, err := s.Update(ctx, "d", "", []byte(doc))
		if err != nil {
			t.Fatalf("update %s: %v", doc, err)
		}
		return version(body)
	}
	mustUpdate(a, `{"state":{"reported":{"x":1}}}`)
	if _, err := alone.Get(ctx, "d", ""); err != nil { // both cache version 1
		t.Fatal(err)
	}
	mustUpdate(b, `{"state":{"reported":{"x":2}}}`)
	mustUpdate(b, `{"state":{"reported":{"x":3}}}`)

	stale, err := alone.Get(ctx, "d", "")
	if err != nil {
		t.Fatal(err)
	}
	if v := version(stale); v != 1 {
		t.Fatalf("the unshared service's get = version %d; want its stale 1 (else this test proves nothing)", v)
	}
	if _, err := alone.Update(ctx, "d", "", []byte(`{"state":{"reported":{"x":4}},"version":3}`)); err != shadow.ErrVersionConflict {
		t.Fatalf("the unshared service's update at the stored version = %v; want its stale 409", err)
	}

	got, err := a.Get(ctx, "d", "")
	if err != nil {
		t.Fatal(err)
	}
	if v := version(got); v != 3 || !json.Valid(got) {
		t.Fatalf("shared get = version %d; want 3, the store's", v)
	}
	mustUpdate(b, `{"state":{"reported":{"x":4}}}`) // version 4, A not told
	if v := mustUpdate(a, `{"state":{"reported":{"x":5}},"version":4}`); v != 5 {
		t.Fatalf("shared update at the stored version 4 = version %d; want 5", v)
	}
	if _, err := a.Update(ctx, "d", "", []byte(`{"state":{"reported":{"x":6}},"version":4}`)); err != shadow.ErrVersionConflict {
		t.Fatalf("shared update at an old version = %v; want 409", err)
	}
	// B deletes it; A's delete is a 404 from the store, not a second delete.
	if _, err := b.Delete(ctx, "d", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Delete(ctx, "d", ""); err == nil {
		t.Fatal("shared delete of a shadow another service deleted succeeded; want 404")
	}
}
