package ruleengine

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
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
)

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
}

// compiledAction is an Action checked and ready to run.
type compiledAction struct {
	Action
	topic template
	qos   byte

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
	onlyFor := func(typ string) error {
		switch {
		case a.Topic != "" && typ != ActionRepublish:
			return bad("topic", "only for a republish action")
		case (a.QoS != nil || a.Retain) && typ != ActionRepublish:
			return bad("qos", "only for a republish action")
		case (a.URL != "" || a.Headers != nil || a.TimeoutMs != 0 || a.Retries != nil) && typ != ActionWebhook:
			return bad("url", "url, headers, timeoutMs and retries are only for a webhook action")
		case (a.AlarmType != "" || a.Severity != "" || a.Details != nil) && typ != ActionRaiseAlarm && typ != ActionClearAlarm:
			return bad("alarmType", "alarmType, severity and details are only for raiseAlarm and clearAlarm actions")
		}
		return nil
	}
	if err := onlyFor(a.Type); err != nil {
		return compiledAction{}, err
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
		if a.TimeoutMs < 0 || a.TimeoutMs > MaxWebhookTimeoutMs {
			return compiledAction{}, bad("timeoutMs", "must be between 1 and %d", MaxWebhookTimeoutMs)
		}
		// No timeoutMs or retries: the server's --rule-webhook-timeout
		// and --rule-webhook-retries at delivery time.
		if a.Retries != nil && (*a.Retries < 0 || *a.Retries > MaxWebhookRetries) {
			return compiledAction{}, bad("retries", "must be between 0 and %d", MaxWebhookRetries)
		}
		for k := range a.Headers {
			if k == "" || strings.ContainsAny(k, " :\r\n") {
				return compiledAction{}, bad("headers", "invalid header name %q", k)
			}
		}
	case ActionTelemetry, ActionLog:
	case ActionRaiseAlarm, ActionClearAlarm:
		if err := checkAlarmAction(a); err != nil {
			return compiledAction{}, bad(core.FieldOf(err), "%s", err.(*core.Error).Msg)
		}
	case "":
		return compiledAction{}, bad("type", "an action needs a type: republish, telemetry, webhook, log, raiseAlarm or clearAlarm")
	default:
		return compiledAction{}, bad("type", "unknown action type %q: want republish, telemetry, webhook, log, raiseAlarm or clearAlarm", a.Type)
	}
	return c, nil
}

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
	for _, p := range t {
		if strings.ContainsAny(p.lit, "+#\x00") {
			return nil, fmt.Errorf("a topic must not contain wildcards (+, #)")
		}
	}
	if len(t) == 0 {
		return nil, fmt.Errorf("empty topic")
	}
	return t, nil
}

// expand builds the topic for a message; lookup returns an output field.
func (t template) expand(topic, clientID, thing string, lookup func(string) (string, bool)) (string, error) {
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
				return "", fmt.Errorf("topic template: the output has no field %q", p.field)
			}
			b.WriteString(v)
		}
	}
	out := b.String()
	if out == "" || strings.ContainsAny(out, "+#\x00") {
		return "", fmt.Errorf("topic template gives an invalid topic %q", out)
	}
	return out, nil
}
