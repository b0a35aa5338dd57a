package postgres

import (
	"context"
	"testing"

	"github.com/moteiot/mote/internal/pgtest"
	"github.com/moteiot/mote/internal/telemetry"
)

// TestJournalReplayPoints: each named journal (a cluster node) has its own
// replay point on one database — one node's stored sequence does not make
// another node's messages look stored (the bug that kept the journal off
// in a cluster) — and each survives a reopen; the unnamed one is apart.
func TestJournalReplayPoints(t *testing.T) {
	ctx := context.Background()
	url := pgtest.DB(t)
	openJ := func(journal string) *Store {
		return pgtest.Open(t, url, func(ctx context.Context, url string) (*Store, error) {
			return Open(ctx, url, Options{MaxConns: 2, Journal: journal})
		})
	}
	pt := func(ts int64) []telemetry.Point {
		return []telemetry.Point{{Thing: "dev", Key: "k", TS: ts, Value: telemetry.Number(float64(ts))}}
	}
	a, b, unnamed := openJ("node-a"), openJ("node-b"), openJ("")
	if err := a.Append(ctx, pt(1), 100); err != nil {
		t.Fatal(err)
	}
	if err := b.Append(ctx, pt(2), 5); err != nil { // below a's point: still new for b
		t.Fatal(err)
	}
	if err := a.Append(ctx, pt(3), 100); err != nil { // a replay on a: nothing stored
		t.Fatal(err)
	}
	for _, c := range []struct {
		s    *Store
		want uint64
	}{{a, 100}, {b, 5}, {unnamed, 0}} {
		if got, err := c.s.LastSeq(ctx); err != nil || got != c.want {
			t.Errorf("journal %q: LastSeq() = %d, %v; want %d", c.s.Journal(), got, err, c.want)
		}
	}
	a.Close()
	if got, err := openJ("node-a").LastSeq(ctx); err != nil || got != 100 {
		t.Errorf("node-a after reopen: LastSeq() = %d, %v; want 100", got, err)
	}
	got, _, err := b.Range(ctx, telemetry.RangeQuery{Things: []string{"dev"}, From: 0, To: 10, Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].TS != 1 || got[1].TS != 2 {
		t.Errorf("stored %+v; want the points of ts 1 and 2 once each (ts 3 was a replay)", got)
	}
	if _, err := Open(ctx, url, Options{Journal: string(make([]byte, 65))}); err == nil {
		t.Error("Open with a 65-byte journal name succeeded")
	}
}
