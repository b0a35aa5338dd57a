// Package ipfilter refuses connections by the client's IP address, before
// anything else happens on them: a Filter holds allow and deny CIDR lists
// (deny wins; an empty allow list allows every address the deny list does
// not name), and Listener wraps a net.Listener so that a refused
// connection is closed as it is accepted — before a TLS handshake, an MQTT
// CONNECT or an HTTP request is read. Mote uses one filter for the device
// listeners (MQTT, MQTTS, HTTPS) and one for the HTTP API port
// (docs/architecture.md).
package ipfilter

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// Filter decides which client addresses may connect. A nil *Filter allows
// every address.
type Filter struct {
	allow []netip.Prefix
	deny  []netip.Prefix
}

// New parses the allow and deny lists: CIDR prefixes (10.0.0.0/8,
// 2001:db8::/32) or single addresses (192.0.2.7, taken as /32 or /128).
// It returns nil, allowing everything, when both lists are empty.
func New(allow, deny []string) (*Filter, error) {
	a, err := parseList(allow)
	if err != nil {
		return nil, fmt.Errorf("allow list: %w", err)
	}
	d, err := parseList(deny)
	if err != nil {
		return nil, fmt.Errorf("deny list: %w", err)
	}
	if len(a) == 0 && len(d) == 0 {
		return nil, nil
	}
	return &Filter{allow: a, deny: d}, nil
}

// ParseList checks a list of CIDR prefixes or addresses; config.Validate
// uses it so that a typo stops the server at start.
func ParseList(items []string) error {
	_, err := parseList(items)
	return err
}

func parseList(items []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, it := range items {
		it = strings.TrimSpace(it)
		if it == "" {
			continue
		}
		if strings.Contains(it, "/") {
			p, err := netip.ParsePrefix(it)
			if err != nil {
				return nil, fmt.Errorf("%q is not a CIDR prefix such as 10.0.0.0/8", it)
			}
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(it)
		if err != nil {
			return nil, fmt.Errorf("%q is not an IP address or a CIDR prefix such as 10.0.0.0/8", it)
		}
		a = a.Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// Allows reports whether a client at addr may connect: not in the deny
// list, and in the allow list if there is one. IPv4-mapped IPv6 addresses
// are matched as IPv4.
func (f *Filter) Allows(addr netip.Addr) bool {
	if f == nil {
		return true
	}
	addr = addr.Unmap()
	if !addr.IsValid() {
		return false
	}
	for _, p := range f.deny {
		if p.Contains(addr) {
			return false
		}
	}
	if len(f.allow) == 0 {
		return true
	}
	for _, p := range f.allow {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// AllowsAddr is Allows for a net.Addr or a "host:port" string as found in
// http.Request.RemoteAddr; an address it cannot parse is refused.
func (f *Filter) AllowsAddr(a net.Addr) bool {
	if f == nil {
		return true
	}
	if a == nil {
		return false
	}
	if ta, ok := a.(*net.TCPAddr); ok {
		ip, ok := netip.AddrFromSlice(ta.IP)
		return ok && f.Allows(ip)
	}
	return f.allowsString(a.String())
}

func (f *Filter) allowsString(hostPort string) bool {
	ap, err := netip.ParseAddrPort(hostPort)
	if err != nil {
		return false
	}
	return f.Allows(ap.Addr())
}

// Refusals counts and logs refused connections: Metric is
// mote_ip_filter_refused_total{listener}; Log should be rate-limited (one
// noisy address must not flood the log). Either may be nil.
type Refusals struct {
	Metric *prometheus.CounterVec
	Log    *slog.Logger
}

// NewMetric registers mote_ip_filter_refused_total with reg (nil: an
// unregistered counter), sharing one already registered.
func NewMetric(reg prometheus.Registerer) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mote_ip_filter_refused_total",
		Help: "Connections (or WebSocket upgrades) closed because the client's address is denied or not allowed (--device-ip-*, --api-ip-*), by listener.",
	}, []string{"listener"})
	if reg == nil {
		return c
	}
	if err := reg.Register(c); err != nil {
		if are, ok := err.(prometheus.AlreadyRegisteredError); ok {
			if existing, ok := are.ExistingCollector.(*prometheus.CounterVec); ok {
				return existing
			}
		}
	}
	return c
}

// init creates the listener's series at 0.
func (r Refusals) init(listener string) {
	if r.Metric != nil {
		r.Metric.WithLabelValues(listener)
	}
}

func (r Refusals) refused(listener string, remote string) {
	if r.Metric != nil {
		r.Metric.WithLabelValues(listener).Inc()
	}
	if r.Log != nil {
		r.Log.Warn("connection refused by the IP filter", "listener", listener, "remote", remote)
	}
}

// Listener wraps ln so that Accept closes every connection f refuses and
// returns only allowed ones. name labels the metric and the log. With a
// nil f it returns ln itself.
func (f *Filter) Listener(ln net.Listener, name string, r Refusals) net.Listener {
	if f == nil {
		return ln
	}
	r.init(name)
	return &listener{Listener: ln, f: f, name: name, r: r}
}

type listener struct {
	net.Listener
	f    *Filter
	name string
	r    Refusals
}

func (l *listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.f.AllowsAddr(c.RemoteAddr()) {
			return c, nil
		}
		remote := c.RemoteAddr().String()
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0) // reset: nothing is owed to a refused peer
		}
		_ = c.Close()
		l.r.refused(l.name, remote)
	}
}

// Handler refuses a request from an address f refuses with 403 before
// next sees it (for MQTT over WebSocket on the API port, where the device
// list applies on top of the API list). With a nil f it returns next.
func (f *Filter) Handler(next http.Handler, name string, r Refusals) http.Handler {
	if f == nil {
		return next
	}
	r.init(name)
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if !f.allowsString(req.RemoteAddr) {
			r.refused(name, req.RemoteAddr)
			w.Header().Set("Connection", "close")
			http.Error(w, "your address may not connect here", http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, req)
	})
}
