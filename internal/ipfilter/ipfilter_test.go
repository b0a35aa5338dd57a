package ipfilter

import (
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

func TestAllows(t *testing.T) {
	tests := []struct {
		name        string
		allow, deny []string
		addr        string
		want        bool
	}{
		{"no lists", nil, nil, "192.0.2.1", true},
		{"in allow", []string{"10.0.0.0/8"}, nil, "10.1.2.3", true},
		{"outside allow", []string{"10.0.0.0/8"}, nil, "11.1.2.3", false},
		{"deny only", nil, []string{"192.0.2.0/24"}, "192.0.2.9", false},
		{"deny only, other", nil, []string{"192.0.2.0/24"}, "198.51.100.1", true},
		{"deny wins over allow", []string{"10.0.0.0/8"}, []string{"10.9.0.0/16"}, "10.9.1.1", false},
		{"allow beside deny", []string{"10.0.0.0/8"}, []string{"10.9.0.0/16"}, "10.8.1.1", true},
		{"single address", []string{"127.0.0.1"}, nil, "127.0.0.1", true},
		{"single address, neighbour", []string{"127.0.0.1"}, nil, "127.0.0.2", false},
		{"mapped v4 matches v4", []string{"127.0.0.0/8"}, nil, "::ffff:127.0.0.5", true},
		{"v6 prefix", []string{"2001:db8::/32"}, nil, "2001:db8::1", true},
		{"v6 outside v4 allow", []string{"10.0.0.0/8"}, nil, "2001:db8::1", false},
		{"unmasked prefix", nil, []string{"192.0.2.77/24"}, "192.0.2.1", false},
		{"spaces trimmed", []string{" 10.0.0.0/8 "}, nil, "10.0.0.1", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := New(tt.allow, tt.deny)
			if err != nil {
				t.Fatal(err)
			}
			if got := f.Allows(netip.MustParseAddr(tt.addr)); got != tt.want {
				t.Errorf("Allows(%s) with allow %q deny %q = %v; want %v", tt.addr, tt.allow, tt.deny, got, tt.want)
			}
		})
	}
}

func TestNewRejectsBadEntries(t *testing.T) {
	for _, bad := range []string{"10.0.0.0/33", "not-an-ip", "10.0.0", "10.0.0.0/", "example.com"} {
		if _, err := New([]string{bad}, nil); err == nil {
			t.Errorf("New(allow %q) = nil error; want one", bad)
		}
		if err := ParseList([]string{bad}); err == nil {
			t.Errorf("ParseList(%q) = nil error; want one", bad)
		}
	}
	if f, err := New(nil, []string{""}); err != nil || f != nil {
		t.Errorf("New(empty lists) = %v, %v; want nil, nil", f, err)
	}
}

// TestListenerClosesRefused dials from 127.0.0.2 (Linux routes all of
// 127/8 to lo) and 127.0.0.1: only the latter reaches Accept.
func TestListenerClosesRefused(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f, err := New(nil, []string{"127.0.0.2"})
	if err != nil {
		t.Fatal(err)
	}
	m := NewMetric(nil)
	ln := f.Listener(raw, "test", Refusals{Metric: m})
	defer ln.Close()
	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()

	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", raw.Addr().String())
	switch {
	case errors.Is(err, syscall.ECONNRESET):
		// Reset before connect returned: refused, as it should be.
	case err != nil:
		t.Skipf("cannot dial from 127.0.0.2: %v", err)
	default:
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, err := c.Read(make([]byte, 1)); err == nil || isTimeout(err) {
			t.Fatalf("refused connection: read %d bytes, err %v; want it closed by the server", n, err)
		}
		c.Close()
	}
	// The refusal is counted once Accept has seen it.
	deadline := time.Now().Add(5 * time.Second)
	for counter(m.WithLabelValues("test")) < 1 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}

	ok, err := net.DialTimeout("tcp", raw.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer ok.Close()
	select {
	case c := <-accepted:
		if got := c.RemoteAddr().(*net.TCPAddr).IP.String(); got != "127.0.0.1" {
			t.Errorf("accepted a connection from %s; want only 127.0.0.1", got)
		}
		c.Close()
	case <-time.After(5 * time.Second):
		t.Fatal("the allowed connection was not accepted")
	}
	if got := counter(m.WithLabelValues("test")); got != 1 {
		t.Errorf("mote_ip_filter_refused_total{listener=test} = %v; want 1", got)
	}
}

func TestHandlerRefuses(t *testing.T) {
	f, err := New([]string{"10.0.0.0/8"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	m := NewMetric(nil)
	h := f.Handler(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}), "ws", Refusals{Metric: m})
	for addr, want := range map[string]int{"10.0.0.1:5000": 200, "127.0.0.1:5000": 403, "garbage": 403} {
		r := httptest.NewRequest("GET", "/mqtt", nil)
		r.RemoteAddr = addr
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != want {
			t.Errorf("request from %s: status %d; want %d", addr, w.Code, want)
		}
	}
	if got := counter(m.WithLabelValues("ws")); got != 2 {
		t.Errorf("refused = %v; want 2", got)
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

func counter(c prometheus.Counter) float64 {
	var m dto.Metric
	_ = c.Write(&m)
	return m.GetCounter().GetValue()
}
