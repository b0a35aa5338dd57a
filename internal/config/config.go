// Package config is Mote's server configuration: defaults, a YAML file,
// MOTE_* environment variables and command-line flags, in that order of
// precedence (a flag beats the environment, which beats the file), then
// Validate.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"

	"github.com/moteiot/mote/internal/bridge"
	"github.com/moteiot/mote/internal/datadir"
	"github.com/moteiot/mote/internal/ipfilter"
	"github.com/moteiot/mote/internal/pgdb"
)

// Config is everything `mote serve` can be told.
type Config struct {
	DataDir   string
	LogLevel  string // debug, info, warn, error
	LogFormat string // auto (JSON unless stderr is a terminal), json, text

	// Store is where the registry, shadows, rules, sessions and telemetry
	// are kept: "" for the embedded SQLite databases in DataDir, or a
	// PostgreSQL URL (postgres://...) shared by several nodes.
	Store         string
	StoreMaxConns int // connections per PostgreSQL pool (the store and telemetry have one each)

	MQTTAddr  string // MQTT over TCP; "" disables
	MQTTSAddr string // MQTT over TLS; "" disables
	HTTPAddr  string // REST API, WebSocket MQTT at /mqtt, metrics
	HTTPSAddr string // the same over TLS, with device client certificates; "" disables

	TLSHosts []string // extra names in the generated server certificate
	TLSCert  string   // user-supplied server certificate (PEM); with TLSKey replaces the generated one
	TLSKey   string

	MaxPacketSize    int           // bytes; larger MQTT packets are refused
	MaxClients       int           // concurrent MQTT connections
	MaxSessionExpiry time.Duration // longest a disconnected persistent session is kept
	MaxOfflineQueue  int           // QoS 1/2 messages kept per client (offline or in flight)
	OutboundQueue    int           // packets queued for writing per connection
	ConnectTimeout   time.Duration // time a new connection has to send CONNECT

	MaxClientIDLength int // longest MQTT client id accepted, bytes

	MaxKeepalive time.Duration // longest MQTT keep-alive granted; longer (or 0) is capped, MQTT 5 is told (Server Keep Alive)
	CloseLinger  time.Duration // how long a connection the server closes is half-closed and drained first; 0 = close at once

	BackpressureWait time.Duration // longest a publisher is held while a subscriber's queue is full
	PresenceFlush    time.Duration // how often connection state is written to the registry
	LastSeenInterval time.Duration // how often an active thing's last-seen time is written
	WebSocketOrigins []string      // allowed Origin values for MQTT over WebSocket ("*" = any)
	DeviceRateLimit  float64       // messages per second per thing (MQTT and HTTP); 0 = no limit
	DeviceRateBurst  int           // messages a thing may send at once; 0 = the rate

	MaxRetainedPerThing      int           // retained messages one thing may hold; 0 = no limit
	MaxRetainedBytesPerThing int64         // payload bytes of the retained messages of one thing; 0 = no limit
	MaxRetainedBytes         int64         // payload bytes of all retained messages; 0 = no limit
	SlowSubscriberBudget     time.Duration // how long a subscriber may stay full while publishers wait for it; 0 = never disconnect

	ShadowMaxSize int // largest shadow state (desired + reported JSON), bytes

	TelemetryRetention time.Duration // telemetry older than this is deleted; 0 keeps it forever

	// Delivery of rule actions (webhooks, error actions), per rule action.
	RuleActionQueue       int           // jobs queued; more are dropped and counted
	RuleActionConcurrency int           // deliveries at once
	RuleActionBatch       int           // deliveries of a kafka, nats, postgres or mqtt action in one attempt
	RuleWebhookTimeout    time.Duration // per attempt of a webhook without timeoutMs
	RuleWebhookRetries    int           // attempts after the first of a webhook without retries
	RuleBreakerFailures   int           // consecutive failed attempts that open the breaker
	RuleBreakerCooldown   time.Duration // how long an open breaker drops before a probe

	// Inbound MQTT bridges (package bridge): one URL each, and the
	// messages per second each one takes.
	Bridges         []string
	BridgeRateLimit float64

	PprofAddr string // serve net/http/pprof here; "" (default) disables

	// HTTP and HTTPS servers: how long a client has for its request
	// headers and for its body, how long an idle keep-alive connection is
	// kept, the largest header block, and the most connections served at
	// once (0: half the process's open-file limit).
	HTTPReadHeaderTimeout time.Duration
	HTTPBodyTimeout       time.Duration
	HTTPIdleTimeout       time.Duration
	HTTPMaxHeaderBytes    int
	HTTPMaxConns          int
	// MaxLongPollsPerDevice bounds the command long polls one thing may
	// hold open on the HTTP device API.
	MaxLongPollsPerDevice int
	// IP filters (CIDR lists; deny wins, an empty allow list allows all):
	// the device listeners (MQTT, MQTTS, HTTPS, and /mqtt on the HTTP
	// port) and the HTTP API port.
	DeviceIPAllow []string
	DeviceIPDeny  []string
	APIIPAllow    []string
	APIIPDeny     []string
}

// MaxClientIDLength is the largest --max-client-id-length: the presence
// topic $mote/events/presence/disconnected/{clientid} must stay within
// MQTT's 65,535-byte topic limit, or the event cannot be published. MQTT
// requires servers to accept at least 23 bytes.
const MaxClientIDLength = 65000

// MaxTelemetryRetention is the longest --telemetry-retention (100 years).
const MaxTelemetryRetention = 100 * 365 * 24 * time.Hour

// Default returns the configuration that `mote serve` runs with when given
// nothing.
func Default() Config {
	return Config{
		DataDir:          datadir.Default,
		StoreMaxConns:    10,
		LogLevel:         "info",
		LogFormat:        "auto",
		MQTTAddr:         ":1883",
		MQTTSAddr:        ":8883",
		HTTPAddr:         ":8080",
		HTTPSAddr:        ":8443",
		DeviceRateLimit:  100,
		DeviceRateBurst:  200,
		MaxPacketSize:    256 * 1024,
		MaxClients:       1_000_000,
		MaxSessionExpiry: 24 * time.Hour,
		MaxOfflineQueue:  1000,
		OutboundQueue:    128,
		ConnectTimeout:   10 * time.Second,

		MaxClientIDLength: 128,

		MaxKeepalive: 1200 * time.Second,
		CloseLinger:  250 * time.Millisecond,

		BackpressureWait: 250 * time.Millisecond,
		PresenceFlush:    200 * time.Millisecond,
		LastSeenInterval: 30 * time.Second,
		ShadowMaxSize:    8 * 1024,

		TelemetryRetention: 30 * 24 * time.Hour,

		MaxRetainedPerThing:      100,
		MaxRetainedBytesPerThing: 1 << 20,
		MaxRetainedBytes:         256 << 20,
		SlowSubscriberBudget:     5 * time.Second,
		RuleActionQueue:          1000,
		RuleActionConcurrency:    4,
		RuleActionBatch:          100,
		RuleWebhookTimeout:       5 * time.Second,
		RuleWebhookRetries:       2,
		RuleBreakerFailures:      5,
		RuleBreakerCooldown:      30 * time.Second,
		BridgeRateLimit:          1000,
		HTTPReadHeaderTimeout:    10 * time.Second,
		HTTPBodyTimeout:          30 * time.Second,
		HTTPIdleTimeout:          2 * time.Minute,
		HTTPMaxHeaderBytes:       64 * 1024,
		MaxLongPollsPerDevice:    4,
	}
}

// field binds one setting to its flag name (also its YAML key; the env
// name is MOTE_ + upper snake case).
type field struct {
	name  string
	usage string
	bind  func(fs *pflag.FlagSet, name, usage string)
}

func fields(c *Config) []field {
	str := func(p *string) func(*pflag.FlagSet, string, string) {
		return func(fs *pflag.FlagSet, n, u string) { fs.StringVar(p, n, *p, u) }
	}
	num := func(p *int) func(*pflag.FlagSet, string, string) {
		return func(fs *pflag.FlagSet, n, u string) { fs.IntVar(p, n, *p, u) }
	}
	dur := func(p *time.Duration) func(*pflag.FlagSet, string, string) {
		return func(fs *pflag.FlagSet, n, u string) { fs.DurationVar(p, n, *p, u) }
	}
	float := func(p *float64) func(*pflag.FlagSet, string, string) {
		return func(fs *pflag.FlagSet, n, u string) { fs.Float64Var(p, n, *p, u) }
	}
	num64 := func(p *int64) func(*pflag.FlagSet, string, string) {
		return func(fs *pflag.FlagSet, n, u string) { fs.Int64Var(p, n, *p, u) }
	}
	list := func(p *[]string) func(*pflag.FlagSet, string, string) {
		return func(fs *pflag.FlagSet, n, u string) { fs.StringSliceVar(p, n, *p, u) }
	}
	return []field{
		{"data-dir", "directory for the database, keys and certificates", str(&c.DataDir)},
		{"store", `where state and telemetry are kept: "" for SQLite in --data-dir, or a PostgreSQL URL postgres://user:pass@host:5432/db (keys, certificates and the journal stay in --data-dir)`, str(&c.Store)},
		{"store-max-conns", "connections of each PostgreSQL pool (registry and telemetry have one each); callers wait for a free one", num(&c.StoreMaxConns)},
		{"log-level", "debug, info, warn or error", str(&c.LogLevel)},
		{"log-format", "auto (JSON unless on a terminal), json or text", str(&c.LogFormat)},
		{"mqtt-addr", `MQTT over TCP listen address ("" disables)`, str(&c.MQTTAddr)},
		{"mqtts-addr", `MQTT over TLS listen address ("" disables)`, str(&c.MQTTSAddr)},
		{"http-addr", "HTTP listen address: REST API, MQTT over WebSocket at /mqtt, /metrics", str(&c.HTTPAddr)},
		{"https-addr", `HTTPS listen address: the same as --http-addr over TLS, where devices may authenticate with their client certificate ("" disables)`, str(&c.HTTPSAddr)},
		{"device-rate-limit", "messages per second each thing may send over MQTT and HTTP together; more are refused (MQTT 5: 0x96, HTTP: 429) and counted; 0 turns the limit off", float(&c.DeviceRateLimit)},
		{"device-rate-burst", "bucket size of --device-rate-limit: messages a thing may send at once after a quiet spell (0: the rate)", num(&c.DeviceRateBurst)},
		{"max-retained-per-thing", "retained messages each thing may hold; a retained publish beyond it is refused (MQTT 5: 0x97, HTTP: 507) and counted; clearing one always works; 0 turns the limit off", num(&c.MaxRetainedPerThing)},
		{"max-retained-bytes-per-thing", "payload bytes of the retained messages each thing may hold; beyond it retained publishes are refused like --max-retained-per-thing; 0 turns the limit off", num64(&c.MaxRetainedBytesPerThing)},
		{"max-retained-bytes", "payload bytes of all retained messages on the server; beyond it retained publishes of devices are refused like --max-retained-per-thing; 0 turns the limit off", num64(&c.MaxRetainedBytes)},
		{"slow-subscriber-budget", "how long a subscriber may keep its queue full while publishers are held for it (--backpressure-wait each) before it is disconnected (MQTT 5: DISCONNECT 0x97); 0 never disconnects", dur(&c.SlowSubscriberBudget)},
		{"tls-hosts", "extra DNS names or IPs for the generated server certificate (comma-separated)", list(&c.TLSHosts)},
		{"tls-cert", "server certificate file (PEM) to use instead of the generated one", str(&c.TLSCert)},
		{"tls-key", "private key file (PEM) of --tls-cert", str(&c.TLSKey)},
		{"max-packet-size", "largest MQTT packet accepted, in bytes", num(&c.MaxPacketSize)},
		{"max-clients", "most concurrent MQTT connections", num(&c.MaxClients)},
		{"max-session-expiry", "longest a disconnected persistent session is kept", dur(&c.MaxSessionExpiry)},
		{"max-offline-queue", "QoS 1/2 messages kept per client while it is offline or slow; more are dropped, counted and logged", num(&c.MaxOfflineQueue)},
		{"outbound-queue", "packets queued for writing per connection", num(&c.OutboundQueue)},
		{"connect-timeout", "time a new connection has to send CONNECT", dur(&c.ConnectTimeout)},
		{"max-client-id-length", "longest MQTT client id accepted, in bytes; longer ones are refused (MQTT 5: 0x85, 3.1.1: return code 2) and counted", num(&c.MaxClientIDLength)},
		{"max-keepalive", "longest MQTT keep-alive granted (whole seconds, 1s to 65535s); a client asking for more, or for 0 (none), gets this one (MQTT 5 is told in CONNACK's Server Keep Alive) and is disconnected after 1.5 times it without a packet", dur(&c.MaxKeepalive)},
		{"close-linger", "how long an MQTT connection the server closes (after a DISCONNECT such as 0x93 or 0x95) is half-closed and drained first, so the client reads the reason instead of a reset; 0 closes at once", dur(&c.CloseLinger)},
		{"backpressure-wait", "longest a publisher is held while a subscriber's queue is full", dur(&c.BackpressureWait)},
		{"presence-flush", "how often connection state is written to the registry", dur(&c.PresenceFlush)},
		{"last-seen-interval", "how often a connected thing's last-seen time (its latest packet) is written to the registry while it is active", dur(&c.LastSeenInterval)},
		{"pprof-addr", `serve Go's profiler (/debug/pprof/) on this address, e.g. 127.0.0.1:6060; unauthenticated, keep it on loopback ("" disables)`, str(&c.PprofAddr)},
		{"shadow-max-size", "largest device shadow state (desired + reported JSON), in bytes; larger updates are rejected with 413", num(&c.ShadowMaxSize)},
		{"telemetry-retention", "how long telemetry is kept (e.g. 720h); older points are deleted every hour; 0 keeps it forever", dur(&c.TelemetryRetention)},
		{"rule-action-queue", "deliveries queued per rule action (webhooks, error actions); more are dropped and counted", num(&c.RuleActionQueue)},
		{"rule-action-concurrency", "deliveries at once per rule action (webhooks, error actions)", num(&c.RuleActionConcurrency)},
		{"rule-action-batch", "queued deliveries of a kafka, nats, postgres or mqtt rule action sent in one attempt (acks awaited together; a failed batch is retried whole)", num(&c.RuleActionBatch)},
		{"rule-webhook-timeout", "time of one attempt of a rule webhook that sets no timeoutMs", dur(&c.RuleWebhookTimeout)},
		{"rule-webhook-retries", "attempts after the first of a rule webhook that sets no retries", num(&c.RuleWebhookRetries)},
		{"rule-breaker-failures", "consecutive failed attempts that open a rule action's circuit breaker (it then drops deliveries)", num(&c.RuleBreakerFailures)},
		{"rule-breaker-cooldown", "how long an open rule action breaker drops deliveries before it lets one probe through", dur(&c.RuleBreakerCooldown)},
		{"bridge", "inbound MQTT bridge, repeatable: mqtt(s)://[user:pass@]host:port/?name=N&from=remote/filter&to=local/prefix/&qos=0|1 (URL-encode # as %23, + as %2B, a comma as %2C); see docs/bridge.md", list(&c.Bridges)},
		{"bridge-rate-limit", "messages per second each inbound MQTT bridge takes (burst the same); more are dropped and counted", float(&c.BridgeRateLimit)},
		{"ws-origins", `allowed Origin headers for MQTT over WebSocket ("*" allows any; empty allows same host and clients that send none)`, list(&c.WebSocketOrigins)},
		{"http-read-header-timeout", "time an HTTP(S) client has to send its request headers", dur(&c.HTTPReadHeaderTimeout)},
		{"http-body-timeout", "time an HTTP(S) client has to send a request body, from the start of the request; slower uploads are cut off (streams and long polls are not affected)", dur(&c.HTTPBodyTimeout)},
		{"http-idle-timeout", "how long an idle HTTP(S) keep-alive connection is kept open", dur(&c.HTTPIdleTimeout)},
		{"http-max-header-bytes", "largest HTTP(S) request header block, in bytes; larger ones are answered 431", num(&c.HTTPMaxHeaderBytes)},
		{"http-max-conns", "most connections each of the HTTP and HTTPS servers serves at once; more wait in the listen backlog (0: half the open-file limit, so that MQTT keeps file descriptors)", num(&c.HTTPMaxConns)},
		{"max-long-polls-per-device", "command long polls (GET /devices/{thing}/commands?wait=) one thing may hold open at once; more are answered 429", num(&c.MaxLongPollsPerDevice)},
		{"device-ip-allow", "CIDR prefixes or addresses that may connect to the device listeners (MQTT, MQTTS, HTTPS, WebSocket /mqtt); empty allows all (comma-separated)", list(&c.DeviceIPAllow)},
		{"device-ip-deny", "CIDR prefixes or addresses refused on the device listeners; deny wins over allow (comma-separated)", list(&c.DeviceIPDeny)},
		{"api-ip-allow", "CIDR prefixes or addresses that may connect to the HTTP port (--http-addr); empty allows all (comma-separated)", list(&c.APIIPAllow)},
		{"api-ip-deny", "CIDR prefixes or addresses refused on the HTTP port; deny wins over allow (comma-separated)", list(&c.APIIPDeny)},
	}
}

// EnvName returns the environment variable for a flag name: data-dir →
// MOTE_DATA_DIR.
func EnvName(flag string) string {
	return "MOTE_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// Flags registers every setting on fs, with c's current values as
// defaults, plus --config. Call Load after fs.Parse.
func (c *Config) Flags(fs *pflag.FlagSet) {
	for _, f := range fields(c) {
		f.bind(fs, f.name, f.usage+" (env "+EnvName(f.name)+")")
	}
	fs.String("config", "", "YAML config file; keys are the flag names (env MOTE_CONFIG)")
}

// Load applies the config file (from --config or MOTE_CONFIG) and the
// environment to every setting whose flag was not given, then validates.
// lookupEnv is os.LookupEnv in production. A variable set to "" counts as
// set: MOTE_MQTTS_ADDR= disables the TLS listener.
func (c *Config) Load(fs *pflag.FlagSet, lookupEnv func(string) (string, bool)) error {
	path, _ := fs.GetString("config")
	if !fs.Changed("config") {
		path, _ = lookupEnv("MOTE_CONFIG")
	}
	file := map[string]string{}
	if path != "" {
		var err error
		if file, err = readFile(path); err != nil {
			return err
		}
		known := map[string]bool{}
		for _, f := range fields(c) {
			known[f.name] = true
		}
		for k := range file {
			if !known[k] {
				return fmt.Errorf("config file %s: unknown setting %q (settings are the flag names of `mote serve --help`)", path, k)
			}
		}
	}
	for _, f := range fields(c) {
		if fs.Changed(f.name) {
			continue
		}
		src, val, ok := "", "", false
		if v, set := lookupEnv(EnvName(f.name)); set {
			src, val, ok = "environment variable "+EnvName(f.name), v, true
		} else if v, set := file[f.name]; set {
			src, val, ok = "config file "+path+" key "+f.name, v, true
		}
		if !ok {
			continue
		}
		if sv, isSlice := fs.Lookup(f.name).Value.(pflag.SliceValue); isSlice {
			var items []string
			for _, it := range strings.Split(val, ",") {
				if it = strings.TrimSpace(it); it != "" {
					items = append(items, it)
				}
			}
			if err := sv.Replace(items); err != nil {
				return fmt.Errorf("%s: %w", src, err)
			}
			continue
		}
		if err := fs.Set(f.name, val); err != nil {
			return fmt.Errorf("%s: invalid value %q: %w", src, val, err)
		}
	}
	return c.Validate()
}

func readFile(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config file: %w", err)
	}
	var raw map[string]any
	dec := yaml.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&raw); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("config file %s: %w", path, err)
	}
	out := make(map[string]string, len(raw))
	for k, v := range raw {
		switch x := v.(type) {
		case nil:
			out[k] = ""
		case []any:
			parts := make([]string, len(x))
			for i, e := range x {
				parts[i] = fmt.Sprint(e)
			}
			out[k] = strings.Join(parts, ",")
		case map[string]any:
			return nil, fmt.Errorf("config file %s: %s must be a single value or a list", path, k)
		default:
			out[k] = fmt.Sprint(x)
		}
	}
	return out, nil
}

// Validate checks every setting and names the first one that is wrong.
func (c *Config) Validate() error {
	if c.DataDir == "" {
		return errors.New("data-dir: must not be empty")
	}
	if c.Store != "" {
		if err := pgdb.CheckURL(c.Store); err != nil {
			return fmt.Errorf("store: %w", err)
		}
	}
	if c.StoreMaxConns < 1 || c.StoreMaxConns > 1000 {
		return fmt.Errorf("store-max-conns: %d is outside 1 to 1000", c.StoreMaxConns)
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("log-level: %q is not one of debug, info, warn, error", c.LogLevel)
	}
	switch c.LogFormat {
	case "auto", "json", "text":
	default:
		return fmt.Errorf("log-format: %q is not one of auto, json, text", c.LogFormat)
	}
	for _, a := range []struct{ name, v string }{{"mqtt-addr", c.MQTTAddr}, {"mqtts-addr", c.MQTTSAddr}, {"http-addr", c.HTTPAddr}, {"https-addr", c.HTTPSAddr}, {"pprof-addr", c.PprofAddr}} {
		if a.v == "" && a.name != "http-addr" {
			continue
		}
		if _, port, err := net.SplitHostPort(a.v); err != nil {
			return fmt.Errorf("%s: %q is not host:port: %v", a.name, a.v, err)
		} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
			return fmt.Errorf("%s: %q has an invalid port", a.name, a.v)
		}
	}
	c.TLSHosts = trimAll(c.TLSHosts) // flags are not trimmed by pflag
	c.WebSocketOrigins = trimAll(c.WebSocketOrigins)
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return errors.New("tls-cert and tls-key must be given together")
	}
	switch {
	case c.MaxPacketSize < 1024 || c.MaxPacketSize > 256*1024*1024:
		return fmt.Errorf("max-packet-size: %d is outside 1024 to 268435456", c.MaxPacketSize)
	case c.MaxClients < 1:
		return fmt.Errorf("max-clients: must be at least 1")
	case c.MaxSessionExpiry < 0:
		return fmt.Errorf("max-session-expiry: must not be negative")
	case c.MaxOfflineQueue < 1 || c.MaxOfflineQueue > 65535:
		return fmt.Errorf("max-offline-queue: %d is outside 1 to 65535", c.MaxOfflineQueue)
	case c.OutboundQueue < 8 || c.OutboundQueue > 65536:
		return fmt.Errorf("outbound-queue: %d is outside 8 to 65536", c.OutboundQueue)
	case c.ConnectTimeout <= 0:
		return fmt.Errorf("connect-timeout: must be positive")
	case c.MaxClientIDLength < 23 || c.MaxClientIDLength > MaxClientIDLength:
		return fmt.Errorf("max-client-id-length: %d is outside 23 to %d", c.MaxClientIDLength, MaxClientIDLength)
	case c.MaxKeepalive < time.Second || c.MaxKeepalive > 65535*time.Second || c.MaxKeepalive%time.Second != 0:
		return fmt.Errorf("max-keepalive: %v is not a whole number of seconds from 1s to 65535s (MQTT's largest keep-alive)", c.MaxKeepalive)
	case c.CloseLinger < 0 || c.CloseLinger > 10*time.Second:
		return fmt.Errorf("close-linger: %v is outside 0 to 10s", c.CloseLinger)
	case c.BackpressureWait < 0 || c.BackpressureWait > 10*time.Second:
		return fmt.Errorf("backpressure-wait: must be between 0 and 10s")
	case c.ShadowMaxSize < 1024 || c.ShadowMaxSize > 1<<20:
		return fmt.Errorf("shadow-max-size: %d is outside 1024 to 1048576", c.ShadowMaxSize)
	case c.DeviceRateLimit < 0 || c.DeviceRateLimit > 1e6 || c.DeviceRateLimit != c.DeviceRateLimit:
		return fmt.Errorf("device-rate-limit: %v is outside 0 to 1000000", c.DeviceRateLimit)
	case c.DeviceRateBurst < 0 || c.DeviceRateBurst > 1_000_000:
		return fmt.Errorf("device-rate-burst: %d is outside 0 to 1000000", c.DeviceRateBurst)
	case c.MaxRetainedPerThing < 0 || c.MaxRetainedPerThing > 10_000_000:
		return fmt.Errorf("max-retained-per-thing: %d is outside 0 to 10000000", c.MaxRetainedPerThing)
	case c.MaxRetainedBytesPerThing < 0 || c.MaxRetainedBytesPerThing > 1<<40:
		return fmt.Errorf("max-retained-bytes-per-thing: %d is outside 0 to 1099511627776", c.MaxRetainedBytesPerThing)
	case c.MaxRetainedBytes < 0 || c.MaxRetainedBytes > 1<<40:
		return fmt.Errorf("max-retained-bytes: %d is outside 0 to 1099511627776", c.MaxRetainedBytes)
	case c.SlowSubscriberBudget < 0 || c.SlowSubscriberBudget > time.Hour:
		return fmt.Errorf("slow-subscriber-budget: must be between 0 and 1h")
	case c.PresenceFlush <= 0 || c.PresenceFlush > time.Minute:
		return fmt.Errorf("presence-flush: must be between 1ns and 1m")
	case c.LastSeenInterval <= 0 || c.LastSeenInterval > time.Hour:
		return fmt.Errorf("last-seen-interval: must be between 1ns and 1h")
	case c.TelemetryRetention != 0 && (c.TelemetryRetention < time.Hour || c.TelemetryRetention > MaxTelemetryRetention):
		return fmt.Errorf("telemetry-retention: %s is outside 1h to %s (or 0 to keep telemetry forever)", c.TelemetryRetention, MaxTelemetryRetention)
	case c.RuleActionQueue < 1 || c.RuleActionQueue > 1_000_000:
		return fmt.Errorf("rule-action-queue: %d is outside 1 to 1000000", c.RuleActionQueue)
	case c.RuleActionConcurrency < 1 || c.RuleActionConcurrency > 1000:
		return fmt.Errorf("rule-action-concurrency: %d is outside 1 to 1000", c.RuleActionConcurrency)
	case c.RuleActionBatch < 1 || c.RuleActionBatch > 10_000:
		return fmt.Errorf("rule-action-batch: %d is outside 1 to 10000", c.RuleActionBatch)
	case c.RuleWebhookTimeout < time.Millisecond || c.RuleWebhookTimeout > time.Minute:
		return fmt.Errorf("rule-webhook-timeout: %s is outside 1ms to 1m", c.RuleWebhookTimeout)
	case c.RuleWebhookRetries < 0 || c.RuleWebhookRetries > 10:
		return fmt.Errorf("rule-webhook-retries: %d is outside 0 to 10", c.RuleWebhookRetries)
	case c.RuleBreakerFailures < 1 || c.RuleBreakerFailures > 1_000_000:
		return fmt.Errorf("rule-breaker-failures: %d is outside 1 to 1000000", c.RuleBreakerFailures)
	case c.RuleBreakerCooldown < time.Millisecond || c.RuleBreakerCooldown > time.Hour:
		return fmt.Errorf("rule-breaker-cooldown: %s is outside 1ms to 1h", c.RuleBreakerCooldown)
	case c.BridgeRateLimit < 1 || c.BridgeRateLimit > 1_000_000:
		return fmt.Errorf("bridge-rate-limit: %v is outside 1 to 1000000", c.BridgeRateLimit)
	case len(c.Bridges) > bridge.MaxBridges:
		return fmt.Errorf("bridge: at most %d bridges", bridge.MaxBridges)
	}
	names := map[string]bool{}
	for i, spec := range c.Bridges {
		b, err := bridge.Parse(spec)
		if err != nil {
			return fmt.Errorf("bridge #%d: %v", i+1, err)
		}
		if names[b.Name] {
			return fmt.Errorf("bridge #%d: another bridge is named %q", i+1, b.Name)
		}
		names[b.Name] = true
	}
	return c.validateHTTP()
}

// validateHTTP checks the HTTP server limits, the long-poll cap and the
// IP filter lists.
func (c *Config) validateHTTP() error {
	switch {
	case c.HTTPReadHeaderTimeout < 100*time.Millisecond || c.HTTPReadHeaderTimeout > 10*time.Minute:
		return fmt.Errorf("http-read-header-timeout: %s is outside 100ms to 10m", c.HTTPReadHeaderTimeout)
	case c.HTTPBodyTimeout < 100*time.Millisecond || c.HTTPBodyTimeout > time.Hour:
		return fmt.Errorf("http-body-timeout: %s is outside 100ms to 1h", c.HTTPBodyTimeout)
	case c.HTTPIdleTimeout < time.Second || c.HTTPIdleTimeout > time.Hour:
		return fmt.Errorf("http-idle-timeout: %s is outside 1s to 1h", c.HTTPIdleTimeout)
	case c.HTTPMaxHeaderBytes < 4096 || c.HTTPMaxHeaderBytes > 16<<20:
		return fmt.Errorf("http-max-header-bytes: %d is outside 4096 to 16777216", c.HTTPMaxHeaderBytes)
	case c.HTTPMaxConns < 0 || c.HTTPMaxConns > 10_000_000:
		return fmt.Errorf("http-max-conns: %d is outside 0 to 10000000 (0: half the open-file limit)", c.HTTPMaxConns)
	case c.MaxLongPollsPerDevice < 1 || c.MaxLongPollsPerDevice > 1000:
		return fmt.Errorf("max-long-polls-per-device: %d is outside 1 to 1000", c.MaxLongPollsPerDevice)
	}
	for _, l := range []struct {
		name  string
		items *[]string
	}{{"device-ip-allow", &c.DeviceIPAllow}, {"device-ip-deny", &c.DeviceIPDeny}, {"api-ip-allow", &c.APIIPAllow}, {"api-ip-deny", &c.APIIPDeny}} {
		*l.items = trimAll(*l.items)
		if err := ipfilter.ParseList(*l.items); err != nil {
			return fmt.Errorf("%s: %w", l.name, err)
		}
	}
	return nil
}

// trimAll trims white space around each item and drops empty ones.
func trimAll(items []string) []string {
	out := items[:0:0]
	for _, it := range items {
		if it = strings.TrimSpace(it); it != "" {
			out = append(out, it)
		}
	}
	return out
}
