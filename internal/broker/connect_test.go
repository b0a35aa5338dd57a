package broker_test

import (
	"fmt"
	"io"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/config"
	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/daemontest"
)

// TestConnectGarbage guards the connect path against per-connect garbage:
// with 10,000 connections held, every collection scans all their
// goroutine stacks, so garbage made per connect costs the connect rate
// far more than its allocation. A connect allocates ~11 KB (server and
// raw client together); when the console's list of recent presence events
// copied itself for every event it was ~18 KB, and the connect rate of
// issue 10 had halved (docs/benchmarks.md, "Connect path").
func TestConnectGarbage(t *testing.T) {
	s := daemontest.Start(t, func(c *config.Config) {
		c.PresenceFlush = time.Minute // no registry writes during the measurement
	})
	secret := s.Device(t, "bench")
	var events atomic.Int64
	defer s.Bus().Subscribe(core.PresenceConnected+"#", func(core.Message) { events.Add(1) })()
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	connect := func(n int) {
		t.Helper()
		for range n {
			c, err := connectV3(s.MQTT, fmt.Sprintf("dev-%d", len(conns)), "bench", secret)
			if err != nil {
				t.Fatal(err)
			}
			conns = append(conns, c)
		}
		// Presence events are handled on the broker's presence goroutine:
		// wait until all of them went through the bus.
		daemontest.WaitFor(t, 10*time.Second, func() error {
			if got := events.Load(); got < int64(len(conns)) {
				return errorf("%d presence events of %d connects", got, len(conns))
			}
			return nil
		})
	}
	connect(100) // past the start-up allocations and the console's 50 recent events

	const n = 500
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	connect(n)
	runtime.ReadMemStats(&after)
	perConnect := (after.TotalAlloc - before.TotalAlloc) / n
	t.Logf("%d B allocated per connect (server and client)", perConnect)
	// 120 allocations before the evaluator was shared per thing, the HMAC
	// pooled, the deadline made lazy and the presence JSON written by hand;
	// 89 after (98 with -race, where sync.Pool drops some of what it gets).
	allocs := (after.Mallocs - before.Mallocs) / n
	t.Logf("%d allocations per connect", allocs)
	if allocs > 108 {
		t.Errorf("a connect made %d allocations (server and client); want at most 108", allocs)
	}
	if perConnect > 14<<10 {
		t.Fatalf("a connect allocated %d B (server and client); want at most 14 KiB", perConnect)
	}
}

// BenchmarkConnect: authenticated MQTT 3.1.1 connects over real TCP, as the
// load generator's connect scenario makes them (../shared/bench, e-idle-10k):
// 32 dialers, every connection the one thing "bench" with its secret and a
// client id of its own, clean session, and connections left open (the
// newest 4,000: beyond that the oldest is closed, so that client and
// server, one process, stay within the file limit). One op is one CONNECT
// answered by CONNACK 0. Reports connects/s; the server runs in the same
// process, so ns/op, B/op and allocs/op include the raw client's (small)
// share.
//
//	go test -run XXX -bench Connect -benchtime 10000x ./internal/broker/
func BenchmarkConnect(b *testing.B) {
	const keepOpen = 4000
	s := daemontest.Start(b)
	secret := s.Device(b, "bench")
	var (
		mu    sync.Mutex
		conns []net.Conn
		next  atomic.Int64
	)
	b.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	b.ReportAllocs()
	b.SetParallelism(max(1, 32/runtime.GOMAXPROCS(0))) // 32 dialers
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			id := fmt.Sprintf("bench-%d", next.Add(1))
			c, err := connectV3(s.MQTT, id, "bench", secret)
			if err != nil {
				b.Error(err)
				return
			}
			mu.Lock()
			conns = append(conns, c)
			var old net.Conn
			if len(conns) > keepOpen {
				old, conns = conns[0], conns[1:]
			}
			mu.Unlock()
			if old != nil {
				old.Close()
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "connects/s")
}

// connectV3 dials addr and sends an MQTT 3.1.1 CONNECT (clean session,
// user name and password); it returns the connection once CONNACK 0 came.
func connectV3(addr, clientID, user, pass string) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, fmt.Errorf("dial: %w", err)
	}
	var body []byte
	body = appendString(body, "MQTT")
	body = append(body, 4, 0xC2, 0x01, 0x2C) // level 4; user name, password, clean session; keep alive 300 s
	body = appendString(body, clientID)
	body = appendString(body, user)
	body = appendString(body, pass)
	pk := []byte{0x10}
	for n := len(body); ; { // remaining length
		d := byte(n % 128)
		if n /= 128; n > 0 {
			d |= 0x80
		}
		pk = append(pk, d)
		if n == 0 {
			break
		}
	}
	pk = append(pk, body...)
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(pk); err != nil {
		c.Close()
		return nil, fmt.Errorf("write CONNECT: %w", err)
	}
	var ack [4]byte
	if _, err := io.ReadFull(c, ack[:]); err != nil {
		c.Close()
		return nil, fmt.Errorf("read CONNACK: %w", err)
	}
	if ack[0] != 0x20 || ack[1] != 2 || ack[3] != 0 {
		c.Close()
		return nil, fmt.Errorf("CONNACK % x; want 20 02 00 00", ack)
	}
	_ = c.SetDeadline(time.Time{})
	return c, nil
}

func appendString(b []byte, s string) []byte {
	return append(append(b, byte(len(s)>>8), byte(len(s))), s...)
}
