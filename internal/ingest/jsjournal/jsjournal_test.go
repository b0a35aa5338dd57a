package jsjournal_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/ingest"
	"github.com/moteiot/mote/internal/ingest/ingesttest"
	"github.com/moteiot/mote/internal/ingest/jsjournal"
)

// startServer starts an embedded nats-server with JetStream on a random
// loopback port, its store in a temporary directory.
func startServer(t testing.TB) *server.Server {
	t.Helper()
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true,
		JetStream: true, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	return s
}

func connect(t testing.TB, s *server.Server) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(s.ClientURL(), nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// TestConformance runs the journal suite on JetStream: each test its own
// node on one server, reopened on the same stream and consumer.
func TestConformance(t *testing.T) {
	s := startServer(t)
	var n atomic.Int32
	ingesttest.Run(t, func(t *testing.T) ingesttest.Opener {
		node := fmt.Sprintf("n%d", n.Add(1))
		return func(applied func() uint64) (ingest.Durable, error) {
			nc := connect(t, s)
			return jsjournal.Open(context.Background(), jsjournal.Options{Conn: nc, Node: node,
				Applied: applied, CheckpointEvery: 10 * time.Millisecond})
		}
	})
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestOtherNodesSubject: a node applies only its own subject; another
// node's messages wait in the stream for that node (the attacker's case of
// "another thing's id": one node's consumer cannot take another's work).
func TestOtherNodesSubject(t *testing.T) {
	s := startServer(t)
	var a atomic.Int32
	open := func(node string) *jsjournal.Journal {
		j, err := jsjournal.Open(context.Background(), jsjournal.Options{Conn: connect(t, s), Node: node,
			Applied: func() uint64 { return 0 }})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = j.Close() })
		return j
	}
	ja := open("a")
	if _, err := ja.Start(ingest.Funcs{Apply: func(core.Message) { a.Add(1) }}); err != nil {
		t.Fatal(err)
	}
	jb := open("b") // not started: node b is down, nothing of b is applied
	for i := range 5 {
		if _, err := jb.Append(core.Message{Topic: "x", Payload: []byte{byte(i)}, QoS: 1}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := ja.Append(core.Message{Topic: "x", QoS: 1}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "node a applying its message", func() bool { return a.Load() == 1 })
	if n, err := jb.Pending(context.Background()); err != nil || n != 5 {
		t.Errorf("node b pending = %d, %v; want 5 (kept for node b)", n, err)
	}
	if a.Load() != 1 {
		t.Errorf("node a applied %d; want its 1 (none of node b's 5)", a.Load())
	}
}

// TestDeadJetStream: with the server gone, an append is refused within the
// ack timeout (never acknowledged), counted as a timeout, and Err reports
// it; the refusal is of the kind the MQTT edge answers with 0x80.
func TestDeadJetStream(t *testing.T) {
	s := startServer(t)
	reg := prometheus.NewRegistry()
	j, err := jsjournal.Open(context.Background(), jsjournal.Options{Conn: connect(t, s), Node: "a",
		AckTimeout: 300 * time.Millisecond, Metrics: reg, Applied: func() uint64 { return 0 }})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	if _, err := j.Start(ingest.Funcs{Apply: func(core.Message) {}}); err != nil {
		t.Fatal(err)
	}
	if _, err := j.Append(core.Message{Topic: "x", QoS: 1}); err != nil {
		t.Fatal(err)
	}
	s.Shutdown()
	s.WaitForShutdown()
	start := time.Now()
	_, err = j.Append(core.Message{Topic: "x", QoS: 1})
	if err == nil {
		t.Fatal("Append with JetStream gone succeeded")
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("refusal took %s; want about the ack timeout", took)
	}
	var ce *core.Error
	if !errors.As(err, &ce) || ce.Kind != core.KindUnavailable {
		t.Errorf("error %v; want core.KindUnavailable", err)
	}
	if j.Err() == nil {
		t.Error("Err() = nil after a refusal")
	}
	total := 0.0
	for _, r := range []string{"timeout", "error"} {
		total += refused(t, reg, r)
	}
	if total < 1 {
		t.Errorf("mote_ingest_jetstream_refused_total = %v; want ≥ 1", total)
	}
}

// refused reads mote_ingest_jetstream_refused_total{reason}.
func refused(t *testing.T, reg *prometheus.Registry, reason string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "mote_ingest_jetstream_refused_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" && l.GetValue() == reason {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no mote_ingest_jetstream_refused_total{reason=%q}", reason)
	return 0
}

// TestStreamFull: a stream at its byte limit refuses new messages (discard
// new: the acknowledged ones are kept) with insufficient storage.
func TestStreamFull(t *testing.T) {
	s := startServer(t)
	j, err := jsjournal.Open(context.Background(), jsjournal.Options{Conn: connect(t, s), Node: "a",
		MaxBytes: 4096, Applied: func() uint64 { return 0 }})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close() // not started: nothing consumes
	big := make([]byte, 1000)
	var refused error
	for i := 0; i < 20 && refused == nil; i++ {
		_, refused = j.Append(core.Message{Topic: "x", Payload: big, QoS: 1})
	}
	if refused == nil {
		t.Fatal("20 KB appended to a 4 KB stream")
	}
	var ce *core.Error
	if !errors.As(refused, &ce) || ce.Kind != core.KindInsufficientStorage {
		t.Errorf("refusal %v; want core.KindInsufficientStorage", refused)
	}
	if !strings.Contains(refused.Error(), "JetStream") {
		t.Errorf("refusal %q does not say where", refused)
	}
}

// TestCorruptMessage: a message on the node's subject that is not a Mote
// record (someone with NATS access) is skipped and counted; the next one
// is applied.
func TestCorruptMessage(t *testing.T) {
	s := startServer(t)
	nc := connect(t, s)
	var applied atomic.Int32
	j, err := jsjournal.Open(context.Background(), jsjournal.Options{Conn: nc, Node: "a",
		Applied: func() uint64 { return 0 }})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	if _, err := j.Start(ingest.Funcs{Apply: func(core.Message) { applied.Add(1) }}); err != nil {
		t.Fatal(err)
	}
	if _, err := nc.Request(jsjournal.DefaultPrefix+".a", []byte("\xffgarbage"), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := j.Append(core.Message{Topic: "ok", QoS: 1}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the good message", func() bool { return applied.Load() == 1 })
}

// BenchmarkAppend: JetStream-acknowledged appends from 64 publishers at
// once (one in-process server, replicas 1, file storage), as the broker
// issues them; compare BenchmarkWALAppend in package ingest.
func BenchmarkAppend(b *testing.B) {
	s := startServer(b)
	benchAppend(b, connect(b, s), 1)
}

// benchAppend opens a journal on nc with the replicas given and appends
// from 64 publishers at once, waiting for each acknowledgement.
func benchAppend(b *testing.B, nc *nats.Conn, replicas int) {
	j, err := jsjournal.Open(context.Background(), jsjournal.Options{Conn: nc, Node: "bench", Replicas: replicas,
		MaxBytes: 8 << 30, Applied: func() uint64 { return 0 }})
	if err != nil {
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

// startCluster starts three nats-servers routed into one JetStream
// cluster on loopback and returns the client URLs.
func startCluster(b testing.TB) string {
	b.Helper()
	_, urls := startClusterServers(b)
	return strings.Join(urls, ",")
}

// startClusterServers starts three nats-servers routed into one JetStream
// cluster on loopback and returns them with their client URLs.
func startClusterServers(b testing.TB) ([]*server.Server, []string) {
	b.Helper()
	var lns []net.Listener
	var routes []string
	for range 3 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
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
			NoLog: true, NoSigs: true, JetStream: true, StoreDir: b.TempDir(),
			Cluster: server.ClusterOpts{Name: "bench", Host: "127.0.0.1", Port: port},
			Routes:  server.RoutesFromStr(strings.Join(routes, ","))})
		if err != nil {
			b.Fatal(err)
		}
		go s.Start()
		b.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
		servers = append(servers, s)
	}
	for _, s := range servers {
		if !s.ReadyForConnections(20 * time.Second) {
			b.Fatal("nats server not ready")
		}
		urls = append(urls, s.ClientURL())
	}
	return servers, urls
}

// BenchmarkAppendReplicas3: as BenchmarkAppend, on a three-server
// JetStream cluster with the stream's default 3 replicas (all on this
// machine).
func BenchmarkAppendReplicas3(b *testing.B) {
	nc, err := nats.Connect(startCluster(b))
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	benchAppend(b, nc, 3)
}
