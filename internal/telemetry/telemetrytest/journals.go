package telemetrytest

import (
	"context"
	"testing"

	"github.com/moteiot/mote/internal/telemetry"
)

// JournalOpener opens one database (the same every call within a test) as
// the store of the named ingest journal ("" the unnamed one). The suite
// closes each store before it opens the next.
type JournalOpener func(journal string) telemetry.Store

// RunJournals checks the replay points of named journals (cluster nodes,
// issue 12): each journal's LastSeq is its own and survives a reopen, a
// sequence number at or below a journal's point stores nothing for that
// journal only, and the unnamed journal's point is apart.
func RunJournals(t *testing.T, storage func(t *testing.T) JournalOpener) {
	t.Run("JournalsApart", func(t *testing.T) {
		ctx := context.Background()
		open := storage(t)
		p := func(ts int64) []telemetry.Point { return []telemetry.Point{pt("dev", "k", ts, num(float64(ts)))} }
		step := func(journal string, fn func(s telemetry.Store)) {
			t.Helper()
			s := open(journal)
			fn(s)
			must(t, "Close", s.Close())
		}
		lastSeq := func(s telemetry.Store, want uint64, journal string) {
			t.Helper()
			got, err := s.LastSeq(ctx)
			if err != nil || got != want {
				t.Errorf("journal %q: LastSeq() = %d, %v; want %d", journal, got, err, want)
			}
		}
		step("node-a", func(s telemetry.Store) { must(t, "Append a@100", s.Append(ctx, p(1), 100)) })
		step("node-b", func(s telemetry.Store) {
			lastSeq(s, 0, "node-b")
			must(t, "Append b@5", s.Append(ctx, p(2), 5)) // below a's point: new for b
		})
		step("node-a", func(s telemetry.Store) {
			lastSeq(s, 100, "node-a")
			must(t, "Append a@100 again", s.Append(ctx, p(3), 100)) // a replay: nothing stored
		})
		step("", func(s telemetry.Store) {
			lastSeq(s, 0, "")
			must(t, "Append unnamed@1", s.Append(ctx, p(4), 1))
			got, _, err := s.Range(ctx, telemetry.RangeQuery{Things: []string{"dev"}, From: allFrom, To: allTo, Limit: 10})
			must(t, "Range", err)
			var ts []int64
			for _, q := range got {
				ts = append(ts, q.TS)
			}
			if len(ts) != 3 || ts[0] != 1 || ts[1] != 2 || ts[2] != 4 {
				t.Errorf("stored timestamps %v; want [1 2 4] (ts 3 was a replay of node-a)", ts)
			}
		})
		step("node-b", func(s telemetry.Store) { lastSeq(s, 5, "node-b") })
		step("node-a", func(s telemetry.Store) { lastSeq(s, 100, "node-a") })
	})
}
