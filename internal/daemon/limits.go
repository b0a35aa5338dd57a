package daemon

import (
	"log/slog"
	"net"
	"net/http"
	"syscall"
	"time"

	"golang.org/x/net/netutil"

	"github.com/moteiot/mote/internal/broker"
	"github.com/moteiot/mote/internal/httpapi"
	"github.com/moteiot/mote/internal/ipfilter"
)

// RaiseFileLimit raises the soft open-file limit (RLIMIT_NOFILE) to the
// hard one — every connection is a file descriptor — and returns both.
// `mote serve` calls it at start and logs the result. (The Go runtime
// already does the same since Go 1.19; this makes it visible and
// independent of that.)
func RaiseFileLimit() (soft, hard uint64, err error) {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 0, 0, err
	}
	if l.Cur < l.Max {
		n := l
		n.Cur = n.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &n); err != nil {
			return uint64(l.Cur), uint64(l.Max), err
		}
		l = n
	}
	return uint64(l.Cur), uint64(l.Max), nil
}

// httpMaxConns is --http-max-conns, or with 0 half the soft open-file
// limit (at least 64): the HTTP(S) server can never take every file
// descriptor, so MQTT, the store and /healthz keep some when clients hold
// connections open.
func (d *Daemon) httpMaxConns() int {
	if d.cfg.HTTPMaxConns > 0 {
		return d.cfg.HTTPMaxConns
	}
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil || l.Cur == 0 || l.Cur > 1<<30 {
		return 1 << 20
	}
	return max(64, int(l.Cur/2))
}

// filters builds the device and API IP filters and what counts and logs
// their refusals (config.Validate has checked the lists).
func (d *Daemon) filters() (dev, api *ipfilter.Filter, r ipfilter.Refusals, err error) {
	if dev, err = ipfilter.New(d.cfg.DeviceIPAllow, d.cfg.DeviceIPDeny); err != nil {
		return nil, nil, r, err
	}
	if api, err = ipfilter.New(d.cfg.APIIPAllow, d.cfg.APIIPDeny); err != nil {
		return nil, nil, r, err
	}
	r = ipfilter.Refusals{
		Metric: ipfilter.NewMetric(d.metrics),
		Log:    broker.Throttled(d.log.With("component", "ipfilter"), 5, time.Second),
	}
	return dev, api, r, nil
}

// httpListener wraps a raw HTTP(S) listener: the IP filter first (a
// refused address is closed before TLS or a request is read), then the
// connection cap (more connections wait in the kernel's backlog, holding
// no file descriptor of ours).
func (d *Daemon) httpListener(ln net.Listener, name string, f *ipfilter.Filter, r ipfilter.Refusals) net.Listener {
	return netutil.LimitListener(f.Listener(ln, name, r), d.httpMaxConns())
}

// httpServer is an http.Server with the configured header, body and idle
// timeouts and header limit. There is no ReadTimeout or WriteTimeout:
// they would end the event stream, long polls and MQTT over WebSocket;
// the body deadline is set per request (httpapi.BodyTimeout).
func (d *Daemon) httpServer(h http.Handler, component string) *http.Server {
	return &http.Server{
		Handler:           httpapi.BodyTimeout(h, d.cfg.HTTPBodyTimeout),
		ReadHeaderTimeout: d.cfg.HTTPReadHeaderTimeout,
		IdleTimeout:       d.cfg.HTTPIdleTimeout,
		MaxHeaderBytes:    d.cfg.HTTPMaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(broker.Throttled(d.log.With("component", component), 5, time.Second).Handler(), slog.LevelWarn),
	}
}

// wrapDeviceListener applies the device IP filter to the broker's TCP and
// TLS listeners (broker.Options.WrapListener).
func (d *Daemon) wrapDeviceListener(id string, ln net.Listener) net.Listener {
	return d.devFilter.Listener(ln, id, d.ipRefusals)
}
