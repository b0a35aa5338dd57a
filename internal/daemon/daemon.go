// Package daemon assembles a Mote server from its parts — store, registry,
// authentication, broker, REST API — and runs it. It is the embeddable
// core behind `mote serve`: New(cfg), Start(ctx), Addrs(), Close(), usable
// from a test with ports 0 and a temporary data directory.
package daemon

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/moteiot/mote/internal/auth"
	"github.com/moteiot/mote/internal/broker"
	"github.com/moteiot/mote/internal/bus"
	"github.com/moteiot/mote/internal/config"
	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/datadir"
	"github.com/moteiot/mote/internal/httpapi"
	"github.com/moteiot/mote/internal/pki"
	"github.com/moteiot/mote/internal/registry"
	"github.com/moteiot/mote/internal/ruleengine"
	"github.com/moteiot/mote/internal/shadow"
	"github.com/moteiot/mote/internal/store"
	"github.com/moteiot/mote/internal/store/sqlite"
	"github.com/moteiot/mote/internal/telemetry"
	telemetrysqlite "github.com/moteiot/mote/internal/telemetry/sqlite"
)

// Addrs are the addresses the server listens on ("" when disabled).
type Addrs struct {
	MQTT  string // host:port
	MQTTS string
	HTTP  string
	Pprof string // only with --pprof-addr
}

// Daemon is one Mote server.
type Daemon struct {
	cfg config.Config
	log *slog.Logger

	store    store.Store
	ca       *pki.CA
	registry *registry.Registry
	devices  *auth.Devices
	broker   *broker.Broker
	bus      *bus.Bus
	shadows  *shadow.Service
	rules    *ruleengine.Engine
	tstore   *telemetrysqlite.Store
	twriter  *telemetry.Writer
	http     *http.Server
	httpLn   net.Listener
	metrics  *prometheus.Registry

	initialToken string
	pprofAddr    string
	ready        bool
	mu           sync.Mutex
	closers      []func() error // in start order; run in reverse
	httpDone     chan struct{}
}

// New returns a Daemon for cfg (which should have passed Validate). log may
// be nil.
func New(cfg config.Config, log *slog.Logger) *Daemon {
	if log == nil {
		log = slog.Default()
	}
	return &Daemon{cfg: cfg, log: log}
}

// Start opens the store, creates the CA and keys on first start, and starts
// the broker and the HTTP server. On failure everything already started is
// stopped again.
func (d *Daemon) Start(ctx context.Context) (err error) {
	defer func() {
		if err != nil {
			_ = d.Close()
		}
	}()
	cfg := d.cfg
	if err := datadir.Ensure(cfg.DataDir); err != nil {
		return err
	}
	st, err := sqlite.Open(datadir.DB(cfg.DataDir))
	if err != nil {
		return fmt.Errorf("open store: %w", err)
	}
	d.store = st
	d.onClose(st.Close)

	hasher, err := auth.LoadOrCreateHasher(datadir.HashKey(cfg.DataDir))
	if err != nil {
		return err
	}
	d.ca, err = pki.LoadOrCreateCA(datadir.PKI(cfg.DataDir))
	if err != nil {
		return fmt.Errorf("certificate authority: %w", err)
	}
	var serverCert tls.Certificate
	if cfg.TLSCert != "" {
		serverCert, err = pki.LoadKeyPair(cfg.TLSCert, cfg.TLSKey)
	} else {
		serverCert, err = pki.LoadOrCreateServerCert(datadir.PKI(cfg.DataDir), d.ca, cfg.TLSHosts)
	}
	if err != nil {
		return fmt.Errorf("server certificate: %w", err)
	}

	d.registry = registry.New(registry.Options{Store: st, Hasher: hasher, CA: d.ca, Logger: d.log.With("component", "registry")})
	if err := d.registry.Bootstrap(ctx); err != nil {
		return fmt.Errorf("bootstrap registry: %w", err)
	}
	if err := d.firstToken(ctx); err != nil {
		return err
	}
	if err := st.Things().ResetPresence(ctx); err != nil {
		return fmt.Errorf("reset presence: %w", err)
	}
	d.devices = auth.NewDevices(st, hasher, d.ca)

	// Telemetry: the store, its batching writer and the retention loop,
	// closed in reverse (retention, writer flush, store) after the rules
	// engine that feeds the writer.
	d.tstore, err = telemetrysqlite.Open(datadir.Telemetry(cfg.DataDir))
	if err != nil {
		return fmt.Errorf("open telemetry store: %w", err)
	}
	d.onClose(d.tstore.Close)
	tlog := d.log.With("component", "telemetry")
	d.twriter, err = telemetry.NewWriter(ctx, d.tstore, telemetry.WriterOptions{
		OnError: func(err error) { tlog.Warn("telemetry write failed; retrying", "error", err) },
	})
	if err != nil {
		return err
	}
	d.onClose(d.twriter.Close)
	retCtx, retCancel := context.WithCancel(context.Background())
	retDone := make(chan struct{})
	go func() {
		defer close(retDone)
		telemetry.RunRetention(retCtx, d.tstore, cfg.TelemetryRetention, time.Hour, tlog)
	}()
	d.onClose(func() error { retCancel(); <-retDone; return nil })

	d.metrics = prometheus.NewRegistry()
	d.metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	d.bus = &bus.Bus{}
	d.broker, err = broker.New(broker.Options{
		MQTTAddr:  cfg.MQTTAddr,
		MQTTSAddr: cfg.MQTTSAddr,
		TLSConfig: &tls.Config{
			Certificates: []tls.Certificate{serverCert},
			ClientAuth:   tls.VerifyClientCertIfGiven,
			ClientCAs:    d.ca.Pool(),
			MinVersion:   tls.VersionTLS12,
		},
		Auth:             d.devices,
		Policies:         d.registry,
		Presence:         st.Things(),
		OnMessage:        d.bus.Publish,
		MaxPacketSize:    cfg.MaxPacketSize,
		MaxClients:       cfg.MaxClients,
		MaxSessionExpiry: cfg.MaxSessionExpiry,
		MaxOfflineQueue:  cfg.MaxOfflineQueue,
		OutboundQueue:    cfg.OutboundQueue,
		ConnectTimeout:   cfg.ConnectTimeout,
		BackpressureWait: cfg.BackpressureWait,
		PresenceFlush:    cfg.PresenceFlush,
		WebSocketOrigins: cfg.WebSocketOrigins,
		Logger:           d.log.With("component", "broker"),
		Metrics:          d.metrics,
	})
	if err != nil {
		return err
	}
	d.onClose(d.broker.Close)

	// Shadows answer through the broker; closed before it (closers run in
	// reverse), so pending commits are answered while clients are still
	// connected.
	d.shadows = shadow.New(shadow.Options{
		Store:     st.Shadows(),
		Publisher: d.broker,
		MaxSize:   d.cfg.ShadowMaxSize,
		Logger:    d.log.With("component", "shadow"),
	})
	d.shadows.Attach(d.bus)
	d.onClose(d.shadows.Close)

	// The rules engine publishes through the broker and writes telemetry:
	// closed first, before the broker and the telemetry writer.
	d.rules = ruleengine.New(ruleengine.Options{
		Store:     st.Rules(),
		Publisher: d.broker,
		Telemetry: d.twriter,
		Metrics:   d.metrics,
		Logger:    d.log.With("component", "rules"),
	})
	if err := d.rules.Start(ctx); err != nil {
		return fmt.Errorf("rules engine: %w", err)
	}
	d.onClose(d.rules.Close)
	d.rules.Attach(d.bus)
	d.registry.Listen(d.onRegistryEvent)

	if err := d.startHTTP(); err != nil {
		return err
	}
	if err := d.startPprof(); err != nil {
		return err
	}
	if err := d.broker.Start(); err != nil {
		return err
	}
	d.mu.Lock()
	d.ready = true
	d.mu.Unlock()
	a := d.Addrs()
	d.log.Info("mote started", "data_dir", cfg.DataDir, "mqtt", a.MQTT, "mqtts", a.MQTTS, "http", a.HTTP)
	return nil
}

// onRegistryEvent applies registry changes to live connections.
func (d *Daemon) onRegistryEvent(e registry.Event) {
	switch e.Kind {
	case registry.ThingChanged:
		d.devices.Invalidate(e.Thing)
		if !e.Enabled {
			d.broker.DisconnectThing(e.Thing, "thing disabled")
		} else {
			d.broker.RefreshPolicies(e.Thing)
		}
	case registry.ThingDeleted:
		d.devices.Invalidate(e.Thing)
		d.broker.DisconnectThing(e.Thing, "thing deleted")
		d.shadows.ForgetThing(e.Thing)
	case registry.CredentialRevoked:
		d.devices.Invalidate(e.Thing)
		d.broker.DisconnectCredential(e.Thing, e.Credential, "credential revoked")
	case registry.PoliciesChanged:
		d.broker.RefreshPolicies("")
	}
}

// firstToken creates an admin API token when there is none (first start).
func (d *Daemon) firstToken(ctx context.Context) error {
	toks, err := d.store.Tokens().List(ctx)
	if err != nil {
		return err
	}
	if len(toks) > 0 {
		return nil
	}
	_, raw, err := d.registry.CreateToken(ctx, "initial-admin", registry.RoleAdmin, nil)
	if err != nil {
		return fmt.Errorf("create initial admin token: %w", err)
	}
	d.initialToken = raw
	return nil
}

func (d *Daemon) startHTTP() error {
	mux := http.NewServeMux()
	mux.Handle(httpapi.BasePath+"/", httpapi.New(httpapi.Options{
		Registry:  d.registry,
		Shadows:   d.shadows,
		Rules:     d.rules,
		Telemetry: d.tstore,
		Server: func() httpapi.ServerInfo {
			a := d.Addrs()
			return httpapi.ServerInfo{Version: core.Version, MQTT: a.MQTT, MQTTS: a.MQTTS, WebSocket: "/mqtt"}
		},
		Logger:  d.log.With("component", "api"),
		Metrics: d.metrics,
	}))
	mux.Handle("GET /mqtt", d.broker.WebSocketHandler())
	mux.Handle("GET /metrics", promhttp.HandlerFor(d.metrics, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", d.readyz)
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("Mote is running. REST API: /api/v1 (see /api/v1/openapi.json), MQTT over WebSocket: /mqtt, metrics: /metrics.\n"))
	})

	ln, err := net.Listen("tcp", d.cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("http listener %s: %w", d.cfg.HTTPAddr, err)
	}
	d.httpLn = ln
	d.http = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(d.log.With("component", "http").Handler(), slog.LevelWarn),
	}
	d.httpDone = make(chan struct{})
	go func() {
		defer close(d.httpDone)
		if err := d.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			d.log.Error("http server stopped", "error", err)
		}
	}()
	d.onClose(func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err := d.http.Shutdown(ctx)
		if err != nil {
			err = d.http.Close()
		}
		<-d.httpDone
		return err
	})
	return nil
}

// startPprof serves Go's profiler on its own listener when --pprof-addr is
// set: CPU and heap profiles of a running server, for the performance work
// in docs/benchmarks.md.
func (d *Daemon) startPprof() error {
	if d.cfg.PprofAddr == "" {
		return nil
	}
	ln, err := net.Listen("tcp", d.cfg.PprofAddr)
	if err != nil {
		return fmt.Errorf("pprof listener %s: %w", d.cfg.PprofAddr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	d.pprofAddr = ln.Addr().String()
	d.log.Warn("profiler enabled; it is unauthenticated", "addr", d.pprofAddr)
	d.onClose(srv.Close)
	return nil
}

func (d *Daemon) readyz(w http.ResponseWriter, r *http.Request) {
	d.mu.Lock()
	ready := d.ready
	d.mu.Unlock()
	if ready {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if _, _, err := d.store.Things().Count(ctx); err != nil {
			ready = false
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if !ready {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte("not ready\n"))
		return
	}
	_, _ = w.Write([]byte("ready\n"))
}

func (d *Daemon) onClose(fn func() error) {
	d.mu.Lock()
	d.closers = append(d.closers, fn)
	d.mu.Unlock()
}

// Close stops the HTTP server, answers and commits the queued shadow
// requests, disconnects every client, flushes presence and closes the
// store. It is safe to call more than once.
func (d *Daemon) Close() error {
	d.mu.Lock()
	closers := d.closers
	d.closers = nil
	d.ready = false
	d.mu.Unlock()
	var errs []error
	for i := len(closers) - 1; i >= 0; i-- {
		if err := closers[i](); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Addrs returns the bound addresses.
func (d *Daemon) Addrs() Addrs {
	var a Addrs
	if d.broker != nil {
		a.MQTT, a.MQTTS = d.broker.Addrs()
	}
	if d.httpLn != nil {
		a.HTTP = d.httpLn.Addr().String()
	}
	a.Pprof = d.pprofAddr
	return a
}

// InitialToken is the admin token created on first start ("" otherwise).
func (d *Daemon) InitialToken() string { return d.initialToken }

// Registry returns the device registry.
func (d *Daemon) Registry() *registry.Registry { return d.registry }

// Bus returns the message bus that carries accepted device messages and
// presence events to platform services.
func (d *Daemon) Bus() *bus.Bus { return d.bus }

// Shadows returns the device shadow service.
func (d *Daemon) Shadows() *shadow.Service { return d.shadows }

// Rules returns the rules engine.
func (d *Daemon) Rules() *ruleengine.Engine { return d.rules }

// Telemetry returns the telemetry store.
func (d *Daemon) Telemetry() telemetry.Store { return d.tstore }

// TelemetryWriter returns the batching writer of the telemetry store.
func (d *Daemon) TelemetryWriter() *telemetry.Writer { return d.twriter }

// Broker returns the MQTT broker.
func (d *Daemon) Broker() *broker.Broker { return d.broker }

// CACertPEM returns the CA certificate devices trust.
func (d *Daemon) CACertPEM() []byte { return d.ca.CertPEM() }
