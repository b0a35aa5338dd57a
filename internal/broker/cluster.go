package broker

import (
	"context"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/moteiot/mote/internal/core"
)

// ClusterLink is told what the other nodes of a cluster must know
// (package cluster). Both methods run on hot paths and must only enqueue.
type ClusterLink interface {
	// PlatformPublished hears a platform message published here (shadow
	// answers and deltas, method requests, job notifications, events), so
	// that subscribers on other nodes get it too.
	PlatformPublished(m core.Message)
	// ClientConnected hears that a connection with this client id was
	// established here, so that other nodes close theirs (takeover).
	ClientConnected(clientID, thing string)
}

// platformPublished tells the cluster about a platform publish.
func (b *Broker) platformPublished(topic string, payload []byte, retain bool, qos byte) {
	if c := b.opts.Cluster; c != nil {
		c.PlatformPublished(core.Message{Topic: topic, Payload: payload, Retain: retain, QoS: qos, Received: time.Now(), Protocol: "platform"})
	}
}

// clusterConnected tells the cluster about an established connection.
func (b *Broker) clusterConnected(cl *mqtt.Client, s *session) {
	if c := b.opts.Cluster; c != nil && s.prov == nil {
		c.ClientConnected(cl.ID, s.id.Thing)
	}
}

// Relay delivers a message accepted on another node of the cluster to the
// subscribers of this one: the origin's topic, payload, QoS, retain flag
// and user properties. It runs no publish hook of a device (authorization,
// rate limits and durability were applied where it was accepted) and does
// not reach Options.OnMessage or the cluster again, so a relayed message
// never loops. A retained message is kept in this node's memory for its
// new subscribers; the origin node stored it.
func (b *Broker) Relay(m core.Message) error {
	if b.closed.Load() {
		return core.Errorf(core.KindUnavailable, "broker is shutting down")
	}
	pk := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: min(m.QoS, 2), Retain: m.Retain},
		TopicName:   m.Topic,
		Payload:     m.Payload,
		Created:     time.Now().Unix(),
		PacketID:    uint16(min(m.QoS, 2)), // as mochi's inline Publish: needed for validity checks only
	}
	for _, p := range m.Properties {
		pk.Properties.User = append(pk.Properties.User, packets.UserProperty{Key: p.Key, Val: p.Value})
	}
	if m.Retain && len(m.Payload) > 0 && m.Thing != "" {
		b.retainQuota.owners.Store(m.Topic, m.Thing) // its owner for the quota (OnRetainMessage)
	}
	if err := b.server.InjectPacket(b.relay, pk); err != nil {
		b.retainQuota.owners.Delete(m.Topic)
		return core.Errorf(core.KindUnavailable, "relay: %v", err)
	}
	b.notReceived.Add(1)
	return nil
}

// TakeOver closes this node's connection of clientID, because another node
// of the cluster accepted a newer one: MQTT 5 clients are told 0x8E
// (session taken over), as mochi tells them when both are on one node. It
// reports whether there was a connection to close.
func (b *Broker) TakeOver(clientID string) bool {
	v, ok := b.sessions.Load(clientID)
	if !ok {
		// A persistent session kept here while its device was away: the
		// new connection's node owns it now (handover.go).
		if cl, ok := b.server.Clients.Get(clientID); ok && b.handover != nil {
			b.forgetSession(clientID, cl)
		}
		return false
	}
	s := v.(*session)
	b.log.Info("disconnecting client: its client id connected to another node", "client", clientID, "thing", s.id.Thing)
	s.takenOver.Store(true) // its disconnect does not end (nor store) the session
	cancelDelayedWill(s.cl) // wills.go
	b.closeClient(s.cl, packets.ErrSessionTakenOver)
	if b.handover != nil {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), b.opts.HandoverTimeout)
			defer cancel()
			if waitUntil(ctx, func() bool { return b.current(s.cl) == nil }) == nil {
				b.forgetSession(clientID, s.cl)
			}
		}()
	}
	return true
}

// NodeLost publishes a disconnected event (reason "node_lost") for each
// thing that was connected on a cluster node found lost; the store already
// marks them disconnected. The client id of such a connection is not
// known here: the event carries the thing's name as its client id.
func (b *Broker) NodeLost(node string, things []string) {
	now := time.Now().UTC()
	for _, thing := range things {
		b.presence.queue(Event{Event: "disconnected", ClientID: thing, Thing: thing, Time: now, Reason: "node_lost"})
	}
}

// RecordConnections records again that the things connected here are
// connected on this node (the other nodes of a cluster may have taken this
// node for lost and reset them).
func (b *Broker) RecordConnections() {
	b.mu.Lock()
	things := make([]string, 0, len(b.byThing))
	for thing := range b.byThing {
		if thing == "" {
			continue
		}
		things = append(things, thing)
	}
	b.mu.Unlock()
	for _, thing := range things {
		b.presence.record(thing, true)
	}
}

// RelayHeld is Relay with the backpressure a local publisher gets: while a
// matching subscriber here has no room, it waits (--backpressure-wait at
// most, as a device's publish does) before handing the message over. The
// cluster's JetStream relay calls it from its consumer, so a slow
// subscriber slows this node's consumer (JetStream buffers), not the
// publishers' nodes.
func (b *Broker) RelayHeld(m core.Message) error {
	if b.closed.Load() {
		return core.Errorf(core.KindUnavailable, "broker is shutting down")
	}
	b.backpressure(b.relay, packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: min(m.QoS, 2), Retain: m.Retain},
		TopicName:   m.Topic,
	})
	return b.Relay(m)
}
