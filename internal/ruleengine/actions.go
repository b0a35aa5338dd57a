package ruleengine

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/moteiot/mote/internal/core"
)

// Action types.
const (
	ActionRepublish = "republish"
	ActionTelemetry = "telemetry"
	ActionWebhook   = "webhook"
	ActionLog       = "log"
	// raiseAlarm and clearAlarm: alarms.go
	ActionRaiseAlarm = "raiseAlarm"
	ActionClearAlarm = "clearAlarm"
	ActionKafka      = "kafka"    // actions_kafka.go
	ActionNATS       = "nats"     // actions_nats.go
	ActionPostgres   = "postgres" // actions_postgres.go
	ActionMQTT       = "mqtt"     // actions_mqtt.go: outbound MQTT bridge
)

// external reports whether an action type sends to another system: it
// runs on its own destination (dispatch.go), never on a worker.
func external(typ string) bool {
	switch typ {
	case ActionWebhook, ActionKafka, ActionNATS, ActionPostgres, ActionMQTT:
		return true
	}
	return false
}

// Limits of actions.
const (
	MaxActions              = 10
	MaxWebhookRetries       = 10
	MaxWebhookTimeoutMs     = 60_000
	DefaultWebhookTimeoutMs = 5_000 // without timeoutMs and Options.WebhookTimeout
	DefaultWebhookRetries   = 2     // without retries and Options.WebhookRetries
)

// Action is one action of a rule as stored and sent over the API.
type Action struct {
	Type      string            `json:"type"`
	Topic     string            `json:"topic,omitempty"`     // republish: topic template
	QoS       *byte             `json:"qos,omitempty"`       // republish: 0 or 1 (default 0)
	Retain    bool              `json:"retain,omitempty"`    // republish
	URL       string            `json:"url,omitempty"`       // webhook
	Headers   map[string]string `json:"headers,omitempty"`   // webhook
	TimeoutMs int               `json:"timeoutMs,omitempty"` // webhook: per attempt (default --rule-webhook-timeout)
	Retries   *int              `json:"retries,omitempty"`   // webhook: attempts after the first (default --rule-webhook-retries)
	AlarmType string            `json:"alarmType,omitempty"` // raiseAlarm, clearAlarm
	Severity  string            `json:"severity,omitempty"`  // raiseAlarm
	Details   json.RawMessage   `json:"details,omitempty"`   // raiseAlarm: a JSON object (default: the rule's output)

	// Kafka, NATS, PostgreSQL and MQTT (actions_*.go). Topic, QoS and
	// Retain serve the mqtt action too, URL the nats, postgres and mqtt
	// ones, timeoutMs and retries every action that sends elsewhere.
	Brokers   []string          `json:"brokers,omitempty"`   // kafka: seed brokers host:port
	Key       string            `json:"key,omitempty"`       // kafka: record key template
	Partition *int32            `json:"partition,omitempty"` // kafka: fixed partition (default: by key)
	SASL      *SASLConfig       `json:"sasl,omitempty"`      // kafka
	Subject   string            `json:"subject,omitempty"`   // nats: subject template
	JetStream bool              `json:"jetstream,omitempty"` // nats: publish to JetStream, wait for the ack
	Creds     string            `json:"creds,omitempty"`     // nats: contents of a .creds file (sealed)
	Table     string            `json:"table,omitempty"`     // postgres: [schema.]table
	Columns   map[string]string `json:"columns,omitempty"`   // postgres: column -> output field
	TLS       *TLSConfig        `json:"tls,omitempty"`       // kafka, nats, mqtt
}

// TLSConfig is the TLS of a kafka, nats or mqtt action. Without it the
// connection is plain (an mqtts://, tls:// or ssl:// URL turns TLS on with
// the system roots).
type TLSConfig struct {
	CA                 string `json:"ca,omitempty"`   // PEM: roots to trust instead of the system's
	Cert               string `json:"cert,omitempty"` // PEM: client certificate
	Key                string `json:"key,omitempty"`  // PEM: its private key (sealed)
	ServerName         string `json:"serverName,omitempty"`
	InsecureSkipVerify bool   `json:"insecureSkipVerify,omitempty"`
}

// SASLConfig is the SASL authentication of a kafka action.
type SASLConfig struct {
	Mechanism string `json:"mechanism"` // PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512
	User      string `json:"user"`
	Password  string `json:"password"` // sealed
}

// compiledAction is an Action checked and ready to run.
type compiledAction struct {
	Action
	topic template
	qos   byte
	key   template // kafka
	subj  template // nats
	cols  []string // postgres: the columns, sorted

	sealErr error // a secret did not open (secrets.go): every attempt fails
}

func decodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return fmt.Errorf("trailing data")
	}
	return nil
}

// parseActions decodes and checks the JSON array of a rule's actions.
func parseActions(data []byte) ([]compiledAction, error) {
	if len(data) == 0 || string(data) == "null" {
		return nil, nil
	}
	var list []json.RawMessage
	if err := json.Unmarshal(data, &list); err != nil {
		return nil, core.Invalid("actions", "actions must be an array of action objects")
	}
	if len(list) > MaxActions {
		return nil, core.Invalid("actions", "at most %d actions", MaxActions)
	}
	out := make([]compiledAction, 0, len(list))
	for i, raw := range list {
		a, err := parseAction(fmt.Sprintf("actions[%d]", i), raw)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, nil
}

// parseErrorAction decodes the error action (nil when absent).
func parseErrorAction(data []byte) (*compiledAction, error) {
	if len(data) == 0 || string(data) == "null" {
		return nil, nil
	}
	a, err := parseAction("errorAction", data)
	if err != nil {
		return nil, err
	}
	return &a, nil
}

func parseAction(field string, raw []byte) (compiledAction, error) {
	var a Action
	if err := decodeStrict(raw, &a); err != nil {
		return compiledAction{}, core.Invalid(field, "%s: %v", field, err)
	}
	c := compiledAction{Action: a}
	bad := func(sub, format string, args ...any) error {
		return core.Invalid(field+"."+sub, "%s.%s: %s", field, sub, fmt.Sprintf(format, args...))
	}
	// Which action types each field belongs to.
	only := []struct {
		field   string
		set     bool
		allowed []string
	}{
		{"topic", a.Topic != "", []string{ActionRepublish, ActionKafka, ActionMQTT}},
		{"qos", a.QoS != nil, []string{ActionRepublish, ActionMQTT}},
		{"retain", a.Retain, []string{ActionRepublish, ActionMQTT}},
		{"url", a.URL != "", []string{ActionWebhook, ActionNATS, ActionPostgres, ActionMQTT}},
		{"headers", a.Headers != nil, []string{ActionWebhook}},
		{"timeoutMs", a.TimeoutMs != 0, []string{ActionWebhook, ActionKafka, ActionNATS, ActionPostgres, ActionMQTT}},
		{"retries", a.Retries != nil, []string{ActionWebhook, ActionKafka, ActionNATS, ActionPostgres, ActionMQTT}},
		{"brokers", a.Brokers != nil, []string{ActionKafka}},
		{"key", a.Key != "", []string{ActionKafka}},
		{"partition", a.Partition != nil, []string{ActionKafka}},
		{"sasl", a.SASL != nil, []string{ActionKafka}},
		{"subject", a.Subject != "", []string{ActionNATS}},
		{"jetstream", a.JetStream, []string{ActionNATS}},
		{"creds", a.Creds != "", []string{ActionNATS}},
		{"table", a.Table != "", []string{ActionPostgres}},
		{"columns", a.Columns != nil, []string{ActionPostgres}},
		{"tls", a.TLS != nil, []string{ActionKafka, ActionNATS, ActionMQTT}},
		{"alarmType", a.AlarmType != "", []string{ActionRaiseAlarm, ActionClearAlarm}},
		{"severity", a.Severity != "", []string{ActionRaiseAlarm, ActionClearAlarm}},
		{"details", a.Details != nil, []string{ActionRaiseAlarm, ActionClearAlarm}},
	}
	for _, f := range only {
		if f.set && a.Type != "" && !slices.Contains(f.allowed, a.Type) {
			return compiledAction{}, bad(f.field, "only for a %s action", strings.Join(f.allowed, ", "))
		}
	}
	if external(a.Type) {
		if a.TimeoutMs < 0 || a.TimeoutMs > MaxWebhookTimeoutMs {
			return compiledAction{}, bad("timeoutMs", "must be between 1 and %d", MaxWebhookTimeoutMs)
		}
		// No timeoutMs or retries: the server's --rule-webhook-timeout
		// and --rule-webhook-retries at delivery time.
		if a.Retries != nil && (*a.Retries < 0 || *a.Retries > MaxWebhookRetries) {
			return compiledAction{}, bad("retries", "must be between 0 and %d", MaxWebhookRetries)
		}
	}
	switch a.Type {
	case ActionRepublish:
		if a.Topic == "" {
			return compiledAction{}, bad("topic", "a republish action needs a topic")
		}
		t, err := parseTemplate(a.Topic)
		if err != nil {
			return compiledAction{}, bad("topic", "%v", err)
		}
		c.topic = t
		if a.QoS != nil {
			if *a.QoS > 1 {
				return compiledAction{}, bad("qos", "must be 0 or 1")
			}
			c.qos = *a.QoS
		}
	case ActionWebhook:
		u, err := url.Parse(a.URL)
		if a.URL == "" || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return compiledAction{}, bad("url", "a webhook action needs an http or https URL")
		}
		for k := range a.Headers {
			if k == "" || strings.ContainsAny(k, " :\r\n") {
				return compiledAction{}, bad("headers", "invalid header name %q", k)
			}
		}
	case ActionKafka:
		if err := checkKafka(&c, bad); err != nil {
			return compiledAction{}, err
		}
	case ActionNATS:
		if err := checkNATS(&c, bad); err != nil {
			return compiledAction{}, err
		}
	case ActionPostgres:
		if err := checkPostgres(&c, bad); err != nil {
			return compiledAction{}, err
		}
	case ActionMQTT:
		if err := checkMQTT(&c, bad); err != nil {
			return compiledAction{}, err
		}
	case ActionTelemetry, ActionLog:
	case ActionRaiseAlarm, ActionClearAlarm:
		if err := checkAlarmAction(a); err != nil {
			return compiledAction{}, bad(core.FieldOf(err), "%s", err.(*core.Error).Msg)
		}
	case "":
		return compiledAction{}, bad("type", "an action needs a type: "+actionTypes)
	default:
		return compiledAction{}, bad("type", "unknown action type %q: want "+actionTypes, a.Type)
	}
	return c, nil
}

const actionTypes = "republish, telemetry, webhook, log, kafka, nats, postgres, mqtt, raiseAlarm or clearAlarm"

// badFunc reports an invalid field of an action.
type badFunc func(sub, format string, args ...any) error

// A template is a republish topic with substitutions:
//
//	${topic()}      the message's topic
//	${topic(N)}     its N-th level (1-based; empty when there is none)
//	${clientid()}   the publisher's client id
//	${thing()}      the publishing thing
//	${name}         member name of the rule's output (a string as is,
//	                other values as JSON); a missing one fails the action
type template []part

type part struct {
	lit   string
	kind  byte // 0 literal, 't' topic, 'c' clientid, 'h' thing, 'f' field
	level int  // 't': 0 whole topic, else 1-based level
	field string
}

func parseTemplate(s string) (template, error) {
	t, err := parseText(s)
	if err != nil {
		return nil, err
	}
	for _, p := range t {
		if strings.ContainsAny(p.lit, "+#\x00") {
			return nil, fmt.Errorf("a topic must not contain wildcards (+, #)")
		}
	}
	return t, nil
}

// parseText parses a template whose literal text may be anything (a
// Kafka key, a NATS subject, checked after expansion).
func parseText(s string) (template, error) {
	var t template
	for s != "" {
		i := strings.Index(s, "${")
		if i < 0 {
			t = append(t, part{lit: s})
			break
		}
		if i > 0 {
			t = append(t, part{lit: s[:i]})
		}
		j := strings.IndexByte(s[i:], '}')
		if j < 0 {
			return nil, fmt.Errorf("unterminated ${ in topic template")
		}
		expr := strings.TrimSpace(s[i+2 : i+j])
		s = s[i+j+1:]
		switch {
		case expr == "topic()":
			t = append(t, part{kind: 't'})
		case strings.HasPrefix(expr, "topic(") && strings.HasSuffix(expr, ")"):
			n, err := strconv.Atoi(strings.TrimSpace(expr[6 : len(expr)-1]))
			if err != nil || n < 1 {
				return nil, fmt.Errorf("${%s}: topic(N) needs a level number from 1", expr)
			}
			t = append(t, part{kind: 't', level: n})
		case expr == "clientid()":
			t = append(t, part{kind: 'c'})
		case expr == "thing()":
			t = append(t, part{kind: 'h'})
		case expr == "" || strings.ContainsAny(expr, "(){}$ "):
			return nil, fmt.Errorf("${%s}: want topic(), topic(N), clientid(), thing() or an output field name", expr)
		default:
			t = append(t, part{kind: 'f', field: expr})
		}
	}
	if len(t) == 0 {
		return nil, fmt.Errorf("empty template")
	}
	return t, nil
}

// expand builds the topic for a message; lookup returns an output field.
func (t template) expand(topic, clientID, thing string, lookup func(string) (string, bool)) (string, error) {
	out, err := t.expandText(topic, clientID, thing, lookup)
	if err != nil {
		return "", err
	}
	if out == "" || strings.ContainsAny(out, "+#\x00") {
		return "", fmt.Errorf("topic template gives an invalid topic %q", out)
	}
	return out, nil
}

// expandText builds the text of a template for a message.
func (t template) expandText(topic, clientID, thing string, lookup func(string) (string, bool)) (string, error) {
	var b strings.Builder
	for _, p := range t {
		switch p.kind {
		case 0:
			b.WriteString(p.lit)
		case 't':
			if p.level == 0 {
				b.WriteString(topic)
			} else if levels := strings.Split(topic, "/"); p.level <= len(levels) {
				b.WriteString(levels[p.level-1])
			}
		case 'c':
			b.WriteString(clientID)
		case 'h':
			b.WriteString(thing)
		case 'f':
			v, ok := lookup(p.field)
			if !ok {
				return "", fmt.Errorf("template: the output has no field %q", p.field)
			}
			b.WriteString(v)
		}
	}
	return b.String(), nil
}
