package ingest_test

import (
	"testing"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/ingest"
)

// BenchmarkWALAppend: journal appends acknowledged after the fsync, from
// 32×GOMAXPROCS publishers at once (group commit), as the broker issues
// them; compare jsjournal's BenchmarkAppend (the same messages,
// acknowledged by JetStream).
func BenchmarkWALAppend(b *testing.B) {
	j, err := ingest.Open(ingest.Options{Dir: b.TempDir(), Applied: func() uint64 { return 0 }})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := j.Start(ingest.Funcs{Apply: func(core.Message) {}}); err != nil {
		b.Fatal(err)
	}
	defer j.Close()
	m := core.Message{Topic: "t/dev/telemetry", Payload: make([]byte, 64), QoS: 1, Thing: "dev", ClientID: "dev"}
	b.SetParallelism(32)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := j.Append(m); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}
