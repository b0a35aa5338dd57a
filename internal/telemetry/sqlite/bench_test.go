package sqlite

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/telemetry"
)

// benchBatches returns n batches of 1,000 points: messages of 3 numeric
// fields from 100 things in turn, each thing's time advancing 1 s per
// message, about half of the values whole numbers.
func benchBatches(n int) [][]telemetry.Point {
	keys := []string{"temp", "hum", "volt"}
	things := make([]string, 100)
	for i := range things {
		things[i] = fmt.Sprintf("sensor-%03d", i)
	}
	out := make([][]telemetry.Point, n)
	msg := 0
	for b := range out {
		batch := make([]telemetry.Point, 0, 1000)
		for len(batch) < 1000 {
			thing := things[msg%len(things)]
			ts := int64(1718000000000 + (msg/len(things))*1000)
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

// meter reports points/s of wall time and the CPU time per point, which
// other load on the machine disturbs less.
type meter struct {
	start time.Time
	cpu   time.Duration
}

func startMeter() meter { return meter{time.Now(), cpuTime()} }

func (m meter) report(b *testing.B, points int) {
	b.ReportMetric(float64(points)/time.Since(m.start).Seconds(), "points/s")
	b.ReportMetric(float64(cpuTime()-m.cpu)/float64(points), "cpu-ns/point")
}

// BenchmarkAppend appends batches of 1,000 points (100 things × 3 keys),
// one transaction each, and reports points/s.
func BenchmarkAppend(b *testing.B) {
	for _, mode := range []string{"FULL", "NORMAL"} {
		b.Run("synchronous="+mode, func(b *testing.B) {
			old := synchronous
			synchronous = mode
			defer func() { synchronous = old }()
			s, err := Open(filepath.Join(b.TempDir(), "telemetry.db"))
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			batches := benchBatches(b.N)
			ctx := b.Context()
			b.ReportAllocs()
			b.ResetTimer()
			m := startMeter()
			for i := range b.N {
				if err := s.Append(ctx, batches[i], uint64(i+1)); err != nil {
					b.Fatal(err)
				}
			}
			m.report(b, b.N*1000)
		})
	}
}

// BenchmarkAppendBatch shows how the batch size of a transaction (what
// the Writer's FlushPoints sets) changes throughput: each commit rewrites
// the last page of every series it touches.
func BenchmarkAppendBatch(b *testing.B) {
	for _, size := range []int{1000, 5000, 20000} {
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			s, err := Open(filepath.Join(b.TempDir(), "telemetry.db"))
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			per := size / 1000
			batches := benchBatches(b.N * per)
			ctx := b.Context()
			b.ReportAllocs()
			b.ResetTimer()
			m := startMeter()
			for i := range b.N {
				var batch []telemetry.Point
				for _, part := range batches[i*per : (i+1)*per] {
					batch = append(batch, part...)
				}
				if err := s.Append(ctx, batch, uint64(i+1)); err != nil {
					b.Fatal(err)
				}
			}
			m.report(b, b.N*size)
		})
	}
}
