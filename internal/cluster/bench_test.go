package cluster

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/core"
)

type countingBroker struct{ n atomic.Int64 }

func (b *countingBroker) Relay(core.Message) error { b.n.Add(1); return nil }
func (b *countingBroker) TakeOver(string) bool     { return false }
func (b *countingBroker) ReleaseSession(context.Context, string) (bool, int, error) {
	return false, 0, nil
}

// BenchmarkRelay measures one message accepted on node A reaching the
// broker of node B through one NATS server: the relay's own cost
// (encode, NATS, decode) per message, 64-byte payloads.
func BenchmarkRelay(b *testing.B) {
	s := startNATS(b)
	recv := &countingBroker{}
	a, err := Connect(Options{URL: s.ClientURL(), NodeID: "a"})
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	nb, err := Connect(Options{URL: s.ClientURL(), NodeID: "b"})
	if err != nil {
		b.Fatal(err)
	}
	defer nb.Close()
	if err := a.Start(&countingBroker{}, nil); err != nil {
		b.Fatal(err)
	}
	if err := nb.Start(recv, nil); err != nil {
		b.Fatal(err)
	}
	m := core.Message{Topic: "things/dev-1/telemetry", Payload: make([]byte, 64), QoS: 1, Thing: "dev-1", ClientID: "dev-1", Protocol: "mqtt", Received: time.Now()}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		a.Publish(m)
	}
	deadline := time.Now().Add(30 * time.Second)
	for recv.n.Load()+int64(nb.Dropped()) < int64(b.N) && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
	if d := nb.Dropped(); d > 0 {
		b.ReportMetric(float64(d), "dropped")
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}
