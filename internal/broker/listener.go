package broker

import (
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
)

// netListener accepts MQTT over TCP or TLS. Unlike mochi's own listener it
// gives a new connection ConnectTimeout to send CONNECT (mochi replaces the
// deadline with the keep-alive once CONNECT is read), and it does not log
// every refused connection.
type netListener struct {
	id      string
	addr    string
	tlsConf *tls.Config
	b       *Broker
	ln      net.Listener
	closed  atomic.Bool
	conns   connSet
}

// connSet tracks a listener's connections so that Close can end them all
// and wait: mochi's CloseAll waits on a WaitGroup that a connection still
// being established would otherwise Add to concurrently.
type connSet struct {
	mu     sync.Mutex
	closed bool
	m      map[net.Conn]struct{}
	wg     sync.WaitGroup
}

// add registers c; false means the listener is closing and c was closed.
func (cs *connSet) add(c net.Conn) bool {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.closed {
		_ = c.Close()
		return false
	}
	if cs.m == nil {
		cs.m = make(map[net.Conn]struct{})
	}
	cs.m[c] = struct{}{}
	cs.wg.Add(1)
	return true
}

func (cs *connSet) done(c net.Conn) {
	cs.mu.Lock()
	delete(cs.m, c)
	cs.mu.Unlock()
	cs.wg.Done()
}

// closeAll closes every tracked connection and waits for their
// goroutines to finish.
func (cs *connSet) closeAll() {
	cs.mu.Lock()
	cs.closed = true
	for c := range cs.m {
		_ = c.Close()
	}
	cs.mu.Unlock()
	cs.wg.Wait()
}

var _ listeners.Listener = (*netListener)(nil)

func newNetListener(id, addr string, tlsConf *tls.Config, b *Broker) *netListener {
	return &netListener{id: id, addr: addr, tlsConf: tlsConf, b: b}
}

func (l *netListener) ID() string       { return l.id }
func (l *netListener) Protocol() string { return l.id }
func (l *netListener) Address() string {
	if l.ln != nil {
		return l.ln.Addr().String()
	}
	return l.addr
}

func (l *netListener) Init(*slog.Logger) error {
	ln, err := net.Listen("tcp", l.addr)
	if err != nil {
		return err
	}
	if l.b.opts.WrapListener != nil {
		ln = l.b.opts.WrapListener(l.id, ln)
	}
	if l.tlsConf != nil {
		ln = tls.NewListener(ln, l.tlsConf)
	}
	l.ln = ln
	return nil
}

func (l *netListener) Serve(establish listeners.EstablishFn) {
	select { // stored sessions first (sessions.go); until then connections wait in the backlog
	case <-l.b.ready:
	case <-l.b.stop:
		return
	}
	var backoff time.Duration
	for {
		conn, err := l.ln.Accept()
		if err != nil {
			if l.closed.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: back off, keep serving.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			l.b.log.Error("accept failed", "listener", l.id, "error", err, "retry_in", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		lc := &lingerConn{Conn: conn, linger: l.b.opts.CloseLinger}
		conn = &corkConn{Conn: lc}
		if !l.conns.add(conn) {
			return
		}
		_ = conn.SetDeadline(time.Now().Add(l.b.opts.ConnectTimeout))
		go func() {
			defer l.conns.done(conn)
			err := establish(l.id, conn)
			lc.finish() // mochi has closed it: half-close, drain, close
			if err != nil {
				l.b.connLog.Debug("connection ended", "listener", l.id, "remote", conn.RemoteAddr().String(), "error", err)
			}
		}()
	}
}

func (l *netListener) Close(listeners.CloseFn) {
	if l.closed.CompareAndSwap(false, true) {
		if l.ln != nil {
			_ = l.ln.Close()
		}
		l.b.disconnectListener(l.id) // DISCONNECT "server shutting down" to MQTT 5 clients
		l.conns.closeAll()
	}
}

// lingerConn closes a client connection gracefully. When mochi closes a
// connection, often just after writing a DISCONNECT (0x93 Receive Maximum
// exceeded, 0x97 slow subscriber, 0x8B shutting down...), a plain close
// with unread bytes from the client in the socket sends a TCP reset, and
// the client may lose the DISCONNECT it had not read yet. So Close only
// wakes the reader (mochi's read loop ends); once mochi is done with the
// connection, finish writes any last packet (DISCONNECT 0x95 after an
// oversize packet, protocol.go), half-closes it (FIN, TLS close_notify),
// reads and discards what the client still sends for at most linger or
// lingerDrainMax bytes, and closes it. linger 0 closes at once.
type lingerConn struct {
	net.Conn
	linger  time.Duration
	closing atomic.Bool
	mu      sync.Mutex
	final   []byte // written before the half-close
}

// lingerDrainMax bounds what a closing connection reads and discards.
const lingerDrainMax = 256 << 10

func (c *lingerConn) Read(p []byte) (int, error) {
	if c.closing.Load() {
		return 0, net.ErrClosed
	}
	n, err := c.Conn.Read(p)
	if c.closing.Load() {
		return 0, net.ErrClosed // woken by Close: not a keep-alive timeout
	}
	return n, err
}

// Close ends reading at once; the close itself is finish's.
func (c *lingerConn) Close() error {
	if c.linger <= 0 {
		return c.Conn.Close()
	}
	if c.closing.CompareAndSwap(false, true) {
		_ = c.Conn.SetReadDeadline(time.Now())
	}
	return nil
}

// last sets a packet to write before the half-close.
func (c *lingerConn) last(b []byte) {
	c.mu.Lock()
	c.final = b
	c.mu.Unlock()
}

// finish closes the connection gracefully (see lingerConn). It runs once
// mochi is done with the connection, on the listener's goroutine for it.
func (c *lingerConn) finish() {
	if c.linger <= 0 {
		_ = c.Conn.Close()
		return
	}
	c.closing.Store(true)
	_ = c.Conn.SetDeadline(time.Now().Add(c.linger))
	c.mu.Lock()
	final := c.final
	c.mu.Unlock()
	if len(final) > 0 {
		_, _ = c.Conn.Write(final)
	}
	if hc, ok := c.Conn.(interface{ CloseWrite() error }); ok && hc.CloseWrite() == nil {
		_, _ = io.Copy(io.Discard, io.LimitReader(c.Conn, lingerDrainMax))
	}
	_ = c.Conn.Close()
}

// lingerOf returns the lingerConn of a client connection, or nil.
func lingerOf(c net.Conn) *lingerConn {
	if cc, ok := c.(*corkConn); ok {
		c = cc.Conn
	}
	lc, _ := c.(*lingerConn)
	return lc
}

// wsListener serves MQTT over WebSocket from Mote's own HTTP server (mochi's
// websocket listener runs its own HTTP server and accepts any origin).
type wsListener struct {
	id        string
	b         *Broker
	establish atomic.Pointer[listeners.EstablishFn]
	upgrader  websocket.Upgrader
	closed    atomic.Bool
	done      chan struct{}
	once      sync.Once
	conns     connSet
}

var _ listeners.Listener = (*wsListener)(nil)

func newWSListener(id string, b *Broker) *wsListener {
	l := &wsListener{id: id, b: b, done: make(chan struct{})}
	l.upgrader = websocket.Upgrader{
		Subprotocols:    []string{"mqtt", "mqttv3.1"},
		ReadBufferSize:  1024,
		WriteBufferSize: 1024,
		CheckOrigin:     l.checkOrigin,
	}
	return l
}

func (l *wsListener) ID() string              { return l.id }
func (l *wsListener) Protocol() string        { return "ws" }
func (l *wsListener) Address() string         { return "/mqtt" }
func (l *wsListener) Init(*slog.Logger) error { return nil }
func (l *wsListener) Serve(establish listeners.EstablishFn) {
	select {
	case <-l.b.ready:
	case <-l.b.stop:
		return
	}
	l.establish.Store(&establish)
	<-l.done
}

func (l *wsListener) Close(listeners.CloseFn) {
	l.once.Do(func() {
		l.closed.Store(true)
		l.b.disconnectListener(l.id)
		l.conns.closeAll()
		close(l.done)
	})
}

// checkOrigin admits clients that send no Origin (devices), browsers on the
// same host, and origins listed in WebSocketOrigins ("*" admits any).
func (l *wsListener) checkOrigin(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	for _, o := range l.b.opts.WebSocketOrigins {
		if o == "*" || strings.EqualFold(o, origin) {
			return true
		}
	}
	u, err := url.Parse(origin)
	return err == nil && strings.EqualFold(u.Host, r.Host)
}

func (l *wsListener) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	est := l.establish.Load()
	if est == nil || l.closed.Load() {
		http.Error(w, "MQTT over WebSocket is not available", http.StatusServiceUnavailable)
		return
	}
	if !l.checkOrigin(r) {
		http.Error(w, "origin not allowed", http.StatusForbidden)
		return
	}
	c, err := l.upgrader.Upgrade(w, r, nil)
	if err != nil {
		return // the upgrader has answered
	}
	conn := &wsConn{Conn: c.NetConn(), c: c}
	if !l.conns.add(conn) {
		return
	}
	defer l.conns.done(conn)
	_ = conn.SetDeadline(time.Now().Add(l.b.opts.ConnectTimeout))
	if err := (*est)(l.id, conn); err != nil {
		l.b.connLog.Debug("connection ended", "listener", l.id, "remote", r.RemoteAddr, "error", err)
	}
}

// wsConn is a WebSocket connection as a net.Conn carrying MQTT in binary
// messages.
type wsConn struct {
	net.Conn
	c  *websocket.Conn
	r  io.Reader
	mu sync.Mutex
}

func (ws *wsConn) Read(p []byte) (int, error) {
	for {
		if ws.r == nil {
			op, r, err := ws.c.NextReader()
			if err != nil {
				return 0, err
			}
			if op != websocket.BinaryMessage {
				return 0, errors.New("websocket: MQTT needs binary messages")
			}
			ws.r = r
		}
		n, err := ws.r.Read(p)
		if errors.Is(err, io.EOF) { // end of this message; MQTT packets may span messages
			ws.r = nil
			if n == 0 {
				continue
			}
			return n, nil
		}
		if err != nil {
			ws.r = nil
		}
		return n, err
	}
}

func (ws *wsConn) Write(p []byte) (int, error) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if err := ws.c.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (ws *wsConn) Close() error { return ws.c.Close() }

// disconnectListener sends DISCONNECT "server shutting down" to the clients
// of one listener. mochi's own CloseFn (Clients.GetByListener) takes the
// clients' read lock twice, which deadlocks when a connecting client is
// waiting for the write lock in between; GetAll takes it once.
func (b *Broker) disconnectListener(id string) {
	for _, cl := range b.server.Clients.GetAll() {
		if cl.Net.Listener == id && !cl.Net.Inline && !cl.Closed() {
			_ = b.server.DisconnectClient(cl, packets.ErrServerShuttingDown)
		}
	}
}
