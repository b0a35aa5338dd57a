package postgres

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/pgtest"
	"github.com/moteiot/mote/internal/store"
	"github.com/moteiot/mote/internal/store/storetest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

func open(t testing.TB, url string) *Store {
	t.Helper()
	return pgtest.Open(t, url, func(ctx context.Context, url string) (*Store, error) {
		return Open(ctx, url, Options{MaxConns: 8})
	})
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return open(t, pgtest.DB(t)) })
}

// TestMigrateOnce opens the store from three goroutines at once on a fresh
// database: all must succeed and, between them, apply every migration
// exactly once (the advisory lock serializes them). Without the lock the
// losers fail on a table that already exists or a duplicate version row.
func TestMigrateOnce(t *testing.T) {
	url := pgtest.DB(t)
	const nodes = 3
	var (
		wg     sync.WaitGroup
		stores [nodes]*Store
		errs   [nodes]error
		start  = make(chan struct{})
	)
	for i := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			stores[i], errs[i] = Open(ctx, url, Options{MaxConns: 2})
		}()
	}
	close(start)
	wg.Wait()
	total := 0
	for i := range nodes {
		if errs[i] != nil {
			t.Fatalf("node %d: Open: %v", i, errs[i])
		}
		defer stores[i].Close()
		total += stores[i].Migrated
	}
	if want := SchemaVersion(); total != want {
		t.Errorf("the three nodes applied %d migrations between them; want %d (each once)", total, want)
	}
	var rows, version int
	if err := stores[0].Pool().QueryRow(context.Background(),
		`SELECT count(*), max(version) FROM schema_migrations`).Scan(&rows, &version); err != nil {
		t.Fatal(err)
	}
	if rows != SchemaVersion() || version != SchemaVersion() {
		t.Errorf("schema_migrations has %d rows up to version %d; want %d", rows, version, SchemaVersion())
	}
}

// TestSchemaTooNew: a database migrated by a newer Mote is refused.
func TestSchemaTooNew(t *testing.T) {
	url := pgtest.DB(t)
	s := open(t, url)
	if _, err := s.Pool().Exec(context.Background(),
		`INSERT INTO schema_migrations (version, name) VALUES ($1, 'future.sql')`, SchemaVersion()+1); err != nil {
		t.Fatal(err)
	}
	_, err := Open(context.Background(), url, Options{})
	if !errors.Is(err, ErrSchemaTooNew) {
		t.Fatalf("Open of a newer schema: got %v; want ErrSchemaTooNew", err)
	}
}

// TestReopen: what was written is there after the store is closed and
// opened again, and the second Open migrates nothing.
func TestReopen(t *testing.T) {
	ctx := context.Background()
	url := pgtest.DB(t)
	s := open(t, url)
	if _, err := s.Things().Create(ctx, store.Thing{Name: "dev", Enabled: true, Tags: []string{"a"}}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s2 := open(t, url)
	if s2.Migrated != 0 {
		t.Errorf("second Open applied %d migrations; want 0", s2.Migrated)
	}
	th, err := s2.Things().Get(ctx, "dev")
	if err != nil {
		t.Fatalf("Get after reopen: %v", err)
	}
	if len(th.Tags) != 1 || th.Tags[0] != "a" {
		t.Errorf("tags after reopen = %v; want [a]", th.Tags)
	}
}

// TestNULIsInvalid: PostgreSQL text cannot hold a NUL byte; a value with
// one is refused as invalid (a 400 at the API), not an internal error.
func TestNULIsInvalid(t *testing.T) {
	s := open(t, pgtest.DB(t))
	_, err := s.Things().Create(context.Background(), store.Thing{Name: "dev", Attributes: map[string]string{"k": "a\x00b"}})
	if core.KindOf(err) != core.KindInvalid {
		t.Fatalf("Create with a NUL in an attribute: got %v (kind %s); want kind invalid", err, core.KindOf(err))
	}
}

// TestThingSortsUseIndexes: every sort of the things list, first page and
// next page (keyset cursor), in both directions, is an index scan that
// needs no sort step (migration 0002's things_last_seen and
// things_created; the primary key for names). With sorts and sequential
// scans discouraged the planner picks an index when one matches the ORDER
// BY; an index whose expression differs from List's shows up as a Sort.
func TestThingSortsUseIndexes(t *testing.T) {
	ctx := context.Background()
	s := open(t, pgtest.DB(t))
	conn, err := s.Pool().Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `SET enable_seqscan = off; SET enable_sort = off`); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"name": "things_pkey", "lastSeen": "things_last_seen", "createdAt": "things_created"}
	seen := time.Date(2026, 1, 2, 3, 4, 5, 6e6, time.UTC)
	for _, sort := range store.ThingSorts {
		for _, after := range []string{"", store.ThingCursor(sort, store.Thing{Name: "dev", LastSeen: &seen, CreatedAt: seen})} {
			q, a, err := listThingsQuery(store.ThingFilter{Sort: sort, After: after})
			if err != nil {
				t.Fatalf("listThingsQuery sort=%s: %v", sort, err)
			}
			var plan strings.Builder
			rows, err := conn.Query(ctx, `EXPLAIN `+q, a...)
			if err != nil {
				t.Fatalf("EXPLAIN sort=%s after=%q: %v", sort, after, err)
			}
			for rows.Next() {
				var line string
				if err := rows.Scan(&line); err != nil {
					t.Fatal(err)
				}
				plan.WriteString(line + "\n")
			}
			if err := rows.Err(); err != nil {
				t.Fatal(err)
			}
			idx := want[strings.TrimPrefix(sort, "-")]
			// The outer plan; the stats subqueries have their own scans.
			top, _, _ := strings.Cut(plan.String(), "SubPlan")
			if !strings.Contains(top, "Index Scan") || !strings.Contains(top, idx) || strings.Contains(top, "Sort") {
				t.Errorf("sort=%s after=%q: plan is not an index scan of %s without a sort:\n%s", sort, after, idx, plan.String())
			}
		}
	}
}
