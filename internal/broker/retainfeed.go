package broker

import (
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// mochi sends the retained messages matching a new subscription all at
// once into the client's outbound queue (OutboundQueue packets, and
// MaxOfflineQueue unacknowledged QoS 1/2 messages): whatever does not fit
// is dropped without a word, so a subscriber to a large tree got a
// fraction of it. Mote sends them itself instead, paced by the client:
//
//   - OnSubscribe notes which filters should get their retained messages
//     (MQTT 5 retain handling, shared subscriptions get none) and tells
//     mochi to send none (retain handling 2);
//   - once the SUBACK is written (OnPacketSent), those of the accepted
//     filters go to the session's feeder, one goroutine per session at a
//     time, which writes the retained messages one by one, waiting while
//     the client's queue or its unacknowledged QoS 1/2 messages are at
//     the backpressure high-water mark (or at its MQTT 5 receive maximum).
//
// Each message is read from the topic index when it is its turn, so a
// message replaced meanwhile is sent in its newest form and a cleared one
// is not sent. A feeder stops when its connection ends or the client made
// no room for retainedFeedStall; what it did not send then is counted in
// mote_mqtt_messages_dropped_total{reason="retained_unsent"}.

// retainedFeedStall is how long a feeder waits for a client that takes
// nothing before it gives up.
const retainedFeedStall = time.Minute

// feedState is the retained-message feeder of one session.
type feedState struct {
	mu      sync.Mutex
	asked   []packets.Subscription // filters of the SUBSCRIBE being answered, nil entries: none wanted
	askedID uint16
	jobs    []packets.Subscription
	running bool
}

// OnSubscribe takes the sending of retained messages over from mochi.
func (h *hook) OnSubscribe(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	if cl.Net.Inline {
		return pk
	}
	s := h.b.current(cl)
	if s == nil {
		return pk
	}
	s.markSubscribe(pk.Filters) // until OnSubscribed (hooks.go)
	asked := make([]packets.Subscription, len(pk.Filters))
	filters := make([]packets.Subscription, len(pk.Filters))
	for i, sub := range pk.Filters {
		_, existed := cl.State.Subscriptions.Get(sub.Filter)
		want := !mqtt.IsSharedFilter(sub.Filter) && sub.RetainHandling != 2 && !(sub.RetainHandling == 1 && existed)
		if want {
			asked[i] = sub
		}
		sub.RetainHandling = 2 // mochi sends none; the feeder does
		filters[i] = sub
	}
	pk.Filters = filters
	s.feed.mu.Lock()
	s.feed.asked, s.feed.askedID = asked, pk.PacketID
	s.feed.mu.Unlock()
	return pk
}

// subacked hands the retained messages of the accepted filters of the
// SUBSCRIBE just answered to the feeder.
func (b *Broker) subacked(s *session, ack packets.Packet) {
	f := &s.feed
	f.mu.Lock()
	asked := f.asked
	if f.askedID != ack.PacketID {
		asked = nil
	}
	f.asked = nil
	start := false
	for i, sub := range asked {
		if sub.Filter == "" || i >= len(ack.ReasonCodes) || ack.ReasonCodes[i] >= packets.ErrUnspecifiedError.Code {
			continue
		}
		dup := false
		for j, q := range f.jobs {
			if q.Filter == sub.Filter {
				f.jobs[j], dup = sub, true // subscribed again: send again, once
			}
		}
		if !dup {
			f.jobs = append(f.jobs, sub)
		}
		if !f.running {
			f.running, start = true, true
		}
	}
	f.mu.Unlock()
	if start {
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			b.feedRetained(s)
		}()
	}
}

// feedRetained runs the feeder of a session until it has no jobs left.
func (b *Broker) feedRetained(s *session) {
	f := &s.feed
	for {
		f.mu.Lock()
		if len(f.jobs) == 0 {
			f.running = false
			f.mu.Unlock()
			return
		}
		sub := f.jobs[0]
		f.jobs = f.jobs[1:]
		f.mu.Unlock()
		if !b.feedFilter(s, sub) {
			f.mu.Lock()
			unsent := len(f.jobs) // not counted message by message: their filters were not read
			f.jobs, f.running = nil, false
			f.mu.Unlock()
			if unsent > 0 {
				b.dropLog.Info("retained messages not sent: the subscriber left or took nothing", "client", s.cl.ID, "filters", unsent)
			}
			return
		}
	}
}

// feedFilter sends the retained messages matching sub; false if it had to
// stop (the connection ended, the broker is closing, or the client took
// nothing for retainedFeedStall).
func (b *Broker) feedFilter(s *session, sub packets.Subscription) bool {
	cl := s.cl
	msgs := b.server.Topics.Messages(sub.Filter)
	topics := make([]string, len(msgs))
	for i := range msgs {
		topics[i] = msgs[i].TopicName
	}
	msgs = nil
	for i, topic := range topics {
		pk, ok := b.server.Topics.Retained.Get(topic)
		if !ok || len(pk.Payload) == 0 || (pk.Expiry > 0 && pk.Expiry < time.Now().Unix()) {
			continue // cleared or expired meanwhile
		}
		qos := min(pk.FixedHeader.Qos, sub.Qos, b.server.Options.Capabilities.MaximumQos)
		if !b.waitRoom(s, qos) {
			unsent := len(topics) - i
			b.metrics.dropped.WithLabelValues("retained_unsent").Add(float64(unsent))
			if !cl.Closed() {
				b.dropLog.Warn("retained messages not sent: the subscriber took nothing", "client", cl.ID, "filter", sub.Filter, "messages", unsent)
			}
			return false
		}
		if !b.hook.OnACLCheck(cl, topic, false) {
			continue
		}
		b.sendRetained(s, sub, pk, qos)
	}
	return true
}

// waitRoom waits until the client can take a message at qos; false if it
// cannot any more.
func (b *Broker) waitRoom(s *session, qos byte) bool {
	cl := s.cl
	limit := int(cl.Properties.Props.ReceiveMaximum) // MQTT 5: what the client takes unacknowledged
	room := func() bool {
		if b.full(s, qos) {
			return false
		}
		return qos == 0 || limit == 0 || cl.State.Inflight.Len() < limit
	}
	stalled := time.Now().Add(retainedFeedStall)
	for !room() {
		if cl.Closed() || b.closed.Load() || s.slow.cut.Load() || time.Now().After(stalled) {
			return false
		}
		ch := s.drainCh()
		if room() {
			break
		}
		// A wake comes with each drain; the timer covers the client's own
		// acknowledgements of a small receive maximum, which wake only at
		// the backpressure low-water mark.
		t := time.NewTimer(50 * time.Millisecond)
		select {
		case <-ch:
		case <-t.C:
		case <-b.stop:
		}
		t.Stop()
	}
	return true
}

// sendRetained writes one retained message to the client, as mochi's
// publishToClient would.
func (b *Broker) sendRetained(s *session, sub packets.Subscription, pk packets.Packet, qos byte) {
	cl := s.cl
	out := pk.Copy(false)
	out.FixedHeader.Retain = true // [MQTT-3.3.1-8]: a retained message sent for a new subscription
	out.FixedHeader.Qos = qos
	if sub.Identifier > 0 {
		out.Properties.SubscriptionIdentifier = []int{sub.Identifier}
	}
	if cl.Properties.Props.TopicAliasMaximum > 0 {
		alias, exists := cl.State.TopicAliases.Outbound.Set(pk.TopicName)
		if alias > 0 {
			out.Properties.TopicAlias, out.Properties.TopicAliasFlag = alias, true
			if exists {
				out.TopicName = ""
			}
		}
	}
	if qos > 0 {
		id, err := cl.NextPacketID()
		if err != nil {
			b.metrics.dropped.WithLabelValues("retained_unsent").Inc()
			return
		}
		out.PacketID = uint16(id)
		if cl.State.Inflight.Set(out) {
			atomic.AddInt64(&b.server.Info.Inflight, 1)
			b.hook.OnQosPublish(cl, out, out.Created, 0)
			cl.State.Inflight.DecreaseSendQuota()
		}
	}
	s.pending.Add(1) // OnPacketSent takes it off again
	if err := cl.WritePacket(out); err != nil {
		s.sent(b.highWater / 2)
		// The connection is ending; a QoS 1/2 message stays in the
		// inflight store of a persistent session and is resent.
		return
	}
}
