package broker

import (
	"time"

	"github.com/moteiot/mote/internal/core"
)

// Inject publishes a message that came from another broker (an inbound
// MQTT bridge, package bridge) as if a client had published it: to the
// subscribers, then to Options.OnMessage (rules, live view) with Protocol
// "bridge", ClientID origin and no thing. It is not a device's message:
// no policy, rate limit or journal applies (the bridge has its own
// limits), and rules that need a thing (telemetry) fail on it. The topic
// must be a valid topic name and the payload at most --max-packet-size.
func (b *Broker) Inject(topic string, payload []byte, qos byte, retain bool, origin string) error {
	if b.closed.Load() {
		return core.Errorf(core.KindUnavailable, "broker is shutting down")
	}
	if err := validTopicName(topic); err != nil {
		return err
	}
	if qos > 1 {
		qos = 1
	}
	if len(payload) > b.opts.MaxPacketSize {
		return &core.Error{Kind: core.KindTooLarge, Msg: "message is larger than the largest packet the broker accepts (max-packet-size)"}
	}
	if err := b.platformPublish(topic, payload, retain, qos); err != nil {
		return core.Errorf(core.KindUnavailable, "publish: %v", err)
	}
	if b.opts.OnMessage != nil {
		b.opts.OnMessage(core.Message{Topic: topic, Payload: payload, QoS: qos, Retain: retain,
			ClientID: origin, Received: time.Now(), Protocol: "bridge"})
	}
	return nil
}
