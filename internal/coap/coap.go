// Package coap is Mote's CoAP device API (RFC 7252, with block-wise
// transfer, RFC 7959, and Observe, RFC 7641) on plgd-dev/go-coap: plain
// UDP and DTLS listeners whose requests take the same paths as a device's
// MQTT and HTTP requests.
//
// Resources (docs/coap.md):
//
//	POST /things/{t}/{rest...}             publish on MQTT topic things/{t}/{rest} (broker.PublishVia)
//	GET  /things/{t}/shadow[/{name}]       the shadow document; Observe: notified on every change
//	PUT|POST /things/{t}/shadow[/{name}]   a shadow update (internal/shadow)
//	GET  /things/{t}/commands              pending commands (delivered); Observe: notified as they come
//	POST /things/{t}/commands/{id}         a command's result
//
// A device is authenticated by its DTLS client certificate, its DTLS PSK
// (identity = thing name, key = auth.Devices.PSK) or, on plain UDP when
// enabled, a token=thing:secret query parameter, and acts only as itself.
//
// Every request is bounded: a body (a whole block-wise transfer included)
// by MaxPayload, answered 4.13 before the library buffers it; observations
// per thing by MaxObservers; sessions by MaxSessions. Slow work (a
// publish waiting for the journal, a shadow commit) runs on the session's
// own goroutine, never on a shared one; notifications are sent from the
// server's own goroutines fed by bounded queues.
package coap

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	piondtls "github.com/pion/dtls/v2"
	dtlsserver "github.com/plgd-dev/go-coap/v3/dtls/server"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	coapnet "github.com/plgd-dev/go-coap/v3/net"
	"github.com/plgd-dev/go-coap/v3/net/blockwise"
	"github.com/plgd-dev/go-coap/v3/net/responsewriter"
	"github.com/plgd-dev/go-coap/v3/options"
	"github.com/plgd-dev/go-coap/v3/options/config"
	udpclient "github.com/plgd-dev/go-coap/v3/udp/client"
	udpserver "github.com/plgd-dev/go-coap/v3/udp/server"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/moteiot/mote/internal/auth"
	"github.com/moteiot/mote/internal/store"
)

// Authenticator tells who a device is (*auth.Devices).
type Authenticator interface {
	Secret(ctx context.Context, thing, secret string) (auth.Identity, error)
	Certificate(ctx context.Context, cert *x509.Certificate) (auth.Identity, error)
	PSK(ctx context.Context, thing string) ([]byte, auth.Identity, error)
}

// Gateway is the broker's entry for device messages that did not come
// over MQTT (*broker.Broker).
type Gateway interface {
	PublishVia(ctx context.Context, protocol, thing, clientID, topic string, payload []byte, qos byte, retain bool) error
	Authorize(ctx context.Context, thing, clientID, topic, protocol string) error
}

// Shadows reads and updates device shadows (*shadow.Service).
type Shadows interface {
	Get(ctx context.Context, thing, name string) ([]byte, error)
	Update(ctx context.Context, thing, name string, payload []byte) ([]byte, error)
}

// Commands hands out a thing's pending commands and takes their results
// (*commands.Service).
type Commands interface {
	Poll(ctx context.Context, thing string, wait time.Duration) ([]store.Command, error)
	Report(ctx context.Context, thing, id string, r store.CommandResult) (store.Command, error)
}

// Options configure a Server. Auth and Gateway are required; Shadows and
// Commands may be nil (their resources answer 5.03).
type Options struct {
	Addr     string // UDP listen address; "" disables
	DTLSAddr string // DTLS listen address; "" disables
	// TokenAuth accepts ?token=thing:secret on plain UDP.
	TokenAuth bool

	// Certificate is the server's DTLS certificate; ClientCAs verifies
	// device certificates (Mote's CA). Without a certificate DTLS offers
	// only PSK.
	Certificate *tls.Certificate
	ClientCAs   *x509.CertPool

	Auth     Authenticator
	Gateway  Gateway
	Shadows  Shadows
	Commands Commands
	// Feed carries shadow changes to observers; nil: shadow observations
	// get their first response only.
	Feed *ShadowFeed

	MaxPayload   int           // bytes; default 64 KiB
	MaxObservers int           // per thing; default 8
	MaxSessions  int           // per listener; default 10,000
	SessionIdle  time.Duration // default 5m
	// MaxBlockwiseTransfers bounds the Block1 transfers with a new
	// token per block a session has in flight (block1.go); default 8.
	MaxBlockwiseTransfers int
	// RequestTimeout bounds the work of one request (a publish waiting
	// for durability, a shadow commit); default 10s.
	RequestTimeout time.Duration

	Logger  *slog.Logger
	Metrics prometheus.Registerer
}

// Server is the CoAP device API.
type Server struct {
	opts    Options
	log     *slog.Logger
	logRate *rate.Limiter // refusals are logged at most this often
	m       *metrics
	obs     *observers
	block1  *block1Tags

	udp     *udpserver.Server
	udpLn   *coapnet.UDPConn
	dtls    *dtlsserver.Server
	dtlsLn  *coapnet.DTLSListener
	devMu   sync.Mutex
	devices map[*udpclient.Conn]auth.Identity // DTLS sessions and their device
	// rotations close DTLS sessions when a rotation window ends
	// (ExpireCredential); guarded by devMu, stopped by Close.
	rotations map[*time.Timer]struct{}
	udpN      atomic.Int64 // live UDP sessions
	dtlsN     atomic.Int64 // live DTLS sessions
	wg        sync.WaitGroup
	stop      chan struct{}
	closeMu   sync.Once
}

// New validates o and binds the listeners; Start serves them.
func New(o Options) (*Server, error) {
	if o.Auth == nil || o.Gateway == nil {
		return nil, errors.New("coap: Auth and Gateway are required")
	}
	if o.MaxPayload <= 0 {
		o.MaxPayload = 64 * 1024
	}
	if o.MaxObservers <= 0 {
		o.MaxObservers = 8
	}
	if o.MaxSessions <= 0 {
		o.MaxSessions = 10_000
	}
	if o.MaxBlockwiseTransfers <= 0 {
		o.MaxBlockwiseTransfers = 8
	}
	if o.SessionIdle <= 0 {
		o.SessionIdle = 5 * time.Minute
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = 10 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	s := &Server{
		opts:    o,
		log:     o.Logger,
		logRate: rate.NewLimiter(rate.Every(time.Second), 10),
		m:       newMetrics(o.Metrics),
		stop:    make(chan struct{}),
		devices: map[*udpclient.Conn]auth.Identity{},
	}
	s.obs = newObservers(s)
	s.block1 = newBlock1Tags(blockwiseTimeout, o.MaxBlockwiseTransfers, func() {
		s.m.blockEvicted.Inc()
		s.refusalLog("block-wise transfer evicted: coap-max-blockwise-transfers reached")
	})
	if o.Feed != nil && o.Metrics != nil {
		feed := o.Feed
		register(o.Metrics, prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "mote_coap_shadow_changes_dropped_total",
			Help: "Shadow changes not notified to CoAP observers because the feed's queue was full (its observers see the next change).",
		}, func() float64 { return float64(feed.Dropped()) }))
	}
	if o.Addr != "" {
		ln, err := coapnet.NewListenUDP("udp", o.Addr)
		if err != nil {
			return nil, fmt.Errorf("coap-addr: %w", err)
		}
		s.udpLn = ln
		var opts []udpserver.Option
		for _, o := range s.serverOptions(false) {
			opts = append(opts, o)
		}
		s.udp = udpserver.New(opts...)
	}
	if o.DTLSAddr != "" {
		ln, err := coapnet.NewDTLSListener("udp", o.DTLSAddr, s.dtlsConfig())
		if err != nil {
			if s.udpLn != nil {
				_ = s.udpLn.Close()
			}
			return nil, fmt.Errorf("coaps-addr: %w", err)
		}
		s.dtlsLn = ln
		var opts []dtlsserver.Option
		for _, o := range s.serverOptions(true) {
			opts = append(opts, o)
		}
		s.dtls = dtlsserver.New(opts...)
	}
	return s, nil
}

// maxDatagram bounds one datagram: a block of 1024 bytes, its options and
// header, or a small request whole.
const maxDatagram = 1280 + 1024

// blockwiseTimeout is how long a block-wise transfer may pause between
// blocks before its state is dropped.
const blockwiseTimeout = 30 * time.Second

// serverOption is a go-coap option for both the UDP and the DTLS server.
type serverOption interface {
	udpserver.Option
	dtlsserver.Option
}

// serverOptions are the go-coap options of one listener.
func (s *Server) serverOptions(dtls bool) []serverOption {
	handler := func(w *responsewriter.ResponseWriter[*udpclient.Conn], r *pool.Message) {
		s.serve(w, r, dtls)
	}
	return []serverOption{
		options.WithHandlerFunc(handler),
		// The whole body of a block-wise transfer is bounded by
		// MaxPayload (checked before the library buffers a block, in
		// precheck); a single datagram by maxDatagram.
		options.WithMaxMessageSize(uint32(max(s.opts.MaxPayload, maxDatagram))),
		options.WithBlockwise(true, blockwise.SZX1024, blockwiseTimeout),
		options.WithProcessReceivedMessageFunc(func(req *pool.Message, cc *udpclient.Conn, next config.HandlerFunc[*udpclient.Conn]) {
			s.precheck(req, cc, next)
		}),
		options.WithInactivityMonitor(s.opts.SessionIdle, func(cc *udpclient.Conn) { _ = cc.Close() }),
		options.WithOnNewConn(func(cc *udpclient.Conn) { s.onNewConn(cc, dtls) }),
		options.WithErrors(func(err error) {
			if s.logRate.Allow() {
				s.log.Debug("coap", "error", err)
			}
		}),
	}
}

// Start serves the listeners.
func (s *Server) Start() error {
	if s.udp != nil {
		s.wg.Go(func() {
			if err := s.udp.Serve(s.udpLn); err != nil {
				s.log.Error("coap listener stopped", "error", err)
			}
		})
	}
	if s.dtls != nil {
		s.wg.Go(func() {
			if err := s.dtls.Serve(s.dtlsLn); err != nil {
				s.log.Error("coaps listener stopped", "error", err)
			}
		})
	}
	if s.opts.Feed != nil {
		s.wg.Go(func() { s.obs.runFeed(s.opts.Feed) })
	}
	return nil
}

// Close stops the listeners, ends every observation and waits for the
// server's goroutines.
func (s *Server) Close() error {
	var errs []error
	s.closeMu.Do(func() {
		close(s.stop)
		if s.udp != nil {
			s.udp.Stop()
		} else if s.udpLn != nil {
			errs = append(errs, s.udpLn.Close())
		}
		if s.dtls != nil {
			s.dtls.Stop()
		} else if s.dtlsLn != nil {
			errs = append(errs, s.dtlsLn.Close())
		}
		s.obs.closeAll()
		s.devMu.Lock()
		for t := range s.rotations {
			t.Stop()
		}
		clear(s.rotations)
		s.devMu.Unlock()
		s.wg.Wait()
	})
	return errors.Join(errs...)
}

// Addrs returns the bound UDP and DTLS addresses ("" when disabled).
func (s *Server) Addrs() (udp, dtls string) {
	if s.udpLn != nil {
		udp = s.udpLn.LocalAddr().String()
	}
	if s.dtlsLn != nil {
		dtls = s.dtlsLn.Addr().String()
	}
	return udp, dtls
}

type identityKey struct{}

// onNewConn bounds the sessions of a listener and, for DTLS, finds the
// device of the session from its certificate or PSK identity.
func (s *Server) onNewConn(cc *udpclient.Conn, dtls bool) {
	n := &s.udpN
	kind := "udp"
	if dtls {
		n, kind = &s.dtlsN, "dtls"
	}
	if n.Add(1) > int64(s.opts.MaxSessions) {
		n.Add(-1)
		s.m.sessionsRefused.WithLabelValues(kind).Inc()
		s.refusalLog("session limit reached; new session closed", "listener", kind, "remote", cc.RemoteAddr().String())
		_ = cc.Close()
		return
	}
	s.m.sessions.WithLabelValues(kind).Inc()
	cc.AddOnClose(func() {
		n.Add(-1)
		s.m.sessions.WithLabelValues(kind).Dec()
		s.obs.connClosed(cc)
		s.block1.forget(cc, nil)
	})
	if !dtls {
		return
	}
	dc, ok := cc.NetConn().(*piondtls.Conn)
	if !ok {
		_ = cc.Close()
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.RequestTimeout)
	defer cancel()
	id, err := s.dtlsIdentity(ctx, dc.ConnectionState())
	if err != nil {
		s.m.authFailures.WithLabelValues("dtls").Inc()
		s.refusalLog("DTLS session refused", "remote", cc.RemoteAddr().String(), "error", err)
		_ = cc.Close()
		return
	}
	cc.SetContextValue(identityKey{}, id)
	s.devMu.Lock()
	s.devices[cc] = id
	s.devMu.Unlock()
	cc.AddOnClose(func() {
		s.devMu.Lock()
		delete(s.devices, cc)
		s.devMu.Unlock()
	})
}

// DisconnectThing closes the DTLS sessions of a thing (disabled or
// deleted); its next handshake is checked again.
func (s *Server) DisconnectThing(thing string) {
	s.disconnect(func(id auth.Identity) bool { return id.Thing == thing })
}

// DisconnectCredential closes the DTLS sessions that a credential
// authenticated (revoked).
func (s *Server) DisconnectCredential(thing, credential string) {
	s.disconnect(func(id auth.Identity) bool { return id.Thing == thing && id.Credential == credential })
}

// ExpireCredential closes, at at, the DTLS sessions that a credential
// authenticated: the end of its rotation window. Sessions made later are
// checked against the credential's stored expiry at their handshake.
func (s *Server) ExpireCredential(thing, credential string, at time.Time) {
	match := func(id auth.Identity) bool { return id.Thing == thing && id.Credential == credential }
	s.devMu.Lock()
	defer s.devMu.Unlock()
	live := false
	for _, id := range s.devices {
		live = live || match(id)
	}
	select {
	case <-s.stop:
		return
	default:
	}
	if !live {
		return
	}
	if s.rotations == nil {
		s.rotations = make(map[*time.Timer]struct{})
	}
	var t *time.Timer
	t = time.AfterFunc(time.Until(at), func() {
		s.devMu.Lock()
		delete(s.rotations, t)
		s.devMu.Unlock()
		s.disconnect(match)
	})
	s.rotations[t] = struct{}{}
}

func (s *Server) disconnect(match func(auth.Identity) bool) {
	var closing []*udpclient.Conn
	s.devMu.Lock()
	for cc, id := range s.devices {
		if match(id) {
			closing = append(closing, cc)
		}
	}
	s.devMu.Unlock()
	for _, cc := range closing {
		_ = cc.Close()
	}
}

// dtlsIdentity is the device of a DTLS session: its certificate's, or its
// PSK identity's (the PSK callback already proved the key).
func (s *Server) dtlsIdentity(ctx context.Context, st piondtls.State) (auth.Identity, error) {
	if len(st.PeerCertificates) > 0 {
		cert, err := x509.ParseCertificate(st.PeerCertificates[0])
		if err != nil {
			return auth.Identity{}, auth.ErrInvalidCertificate
		}
		return s.opts.Auth.Certificate(ctx, cert)
	}
	if len(st.IdentityHint) > 0 {
		_, id, err := s.opts.Auth.PSK(ctx, string(st.IdentityHint))
		return id, err
	}
	return auth.Identity{}, auth.ErrBadSecret
}

// dtlsConfig is the DTLS server configuration: certificates verified
// against Mote's CA when a device presents one, PSK otherwise.
func (s *Server) dtlsConfig() *piondtls.Config {
	c := &piondtls.Config{
		PSKIdentityHint: []byte("mote"),
		PSK: func(identity []byte) ([]byte, error) {
			ctx, cancel := context.WithTimeout(context.Background(), s.opts.RequestTimeout)
			defer cancel()
			key, _, err := s.opts.Auth.PSK(ctx, string(identity))
			if err != nil {
				s.m.authFailures.WithLabelValues("psk").Inc()
				s.refusalLog("DTLS PSK identity refused", "error", err)
				return nil, err
			}
			return key, nil
		},
		// pion's defaults hold no PSK suite: name them all. The CoAP
		// mandatory suites (RFC 7252 §9.1.3) come first.
		CipherSuites: []piondtls.CipherSuiteID{
			piondtls.TLS_PSK_WITH_AES_128_CCM_8,
			piondtls.TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8,
			piondtls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
			piondtls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
			piondtls.TLS_ECDHE_ECDSA_WITH_AES_128_CCM,
			piondtls.TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA256,
			piondtls.TLS_PSK_WITH_AES_128_GCM_SHA256,
			piondtls.TLS_PSK_WITH_AES_128_CCM,
			piondtls.TLS_PSK_WITH_AES_256_CCM_8,
		},
		// A handshake has this long; one that stalls does not hold its
		// goroutine longer.
		ConnectContextMaker: func() (context.Context, func()) {
			return context.WithTimeout(context.Background(), 10*time.Second)
		},
	}
	if s.opts.Certificate != nil {
		c.Certificates = []tls.Certificate{*s.opts.Certificate}
		// The chain is verified here rather than by pion
		// (VerifyClientCertIfGiven), so that a refused certificate is
		// counted and logged like every other refusal. pion still checks
		// the client's CertificateVerify: it holds the key.
		c.ClientAuth = piondtls.RequestClientCert
		c.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 {
				return nil // a PSK session
			}
			if err := verifyClientChain(raw, s.opts.ClientCAs); err != nil {
				s.m.authFailures.WithLabelValues("dtls").Inc()
				s.refusalLog("DTLS client certificate refused", "error", err)
				return err
			}
			return nil
		}
	}
	return c
}

// verifyClientChain verifies a DTLS client's certificate chain (leaf
// first) against roots, for client authentication, as crypto/tls does.
func verifyClientChain(raw [][]byte, roots *x509.CertPool) error {
	if roots == nil {
		return errors.New("no client CA is configured")
	}
	certs := make([]*x509.Certificate, len(raw))
	for i, der := range raw {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return fmt.Errorf("client certificate %d: %w", i, err)
		}
		certs[i] = c
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	_, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	return err
}

// refusalLog logs a refusal, at most a few a second: a flood of bad
// requests must not flood the log. Never with a payload or a secret.
func (s *Server) refusalLog(msg string, args ...any) {
	if s.logRate.Allow() {
		s.log.Info(msg, args...)
	}
}
