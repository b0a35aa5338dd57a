// Package bridge is the inbound half of Mote's MQTT bridge: it subscribes
// on other brokers and publishes what it receives into Mote, through the
// broker (Broker.Inject), so Mote's subscribers and rules see it. The
// outbound half is the rules engine's mqtt action.
//
// Bridges are settings (--bridge, one URL each), not an API resource: a
// bridge carries the remote broker's credentials and runs for the life of
// the server, as a listener does.
//
//	mqtt://user:pass@remote:1883/?name=plant&from=sensors/%23&to=plant/&qos=1
//
// name names it in metrics and logs; from is a topic filter to subscribe
// to on the remote broker (repeatable); to is the local prefix put before
// each remote topic: sensors/a/b becomes plant/sensors/a/b. The prefix is
// required and may not start with things/ or $, so a remote broker
// cannot speak for a device or the platform. qos (0 or 1) is the
// subscription's. mqtts:// uses TLS with the system roots, or with the
// PEM file of ca=/path.
//
// Each bridge has one connection (MQTT 3.1.1, clean session) that
// reconnects by itself and subscribes again. Messages are handled in
// order on the client's goroutine, so a slow Mote holds the remote
// broker's delivery (its own queue limits apply there), never Mote's
// publishers. A bridge accepts at most --bridge-rate-limit messages per
// second (burst the same), and payloads up to --max-packet-size; more is
// dropped, counted (mote_bridge_messages_total) and logged (rate-limited).
//
// Loops: a rule whose mqtt action sends the bridged topics back to the
// broker they came from makes a loop; filter on the prefix in the rule.
package bridge

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/moteiot/mote/internal/core"
)

// Limits of the bridge settings.
const (
	MaxBridges = 16
	MaxFilters = 16
)

// Config is one bridge.
type Config struct {
	Name   string
	Broker string // tcp://host:port or ssl://host:port
	User   string
	Pass   string
	From   []string // remote topic filters
	To     string   // local prefix
	QoS    byte
	CAFile string // mqtts: roots to trust instead of the system's
}

// Parse reads a bridge from its --bridge URL. Errors do not hold the
// password.
func Parse(spec string) (Config, error) {
	u, err := url.Parse(spec)
	if err != nil || u.Host == "" {
		return Config{}, errors.New("want mqtt://[user:pass@]host:port/?name=...&from=filter&to=prefix/")
	}
	var c Config
	def := ""
	switch u.Scheme {
	case "mqtt", "tcp":
		c.Broker, def = "tcp://", "1883"
	case "mqtts", "ssl", "tls":
		c.Broker, def = "ssl://", "8883"
	default:
		return Config{}, fmt.Errorf("scheme %q: want mqtt or mqtts", u.Scheme)
	}
	host, port, err := net.SplitHostPort(u.Host)
	if err != nil {
		host, port = u.Hostname(), def
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || host == "" {
		return Config{}, errors.New("want host:port")
	}
	c.Broker += net.JoinHostPort(host, port)
	if u.User != nil {
		c.User = u.User.Username()
		c.Pass, _ = u.User.Password()
	}
	if u.Path != "" && u.Path != "/" {
		return Config{}, errors.New("no path: the settings go in the query (?name=...&from=...&to=...)")
	}
	q := u.Query()
	for k := range q {
		switch k {
		case "name", "from", "to", "qos", "ca":
		default:
			return Config{}, fmt.Errorf("unknown parameter %q: want name, from, to, qos, ca", k)
		}
	}
	c.Name = q.Get("name")
	if err := core.ValidateName("name", c.Name); err != nil {
		return Config{}, fmt.Errorf("name=%q: %v", c.Name, err)
	}
	c.From = q["from"]
	if len(c.From) == 0 || len(c.From) > MaxFilters {
		return Config{}, fmt.Errorf("give 1 to %d from= topic filters", MaxFilters)
	}
	for _, f := range c.From {
		if !validFilter(f) {
			return Config{}, fmt.Errorf("from=%q is not a topic filter", f)
		}
	}
	c.To = q.Get("to")
	if c.To == "" || strings.HasPrefix(c.To, "$") || strings.HasPrefix(c.To, "things/") || c.To == "things" ||
		strings.ContainsAny(c.To, "+#\x00") {
		return Config{}, fmt.Errorf("to=%q: give a local prefix such as remote/, not starting with things/ or $, without wildcards", c.To)
	}
	switch q.Get("qos") {
	case "", "0":
	case "1":
		c.QoS = 1
	default:
		return Config{}, errors.New("qos: 0 or 1")
	}
	c.CAFile = q.Get("ca")
	if c.CAFile != "" && !strings.HasPrefix(c.Broker, "ssl://") {
		return Config{}, errors.New("ca= is for mqtts://")
	}
	return c, nil
}

// validFilter checks an MQTT topic filter.
func validFilter(f string) bool {
	if f == "" || len(f) > 65535 || strings.ContainsRune(f, 0) {
		return false
	}
	levels := strings.Split(f, "/")
	for i, l := range levels {
		switch {
		case l == "#" && i != len(levels)-1:
			return false
		case l != "#" && l != "+" && strings.ContainsAny(l, "+#"):
			return false
		}
	}
	return true
}

// Injector publishes into Mote; *broker.Broker satisfies it.
type Injector interface {
	Inject(topic string, payload []byte, qos byte, retain bool, origin string) error
}

// Options configure a Manager.
type Options struct {
	Bridges    []Config
	Injector   Injector // required
	RateLimit  float64  // messages per second per bridge (default 1000)
	MaxPayload int      // largest payload taken (default 1 MiB)
	Metrics    prometheus.Registerer
	Logger     *slog.Logger
}

// Manager runs the configured bridges.
type Manager struct {
	opts    Options
	log     *slog.Logger
	bridges []*bridge

	messages  *prometheus.CounterVec
	connected *prometheus.GaugeVec
}

type bridge struct {
	m   *Manager
	c   Config
	cl  paho.Client
	lim *rate.Limiter

	mu      sync.Mutex
	lastLog time.Time
	dropped int
}

// Results counted in mote_bridge_messages_total.
const (
	resultAccepted    = "accepted"
	resultRateLimited = "rate_limited"
	resultTooLarge    = "too_large"
	resultRefused     = "refused" // the broker refused it (invalid topic, shutting down)
)

// New checks the bridges and registers the metrics; Start connects.
func New(opts Options) (*Manager, error) {
	if opts.RateLimit <= 0 {
		opts.RateLimit = 1000
	}
	if opts.MaxPayload <= 0 {
		opts.MaxPayload = 1 << 20
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if len(opts.Bridges) > MaxBridges {
		return nil, fmt.Errorf("bridge: at most %d bridges", MaxBridges)
	}
	m := &Manager{opts: opts, log: opts.Logger,
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mote_bridge_messages_total",
			Help: "Messages an inbound MQTT bridge received, by result: accepted, rate_limited, too_large, refused."}, []string{"bridge", "result"}),
		connected: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "mote_bridge_connected",
			Help: "1 while an inbound MQTT bridge is connected to its remote broker."}, []string{"bridge"}),
	}
	seen := map[string]bool{}
	for _, c := range opts.Bridges {
		if seen[c.Name] {
			return nil, fmt.Errorf("bridge: two bridges are named %q", c.Name)
		}
		seen[c.Name] = true
		burst := max(1, int(opts.RateLimit))
		m.bridges = append(m.bridges, &bridge{m: m, c: c, lim: rate.NewLimiter(rate.Limit(opts.RateLimit), burst)})
	}
	if opts.Metrics != nil && len(m.bridges) > 0 {
		if err := opts.Metrics.Register(m.messages); err != nil {
			return nil, err
		}
		if err := opts.Metrics.Register(m.connected); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// Start connects every bridge; it does not wait for the connections (a
// remote broker that is down is retried in the background).
func (m *Manager) Start() error {
	for _, b := range m.bridges {
		if err := b.start(); err != nil {
			m.Close()
			return fmt.Errorf("bridge %s: %w", b.c.Name, err)
		}
	}
	return nil
}

// Close disconnects every bridge.
func (m *Manager) Close() error {
	for _, b := range m.bridges {
		if b.cl != nil {
			b.cl.Disconnect(250)
		}
	}
	return nil
}

func (b *bridge) start() error {
	o := paho.NewClientOptions().AddBroker(b.c.Broker).SetClientID(clientID(b.c.Name)).
		SetCleanSession(true).SetAutoReconnect(true).SetConnectRetry(true).
		SetConnectRetryInterval(time.Second).SetMaxReconnectInterval(5 * time.Second).
		SetConnectTimeout(10 * time.Second).SetKeepAlive(30 * time.Second).SetOrderMatters(true).
		SetResumeSubs(false).SetUsername(b.c.User).SetPassword(b.c.Pass)
	if strings.HasPrefix(b.c.Broker, "ssl://") {
		tc := &tls.Config{MinVersion: tls.VersionTLS12}
		if b.c.CAFile != "" {
			pem, err := os.ReadFile(b.c.CAFile)
			if err != nil {
				return fmt.Errorf("ca: %w", err)
			}
			tc.RootCAs = x509.NewCertPool()
			if !tc.RootCAs.AppendCertsFromPEM(pem) {
				return fmt.Errorf("ca %s: no PEM certificate", b.c.CAFile)
			}
		}
		o.SetTLSConfig(tc)
	}
	name := b.c.Name
	o.SetOnConnectHandler(func(cl paho.Client) {
		filters := map[string]byte{}
		for _, f := range b.c.From {
			filters[f] = b.c.QoS
		}
		// Not waited on here (this runs on paho's goroutine); a refused
		// subscription is logged.
		tok := cl.SubscribeMultiple(filters, b.handle)
		go func() {
			if tok.WaitTimeout(10*time.Second) && tok.Error() != nil {
				b.m.log.Warn("bridge subscription refused", "bridge", name, "error", tok.Error())
			}
		}()
		b.m.connected.WithLabelValues(name).Set(1)
		b.m.log.Info("bridge connected", "bridge", name, "broker", b.c.Broker)
	})
	o.SetConnectionLostHandler(func(_ paho.Client, err error) {
		b.m.connected.WithLabelValues(name).Set(0)
		b.m.log.Warn("bridge connection lost; reconnecting", "bridge", name, "error", err)
	})
	b.m.connected.WithLabelValues(name).Set(0)
	b.cl = paho.NewClient(o)
	b.cl.Connect() // retried in the background
	return nil
}

// handle takes one message from the remote broker.
func (b *bridge) handle(_ paho.Client, msg paho.Message) {
	topic := b.c.To + msg.Topic()
	switch {
	case len(msg.Payload()) > b.m.opts.MaxPayload:
		b.drop(resultTooLarge, topic, nil)
	case !b.lim.Allow():
		b.drop(resultRateLimited, topic, nil)
	default:
		qos := min(msg.Qos(), 1)
		if err := b.m.opts.Injector.Inject(topic, msg.Payload(), qos, msg.Retained(), "bridge:"+b.c.Name); err != nil {
			b.drop(resultRefused, topic, err)
			return
		}
		b.m.messages.WithLabelValues(b.c.Name, resultAccepted).Inc()
	}
}

// drop counts a message not taken and logs it, at most once a second
// per bridge.
func (b *bridge) drop(result, topic string, err error) {
	b.m.messages.WithLabelValues(b.c.Name, result).Inc()
	b.mu.Lock()
	now := time.Now()
	if now.Sub(b.lastLog) < time.Second {
		b.dropped++
		b.mu.Unlock()
		return
	}
	n := b.dropped
	b.lastLog, b.dropped = now, 0
	b.mu.Unlock()
	args := []any{"bridge", b.c.Name, "reason", result, "topic", topic, "suppressed_before", n}
	if err != nil {
		args = append(args, "error", err)
	}
	b.m.log.Warn("bridged message dropped", args...)
}

func clientID(name string) string {
	r := make([]byte, 3)
	_, _ = rand.Read(r)
	id := "mote-" + name
	if len(id) > 16 {
		id = id[:16]
	}
	return id + "-" + hex.EncodeToString(r)
}
