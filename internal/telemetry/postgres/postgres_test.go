package postgres

import (
	"context"
	"os"
	"sync"
	"testing"

	"github.com/moteiot/mote/internal/pgtest"
	"github.com/moteiot/mote/internal/telemetry"
	"github.com/moteiot/mote/internal/telemetry/telemetrytest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

func open(t testing.TB, url string) *Store {
	t.Helper()
	return pgtest.Open(t, url, func(ctx context.Context, url string) (*Store, error) {
		return Open(ctx, url, Options{MaxConns: 8})
	})
}

func TestConformance(t *testing.T) {
	telemetrytest.Run(t, func(t *testing.T) telemetry.Store { return open(t, pgtest.DB(t)) })
}

// partitionCount returns the number of day partitions.
func partitionCount(t *testing.T, s *Store) int {
	t.Helper()
	parts, err := s.partitions(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return len(parts)
}

// TestPartitionRetention: points of three days land in three day
// partitions; DeleteBefore in the middle of the third day drops the two
// older partitions whole, deletes the older rows of the boundary day, and
// counts all of them.
func TestPartitionRetention(t *testing.T) {
	ctx := context.Background()
	s := open(t, pgtest.DB(t))
	base := (int64(1718000000000) / day) * day // a midnight, UTC
	var pts []telemetry.Point
	for d := range int64(3) {
		for i := range int64(10) {
			pts = append(pts, telemetry.Point{Thing: "dev", Key: "temp", TS: base + d*day + i*3600_000, Value: telemetry.Number(float64(i))})
		}
	}
	if err := s.Append(ctx, pts, 0); err != nil {
		t.Fatal(err)
	}
	parts, err := s.partitions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for d := range int64(3) {
		if _, ok := parts[base/day+d]; !ok {
			t.Fatalf("no partition %s for day %d of the points (have %v)", partitionName(base/day+d), d, parts)
		}
	}
	var inDefault int
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM telemetry_points_default`).Scan(&inDefault); err != nil {
		t.Fatal(err)
	}
	if inDefault != 0 {
		t.Errorf("%d points in the default partition; want 0", inDefault)
	}
	before := partitionCount(t, s)
	cut := base + 2*day + 5*3600_000 // day 3, 05:00: removes 10 + 10 + 5 points
	n, err := s.DeleteBefore(ctx, cut)
	if err != nil {
		t.Fatal(err)
	}
	if n != 25 {
		t.Errorf("DeleteBefore removed %d points; want 25", n)
	}
	if after := partitionCount(t, s); after != before-2 {
		t.Errorf("partitions: %d before, %d after DeleteBefore; want two dropped", before, after)
	}
	got, _, err := s.Range(ctx, telemetry.RangeQuery{Things: []string{"dev"}, From: 0, To: telemetry.MaxTS + 1, Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 5 || got[0].TS != cut {
		t.Errorf("after retention: %d points from %d; want 5 from %d", len(got), got[0].TS, cut)
	}
}

// TestMigrateOnce opens the telemetry store from three goroutines at once
// on a fresh database: all succeed and apply the migrations once between
// them.
func TestMigrateOnce(t *testing.T) {
	url := pgtest.DB(t)
	const nodes = 3
	var (
		wg     sync.WaitGroup
		stores [nodes]*Store
		errs   [nodes]error
	)
	for i := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stores[i], errs[i] = Open(context.Background(), url, Options{MaxConns: 2})
		}()
	}
	wg.Wait()
	total := 0
	for i := range nodes {
		if errs[i] != nil {
			t.Fatalf("node %d: Open: %v", i, errs[i])
		}
		defer stores[i].Close()
		total += stores[i].Migrated
	}
	if total != SchemaVersion() {
		t.Errorf("three nodes applied %d migrations; want %d", total, SchemaVersion())
	}
}

// TestSeqSurvivesReopen: LastSeq is in the database, and an Append with an
// old seq after a reopen stores nothing.
func TestSeqSurvivesReopen(t *testing.T) {
	ctx := context.Background()
	url := pgtest.DB(t)
	s := open(t, url)
	p := []telemetry.Point{{Thing: "dev", Key: "k", TS: 1000, Value: telemetry.Number(1)}}
	if err := s.Append(ctx, p, 7); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s2 := open(t, url)
	if last, err := s2.LastSeq(ctx); err != nil || last != 7 {
		t.Fatalf("LastSeq after reopen = %d, %v; want 7", last, err)
	}
	if err := s2.Append(ctx, p, 7); err != nil {
		t.Fatal(err)
	}
	got, _, err := s2.Range(ctx, telemetry.RangeQuery{Things: []string{"dev"}, From: 0, To: 2000, Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 {
		t.Errorf("after replaying seq 7: %d points; want 1 (exactly once)", len(got))
	}
}

// TestAnyBytes: keys and strings may hold U+0000 (a JSON "\u0000"), which
// a PostgreSQL text column refuses; they round-trip.
func TestAnyBytes(t *testing.T) {
	ctx := context.Background()
	s := open(t, pgtest.DB(t))
	key, str := "a\x00b", "x\x00y"
	if err := s.Append(ctx, []telemetry.Point{{Thing: "dev", Key: key, TS: 5, Value: telemetry.String(str)}}, 0); err != nil {
		t.Fatalf("Append of a key and a string with NUL: %v", err)
	}
	got, err := s.Latest(ctx, []string{"dev"}, []string{key})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Key != key || got[0].Value.Text() != str {
		t.Fatalf("Latest = %+v; want key %q value %q", got, key, str)
	}
	keys, err := s.Keys(ctx, "dev")
	if err != nil || len(keys) != 1 || keys[0] != key {
		t.Fatalf("Keys = %q, %v; want [%q]", keys, err, key)
	}
}

// TestRetentionTwoNodes: two nodes running retention at once on one
// database both succeed, and the points are counted once between them.
func TestRetentionTwoNodes(t *testing.T) {
	ctx := context.Background()
	url := pgtest.DB(t)
	a, b := open(t, url), open(t, url)
	base := (int64(1718000000000) / day) * day
	var pts []telemetry.Point
	for d := range int64(4) {
		pts = append(pts, telemetry.Point{Thing: "dev", Key: "k", TS: base + d*day, Value: telemetry.Number(1)})
	}
	if err := a.Append(ctx, pts, 0); err != nil {
		t.Fatal(err)
	}
	var (
		wg     sync.WaitGroup
		counts [2]int64
		errs   [2]error
	)
	for i, s := range []*Store{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			counts[i], errs[i] = s.DeleteBefore(ctx, base+3*day)
		}()
	}
	wg.Wait()
	for i := range errs {
		if errs[i] != nil {
			t.Fatalf("node %d: DeleteBefore: %v", i, errs[i])
		}
	}
	if counts[0]+counts[1] != 3 {
		t.Errorf("the nodes removed %d + %d points; want 3 between them", counts[0], counts[1])
	}
}

func TestJournals(t *testing.T) {
	telemetrytest.RunJournals(t, func(t *testing.T) telemetrytest.JournalOpener {
		url := pgtest.DB(t)
		return func(journal string) telemetry.Store {
			s, err := Open(context.Background(), url, Options{MaxConns: 2, Journal: journal})
			if err != nil {
				t.Fatal(err)
			}
			return s
		}
	})
}

// TestClaimJournal: one session at a time holds a journal's claim (the
// adopter of a lost node's backlog); another journal's claim is apart; a
// released claim can be taken again.
func TestClaimJournal(t *testing.T) {
	url := pgtest.DB(t)
	ctx := context.Background()
	open := func() *Store {
		s, err := Open(ctx, url, Options{MaxConns: 3, Journal: "survivor"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	s1, s2 := open(), open()
	rel1, ok, err := s1.ClaimJournal(ctx, "lost")
	if err != nil || !ok {
		t.Fatalf("first claim: ok %v, %v; want it", ok, err)
	}
	if _, ok, err := s2.ClaimJournal(ctx, "lost"); err != nil || ok {
		t.Fatalf("second claim while held: ok %v, %v; want refused", ok, err)
	}
	relOther, ok, err := s2.ClaimJournal(ctx, "other")
	if err != nil || !ok {
		t.Fatalf("claim of another journal: ok %v, %v; want it", ok, err)
	}
	relOther()
	rel1()
	rel1() // twice: harmless
	rel2, ok, err := s2.ClaimJournal(ctx, "lost")
	if err != nil || !ok {
		t.Fatalf("claim after release: ok %v, %v; want it", ok, err)
	}
	rel2()
	rel3, ok, err := s1.ClaimJournal(ctx, "lost")
	if err != nil || !ok {
		t.Fatalf("claim after the second release: ok %v, %v; want it", ok, err)
	}
	rel3() // a held claim keeps a connection: Close would wait for it
}
