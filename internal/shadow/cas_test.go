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
