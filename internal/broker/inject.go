package broker

import (
	"context"
	"strings"
	"time"
	"unicode/utf8"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/moteiot/mote/internal/core"
)

// Authorize checks whether a thing may publish on topic right now, as
// PublishAs would: the topic is a valid topic name (KindInvalid), the
// thing's policies allow publishing on it (KindForbidden), and the thing
// is within its rate limit (*RateLimitError, KindRateLimited; the message
// counts against the limit). clientID fills ${clientid} in policies. The
// HTTP device API calls it for requests that act on a topic without
// publishing a message (shadow get and update).
func (b *Broker) Authorize(ctx context.Context, thing, clientID, topic, protocol string) error {
	if err := validTopicName(topic); err != nil {
		return err
	}
	ev, err := b.evaluator(ctx, thing, clientID)
	if err != nil {
		return err
	}
	if !ev.CanPublish(topic) {
		b.metrics.denied.WithLabelValues("publish").Inc()
		b.authLog.Info("publish denied by policy", "client", clientID, "thing", thing, "topic", topic, "protocol", protocol)
		return core.Errorf(core.KindForbidden, "the policies of thing %q do not allow publishing on %q", thing, topic)
	}
	if b.limits != nil {
		if ok, after := b.limits.allow(thing, protocol, time.Now()); !ok {
			return &RateLimitError{Thing: thing, After: after}
		}
	}
	return nil
}

// PublishAs publishes a message on behalf of an authenticated device that
// did not come over MQTT (the HTTP device API). It takes the same path as
// an MQTT publish: the thing's policies, its rate limit, backpressure from
// slow subscribers, delivery to subscribers (their receive policies
// apply), then Options.OnMessage (shadows, rules, telemetry) with Protocol
// "http". QoS is 0 or 1.
func (b *Broker) PublishAs(ctx context.Context, thing, clientID, topic string, payload []byte, qos byte, retain bool) error {
	return b.PublishVia(ctx, "http", thing, clientID, topic, payload, qos, retain)
}

// PublishVia is PublishAs for another device protocol than HTTP (the CoAP
// device API: "coap"), which labels the message, its rate-limit refusals
// and its log lines.
func (b *Broker) PublishVia(ctx context.Context, protocol, thing, clientID, topic string, payload []byte, qos byte, retain bool) error {
	if b.closed.Load() {
		return core.Errorf(core.KindUnavailable, "broker is shutting down")
	}
	if qos > 1 {
		return core.Invalid("qos", "qos must be 0 or 1")
	}
	if len(payload) > b.opts.MaxPacketSize {
		return &core.Error{Kind: core.KindTooLarge, Msg: "message is larger than the largest packet the broker accepts (max-packet-size)"}
	}
	if err := b.Authorize(ctx, thing, clientID, topic, protocol); err != nil {
		return err
	}
	if err := b.checkRetainedHTTP(thing, clientID, topic, payload, retain); err != nil {
		return err
	}
	pk := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: qos, Retain: retain},
		TopicName:   topic,
		Payload:     payload,
	}
	b.backpressure(&mqtt.Client{ID: clientID}, pk)
	m := core.Message{
		Topic:    topic,
		Payload:  payload,
		QoS:      qos,
		Retain:   retain,
		ClientID: clientID,
		Thing:    thing,
		Received: time.Now(),
		Protocol: protocol,
	}
	// The same durability step as an MQTT publish (hooks.go persist): a
	// QoS 1 message a rule stores is in the journal before we answer.
	if j := b.opts.Journal; qos > 0 && j != nil && j.Wants(topic) {
		tok := b.ownPublishBegin() // replay.go: until its local fan-out
		defer b.ownPublishEnd(tok)
		seq, err := j.Append(m)
		if err != nil {
			b.metrics.dropped.WithLabelValues("journal_unavailable").Inc()
			b.dropLog.Error("HTTP publish refused: the ingest journal cannot take it", "thing", thing, "topic", topic, "error", err)
			// The journal's kind: insufficient_storage (HTTP 507) while
			// its disk fails, unavailable when it is closed.
			return &core.Error{Kind: core.KindOf(err), Msg: "the message could not be made durable; send it again", Err: err}
		}
		m.Seq = seq
	}
	if retain && len(payload) > 0 {
		b.retainQuota.owners.Store(topic, thing) // for OnRetainMessage, which sees mochi's inline client
	}
	if err := b.server.Publish(topic, payload, retain, qos); err != nil {
		b.retainQuota.owners.Delete(topic)
		return core.Errorf(core.KindUnavailable, "publish: %v", err)
	}
	if b.opts.OnMessage != nil {
		b.opts.OnMessage(m)
	}
	b.activity.httpMessage(thing, topic, payload) // last seen, invalid telemetry (activity.go)
	return nil
}

// validTopicName checks a topic a device publishes on: 1 to 65,535 bytes
// of UTF-8 without wildcards or NUL.
func validTopicName(topic string) error {
	switch {
	case topic == "":
		return core.Invalid("topic", "topic is required")
	case len(topic) > 65535:
		return core.Invalid("topic", "topic is longer than 65535 bytes")
	case !utf8.ValidString(topic):
		return core.Invalid("topic", "topic must be UTF-8")
	case strings.ContainsAny(topic, "+#\x00"):
		return core.Invalid("topic", "topic must not contain wildcards (+ #) or NUL")
	case strings.HasPrefix(topic, "$share/"):
		return core.Invalid("topic", "topic must not start with $share/")
	}
	return nil
}
