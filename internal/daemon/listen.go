package daemon

import (
	"errors"
	"fmt"
	"net"

	"github.com/moteiot/mote/internal/broker"
	"github.com/moteiot/mote/internal/config"
)

// bindHTTP binds the HTTP, HTTPS and profiler listeners (the servers on
// them start later). A bind error names the flag to change.
func (d *Daemon) bindHTTP() error {
	bind := func(flag, addr string) (net.Listener, error) {
		if addr == "" {
			return nil, nil
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, bindError(flag, addr, err)
		}
		// Closed by the server's Shutdown once it serves; closing again
		// is harmless.
		d.onClose(func() error { _ = ln.Close(); return nil })
		return ln, nil
	}
	var err error
	if d.httpLn, err = bind("http-addr", d.cfg.HTTPAddr); err != nil {
		return err
	}
	if d.httpsLn, err = bind("https-addr", d.cfg.HTTPSAddr); err != nil {
		return err
	}
	if d.pprofLn, err = bind("pprof-addr", d.cfg.PprofAddr); err != nil {
		return err
	}
	return nil
}

// bindError says which setting to change when a listener cannot bind.
func bindError(flag, addr string, err error) error {
	return fmt.Errorf("listen on %s (--%s): %w; choose another address with --%s (or %s)",
		addr, flag, err, flag, config.EnvName(flag))
}

// listenFlag turns the broker's bind errors into ones that name the flag.
func listenFlag(err error) error {
	var le *broker.ListenError
	if !errors.As(err, &le) {
		return err
	}
	flag := "mqtt-addr"
	if le.Listener == "tls" {
		flag = "mqtts-addr"
	}
	return bindError(flag, le.Addr, le.Err)
}
