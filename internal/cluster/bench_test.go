package cluster

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

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

// BenchmarkJSRelay measures QoS 1 messages through the JetStream relay
// with three Mote nodes: node A publishes (each stored by JetStream, as
// before a PUBACK, at most the relay's pending limit in flight); every
// node's consumer reads every message, A skips its own, B's and C's hand
// them to their brokers. replicas1: one in-process nats-server, file
// storage; replicas3: three clustered in-process nats-servers (all on
// this machine), the default 3 replicas. It reports msgs/s, the CPU of
// the whole process (nodes and nats-servers) per message, and the
// acknowledgements the three consumers sent per message.
func BenchmarkJSRelay(b *testing.B) {
	b.Run("replicas1", func(b *testing.B) { benchJSRelay(b, startJetStream(b).ClientURL(), 1) })
	b.Run("replicas3", func(b *testing.B) { benchJSRelay(b, startJetStreamCluster(b), 3) })
}

func benchJSRelay(b *testing.B, url string, replicas int) {
	recv := []*countingBroker{{}, {}}
	var relays []*JSRelay
	for i, br := range []*countingBroker{{}, recv[0], recv[1]} {
		n, err := Connect(Options{URL: url, NodeID: string(rune('a' + i))})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = n.Close() })
		if err := n.Start(br, nil); err != nil {
			b.Fatal(err)
		}
		r, err := n.OpenRelay(context.Background(), RelayOptions{Replicas: replicas}, nil)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = r.Close() })
		if err := r.Start(context.Background()); err != nil {
			b.Fatal(err)
		}
		relays = append(relays, r)
	}
	ra := relays[0]
	m := core.Message{Topic: "things/dev-1/telemetry", Payload: make([]byte, 64), QoS: 1, Thing: "dev-1", ClientID: "dev-1", Protocol: "mqtt", Received: time.Now()}
	cpu0 := cpuTime()
	b.ReportAllocs()
	b.ResetTimer()
	dones := make(chan (<-chan error), DefaultRelayMaxPending)
	var refused atomic.Int64
	fin := make(chan struct{})
	go func() {
		defer close(fin)
		for d := range dones {
			if err := <-d; err != nil {
				refused.Add(1)
			}
		}
	}()
	for range b.N {
		d, err := ra.publish(m, nil)
		if err != nil {
			b.Fatal(err)
		}
		dones <- d
	}
	close(dones)
	<-fin
	want := int64(b.N) - refused.Load()
	deadline := time.Now().Add(60 * time.Second)
	for (recv[0].n.Load() < want || recv[1].n.Load() < want) && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
	for i, r := range recv {
		if got := r.n.Load(); got < want {
			b.Fatalf("node %d delivered %d of %d", i+1, got, want)
		}
	}
	if r := refused.Load(); r > 0 {
		b.ReportMetric(float64(r), "refused")
	}
	var acks uint64
	for _, r := range relays {
		acks += r.acks.Load()
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/msg")
	b.ReportMetric(float64(acks)/float64(b.N), "acks/msg")
}

// startJetStreamCluster starts three clustered JetStream servers on
// loopback and returns their client URLs.
func startJetStreamCluster(tb testing.TB) string {
	tb.Helper()
	var lns []net.Listener
	var routes []string
	for range 3 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		lns = append(lns, ln)
		routes = append(routes, fmt.Sprintf("nats://%s", ln.Addr()))
	}
	for _, ln := range lns {
		_ = ln.Close()
	}
	var urls []string
	var servers []*server.Server
	for i := range 3 {
		port := lns[i].Addr().(*net.TCPAddr).Port
		s, err := server.NewServer(&server.Options{ServerName: fmt.Sprintf("n%d", i), Host: "127.0.0.1", Port: -1,
			NoLog: true, NoSigs: true, JetStream: true, StoreDir: tb.TempDir(),
			Cluster: server.ClusterOpts{Name: "bench", Host: "127.0.0.1", Port: port},
			Routes:  server.RoutesFromStr(strings.Join(routes, ","))})
		if err != nil {
			tb.Fatal(err)
		}
		go s.Start()
		tb.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
		servers = append(servers, s)
	}
	for _, s := range servers {
		if !s.ReadyForConnections(20 * time.Second) {
			tb.Fatal("nats server not ready")
		}
		urls = append(urls, s.ClientURL())
	}
	return strings.Join(urls, ",")
}

// cpuTime is the CPU time (user + system) this process used so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
