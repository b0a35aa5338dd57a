package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"testing"

	"github.com/moteiot/mote/internal/telemetry"
	"github.com/moteiot/mote/internal/telemetry/telemetrytest"
)

func openTemp(t testing.TB) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "telemetry.db"))
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
	telemetrytest.Run(t, func(t *testing.T) telemetry.Store { return openTemp(t) })
}

func TestReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "telemetry.db")
	s, err := Open(path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	p := func(key string, ts int64, v float64) telemetry.Point {
		return telemetry.Point{Thing: "dev", Key: key, TS: ts, Value: telemetry.Number(v)}
	}
	// In order, two at the last ms, one late.
	if err := s.Append(ctx, []telemetry.Point{p("a", 10, 1), p("a", 20, 2), p("a", 20, 3), p("a", 15, 4), p("b", 5, 5)}, 7); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	s, err = Open(path)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	if seq, _ := s.LastSeq(ctx); seq != 7 {
		t.Errorf("LastSeq() after reopen = %d; want 7", seq)
	}
	keys, err := s.Keys(ctx, "dev")
	if err != nil || !slices.Equal(keys, []string{"a", "b"}) {
		t.Errorf("Keys(dev) after reopen = %q, %v; want [a b]", keys, err)
	}
	// After the reopen the store must go on telling points of one ms apart:
	// another at the last ms of a, and late ones at ms that have points.
	if err := s.Append(ctx, []telemetry.Point{p("a", 20, 6), p("a", 15, 7), p("a", 10, 8), p("b", 5, 9)}, 8); err != nil {
		t.Fatalf("Append after reopen: %v", err)
	}
	if err := s.Append(ctx, []telemetry.Point{p("a", 1, 10)}, 8); err != nil {
		t.Fatalf("replayed Append after reopen: %v", err)
	}
	got, _, err := s.Range(ctx, telemetry.RangeQuery{Things: []string{"dev"}, From: 0, To: 100, Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	want := []telemetry.Point{p("a", 10, 1), p("a", 10, 8), p("a", 15, 4), p("a", 15, 7), p("a", 20, 2), p("a", 20, 3), p("a", 20, 6),
		p("b", 5, 5), p("b", 5, 9)}
	if !slices.Equal(got, want) {
		t.Errorf("Range after reopen = %v; want %v", got, want)
	}
	if got := migrationVersions(t, s.wc); !slices.Equal(got, []int{1, 2}) {
		t.Errorf("schema_migrations = %v; want [1 2] (each applied once)", got)
	}
}

func migrationVersions(t *testing.T, c *sql.Conn) []int {
	t.Helper()
	rows, err := c.QueryContext(context.Background(), `SELECT version FROM schema_migrations ORDER BY version`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var vs []int
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			t.Fatal(err)
		}
		vs = append(vs, v)
	}
	return vs
}

func TestSchemaTooNew(t *testing.T) {
	path := filepath.Join(t.TempDir(), "telemetry.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.wc.ExecContext(context.Background(), `INSERT INTO schema_migrations (version, applied_at) VALUES (99, 0)`); err != nil {
		t.Fatal(err)
	}
	s.Close()
	_, err = Open(path)
	if !errors.Is(err, ErrSchemaTooNew) {
		t.Errorf("Open of a database of schema version 99 = %v; want ErrSchemaTooNew", err)
	}
}

// TestAppendRollback makes an Append fail inside its transaction and checks
// that nothing of it is left: no points, no new series, LastSeq and the
// writer's memory of each series as before.
func TestAppendRollback(t *testing.T) {
	ctx := context.Background()
	s := openTemp(t)
	p := func(thing, key string, ts int64, v float64) telemetry.Point {
		return telemetry.Point{Thing: thing, Key: key, TS: ts, Value: telemetry.Number(v)}
	}
	if err := s.Append(ctx, []telemetry.Point{p("dev", "a", 100, 1), p("dev", "a", 50, 2)}, 1); err != nil {
		t.Fatal(err)
	}
	// Make the next late point reuse the tie breaker of the late point 50:
	// its INSERT fails on the primary key.
	s.wmu.Lock()
	s.nextN = uniqueBase
	s.wmu.Unlock()
	err := s.Append(ctx, []telemetry.Point{p("dev", "a", 200, 3), p("dev", "new", 1, 4), p("dev", "a", 50, 5)}, 2)
	if err == nil {
		t.Fatal("Append with a clashing tie breaker succeeded; want an error")
	}
	if seq, _ := s.LastSeq(ctx); seq != 1 {
		t.Errorf("LastSeq() after a failed Append = %d; want 1", seq)
	}
	if keys, _ := s.Keys(ctx, "dev"); !slices.Equal(keys, []string{"a"}) {
		t.Errorf("Keys(dev) after a failed Append = %q; want [a]", keys)
	}
	s.wmu.Lock()
	sr := s.cache.byThing["dev"]["a"]
	lastTS, lastN, nextN := sr.lastTS, sr.lastN, s.nextN
	s.nextN = uniqueBase + 1
	s.wmu.Unlock()
	if lastTS != 100 || lastN != 0 || nextN != uniqueBase {
		t.Errorf("after a failed Append: lastTS, lastN, nextN = %d, %d, %d; want 100, 0, %d", lastTS, lastN, nextN, uniqueBase)
	}
	// The same Append goes through now, and all is in order.
	if err := s.Append(ctx, []telemetry.Point{p("dev", "a", 200, 3), p("dev", "new", 1, 4), p("dev", "a", 50, 5), p("dev", "a", 100, 6)}, 2); err != nil {
		t.Fatalf("Append again: %v", err)
	}
	got, _, err := s.Range(ctx, telemetry.RangeQuery{Things: []string{"dev"}, From: 0, To: 1000, Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	want := []telemetry.Point{p("dev", "a", 50, 2), p("dev", "a", 50, 5), p("dev", "a", 100, 1), p("dev", "a", 100, 6), p("dev", "a", 200, 3), p("dev", "new", 1, 4)}
	if !slices.Equal(got, want) {
		t.Errorf("Range = %v; want %v", got, want)
	}
}

func TestClosed(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "telemetry.db"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close = %v; want nil", err)
	}
	err = s.Append(context.Background(), []telemetry.Point{{Thing: "d", Key: "k", TS: 1, Value: telemetry.Number(1)}}, 1)
	if err == nil {
		t.Error("Append after Close succeeded; want an error")
	}
}

// TestNumberStorage checks that whole numbers are stored compactly and
// read back as the same float64.
func TestNumberStorage(t *testing.T) {
	ctx := context.Background()
	s := openTemp(t)
	vals := []float64{0, 1, -1, 21, 1 << 46, -(1 << 46), 1<<47 - 1, 1 << 47, 1 << 60, 0.5, -2.25, 1e-300}
	var in []telemetry.Point
	for i, v := range vals {
		in = append(in, telemetry.Point{Thing: "d", Key: "k", TS: int64(i), Value: telemetry.Number(v)})
	}
	if err := s.Append(ctx, in, 0); err != nil {
		t.Fatal(err)
	}
	got, _, err := s.Range(ctx, telemetry.RangeQuery{Things: []string{"d"}, From: 0, To: 100, Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, in) {
		t.Errorf("Range = %v; want %v", got, in)
	}
	var typ string
	if err := s.r.QueryRowContext(ctx, `SELECT typeof(num) FROM points WHERE ts = 3`).Scan(&typ); err != nil || typ != "real" {
		t.Errorf("typeof(num) of 21 = %q, %v; want real", typ, err)
	}
}

// TestDeleteBeforeChunks runs retention in many small transactions and
// statements: series that take several statements, transactions that end
// inside a series, series emptied across transactions.
func TestDeleteBeforeChunks(t *testing.T) {
	oldSeries, oldPoints, oldStep := deleteSeriesPerTx, deletePointsPerTx, deleteStep
	deleteSeriesPerTx, deletePointsPerTx, deleteStep = 3, 20, 7
	t.Cleanup(func() { deleteSeriesPerTx, deletePointsPerTx, deleteStep = oldSeries, oldPoints, oldStep })
	ctx := context.Background()
	s := openTemp(t)
	var in []telemetry.Point
	want := 0
	for i := range 10 {
		for j := range i * 9 { // 0 to 81 points, at ts 0, 1, 2, ...
			in = append(in, telemetry.Point{Thing: "d", Key: fmt.Sprintf("k%d", i), TS: int64(j), Value: telemetry.Number(1)})
			if j < 40 {
				want++
			}
		}
	}
	if err := s.Append(ctx, in, 1); err != nil {
		t.Fatal(err)
	}
	n, err := s.DeleteBefore(ctx, 40)
	if err != nil || n != int64(want) {
		t.Errorf("DeleteBefore(40) = %d, %v; want %d", n, err, want)
	}
	keys, _ := s.Keys(ctx, "d")
	if want := []string{"k5", "k6", "k7", "k8", "k9"}; !slices.Equal(keys, want) {
		t.Errorf("Keys(d) = %q; want %q (k1..k4 had points before 40 only)", keys, want)
	}
	got, _, err := s.Range(ctx, telemetry.RangeQuery{Things: []string{"d"}, From: 0, To: 1000, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(in)-want {
		t.Errorf("Range after DeleteBefore returned %d points; want %d", len(got), len(in)-want)
	}
	for _, p := range got {
		if p.TS < 40 {
			t.Errorf("Range after DeleteBefore(40) returned %v", p)
		}
	}
}

func TestJournals(t *testing.T) {
	telemetrytest.RunJournals(t, func(t *testing.T) telemetrytest.JournalOpener {
		path := filepath.Join(t.TempDir(), "telemetry.db")
		return func(journal string) telemetry.Store {
			s, err := OpenJournal(path, journal)
			if err != nil {
				t.Fatal(err)
			}
			return s
		}
	})
}
