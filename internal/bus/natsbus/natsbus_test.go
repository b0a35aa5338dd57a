package natsbus_test

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/moteiot/mote/internal/bus"
	"github.com/moteiot/mote/internal/bus/bustest"
	"github.com/moteiot/mote/internal/bus/natsbus"
	"github.com/moteiot/mote/internal/core"
)

// startServer starts an embedded nats-server on a random loopback port,
// optionally routed to seed (a cluster). It is shut down at the end of
// the test.
func startServer(t *testing.T, name string, seed *server.Server) *server.Server {
	t.Helper()
	opts := &server.Options{ServerName: name, Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true}
	if seed != nil || strings.HasPrefix(name, "cluster") {
		opts.Cluster = server.ClusterOpts{Name: "mote-test", Host: "127.0.0.1", Port: -1}
	}
	if seed != nil {
		opts.Routes = server.RoutesFromStr("nats://" + seed.ClusterAddr().String())
	}
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("nats server %s: %v", name, err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatalf("nats server %s not ready", name)
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	return s
}

func connect(t *testing.T, s *server.Server, node string, mod func(*natsbus.Options)) *natsbus.Bus {
	t.Helper()
	o := natsbus.Options{URL: s.ClientURL(), NodeID: node, ConnectTimeout: 5 * time.Second}
	if mod != nil {
		mod(&o)
	}
	b, err := natsbus.Connect(o)
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	return b
}

func TestConformance(t *testing.T) {
	s := startServer(t, "single", nil)
	var n atomic.Int64
	bustest.Run(t, func(t *testing.T) bus.Bus {
		// A prefix per bus: what one subtest leaves behind never reaches
		// the next.
		prefix := "t" + strconv.FormatInt(n.Add(1), 10)
		return connect(t, s, "node-a", func(o *natsbus.Options) { o.Prefix = prefix })
	})
}

func TestClusterRouting(t *testing.T) {
	a := startServer(t, "cluster-a", nil)
	b := startServer(t, "cluster-b", a)
	c := startServer(t, "cluster-c", a)
	bustest.WaitFor(t, "a full mesh of routes", func() bool {
		return a.NumRoutes() >= 2 && b.NumRoutes() >= 2 && c.NumRoutes() >= 2
	})
	busA := connect(t, a, "node-a", nil)
	defer busA.Close()
	busC := connect(t, c, "node-c", nil)
	defer busC.Close()

	var got bustest.Collector
	defer busC.Subscribe("things/+/telemetry", got.Handle)()
	// The subscription's interest reaches node A over the route
	// asynchronously: publish probes until one arrives.
	var probes int
	bustest.WaitFor(t, "C's subscription known on A", func() bool {
		probes++
		busA.Publish(core.Message{Topic: "things/probe/telemetry"})
		return len(got.Messages()) > 0
	})
	const n = 200
	for i := range n {
		busA.Publish(core.Message{Topic: "things/t1/telemetry", Thing: "t1", Payload: []byte(strconv.Itoa(i))})
	}
	var msgs []core.Message
	bustest.WaitFor(t, fmt.Sprintf("%d messages on node C", n), func() bool {
		msgs = msgs[:0]
		for _, m := range got.Messages() {
			if m.Thing == "t1" {
				msgs = append(msgs, m)
			}
		}
		return len(msgs) >= n
	})
	for i, m := range msgs {
		if string(m.Payload) != strconv.Itoa(i) {
			t.Fatalf("message %d on node C has payload %q: out of order", i, m.Payload)
		}
		if m.Node != "node-a" {
			t.Fatalf("message %d on node C has node %q; want node-a", i, m.Node)
		}
	}
	if len(msgs) != n {
		t.Errorf("node C received %d messages from A; want %d", len(msgs), n)
	}
	t.Logf("interest reached A after %d probes", probes)
}

func TestNodeIDTellsOwnFromPeers(t *testing.T) {
	s := startServer(t, "single", nil)
	a := connect(t, s, "node-a", nil)
	defer a.Close()
	b := connect(t, s, "node-b", nil)
	defer b.Close()
	var got bustest.Collector
	defer a.Subscribe("x/+", got.Handle)()
	b.Publish(core.Message{Topic: "x/peer"})
	a.Publish(core.Message{Topic: "x/own"})
	a.Publish(core.Message{Topic: "x/relayed", Node: "node-z"})
	msgs := got.WaitN(t, 3)
	nodes := map[string]string{}
	for _, m := range msgs {
		nodes[m.Topic] = m.Node
	}
	want := map[string]string{"x/peer": "node-b", "x/own": "node-a", "x/relayed": "node-z"}
	for tp, n := range want {
		if nodes[tp] != n {
			t.Errorf("message on %s has node %q; want %q", tp, nodes[tp], n)
		}
	}
}

func TestSlowConsumerDropsCounted(t *testing.T) {
	s := startServer(t, "single", nil)
	reg := prometheus.NewRegistry()
	b := connect(t, s, "node-a", func(o *natsbus.Options) {
		o.PendingMsgs = 4
		o.Registerer = reg
	})
	defer b.Close()
	release := make(chan struct{})
	var handled atomic.Int64
	defer b.Subscribe("slow/#", func(core.Message) {
		<-release // a handler that breaks the rule: it blocks
		handled.Add(1)
	})()
	const sent = 100
	for range sent {
		b.Publish(core.Message{Topic: "slow/x", Payload: []byte("p")})
	}
	// The round trip returns once the client has read every message sent
	// before it: each one is then queued or dropped.
	if err := b.Conn().FlushTimeout(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	bustest.WaitFor(t, "slow-consumer drops", func() bool { return b.Dropped() > 0 })
	close(release)
	// What was not dropped is handled; the two add up to what was sent.
	bustest.WaitFor(t, "handled + dropped = sent", func() bool {
		return handled.Load()+int64(b.Dropped()) == sent
	})
	if got := metric(t, reg, "mote_bus_nats_dropped_total", "slow_consumer"); got != float64(b.Dropped()) || got == 0 {
		t.Errorf("mote_bus_nats_dropped_total{reason=slow_consumer} = %v; want %d (> 0)", got, b.Dropped())
	}
	if h := handled.Load(); h > 4+1 {
		t.Errorf("a blocked subscriber with a pending limit of 4 handled %d messages", h)
	}
}

func TestForeignMessageCounted(t *testing.T) {
	s := startServer(t, "single", nil)
	reg := prometheus.NewRegistry()
	b := connect(t, s, "node-a", func(o *natsbus.Options) { o.Registerer = reg })
	defer b.Close()
	var got bustest.Collector
	defer b.Subscribe("f/+", got.Handle)()
	if err := b.Conn().Publish("mote.f.x", []byte("not a mote message")); err != nil {
		t.Fatal(err)
	}
	b.Publish(core.Message{Topic: "f/y"})
	got.WaitN(t, 1)
	bustest.WaitFor(t, "a decode error counted", func() bool {
		return metric(t, reg, "mote_bus_nats_dropped_total", "decode") == 1
	})
	if tp := got.Topics(); len(tp) != 1 || tp[0] != "f/y" {
		t.Errorf("received %q; want only f/y", tp)
	}
	if p := metric(t, reg, "mote_bus_nats_published_total", ""); p != 1 {
		t.Errorf("mote_bus_nats_published_total = %v; want 1", p)
	}
}

func TestConnectDeadline(t *testing.T) {
	// A server that accepts and never speaks.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	start := time.Now()
	_, err = natsbus.Connect(natsbus.Options{URL: "nats://" + ln.Addr().String(), NodeID: "n", ConnectTimeout: 300 * time.Millisecond})
	if err == nil {
		t.Fatal("Connect to a silent server succeeded")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Connect gave up after %s; want about the 300ms deadline", d)
	}
	if !strings.Contains(err.Error(), "natsbus: connect") {
		t.Errorf("error %q does not name the step", err)
	}
}

func metric(t *testing.T, reg *prometheus.Registry, name, reason string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			match := reason == ""
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" && l.GetValue() == reason {
					match = true
				}
			}
			if match {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("metric %s{reason=%q} not found", name, reason)
	return 0
}

// BenchmarkPublish measures the publisher's side: encoding and handing the
// message to the connection's buffer (with one subscriber on the server).
func BenchmarkPublish(b *testing.B) {
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true})
	if err != nil {
		b.Fatal(err)
	}
	go s.Start()
	defer s.Shutdown()
	if !s.ReadyForConnections(10 * time.Second) {
		b.Fatal("nats server not ready")
	}
	nb, err := natsbus.Connect(natsbus.Options{URL: s.ClientURL(), NodeID: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	defer nb.Close()
	var got atomic.Int64
	defer nb.Subscribe("things/+/telemetry", func(core.Message) { got.Add(1) })()
	m := core.Message{Topic: "things/sensor-1/telemetry", Payload: []byte(`{"t":1}`), Thing: "sensor-1", ClientID: "sensor-1", Protocol: "mqtt", Received: time.Now()}
	b.ReportAllocs()
	for b.Loop() {
		nb.Publish(m)
	}
}
