package postgres

import (
	"fmt"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/pgtest"
	"github.com/moteiot/mote/internal/telemetry"
)

// benchBatches returns n batches of 1,000 points as the SQLite backend's
// benchmark makes them: messages of 3 numeric fields from 100 things in
// turn, each thing's time advancing 1 s per message.
func benchBatches(n int) [][]telemetry.Point {
	keys := []string{"temp", "hum", "volt"}
	out := make([][]telemetry.Point, n)
	msg := 0
	for b := range out {
		batch := make([]telemetry.Point, 0, 1000)
		for len(batch) < 1000 {
			thing := fmt.Sprintf("sensor-%03d", msg%100)
			ts := int64(1718000000000 + (msg/100)*1000)
			for k, key := range keys {
				if len(batch) == 1000 {
					break
				}
				v := float64(msg%50) + float64(k)
				if msg%2 == 0 {
					v += 0.25
				}
				batch = append(batch, telemetry.Point{Thing: thing, Key: key, TS: ts, Value: telemetry.Number(v)})
			}
			msg++
		}
		out[b] = batch
	}
	return out
}

// withBRIN adds a BRIN index on ts, the alternative the package
// documentation weighs.
func withBRIN(b *testing.B, s *Store) {
	if _, err := s.pool.Exec(b.Context(), `CREATE INDEX telemetry_points_ts_brin ON telemetry_points USING brin (ts)`); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkAppend appends batches of 1,000 points (100 things × 3 keys),
// one transaction each (COPY + last_seq), and reports points/s, with the
// package's B-tree alone and with a BRIN index on ts as well. The test
// cluster runs with fsync off: the figures are the client and server CPU
// cost, not disk-bound ingest.
func BenchmarkAppend(b *testing.B) {
	for _, brin := range []bool{false, true} {
		b.Run(fmt.Sprintf("brin=%v", brin), func(b *testing.B) {
			s := open(b, pgtest.DB(b))
			if brin {
				withBRIN(b, s)
			}
			batches := benchBatches(b.N)
			ctx := b.Context()
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			for i := range b.N {
				if err := s.Append(ctx, batches[i], uint64(i+1)); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*1000)/time.Since(start).Seconds(), "points/s")
		})
	}
}

// BenchmarkRetentionBoundary measures what BRIN could buy: the DELETE of
// the older half of one day partition (200,000 points), which without a
// time index scans the partition.
func BenchmarkRetentionBoundary(b *testing.B) {
	batches := benchBatches(200)
	for _, brin := range []bool{false, true} {
		b.Run(fmt.Sprintf("brin=%v", brin), func(b *testing.B) {
			var total time.Duration
			for range b.N {
				s := open(b, pgtest.DB(b))
				if brin {
					withBRIN(b, s)
				}
				for i, batch := range batches {
					if err := s.Append(b.Context(), batch, uint64(i+1)); err != nil {
						b.Fatal(err)
					}
				}
				if _, err := s.pool.Exec(b.Context(), `ANALYZE telemetry_points`); err != nil {
					b.Fatal(err)
				}
				mid := batches[100][0].TS
				start := time.Now()
				n, err := s.DeleteBefore(b.Context(), mid)
				total += time.Since(start)
				if err != nil || n < 90_000 {
					b.Fatalf("DeleteBefore = %d, %v; want about 100,000", n, err)
				}
			}
			b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/delete")
		})
	}
}
