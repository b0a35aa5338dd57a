package loadgen

import (
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// countingProxy forwards every connection to target and counts them.
func countingProxy(t *testing.T, target string) (addr string, accepted *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted = new(atomic.Int64)
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			u, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			wg.Go(func() { io.Copy(u, c); u.Close() })
			wg.Go(func() { io.Copy(c, u); c.Close() })
		}
	})
	return ln.Addr().String(), accepted
}

// TestAddressesSpread: with two addresses, publishers and subscribers
// alternate between them and subscriber i is on the other address than
// publisher i (a pair crosses nodes), and nothing is lost.
func TestAddressesSpread(t *testing.T) {
	s, o := mote(t)
	a, na := countingProxy(t, s.MQTT)
	b, nb := countingProxy(t, s.MQTT)
	o.Addr = a + "," + b
	o.Topology, o.Pubs, o.Subs, o.QoS, o.Count = Pairs, 4, 4, 1, 400
	r, _ := run(t, o)
	if r.Lost != 0 || r.Received != 400 {
		t.Fatalf("received %d, lost %d; want 400, 0", r.Received, r.Lost)
	}
	// Publishers 0 and 2 and subscribers 1 and 3 on a; the others on b.
	if na.Load() != 4 || nb.Load() != 4 {
		t.Fatalf("connections: %d on the first address, %d on the second; want 4 and 4", na.Load(), nb.Load())
	}
	for i, want := range []string{a, b, a} {
		if got := o.addr(i); got != want {
			t.Errorf("addr(%d) = %s; want %s", i, got, want)
		}
	}
	o.Addr = a + ","
	if err := o.Validate(); err == nil || !strings.Contains(err.Error(), "addr") {
		t.Errorf("Validate(%q) = %v; want an error naming addr", o.Addr, err)
	}
}
