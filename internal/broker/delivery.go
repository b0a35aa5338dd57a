package broker

import (
	"bytes"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/moteiot/mote/internal/core"
)

// DeliveryTracker hears about tracked deliveries (Broker.Deliver): when a
// device becomes able to receive them and when it acknowledged one. The
// commands service implements it. Both methods run on a client's
// goroutine and must only enqueue.
type DeliveryTracker interface {
	// Subscribed reports that a live client of thing subscribed to
	// filters, or resumed a persistent session that has them.
	Subscribed(thing string, filters []string)
	// Delivered reports that a client of thing acknowledged the message
	// Deliver sent it on topic (PUBACK; for a QoS 0 subscription, once the
	// message was written).
	Delivered(thing, topic string)
}

// maxTrackedPerClient bounds the tracked deliveries a client may have
// unacknowledged; Deliver skips a client at the bound (or at its MQTT 5
// receive maximum) and the tracker sends the rest after a Delivered.
const maxTrackedPerClient = 16

// delivery is the hook that tracks messages sent with Deliver. It is a
// separate mochi hook so that it adds nothing to the publish path: it
// provides no publish or ACL event.
//
// A tracked delivery lives in mochi's inflight store (so mochi accepts the
// PUBACK) only while its connection lives: when the connection ends or is
// taken over, the entries are removed from the inflight store, so mochi
// never resends them on a resumed session (possibly after their expiry);
// the tracker sends them again when the client subscribes or resumes.
type delivery struct {
	mqtt.HookBase
	b *Broker
	n atomic.Int64 // tracked entries, so OnQosComplete is free when there are none

	mu      sync.Mutex
	clients map[*mqtt.Client]*tracked
}

// tracked is what one connection has not acknowledged yet.
type tracked struct {
	thing   string
	byID    map[uint16]string // packet id → topic
	byTopic map[string]uint16
}

func newDelivery(b *Broker) *delivery {
	return &delivery{b: b, clients: make(map[*mqtt.Client]*tracked)}
}

func (d *delivery) ID() string { return "mote-delivery" }

func (d *delivery) Provides(b byte) bool {
	return bytes.Contains([]byte{
		mqtt.OnSessionEstablish,
		mqtt.OnSessionEstablished,
		mqtt.OnSubscribed,
		mqtt.OnDisconnect,
		mqtt.OnQosComplete,
	}, []byte{b})
}

// OnSessionEstablish runs before mochi hands an existing session to a new
// connection with the same client id: our entries leave the old one first.
func (d *delivery) OnSessionEstablish(cl *mqtt.Client, _ packets.Packet) {
	if d.n.Load() == 0 {
		return
	}
	if old, ok := d.b.server.Clients.Get(cl.ID); ok && old != cl {
		d.drop(old)
	}
}

func (d *delivery) OnSessionEstablished(cl *mqtt.Client, _ packets.Packet) {
	if d.b.opts.Deliveries == nil {
		return
	}
	subs := cl.State.Subscriptions.GetAll()
	if len(subs) == 0 {
		return
	}
	s := d.b.current(cl)
	if s == nil {
		return
	}
	filters := make([]string, 0, len(subs))
	for f := range subs {
		filters = append(filters, f)
	}
	d.b.opts.Deliveries.Subscribed(s.id.Thing, d.b.azureFilters(s, filters))
}

func (d *delivery) OnSubscribed(cl *mqtt.Client, pk packets.Packet, codes []byte) {
	if d.b.opts.Deliveries == nil || cl.Net.Inline {
		return
	}
	s := d.b.current(cl)
	if s == nil {
		return
	}
	var filters []string
	for i, f := range pk.Filters {
		if i < len(codes) && codes[i] < packets.ErrUnspecifiedError.Code {
			filters = append(filters, f.Filter)
		}
	}
	if len(filters) > 0 {
		d.b.opts.Deliveries.Subscribed(s.id.Thing, d.b.azureFilters(s, filters))
	}
}

func (d *delivery) OnDisconnect(cl *mqtt.Client, _ error, _ bool) {
	if d.n.Load() != 0 {
		d.drop(cl)
	}
}

// OnQosComplete marks a tracked delivery acknowledged. mochi also calls it
// for the client's own QoS 1 publishes, with an acknowledgement it built
// itself (Created set); a PUBACK read from the wire has Created zero.
func (d *delivery) OnQosComplete(cl *mqtt.Client, pk packets.Packet) {
	if d.n.Load() == 0 || pk.FixedHeader.Type != packets.Puback || pk.Created != 0 {
		return
	}
	d.mu.Lock()
	t := d.clients[cl]
	topic, ok := "", false
	if t != nil {
		topic, ok = t.byID[pk.PacketID]
		if ok {
			d.forgetLocked(cl, t, pk.PacketID, topic)
		}
	}
	d.mu.Unlock()
	if ok && d.b.opts.Deliveries != nil {
		d.b.opts.Deliveries.Delivered(t.thing, topic)
	}
}

func (d *delivery) forgetLocked(cl *mqtt.Client, t *tracked, id uint16, topic string) {
	delete(t.byID, id)
	delete(t.byTopic, topic)
	d.n.Add(-1)
	if len(t.byID) == 0 {
		delete(d.clients, cl)
	}
}

// drop removes what a connection had not acknowledged from mochi's
// inflight store and forgets it.
func (d *delivery) drop(cl *mqtt.Client) {
	d.mu.Lock()
	t := d.clients[cl]
	if t == nil {
		d.mu.Unlock()
		return
	}
	delete(d.clients, cl)
	d.n.Add(-int64(len(t.byID)))
	d.mu.Unlock()
	for id := range t.byID {
		if cl.State.Inflight.Delete(id) {
			atomic.AddInt64(&d.b.server.Info.Inflight, -1)
		}
	}
}

// track records a delivery about to be written; false if topic is already
// unacknowledged on cl or cl is at its bound.
func (d *delivery) track(cl *mqtt.Client, thing, topic string, id uint16, limit int) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	t := d.clients[cl]
	if t == nil {
		t = &tracked{thing: thing, byID: map[uint16]string{}, byTopic: map[string]uint16{}}
		d.clients[cl] = t
	}
	if _, dup := t.byTopic[topic]; dup || len(t.byID) >= limit {
		return false
	}
	t.byID[id] = topic
	t.byTopic[topic] = id
	d.n.Add(1)
	return true
}

// pendingOn reports whether topic is unacknowledged on cl, and how many are.
func (d *delivery) pendingOn(cl *mqtt.Client, topic string) (dup bool, n int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	t := d.clients[cl]
	if t == nil {
		return false, 0
	}
	_, dup = t.byTopic[topic]
	return dup, len(t.byID)
}

func (d *delivery) untrack(cl *mqtt.Client, id uint16) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if t := d.clients[cl]; t != nil {
		if topic, ok := t.byID[id]; ok {
			d.forgetLocked(cl, t, id, topic)
		}
	}
}

// Deliver sends a platform message to the live connections of one thing
// that have a subscription matching topic and may receive it, and tracks
// its acknowledgement: Options.Deliveries.Delivered is called when a
// connection acknowledged it. It is delivered at QoS 1 (or the QoS of the
// subscription, if 0) with the MQTT 5 message expiry interval set to the
// time left until expires, and is never handed to an offline session's
// queue. A connection that already has this topic unacknowledged, or has
// too many tracked deliveries unacknowledged, is skipped. It returns the
// number of connections that have the message: written now, or written
// before and not yet acknowledged; 0 means nobody could take it now. When
// nobody took it and a subscribed connection was too busy to take any QoS
// 1 message (its inflight store full of other messages), the error is
// ErrDeliveryBusy: no acknowledgement of ours will come to say when to
// try again.
//
// Deliver writes to the connection from the caller's goroutine and may
// wait for a slow connection's socket; call it off the publish path.
func (b *Broker) Deliver(thing, topic string, payload []byte, expires time.Time) (int, error) {
	if b.closed.Load() {
		return 0, core.Errorf(core.KindUnavailable, "broker is shutting down")
	}
	now := time.Now()
	if !expires.After(now) {
		return 0, nil
	}
	subs := b.server.Topics.Subscribers(topic)
	sent, busy := 0, false
	for _, s := range b.sessionsOf(thing) {
		cl := s.cl
		sub, ok := subs.Subscriptions[cl.ID]
		wire := topic
		if !ok && s.azure != nil {
			wire, sub, ok = b.azureDeviceBound(s, topic) // commands as Azure C2D messages (azure.go)
		}
		if !ok || cl.Closed() || !s.ev.Load().CanReceive(topic) {
			continue
		}
		ok, full := b.deliverTo(cl, s.id.Thing, topic, wire, payload, min(sub.Qos, 1), now, expires)
		if ok {
			sent++
		}
		busy = busy || full
	}
	if sent == 0 && busy {
		return 0, ErrDeliveryBusy
	}
	return sent, nil
}

// ErrDeliveryBusy is Deliver's answer when every subscribed connection was
// too busy; try again later.
var ErrDeliveryBusy = core.Errorf(core.KindUnavailable, "the subscribed connections are too busy to take the message now")

// deliverTo writes one tracked delivery to one connection. ok: it has the
// message; full: its inflight store or packet ids are exhausted.
// wire is the topic the packet goes out on (topic but for Azure devices,
// azure.go); tracking and Delivered use topic.
func (b *Broker) deliverTo(cl *mqtt.Client, thing, topic, wire string, payload []byte, qos byte, now, expires time.Time) (ok, full bool) {
	d := b.delivery
	limit := maxTrackedPerClient
	if rm := int(cl.Properties.Props.ReceiveMaximum); rm > 0 && rm < limit {
		limit = rm
	}
	if dup, n := d.pendingOn(cl, topic); dup {
		return true, false // it has it already
	} else if n >= limit {
		return false, false // a PUBACK of ours will come
	}
	expiry := expires.Unix()
	if expires.Nanosecond() > 0 {
		expiry++ // never earlier than asked
	}
	pk := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: qos},
		TopicName:   wire,
		Payload:     payload,
		Created:     now.Unix(),
		Expiry:      expiry,
	}
	if qos > 0 {
		if cl.State.Inflight.Len() >= int(b.server.Options.Capabilities.MaximumInflight) {
			return false, true
		}
		id, err := cl.NextPacketID()
		if err != nil {
			return false, true
		}
		pk.PacketID = uint16(id)
		if !d.track(cl, thing, topic, pk.PacketID, limit) {
			return false, false
		}
		if cl.State.Inflight.Set(pk) {
			atomic.AddInt64(&b.server.Info.Inflight, 1)
		}
		if dup, _ := d.pendingOn(cl, topic); !dup { // the connection ended meanwhile
			if cl.State.Inflight.Delete(pk.PacketID) {
				atomic.AddInt64(&b.server.Info.Inflight, -1)
			}
			return false, false
		}
	}
	if err := cl.WritePacket(pk); err != nil {
		if qos > 0 {
			d.untrack(cl, pk.PacketID)
			if cl.State.Inflight.Delete(pk.PacketID) {
				atomic.AddInt64(&b.server.Info.Inflight, -1)
			}
		}
		return false, false // the connection is ending; the device comes back
	}
	if qos == 0 && b.opts.Deliveries != nil {
		b.opts.Deliveries.Delivered(thing, topic)
	}
	return true, false
}
