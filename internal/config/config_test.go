package config_test

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/moteiot/mote/internal/config"
	"github.com/moteiot/mote/internal/datadir"
)

// load runs what `mote serve` does: Default, Flags, Parse, Load. A non-empty
// file is written to a temporary file and passed with --config.
func load(t *testing.T, args []string, env map[string]string, file string) (config.Config, string, error) {
	t.Helper()
	path := ""
	if file != "" {
		path = filepath.Join(t.TempDir(), "mote.yaml")
		if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
			t.Fatal(err)
		}
		args = append([]string{"--config", path}, args...)
	}
	c := config.Default()
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c.Flags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatalf("Parse(%q) = %v", args, err)
	}
	err := c.Load(fs, mapEnv(env))
	return c, path, err
}

func mapEnv(env map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := env[k]
		return v, ok
	}
}

func TestDefaultValidates(t *testing.T) {
	c := config.Default()
	if err := c.Validate(); err != nil {
		t.Fatalf("Default().Validate() = %v; want nil", err)
	}
	if c.DataDir != datadir.Default || c.MQTTAddr != ":1883" || c.MQTTSAddr != ":8883" || c.HTTPAddr != ":8080" {
		t.Errorf("Default() = %+v; want the documented defaults", c)
	}
	// Load with nothing set changes nothing.
	got, _, err := load(t, nil, nil, "")
	if err != nil {
		t.Fatalf("Load(nothing) = %v; want nil", err)
	}
	if !reflect.DeepEqual(got, c) {
		t.Errorf("Load(nothing) = %+v; want %+v", got, c)
	}
}

// TestPrecedence checks flag > environment > file > default for a string,
// an int, a duration and a list setting.
func TestPrecedence(t *testing.T) {
	settings := []struct {
		flag                   string
		get                    func(config.Config) string
		fileYAML, env, flagArg string
		def, file, envV, flagV string
	}{
		{
			flag: "log-level", get: func(c config.Config) string { return c.LogLevel },
			fileYAML: "warn", env: "error", flagArg: "debug",
			def: "info", file: "warn", envV: "error", flagV: "debug",
		},
		{
			flag: "max-clients", get: func(c config.Config) string { return fmt.Sprint(c.MaxClients) },
			fileYAML: "10", env: "20", flagArg: "30",
			def: "1000000", file: "10", envV: "20", flagV: "30",
		},
		{
			flag: "connect-timeout", get: func(c config.Config) string { return c.ConnectTimeout.String() },
			fileYAML: "5s", env: "7s", flagArg: "1m30s",
			def: "10s", file: "5s", envV: "7s", flagV: "1m30s",
		},
		{
			flag: "tls-hosts", get: func(c config.Config) string { return fmt.Sprintf("%q", c.TLSHosts) },
			fileYAML: "[a.example, 10.0.0.1]", env: "c.example,d.example", flagArg: "e.example,f.example",
			def: "[]", file: `["a.example" "10.0.0.1"]`, envV: `["c.example" "d.example"]`, flagV: `["e.example" "f.example"]`,
		},
	}
	layers := []struct {
		name            string
		file, env, flag bool
		want            func(def, file, env, flag string) string
	}{
		{"default", false, false, false, func(d, f, e, g string) string { return d }},
		{"file", true, false, false, func(d, f, e, g string) string { return f }},
		{"env", false, true, false, func(d, f, e, g string) string { return e }},
		{"flag", false, false, true, func(d, f, e, g string) string { return g }},
		{"env over file", true, true, false, func(d, f, e, g string) string { return e }},
		{"flag over file", true, false, true, func(d, f, e, g string) string { return g }},
		{"flag over env", false, true, true, func(d, f, e, g string) string { return g }},
		{"flag over env over file", true, true, true, func(d, f, e, g string) string { return g }},
	}
	for _, s := range settings {
		for _, l := range layers {
			t.Run(s.flag+"/"+l.name, func(t *testing.T) {
				var args []string
				env := map[string]string{}
				file := ""
				if l.file {
					file = s.flag + ": " + s.fileYAML + "\n"
				}
				if l.env {
					env[config.EnvName(s.flag)] = s.env
				}
				if l.flag {
					args = []string{"--" + s.flag + "=" + s.flagArg}
				}
				c, _, err := load(t, args, env, file)
				if err != nil {
					t.Fatalf("Load = %v; want nil", err)
				}
				if got, want := s.get(c), l.want(s.def, s.file, s.envV, s.flagV); got != want {
					t.Errorf("%s from %s = %s; want %s", s.flag, l.name, got, want)
				}
			})
		}
	}
}

func TestConfigFileFromEnv(t *testing.T) {
	dir := t.TempDir()
	a := filepath.Join(dir, "a.yaml")
	b := filepath.Join(dir, "b.yaml")
	os.WriteFile(a, []byte("log-level: warn\n"), 0o600)
	os.WriteFile(b, []byte("log-level: error\n"), 0o600)
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"MOTE_CONFIG", nil, map[string]string{"MOTE_CONFIG": a}, "warn"},
		{"--config over MOTE_CONFIG", []string{"--config", b}, map[string]string{"MOTE_CONFIG": a}, "error"},
		{"--config= turns MOTE_CONFIG off", []string{"--config="}, map[string]string{"MOTE_CONFIG": a}, "info"},
	}
	for _, tt := range tests {
		c, _, err := load(t, tt.args, tt.env, "")
		if err != nil || c.LogLevel != tt.want {
			t.Errorf("Load(%s) = log-level %q, %v; want %q", tt.name, c.LogLevel, err, tt.want)
		}
	}
}

func TestEmptyValues(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		file string
		get  func(config.Config) any
		want any
	}{
		{"env disables mqtts-addr", map[string]string{"MOTE_MQTTS_ADDR": ""}, "", func(c config.Config) any { return c.MQTTSAddr }, ""},
		{"env disables mqtt-addr", map[string]string{"MOTE_MQTT_ADDR": ""}, "", func(c config.Config) any { return c.MQTTAddr }, ""},
		{"empty env beats the file", map[string]string{"MOTE_MQTTS_ADDR": ""}, "mqtts-addr: \":9883\"\n", func(c config.Config) any { return c.MQTTSAddr }, ""},
		{"file empty string", nil, "mqtts-addr: \"\"\n", func(c config.Config) any { return c.MQTTSAddr }, ""},
		{"file null", nil, "mqtts-addr:\n", func(c config.Config) any { return c.MQTTSAddr }, ""},
		{"unset env keeps the default", map[string]string{"MOTE_MQTT_ADDR": ""}, "", func(c config.Config) any { return c.MQTTSAddr }, ":8883"},
		{"empty env clears a list", map[string]string{"MOTE_WS_ORIGINS": ""}, "ws-origins: [a.example]\n", func(c config.Config) any { return len(c.WebSocketOrigins) }, 0},
		{"empty file list", nil, "tls-hosts: []\n", func(c config.Config) any { return len(c.TLSHosts) }, 0},
	}
	for _, tt := range tests {
		c, _, err := load(t, nil, tt.env, tt.file)
		if err != nil {
			t.Errorf("Load(%s) = %v; want nil", tt.name, err)
			continue
		}
		if got := tt.get(c); got != tt.want {
			t.Errorf("Load(%s) = %#v; want %#v", tt.name, got, tt.want)
		}
	}
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		file string
		want []string // substrings of the error; "$FILE" is the file's path
	}{
		{"unknown key", nil, nil, "log-level: info\nmax-client: 10\n", []string{"$FILE", `"max-client"`}},
		{"config is not a key", nil, nil, "config: other.yaml\n", []string{"$FILE", `"config"`}},
		{"wrong type int", nil, nil, "max-clients: abc\n", []string{"config file $FILE key max-clients", `"abc"`}},
		{"float for int", nil, nil, "max-packet-size: 1.5\n", []string{"config file $FILE key max-packet-size"}},
		{"duration without unit", nil, nil, "connect-timeout: 10\n", []string{"config file $FILE key connect-timeout"}},
		{"map value", nil, nil, "log-level:\n  a: b\n", []string{"$FILE", "log-level"}},
		{"not YAML", nil, nil, "log-level: [\n", []string{"$FILE"}},
		{"not a mapping", nil, nil, "- a\n- b\n", []string{"$FILE"}},
		{"wrong type in env", nil, map[string]string{"MOTE_MAX_CLIENTS": "many"}, "", []string{"environment variable MOTE_MAX_CLIENTS", `"many"`}},
		{"bad duration in env", nil, map[string]string{"MOTE_PRESENCE_FLUSH": "soon"}, "", []string{"environment variable MOTE_PRESENCE_FLUSH"}},
		{"missing file", nil, map[string]string{"MOTE_CONFIG": "/nonexistent/mote.yaml"}, "", []string{"/nonexistent/mote.yaml"}},
		{"invalid after loading", nil, nil, "log-level: loud\n", []string{"log-level", `"loud"`}},
		{"invalid from env", nil, map[string]string{"MOTE_MAX_CLIENTS": "0"}, "", []string{"max-clients"}},
		{"invalid from flag", []string{"--outbound-queue=1"}, nil, "", []string{"outbound-queue"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, path, err := load(t, tt.args, tt.env, tt.file)
			if err == nil {
				t.Fatalf("Load(%s) = nil; want an error", tt.name)
			}
			for _, w := range tt.want {
				w = strings.ReplaceAll(w, "$FILE", path)
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Load(%s) = %q; want it to contain %q", tt.name, err, w)
				}
			}
		})
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		set  func(*config.Config)
		want string // "" means valid; otherwise the flag the error must name
	}{
		{"data-dir empty", func(c *config.Config) { c.DataDir = "" }, "data-dir"},
		{"oidc-issuer not a URL", func(c *config.Config) { oidcOn(c); c.OIDCIssuer = "idp.example" }, "oidc-issuer"},
		{"oidc on", func(c *config.Config) { oidcOn(c) }, ""},
		{"oidc-client-id missing", func(c *config.Config) { oidcOn(c); c.OIDCClientID = "" }, "oidc-client-id"},
		{"oidc secret twice", func(c *config.Config) { oidcOn(c); c.OIDCClientSecretFile = "/s" }, "oidc-client-secret-file"},
		{"oidc-role-map bad role", func(c *config.Config) { c.OIDCRoleMap = "ops=root" }, "oidc-role-map"},
		{"oidc nobody can sign in", func(c *config.Config) { oidcOn(c); c.OIDCRoleMap = "" }, "oidc-role-map"},
		{"oidc default role alone", func(c *config.Config) { oidcOn(c); c.OIDCRoleMap, c.OIDCDefaultRole = "", "viewer" }, ""},
		{"oidc-default-role", func(c *config.Config) { c.OIDCDefaultRole = "root" }, "oidc-default-role"},
		{"oidc-role-claim missing", func(c *config.Config) { oidcOn(c); c.OIDCRoleClaim = "" }, "oidc-role-claim"},
		{"oidc-redirect-url path", func(c *config.Config) { oidcOn(c); c.OIDCRedirectURL = "https://mote.example/cb" }, "oidc-redirect-url"},
		{"oidc-discovery-timeout", func(c *config.Config) { c.OIDCDiscoveryTimeout = 0 }, "oidc-discovery-timeout"},
		{"oidc-login-timeout", func(c *config.Config) { c.OIDCLoginTimeout = 2 * time.Hour }, "oidc-login-timeout"},
		{"oidc-max-callbacks", func(c *config.Config) { c.OIDCMaxCallbacks = 0 }, "oidc-max-callbacks"},
		{"log-level", func(c *config.Config) { c.LogLevel = "trace" }, "log-level"},
		{"log-level case", func(c *config.Config) { c.LogLevel = "INFO" }, "log-level"},
		{"log-format", func(c *config.Config) { c.LogFormat = "xml" }, "log-format"},
		{"mqtt-addr without port", func(c *config.Config) { c.MQTTAddr = "localhost" }, "mqtt-addr"},
		{"mqtt-addr bad port", func(c *config.Config) { c.MQTTAddr = ":mqtt" }, "mqtt-addr"},
		{"mqtt-addr port too big", func(c *config.Config) { c.MQTTAddr = ":65536" }, "mqtt-addr"},
		{"mqtt-addr negative port", func(c *config.Config) { c.MQTTAddr = ":-1" }, "mqtt-addr"},
		{"mqtts-addr", func(c *config.Config) { c.MQTTSAddr = "8883" }, "mqtts-addr"},
		{"http-addr", func(c *config.Config) { c.HTTPAddr = "[::1" }, "http-addr"},
		{"http-addr empty", func(c *config.Config) { c.HTTPAddr = "" }, "http-addr"},
		{"tls-cert alone", func(c *config.Config) { c.TLSCert = "cert.pem" }, "tls-key"},
		{"tls-key alone", func(c *config.Config) { c.TLSKey = "key.pem" }, "tls-cert"},
		{"max-packet-size small", func(c *config.Config) { c.MaxPacketSize = 1023 }, "max-packet-size"},
		{"max-packet-size big", func(c *config.Config) { c.MaxPacketSize = 256*1024*1024 + 1 }, "max-packet-size"},
		{"max-clients", func(c *config.Config) { c.MaxClients = 0 }, "max-clients"},
		{"max-session-expiry", func(c *config.Config) { c.MaxSessionExpiry = -time.Second }, "max-session-expiry"},
		{"max-offline-queue 0", func(c *config.Config) { c.MaxOfflineQueue = 0 }, "max-offline-queue"},
		{"max-offline-queue big", func(c *config.Config) { c.MaxOfflineQueue = 65536 }, "max-offline-queue"},
		{"outbound-queue small", func(c *config.Config) { c.OutboundQueue = 7 }, "outbound-queue"},
		{"outbound-queue big", func(c *config.Config) { c.OutboundQueue = 65537 }, "outbound-queue"},
		{"connect-timeout", func(c *config.Config) { c.ConnectTimeout = 0 }, "connect-timeout"},
		{"max-client-id-length small", func(c *config.Config) { c.MaxClientIDLength = 22 }, "max-client-id-length"},
		{"max-client-id-length big", func(c *config.Config) { c.MaxClientIDLength = config.MaxClientIDLength + 1 }, "max-client-id-length"},
		{"max-client-id-length max", func(c *config.Config) { c.MaxClientIDLength = config.MaxClientIDLength }, ""},
		{"max-client-id-length 23", func(c *config.Config) { c.MaxClientIDLength = 23 }, ""},
		{"max-keepalive zero", func(c *config.Config) { c.MaxKeepalive = 0 }, "max-keepalive"},
		{"max-keepalive fraction", func(c *config.Config) { c.MaxKeepalive = 1500 * time.Millisecond }, "max-keepalive"},
		{"max-keepalive over 65535s", func(c *config.Config) { c.MaxKeepalive = 65536 * time.Second }, "max-keepalive"},
		{"max-keepalive 1s", func(c *config.Config) { c.MaxKeepalive = time.Second }, ""},
		{"close-linger negative", func(c *config.Config) { c.CloseLinger = -time.Millisecond }, "close-linger"},
		{"close-linger long", func(c *config.Config) { c.CloseLinger = 11 * time.Second }, "close-linger"},
		{"close-linger off", func(c *config.Config) { c.CloseLinger = 0 }, ""},
		{"backpressure-wait negative", func(c *config.Config) { c.BackpressureWait = -1 }, "backpressure-wait"},
		{"backpressure-wait big", func(c *config.Config) { c.BackpressureWait = 10*time.Second + 1 }, "backpressure-wait"},
		{"presence-flush 0", func(c *config.Config) { c.PresenceFlush = 0 }, "presence-flush"},
		{"presence-flush big", func(c *config.Config) { c.PresenceFlush = time.Minute + 1 }, "presence-flush"},
		{"last-seen-interval 0", func(c *config.Config) { c.LastSeenInterval = 0 }, "last-seen-interval"},
		{"last-seen-interval big", func(c *config.Config) { c.LastSeenInterval = time.Hour + 1 }, "last-seen-interval"},
		{"shadow-max-size small", func(c *config.Config) { c.ShadowMaxSize = 1000 }, "shadow-max-size"},
		{"shadow-max-size big", func(c *config.Config) { c.ShadowMaxSize = 2 << 20 }, "shadow-max-size"},
		{"telemetry-retention small", func(c *config.Config) { c.TelemetryRetention = time.Minute }, "telemetry-retention"},
		{"telemetry-retention negative", func(c *config.Config) { c.TelemetryRetention = -time.Hour }, "telemetry-retention"},
		{"telemetry-retention big", func(c *config.Config) { c.TelemetryRetention = config.MaxTelemetryRetention + time.Hour }, "telemetry-retention"},
		{"telemetry-retention forever", func(c *config.Config) { c.TelemetryRetention = 0 }, ""},
		{"telemetry-retention 1h", func(c *config.Config) { c.TelemetryRetention = time.Hour }, ""},
		{"max-retained-per-thing negative", func(c *config.Config) { c.MaxRetainedPerThing = -1 }, "max-retained-per-thing"},
		{"max-retained-per-thing big", func(c *config.Config) { c.MaxRetainedPerThing = 10_000_001 }, "max-retained-per-thing"},
		{"max-retained-bytes-per-thing negative", func(c *config.Config) { c.MaxRetainedBytesPerThing = -1 }, "max-retained-bytes-per-thing"},
		{"max-retained-bytes-per-thing big", func(c *config.Config) { c.MaxRetainedBytesPerThing = 1<<40 + 1 }, "max-retained-bytes-per-thing"},
		{"max-retained-bytes negative", func(c *config.Config) { c.MaxRetainedBytes = -1 }, "max-retained-bytes"},
		{"max-retained-bytes big", func(c *config.Config) { c.MaxRetainedBytes = 1<<40 + 1 }, "max-retained-bytes"},
		{"slow-subscriber-budget negative", func(c *config.Config) { c.SlowSubscriberBudget = -1 }, "slow-subscriber-budget"},
		{"slow-subscriber-budget big", func(c *config.Config) { c.SlowSubscriberBudget = time.Hour + 1 }, "slow-subscriber-budget"},
		{"retained limits off", func(c *config.Config) {
			c.MaxRetainedPerThing, c.MaxRetainedBytesPerThing, c.MaxRetainedBytes, c.SlowSubscriberBudget = 0, 0, 0, 0
		}, ""},
		{"rule-action-queue 0", func(c *config.Config) { c.RuleActionQueue = 0 }, "rule-action-queue"},
		{"rule-action-concurrency 0", func(c *config.Config) { c.RuleActionConcurrency = 0 }, "rule-action-concurrency"},
		{"rule-webhook-timeout 0", func(c *config.Config) { c.RuleWebhookTimeout = 0 }, "rule-webhook-timeout"},
		{"rule-webhook-timeout big", func(c *config.Config) { c.RuleWebhookTimeout = time.Minute + 1 }, "rule-webhook-timeout"},
		{"rule-webhook-retries negative", func(c *config.Config) { c.RuleWebhookRetries = -1 }, "rule-webhook-retries"},
		{"rule-webhook-retries big", func(c *config.Config) { c.RuleWebhookRetries = 11 }, "rule-webhook-retries"},
		{"rule-webhook-retries none", func(c *config.Config) { c.RuleWebhookRetries = 0 }, ""},
		{"rule-breaker-failures 0", func(c *config.Config) { c.RuleBreakerFailures = 0 }, "rule-breaker-failures"},
		{"rule-breaker-cooldown 0", func(c *config.Config) { c.RuleBreakerCooldown = 0 }, "rule-breaker-cooldown"},
		{"rule-action-batch 0", func(c *config.Config) { c.RuleActionBatch = 0 }, "rule-action-batch"},
		{"bridge-rate-limit 0", func(c *config.Config) { c.BridgeRateLimit = 0 }, "bridge-rate-limit"},
		{"bridge without to", func(c *config.Config) { c.Bridges = []string{"mqtt://h:1883/?name=b&from=a/%23"} }, "bridge #1"},
		{"bridge into things/", func(c *config.Config) { c.Bridges = []string{"mqtt://h:1883/?name=b&from=a&to=things/x/"} }, "bridge #1"},
		{"bridges named alike", func(c *config.Config) {
			c.Bridges = []string{"mqtt://h:1883/?name=b&from=a&to=r/", "mqtt://h2:1883/?name=b&from=a&to=s/"}
		}, "bridge #2"},

		{"http-read-header-timeout", func(c *config.Config) { c.HTTPReadHeaderTimeout = 0 }, "http-read-header-timeout"},
		{"http-body-timeout", func(c *config.Config) { c.HTTPBodyTimeout = 2 * time.Hour }, "http-body-timeout"},
		{"http-idle-timeout", func(c *config.Config) { c.HTTPIdleTimeout = time.Millisecond }, "http-idle-timeout"},
		{"http-max-header-bytes", func(c *config.Config) { c.HTTPMaxHeaderBytes = 100 }, "http-max-header-bytes"},
		{"http-max-conns", func(c *config.Config) { c.HTTPMaxConns = -1 }, "http-max-conns"},
		{"max-long-polls-per-device", func(c *config.Config) { c.MaxLongPollsPerDevice = 0 }, "max-long-polls-per-device"},
		{"job-queue", func(c *config.Config) { c.JobQueue = 0 }, "job-queue"},
		{"job-workers", func(c *config.Config) { c.JobWorkers = 0 }, "job-workers"},
		{"job-scheduler-tick", func(c *config.Config) { c.JobSchedulerTick = time.Millisecond }, "job-scheduler-tick"},
		{"job-max-targets", func(c *config.Config) { c.JobMaxTargets = 0 }, "job-max-targets"},
		{"job-max-document-size", func(c *config.Config) { c.JobMaxDocumentSize = 100 }, "job-max-document-size"},
		{"device-ip-allow", func(c *config.Config) { c.DeviceIPAllow = []string{"10.0.0.0/33"} }, "device-ip-allow"},
		{"device-ip-deny", func(c *config.Config) { c.DeviceIPDeny = []string{"nope"} }, "device-ip-deny"},
		{"api-ip-allow", func(c *config.Config) { c.APIIPAllow = []string{"1.2.3"} }, "api-ip-allow"},
		{"api-ip-deny", func(c *config.Config) { c.APIIPDeny = []string{"::1/129"} }, "api-ip-deny"},
		{"ip lists", func(c *config.Config) {
			c.DeviceIPAllow, c.DeviceIPDeny = []string{"10.0.0.0/8", " 192.0.2.1"}, []string{"2001:db8::/32"}
			c.APIIPAllow, c.APIIPDeny = []string{"127.0.0.1"}, []string{"127.0.0.2/32"}
		}, ""},
		{"store not a URL", func(c *config.Config) { c.Store = "/var/lib/mote/mote.db" }, "store"},
		{"store bad URL", func(c *config.Config) { c.Store = "postgres://u:secret@host:notaport/db" }, "store"},
		{"store postgres", func(c *config.Config) { c.Store = "postgres://mote:pw@db.example:5432/mote?sslmode=require" }, ""},
		{"store postgresql", func(c *config.Config) { c.Store = "postgresql://mote@localhost/mote" }, ""},
		{"store-max-conns 0", func(c *config.Config) { c.StoreMaxConns = 0 }, "store-max-conns"},
		{"store-max-conns big", func(c *config.Config) { c.StoreMaxConns = 1001 }, "store-max-conns"},

		{"mqtt-addr disabled", func(c *config.Config) { c.MQTTAddr = "" }, ""},
		{"mqtts-addr disabled", func(c *config.Config) { c.MQTTSAddr = "" }, ""},
		{"host and port", func(c *config.Config) { c.HTTPAddr = "127.0.0.1:0"; c.MQTTAddr = "[::1]:1883" }, ""},
		{"tls pair", func(c *config.Config) { c.TLSCert, c.TLSKey = "c.pem", "k.pem" }, ""},
		{"limits low", func(c *config.Config) {
			c.MaxPacketSize, c.MaxClients, c.MaxOfflineQueue, c.OutboundQueue = 1024, 1, 1, 8
			c.MaxSessionExpiry, c.BackpressureWait, c.PresenceFlush, c.ConnectTimeout = 0, 0, 1, 1
		}, ""},
		{"limits high", func(c *config.Config) {
			c.MaxPacketSize, c.MaxOfflineQueue, c.OutboundQueue = 256*1024*1024, 65535, 65536
			c.BackpressureWait, c.PresenceFlush = 10*time.Second, time.Minute
		}, ""},

		{"artifact-max-size 0", func(c *config.Config) { c.ArtifactMaxSize = 0 }, "artifact-max-size"},
		{"artifact-url-ttl short", func(c *config.Config) { c.ArtifactURLTTL = time.Second }, "artifact-url-ttl"},
		{"artifact-url-base ftp", func(c *config.Config) { c.ArtifactURLBase = "ftp://x" }, "artifact-url-base"},
		{"artifact-url-base https", func(c *config.Config) { c.ArtifactURLBase = "https://mote.example:8443" }, ""},
		{"file-max-size 0", func(c *config.Config) { c.FileMaxSize = 0 }, "file-max-size"},
		{"file-quota-per-thing 0", func(c *config.Config) { c.FileQuotaPerThing = 0 }, "file-quota-per-thing"},
		{"file-max-count 0", func(c *config.Config) { c.FileMaxCount = 0 }, "file-max-count"},
		{"upload-min-rate negative", func(c *config.Config) { c.UploadMinRate = -1 }, "upload-min-rate"},
		{"upload-min-rate 0", func(c *config.Config) { c.UploadMinRate = 0 }, ""},
		{"map-tile-url empty", func(c *config.Config) { c.MapTileURL = "" }, ""},
		{"position-keys other", func(c *config.Config) { c.PositionKeys = []string{"latitude", " longitude "} }, ""},
		{"position-keys one", func(c *config.Config) { c.PositionKeys = []string{"lat"} }, "position-keys"},
		{"position-keys same", func(c *config.Config) { c.PositionKeys = []string{"lat", "lat"} }, "position-keys"},
		{"position-keys quote", func(c *config.Config) { c.PositionKeys = []string{"la\"t", "lon"} }, "position-keys"},
		{"alarm-batch 0", func(c *config.Config) { c.AlarmBatch = 0 }, "alarm-batch"},
		{"alarm-batch big", func(c *config.Config) { c.AlarmBatch = 10_001 }, "alarm-batch"},
		{"map-tile-url other", func(c *config.Config) { c.MapTileURL = "http://tiles.local:8080/{z}/{x}/{y}.png" }, ""},
		{"map-tile-url scheme", func(c *config.Config) { c.MapTileURL = "file:///{z}/{x}/{y}.png" }, "map-tile-url"},
		{"map-tile-url no {y}", func(c *config.Config) { c.MapTileURL = "https://t.example/{z}/{x}.png" }, "map-tile-url"},
	}
	for _, tt := range tests {
		c := config.Default()
		tt.set(&c)
		err := c.Validate()
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("Validate(%s) = %v; want nil", tt.name, err)
		case tt.want != "" && err == nil:
			t.Errorf("Validate(%s) = nil; want an error naming %s", tt.name, tt.want)
		case tt.want != "" && !strings.Contains(err.Error(), tt.want):
			t.Errorf("Validate(%s) = %q; want it to name %s", tt.name, err, tt.want)
		}
	}
}

func TestEnvName(t *testing.T) {
	tests := []struct{ flag, want string }{
		{"data-dir", "MOTE_DATA_DIR"},
		{"mqtts-addr", "MOTE_MQTTS_ADDR"},
		{"max-session-expiry", "MOTE_MAX_SESSION_EXPIRY"},
		{"ws-origins", "MOTE_WS_ORIGINS"},
		{"config", "MOTE_CONFIG"},
	}
	for _, tt := range tests {
		if got := config.EnvName(tt.flag); got != tt.want {
			t.Errorf("EnvName(%q) = %q; want %q", tt.flag, got, tt.want)
		}
	}
}

// TestEverySettingLoads checks that every flag (but --config) can be set
// from the file and from the environment under its EnvName, and that its
// help names the variable.
func TestEverySettingLoads(t *testing.T) {
	c := config.Default()
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	c.Flags(fs)
	n := 0
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Name == "config" {
			return
		}
		n++
		env := config.EnvName(f.Name)
		if !strings.Contains(f.Usage, "(env "+env+")") {
			t.Errorf("usage of --%s = %q; want it to name %s", f.Name, f.Usage, env)
		}
		val := f.DefValue
		if strings.HasPrefix(val, "[") { // a list: its default is shown as [a,b]
			val = strings.Trim(val, "[]")
		}
		for _, src := range []struct {
			name string
			env  map[string]string
			file string
		}{
			{"file", nil, fmt.Sprintf("%s: %q\n", f.Name, val)},
			{"env", map[string]string{env: val}, ""},
		} {
			if _, _, err := load(t, nil, src.env, src.file); err != nil {
				t.Errorf("Load(--%s = its default %q from the %s) = %v; want nil", f.Name, val, src.name, err)
			}
		}
	})
	if n != 173 {
		t.Errorf("settings = %d; want 168 (update this test for a new setting)", n)
	}
}

func TestListsAreTrimmed(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		file string
	}{
		{"flag", []string{"--tls-hosts", "a.example, b.example,,"}, nil, ""},
		{"env", nil, map[string]string{"MOTE_TLS_HOSTS": " a.example , b.example"}, ""},
		{"file", nil, nil, "tls-hosts: [' a.example', 'b.example ']\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, _, err := load(t, tc.args, tc.env, tc.file)
			if err != nil {
				t.Fatal(err)
			}
			if want := []string{"a.example", "b.example"}; !reflect.DeepEqual(c.TLSHosts, want) {
				t.Fatalf("TLSHosts = %q; want %q", c.TLSHosts, want)
			}
		})
	}
}

// TestStoreURLPasswordNotInError: a bad --store URL is refused without
// repeating its password.
func TestStoreURLPasswordNotInError(t *testing.T) {
	c := config.Default()
	c.Store = "postgres://u:hunter2@host:notaport/db"
	err := c.Validate()
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("Validate = %v; want an error without the password", err)
	}
}

// oidcOn configures single sign-on validly.
func oidcOn(c *config.Config) {
	c.OIDCIssuer, c.OIDCClientID, c.OIDCClientSecret = "https://idp.example/realms/x", "mote", "s3cret"
	c.OIDCRoleMap = "mote-admins=admin,*=viewer"
}

// TestClusterSettings: a cluster needs the PostgreSQL store and a node id;
// each refusal names the setting.
func TestClusterSettings(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  func(*config.Config)
		want string // "" valid
	}{
		{"alone", func(c *config.Config) {}, ""},
		{"cluster", func(c *config.Config) {
			c.Cluster, c.NodeID, c.Store = "nats://a:4222,nats://b:4222", "n1", "postgres://u@h/db"
		}, ""},
		{"no store", func(c *config.Config) { c.Cluster, c.NodeID = "nats://a:4222", "n1" }, "--store postgres://"},
		{"no node id", func(c *config.Config) { c.Cluster, c.Store = "nats://a:4222", "postgres://u@h/db" }, "node-id:"},
		{"bad node id", func(c *config.Config) {
			c.Cluster, c.NodeID, c.Store = "nats://a:4222", "a.b", "postgres://u@h/db"
		}, "node-id:"},
		{"bad url", func(c *config.Config) {
			c.Cluster, c.NodeID, c.Store = "http://a", "n1", "postgres://u@h/db"
		}, "cluster:"},
		{"node id alone", func(c *config.Config) { c.NodeID = "n1" }, "need --cluster"},
		{"user without password", func(c *config.Config) {
			c.Cluster, c.NodeID, c.Store, c.ClusterUser = "nats://a:4222", "n1", "postgres://u@h/db", "u"
		}, "cluster-user:"},
		{"relay queue", func(c *config.Config) { c.ClusterRelayQueue = 0 }, "cluster-relay-queue:"},
		{"replicas", func(c *config.Config) { c.ClusterReplicas = 6 }, "cluster-replicas:"},
		{"ingest max bytes", func(c *config.Config) { c.ClusterIngestMaxBytes = 10 }, "cluster-ingest-max-bytes:"},
		{"ingest timeout", func(c *config.Config) { c.ClusterIngestTimeout = time.Millisecond }, "cluster-ingest-timeout:"},
		{"ingest pending", func(c *config.Config) { c.ClusterIngestPending = 0 }, "cluster-ingest-pending:"},
		{"relay max bytes", func(c *config.Config) { c.ClusterRelayMaxBytes = 1 << 10 }, "cluster-relay-max-bytes:"},
		{"relay max age", func(c *config.Config) { c.ClusterRelayMaxAge = time.Millisecond }, "cluster-relay-max-age:"},
		{"relay batch", func(c *config.Config) { c.ClusterRelayBatch = 0 }, "cluster-relay-batch:"},
		{"method calls", func(c *config.Config) { c.ClusterMethodCalls = 0 }, "cluster-method-calls:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := config.Default()
			tc.set(&c)
			err := c.Validate()
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("Validate = %v; want %q", err, tc.want)
			}
		})
	}
}
