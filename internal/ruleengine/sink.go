package ruleengine

import (
	"encoding/json"
	"time"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/store"
)

// Sink delivers webhooks for a part of the platform other than rules
// (alarm notifications) on the same path as a rule's webhook action
// (dispatch.go): a bounded queue, bounded concurrency, a timeout per
// attempt, retries with backoff and a circuit breaker; Send never waits.
// Its counters and metrics are those of a rule named by the sink's name,
// which starts with '$' so that it cannot be a rule's.
type Sink struct {
	d *destination
}

// Sink returns a webhook destination named name ("$alarms") for the
// webhook action a (type webhook, checked like a rule's).
func (e *Engine) Sink(name string, a Action) (*Sink, error) {
	a.Type = ActionWebhook
	raw, err := json.Marshal(a)
	if err != nil {
		return nil, err
	}
	c, err := parseAction("webhook", raw)
	if err != nil {
		return nil, err
	}
	if len(name) < 2 || name[0] != '$' {
		return nil, core.Invalid("name", "a sink's name starts with '$'")
	}
	r := &compiledRule{rule: store.Rule{Name: name}, actions: []compiledAction{c}}
	r.stats = e.statsFor(name)
	return &Sink{d: e.newDestination(r, &r.actions[0], false)}, nil
}

// Send queues body for delivery; topic only names the job in logs. A
// full queue or an open breaker drops it (counted under the sink's name).
func (s *Sink) Send(topic string, body []byte) {
	s.d.enqueue(job{msg: core.Message{Topic: topic, Received: time.Now()}, body: body})
}
