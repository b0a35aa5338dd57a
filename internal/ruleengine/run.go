package ruleengine

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/rules"
	"github.com/moteiot/mote/internal/telemetry"
)

// run carries out one action for a message; body is the JSON it acts on.
func (e *Engine) run(a *compiledAction, rule string, msg core.Message, body []byte, lookup func(string) (string, bool)) error {
	switch a.Type {
	case ActionRepublish:
		if e.opts.Publisher == nil {
			return fmt.Errorf("republish: no publisher")
		}
		topic, err := a.topic.expand(msg.Topic, msg.ClientID, msg.Thing, lookup)
		if err != nil {
			return err
		}
		if err := e.opts.Publisher.Publish(topic, body, a.Retain, a.qos); err != nil {
			return fmt.Errorf("republish to %q: %w", topic, err)
		}
		return nil
	case ActionTelemetry:
		if e.opts.Telemetry == nil {
			return fmt.Errorf("telemetry: no telemetry store")
		}
		points, err := telemetryPoints(msg, body)
		if err != nil {
			return fmt.Errorf("telemetry: %w", err)
		}
		if len(points) == 0 {
			return nil
		}
		if err := e.opts.Telemetry.Add(e.ctx, points, 0); err != nil {
			return fmt.Errorf("telemetry: %w", err)
		}
		return nil
	case ActionWebhook:
		return fmt.Errorf("webhook %s: not run by the workers", redactedURL(a.URL)) // dispatch.go delivers webhooks
	case ActionRaiseAlarm, ActionClearAlarm:
		return e.runAlarm(a, msg, body)
	case ActionLog:
		e.log.Info("rule output", "rule", rule, "topic", msg.Topic, "output", string(body))
		return nil
	}
	return fmt.Errorf("unknown action type %q", a.Type)
}

// telemetryPoints turns a rule's output into the points of the message's
// thing (nested objects flattened to dotted keys, the device time if the
// output has one).
func telemetryPoints(msg core.Message, body []byte) ([]telemetry.Point, error) {
	if msg.Thing == "" {
		return nil, errors.New("the message was not published by a thing")
	}
	ts, fields, err := telemetry.Flatten(body, msg.Received)
	if err != nil {
		return nil, err
	}
	points := make([]telemetry.Point, len(fields))
	for i, f := range fields {
		points[i] = telemetry.Point{Thing: msg.Thing, Key: f.Key, TS: ts, Value: f.Value}
	}
	return points, nil
}

// post makes one attempt of a webhook: POST body to the action's URL;
// a 2xx answer is success. Errors name the URL without its password
// (header values are never in them): they are logged and go to error
// actions.
func (e *Engine) post(a *compiledAction, body []byte, timeout time.Duration) error {
	if a.sealErr != nil {
		return a.sealErr
	}
	ctx, cancel := context.WithTimeout(e.ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.URL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("webhook %s: %w", redactedURL(a.URL), err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "mote/"+core.Version)
	for k, v := range a.Headers {
		req.Header.Set(k, v)
	}
	resp, err := e.opts.HTTPClient.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // its URL may carry the password
		}
		return fmt.Errorf("webhook %s: %w", redactedURL(a.URL), err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("webhook %s: status %s", redactedURL(a.URL), resp.Status)
	}
	return nil
}

// objectLookup finds a member of a rule's output for a topic template.
func objectLookup(o rules.Object) func(string) (string, bool) {
	return func(name string) (string, bool) {
		v, ok := o.Get(name)
		if !ok || v.Kind() == rules.KindUndefined {
			return "", false
		}
		if v.Kind() == rules.KindString {
			return v.Str(), true
		}
		return string(v.AppendJSON(nil)), true
	}
}

// bodyLookup finds a member of an action's JSON body for a template: a
// string as is, other values as JSON. The body is decoded on first use.
func bodyLookup(body []byte) func(string) (string, bool) {
	var m map[string]json.RawMessage
	decoded := false
	return func(name string) (string, bool) {
		if !decoded {
			decoded = true
			_ = json.Unmarshal(body, &m)
		}
		raw, ok := m[name]
		if !ok {
			return "", false
		}
		var s string
		if len(raw) > 0 && raw[0] == '"' && json.Unmarshal(raw, &s) == nil {
			return s, true
		}
		return string(raw), true
	}
}

// lookupOf returns the job's lookup, or one on its body.
func (j job) lookupOf() func(string) (string, bool) {
	if j.lookup != nil {
		return j.lookup
	}
	return bodyLookup(j.body)
}

func mapLookup(m map[string]any) func(string) (string, bool) {
	return func(name string) (string, bool) {
		v, ok := m[name]
		if !ok {
			return "", false
		}
		if s, ok := v.(string); ok {
			return s, true
		}
		return fmt.Sprint(v), true
	}
}

// dropLogger rate-limits the engine's warnings: at most one per second per
// kind, with the number suppressed before it.
type dropLogger struct {
	mu       sync.Mutex
	lastDrop time.Time
	drops    int
	lastErr  time.Time
	errs     int

	lastActionDrop time.Time
	actionDrops    int
}

func (d *dropLogger) log(l *slog.Logger, topic string) {
	d.mu.Lock()
	now := time.Now()
	if now.Sub(d.lastDrop) < time.Second {
		d.drops++
		d.mu.Unlock()
		return
	}
	n := d.drops
	d.lastDrop, d.drops = now, 0
	d.mu.Unlock()
	l.Warn("rules engine queue full: message dropped", "topic", topic, "suppressed_before", n)
}

func (d *dropLogger) logError(l *slog.Logger, rule, topic string, err error) {
	d.mu.Lock()
	now := time.Now()
	if now.Sub(d.lastErr) < 200*time.Millisecond {
		d.errs++
		d.mu.Unlock()
		return
	}
	n := d.errs
	d.lastErr, d.errs = now, 0
	d.mu.Unlock()
	l.Warn("rule failed", "rule", rule, "topic", topic, "error", err, "suppressed_before", n)
}

func (d *dropLogger) logActionDrop(l *slog.Logger, rule, action, reason, topic string) {
	d.mu.Lock()
	now := time.Now()
	if now.Sub(d.lastActionDrop) < time.Second {
		d.actionDrops++
		d.mu.Unlock()
		return
	}
	n := d.actionDrops
	d.lastActionDrop, d.actionDrops = now, 0
	d.mu.Unlock()
	l.Warn("rule action dropped", "rule", rule, "action", action, "reason", reason, "topic", topic, "suppressed_before", n)
}
