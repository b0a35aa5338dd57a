package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/store"
	"github.com/moteiot/mote/internal/store/storetest"
)

func openTemp(t testing.TB) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "mote.db"))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return openTemp(t) })
}

// migrations returns the rows of schema_migrations.
func migrations(t *testing.T, db *sql.DB) map[int]int64 {
	t.Helper()
	rows, err := db.Query(`SELECT version, applied_at FROM schema_migrations`)
	if err != nil {
		t.Fatalf("read schema_migrations: %v", err)
	}
	defer rows.Close()
	m := map[int]int64{}
	for rows.Next() {
		var v int
		var at int64
		if err := rows.Scan(&v, &at); err != nil {
			t.Fatal(err)
		}
		m[v] = at
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "mote.db")
	s, err := Open(path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if _, err := s.Policies().Create(ctx, store.Policy{Name: "p", Document: []byte(`{"a":1}`), Builtin: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Types().Create(ctx, store.ThingType{Name: "sensor", Policies: []string{"p"}}); err != nil {
		t.Fatal(err)
	}
	want, err := s.Things().Create(ctx, store.Thing{Name: "dev", Type: "sensor", Policies: []string{"p"},
		Attributes: map[string]string{"k": "v"}, Tags: []string{"t"}, Enabled: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Credentials().Create(ctx, store.Credential{ID: "c", Thing: "dev", Type: store.CredentialSecret, SecretHash: []byte("hash")}); err != nil {
		t.Fatal(err)
	}
	before := migrations(t, s.w)
	if len(before) != SchemaVersion() {
		t.Errorf("schema_migrations after first Open: got %d rows; want %d", len(before), SchemaVersion())
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: got %v; want nil", err)
	}
	// The checkpoint on Close leaves no write-ahead log behind.
	if fi, err := os.Stat(path + "-wal"); err == nil && fi.Size() > 0 {
		t.Errorf("after Close: %s-wal has %d bytes; want it empty or gone", path, fi.Size())
	}

	// Wait for the millisecond clock to pass every applied_at, so that a
	// migration applied again on reopen would get a different one.
	var latest int64
	for _, at := range before {
		latest = max(latest, at)
	}
	for deadline := time.Now().Add(5 * time.Second); time.Now().UnixMilli() <= latest; {
		if time.Now().After(deadline) {
			t.Fatalf("clock did not pass applied_at %d within 5s", latest)
		}
		runtime.Gosched()
	}
	s, err = Open(path)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer s.Close()
	got, err := s.Things().Get(ctx, "dev")
	if err != nil {
		t.Fatalf("Get after reopen: %v", err)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Get after reopen: got %+v; want %+v", got, want)
	}
	if c, err := s.Credentials().FindSecret(ctx, []byte("hash")); err != nil || c.ID != "c" {
		t.Errorf("FindSecret after reopen: got %+v, %v; want credential c", c, err)
	}
	if p, err := s.Policies().Get(ctx, "p"); err != nil || !p.Builtin {
		t.Errorf("Get policy after reopen: got %+v, %v; want builtin policy p", p, err)
	}
	after := migrations(t, s.w)
	if fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("schema_migrations after reopen: got %v; want %v unchanged (no migration re-applied)", after, before)
	}
}

func TestFutureSchemaRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mote.db")
	s, err := Open(path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	future := SchemaVersion() + 1
	if _, err := s.w.Exec(`INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)`, future, time.Now().UnixMilli()); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s, err = Open(path)
	if err == nil {
		s.Close()
		t.Fatalf("Open of a database with schema version %d: got no error; want ErrSchemaTooNew", future)
	}
	if !errors.Is(err, ErrSchemaTooNew) {
		t.Errorf("Open: got %v; want an error wrapping ErrSchemaTooNew", err)
	}
	for _, want := range []string{"newer", fmt.Sprint(future), fmt.Sprint(SchemaVersion()), path} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Open: error %q does not mention %q", err, want)
		}
	}
}

func TestMigrationsWellFormed(t *testing.T) {
	ms, err := schema.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) == 0 || SchemaVersion() != len(ms) {
		t.Fatalf("got %d migrations, SchemaVersion %d", len(ms), SchemaVersion())
	}
}

func TestOpenErrors(t *testing.T) {
	if _, err := Open(""); err == nil {
		t.Error(`Open(""): got no error`)
	}
	if _, err := Open(filepath.Join(t.TempDir(), "missing-dir", "mote.db")); err == nil {
		t.Error("Open in a missing directory: got no error")
	}
}

func TestPragmas(t *testing.T) {
	s := openTemp(t)
	for _, tc := range []struct {
		db     *sql.DB
		name   string
		pragma string
		want   string
	}{
		{s.w, "writer", "journal_mode", "wal"},
		{s.w, "writer", "foreign_keys", "1"},
		{s.w, "writer", "synchronous", "2"}, // FULL
		{s.w, "writer", "busy_timeout", "10000"},
		{s.r, "reader", "query_only", "1"},
		{s.r, "reader", "busy_timeout", "10000"},
	} {
		var got string
		if err := tc.db.QueryRow("PRAGMA " + tc.pragma).Scan(&got); err != nil {
			t.Errorf("%s PRAGMA %s: %v", tc.name, tc.pragma, err)
			continue
		}
		if got != tc.want {
			t.Errorf("%s PRAGMA %s: got %q; want %q", tc.name, tc.pragma, got, tc.want)
		}
	}
}

// TestReadsDoNotWaitForWrites holds a write transaction open and checks
// that reads still answer, from the last committed state.
func TestReadsDoNotWaitForWrites(t *testing.T) {
	s := openTemp(t)
	ctx := context.Background()
	if _, err := s.Things().Create(ctx, store.Thing{Name: "a"}); err != nil {
		t.Fatal(err)
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := tx.Exec(`UPDATE things SET enabled = 1 WHERE name = 'a'`); err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	th, err := s.Things().Get(rctx, "a")
	if err != nil {
		t.Fatalf("Get during a write transaction: %v", err)
	}
	if th.Enabled {
		t.Errorf("Get during a write transaction: saw uncommitted data")
	}
	if _, err := s.Things().List(rctx, store.ThingFilter{}); err != nil {
		t.Errorf("List during a write transaction: %v", err)
	}
}

func TestUniqueFallbackIsConflict(t *testing.T) {
	s := openTemp(t)
	ctx := context.Background()
	_, err := s.Things().Create(ctx, store.Thing{Name: "a"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.w.Exec(`INSERT INTO things (name, created_at, updated_at) VALUES ('a', 0, 0)`)
	if got := core.KindOf(internal("insert", err)); got != core.KindConflict {
		t.Errorf("raw duplicate insert mapped to kind %s; want conflict", got)
	}
}

func BenchmarkFindSecret(b *testing.B) {
	s := openTemp(b)
	ctx := context.Background()
	const n = 1000
	for i := range n {
		name := fmt.Sprintf("dev-%04d", i)
		if _, err := s.Things().Create(ctx, store.Thing{Name: name}); err != nil {
			b.Fatal(err)
		}
		if _, err := s.Credentials().Create(ctx, store.Credential{ID: "c-" + name, Thing: name,
			Type: store.CredentialSecret, SecretHash: []byte(fmt.Sprintf("%032d", i))}); err != nil {
			b.Fatal(err)
		}
	}
	hashes := make([][]byte, n)
	for i := range hashes {
		hashes[i] = []byte(fmt.Sprintf("%032d", i))
	}
	benchSerialParallel(b, func(i int) error {
		_, err := s.Credentials().FindSecret(ctx, hashes[i%n])
		return err
	})
}

// benchSerialParallel measures op from one goroutine and from GOMAXPROCS.
func benchSerialParallel(b *testing.B, op func(i int) error) {
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if err := op(i); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				if err := op(i); err != nil {
					b.Error(err)
					return
				}
				i++
			}
		})
	})
}

func BenchmarkThingsGet(b *testing.B) {
	s := openTemp(b)
	ctx := context.Background()
	for _, p := range []string{"p1", "p2"} {
		if _, err := s.Policies().Create(ctx, store.Policy{Name: p, Document: []byte(`{}`)}); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := s.Types().Create(ctx, store.ThingType{Name: "sensor"}); err != nil {
		b.Fatal(err)
	}
	if _, err := s.Groups().Create(ctx, store.Group{Name: "g"}); err != nil {
		b.Fatal(err)
	}
	const n = 1000
	for i := range n {
		if _, err := s.Things().Create(ctx, store.Thing{Name: fmt.Sprintf("dev-%04d", i), Type: "sensor",
			Attributes: map[string]string{"site": "berlin", "floor": "3", "model": "x1"},
			Tags:       []string{"a", "b"}, Groups: []string{"g"}, Policies: []string{"p2", "p1"}, Enabled: true}); err != nil {
			b.Fatal(err)
		}
	}
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("dev-%04d", i)
	}
	benchSerialParallel(b, func(i int) error {
		_, err := s.Things().Get(ctx, names[i%n])
		return err
	})
}

// TestTwoStoresOneFile opens the file twice, as the CLI does while the
// daemon runs: writers of both wait for each other (busy_timeout) instead
// of failing, and each sees the other's commits.
func TestTwoStoresOneFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mote.db")
	a, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx := context.Background()
	errc := make(chan error, 2)
	for i, s := range []*Store{a, b} {
		go func() {
			for j := range 50 {
				if _, err := s.Things().Create(ctx, store.Thing{Name: fmt.Sprintf("s%d-%02d", i, j)}); err != nil {
					errc <- err
					return
				}
			}
			errc <- nil
		}()
	}
	for range 2 {
		if err := <-errc; err != nil {
			t.Fatalf("Create: %v", err)
		}
	}
	for _, s := range []*Store{a, b} {
		total, _, err := s.Things().Count(ctx)
		if err != nil || total != 100 {
			t.Errorf("Count: got %d, %v; want 100", total, err)
		}
	}
}

// TestCloseWhileAnotherStoreReads checks that Close does not hang or fail
// when another connection holds a read snapshot that blocks truncating the
// log.
func TestCloseWhileAnotherStoreReads(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mote.db")
	a, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx := context.Background()
	if _, err := a.Things().Create(ctx, store.Thing{Name: "x"}); err != nil {
		t.Fatal(err)
	}
	tx, err := b.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	var n int
	if err := tx.QueryRow(`SELECT count(*) FROM things`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Things().Create(ctx, store.Thing{Name: "y"}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := a.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Close took %v while another connection was reading; want about a second at most", d)
	}
	tx.Rollback()
	if th, err := b.Things().Get(ctx, "y"); err != nil {
		t.Errorf("Get y from the other store after Close: got %+v, %v", th, err)
	}
}
