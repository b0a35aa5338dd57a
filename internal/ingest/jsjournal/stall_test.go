package jsjournal_test

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/ingest"
	"github.com/moteiot/mote/internal/ingest/jsjournal"
)

// TestServerKilledUnderLoad reproduces the stall seen in TestKill9: a
// journal whose connection is on one server of a three-server JetStream
// cluster (R3), appending and applying under load, loses that server
// abruptly; it reconnects to a survivor and keeps appending. Every
// acknowledged message must be applied, once, within a deadline.
func TestServerKilledUnderLoad(t *testing.T) {
	servers, urls := startClusterServers(t)
	// The client's own server first, and only then the others.
	nc, err := nats.Connect(strings.Join(urls, ","), nats.DontRandomize(), nats.MaxReconnects(-1),
		nats.ReconnectWait(20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	var victim int
	for i, u := range urls {
		if u == nc.ConnectedUrl() {
			victim = i
		}
	}
	reg := prometheus.NewRegistry()
	j, err := jsjournal.Open(context.Background(), jsjournal.Options{Conn: nc, Node: "a", Replicas: 3,
		AckTimeout: 2 * time.Second, StallCheck: 300 * time.Millisecond, Metrics: reg,
		Applied: func() uint64 { return 0 }})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	var mu sync.Mutex
	applied := map[string]int{}
	if _, err := j.Start(ingest.Funcs{Apply: func(m core.Message) {
		mu.Lock()
		applied[string(m.Payload)]++
		mu.Unlock()
	}}); err != nil {
		t.Fatal(err)
	}

	// Four publishers append all along; what JetStream acknowledged is
	// recorded.
	var acked sync.Map
	var nAcked atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for p := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				id := strconv.Itoa(p) + "." + strconv.Itoa(i)
				if _, err := j.Append(core.Message{Topic: "t", Payload: []byte(id), QoS: 1}); err == nil {
					acked.Store(id, true)
					nAcked.Add(1)
				}
			}
		}()
	}
	waitFor(t, "appends before the kill", func() bool { return nAcked.Load() >= 500 })
	servers[victim].Shutdown()
	before := nAcked.Load()
	waitFor(t, "appends through the survivors", func() bool { return nAcked.Load() >= before+1000 })
	close(stop)
	wg.Wait()

	missing := func() (n int, example string) {
		mu.Lock()
		defer mu.Unlock()
		acked.Range(func(k, _ any) bool {
			if applied[k.(string)] == 0 {
				n++
				example = k.(string)
			}
			return true
		})
		return n, example
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		n, ex := missing()
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d acknowledged messages never applied (e.g. %s); resyncs %v", n, nAcked.Load(), ex,
				resyncs(t, reg))
		}
		time.Sleep(20 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	for id, c := range applied {
		if c > 1 {
			t.Errorf("message %s applied %d times; want once", id, c)
		}
	}
	t.Logf("acknowledged %d (%d after the kill), applied %d distinct, resyncs %v", nAcked.Load(),
		nAcked.Load()-before, len(applied), resyncs(t, reg))
}

// resyncs reads mote_ingest_jetstream_resyncs_total (-1 when absent).
func resyncs(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "mote_ingest_jetstream_resyncs_total" {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	return -1
}

// TestWatchdog: a consumer whose iterator gives nothing while messages of
// its subject wait (wedged), or whose iterator ended, starts again after
// the last message applied: every message is applied once, and the
// resyncs are counted. Without the watchdog the wedged consumer applies
// nothing more (this test fails).
func TestWatchdog(t *testing.T) {
	s := startServer(t)
	reg := prometheus.NewRegistry()
	j, err := jsjournal.Open(context.Background(), jsjournal.Options{Conn: connect(t, s), Node: "a",
		StallCheck: 100 * time.Millisecond, Metrics: reg, Applied: func() uint64 { return 0 }})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	var mu sync.Mutex
	applied := map[string]int{}
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(applied)
	}
	if _, err := j.Start(ingest.Funcs{Apply: func(m core.Message) {
		mu.Lock()
		applied[string(m.Payload)]++
		mu.Unlock()
	}}); err != nil {
		t.Fatal(err)
	}
	appendN := func(from, n int) {
		t.Helper()
		for i := from; i < from+n; i++ {
			if _, err := j.Append(core.Message{Topic: "t", Payload: []byte(strconv.Itoa(i)), QoS: 1}); err != nil {
				t.Fatal(err)
			}
		}
	}
	appendN(0, 10)
	waitFor(t, "the first 10 applied", func() bool { return count() == 10 })

	if err := j.Wedge(context.Background()); err != nil {
		t.Fatal(err)
	}
	appendN(10, 10)
	waitFor(t, "the 10 appended while wedged", func() bool { return count() == 20 })
	if n := resyncs(t, reg); n < 1 {
		t.Fatalf("resyncs = %v after a wedged consumer; want ≥ 1", n)
	}

	j.EndIterator()
	appendN(20, 10)
	waitFor(t, "the 10 appended after the iterator ended", func() bool { return count() == 30 })
	if n := resyncs(t, reg); n < 2 {
		t.Errorf("resyncs = %v after the iterator ended; want ≥ 2", n)
	}
	mu.Lock()
	defer mu.Unlock()
	for id, c := range applied {
		if c != 1 {
			t.Errorf("message %s applied %d times; want once", id, c)
		}
	}
}

// TestWatchdogIdle: an idle consumer with nothing waiting (everything
// applied, or the subject purged) is left alone — no resync.
func TestWatchdogIdle(t *testing.T) {
	s := startServer(t)
	reg := prometheus.NewRegistry()
	var applied atomic.Int32
	j, err := jsjournal.Open(context.Background(), jsjournal.Options{Conn: connect(t, s), Node: "a",
		StallCheck: 20 * time.Millisecond, CheckpointEvery: 10 * time.Millisecond, Metrics: reg,
		Applied: func() uint64 { return 0 }})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	if _, err := j.Start(ingest.Funcs{Apply: func(core.Message) { applied.Add(1) }}); err != nil {
		t.Fatal(err)
	}
	if _, err := j.Append(core.Message{Topic: "t", QoS: 1}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the message applied", func() bool { return applied.Load() == 1 })
	// Idle for 15 stall checks: the watchdog asks JetStream each time and
	// finds nothing after the last message applied.
	deadline := time.Now().Add(15 * 20 * time.Millisecond)
	for time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond) // idling is the condition under test
	}
	if n := resyncs(t, reg); n != 0 {
		t.Errorf("resyncs = %v while idle with nothing waiting; want 0", n)
	}
	if applied.Load() != 1 {
		t.Errorf("applied %d; want 1", applied.Load())
	}
}
