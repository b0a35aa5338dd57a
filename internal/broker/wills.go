package broker

import (
	"context"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/policy"
)

// Last wills (docs/cluster.md, "Last wills"). mochi publishes a will to
// its own subscribers without the publish hooks (sendLWT: no OnPublish,
// no OnPublished), so nothing else heard of it. OnWillSent now hands it to
// Options.OnMessage with Protocol "will": the platform services (rules,
// telemetry) see it as they see a device's publish, and in a cluster the
// bus relays it to the other nodes and to the shared groups (which mochi
// left out here: OnSelectSubscribers). A retained will is stored by
// mochi's OnRetainMessage here, as any retained publish.
//
// In a cluster (a ClusterLink that is a WillLink), the will of each live
// connection is also recorded where a surviving node can read it
// (cluster/wills.go), and its record is cleared when the connection ends
// with no will pending; a survivor publishes a lost node's wills through
// PublishWill.

// ProtocolWill marks a will in core.Message.Protocol.
const ProtocolWill = "will"

// WillLink records the wills of live connections for the cluster
// (implemented by *cluster.Node). Both methods are called on the
// client's goroutine and must not wait long.
type WillLink interface {
	// WillSet records the will of connection conn (m: its topic,
	// payload, QoS, retain flag, client id and thing; delay in seconds).
	WillSet(conn uint64, m core.Message, delay uint32)
	// WillClear deletes conn's record, if it is still conn's.
	WillClear(conn uint64, clientID string)
}

var willConns atomic.Uint64 // connection numbers for WillLink

func (b *Broker) willLink() WillLink {
	l, _ := b.opts.Cluster.(WillLink)
	return l
}

// willRecord records an established connection's will, if it has one.
func (b *Broker) willRecord(cl *mqtt.Client, s *session) {
	if s.prov != nil || atomic.LoadUint32(&cl.Properties.Will.Flag) == 0 {
		return
	}
	w := cl.Properties.Will
	topic := w.TopicName
	s.willTopic.Store(&topic) // willRecheck
	l := b.willLink()
	if l == nil {
		return
	}
	conn := willConns.Add(1)
	s.willConn.Store(conn)
	l.WillSet(conn, core.Message{
		Topic: w.TopicName, Payload: w.Payload, QoS: w.Qos, Retain: w.Retain,
		ClientID: cl.ID, Thing: s.id.Thing, Protocol: ProtocolWill, Properties: propertiesOf(w.User),
	}, w.WillDelayInterval)
}

// willEnded clears the record of a connection that ended with no will
// pending (a clean DISCONNECT, its will sent, taken over); a will whose
// delay runs keeps its record until it is sent or cancelled.
func (b *Broker) willEnded(cl *mqtt.Client, s *session) {
	l := b.willLink()
	if l == nil || s.willConn.Load() == 0 || s.willSent.Load() { // willSent cleared it
		return
	}
	if s.takenOver.Load() || cl.IsTakenOver() || atomic.LoadUint32(&cl.Properties.Will.Flag) == 0 {
		l.WillClear(s.willConn.Load(), cl.ID)
	}
}

// willSent hands a will mochi published here to the platform services
// and the other nodes, and clears its record.
func (b *Broker) willSent(cl *mqtt.Client, pk packets.Packet) {
	s := b.current(cl)
	if s == nil {
		s = b.offlineSession(cl) // a delayed will: its connection ended
	}
	if s == nil {
		return
	}
	s.willSent.Store(true)
	if l := b.willLink(); l != nil && s.willConn.Load() != 0 {
		l.WillClear(s.willConn.Load(), cl.ID)
	}
	if b.opts.OnMessage == nil || s.prov != nil {
		return
	}
	b.opts.OnMessage(core.Message{
		Topic:      pk.TopicName,
		Payload:    pk.Payload,
		QoS:        pk.FixedHeader.Qos,
		Retain:     pk.FixedHeader.Retain,
		ClientID:   cl.ID,
		Thing:      s.id.Thing,
		Received:   time.Now(),
		Protocol:   ProtocolWill,
		Properties: propertiesOf(pk.Properties.User),
	})
}

// willRecheck drops the will of a connection whose thing may no longer
// publish on the will's topic (its policies changed since CONNECT, where
// the topic was checked): a will denied by policy is sent nowhere.
func (b *Broker) willRecheck(s *session, ev *policy.Evaluator) {
	topic := s.willTopic.Load()
	if topic == nil || ev.CanPublish(*topic) {
		return
	}
	cl := s.cl
	if atomic.SwapUint32(&cl.Properties.Will.Flag, 0) == 0 {
		return
	}
	b.metrics.denied.WithLabelValues("will").Inc()
	b.authLog.Info("last will dropped: its topic is no longer allowed by policy", "client", cl.ID, "thing", s.id.Thing, "topic", *topic)
	if l := b.willLink(); l != nil && s.willConn.Load() != 0 {
		l.WillClear(s.willConn.Load(), cl.ID)
	}
}

// cancelDelayedWill drops the will of a connection whose client id
// connected to another node, when its will has a delay: MQTT 5 cancels a
// delayed will when a new connection with its client id arrives before
// the delay ends (mochi does so for a new connection on this node only).
// A will without delay is sent as the connection closes, as on one node.
func cancelDelayedWill(cl *mqtt.Client) {
	if cl.Properties.Will.WillDelayInterval > 0 {
		atomic.StoreUint32(&cl.Properties.Will.Flag, 0)
	}
}

// PublishWill publishes the will of a connection lost with its node (a
// cluster survivor, cluster/wills.go) on behalf of its thing: the thing's
// policies are checked now (KindForbidden: it may have lost the right
// since it connected; KindNotFound: deleted), then the will takes a
// platform publish's path: this node's subscribers, the retained store,
// Options.OnMessage (rules, telemetry, the other nodes) with Protocol
// "will". QoS 2 is delivered at QoS 1. The thing's rate limit does not
// apply.
func (b *Broker) PublishWill(ctx context.Context, m core.Message) error {
	if b.closed.Load() {
		return core.Errorf(core.KindUnavailable, "broker is shutting down")
	}
	if err := validTopicName(m.Topic); err != nil {
		return err
	}
	ev, err := b.evaluator(ctx, m.Thing, m.ClientID)
	if err != nil {
		return err
	}
	if !ev.CanPublish(m.Topic) {
		b.metrics.denied.WithLabelValues("publish").Inc()
		b.authLog.Info("will of a lost connection denied by policy", "client", m.ClientID, "thing", m.Thing, "topic", m.Topic)
		return core.Errorf(core.KindForbidden, "the policies of thing %q do not allow publishing on %q", m.Thing, m.Topic)
	}
	m.QoS = min(m.QoS, 1)
	if m.Retain && len(m.Payload) > 0 {
		b.retainQuota.owners.Store(m.Topic, m.Thing) // for OnRetainMessage, which sees mochi's inline client
	}
	if err := b.server.Publish(m.Topic, m.Payload, m.Retain, m.QoS); err != nil {
		b.retainQuota.owners.Delete(m.Topic)
		return core.Errorf(core.KindUnavailable, "publish: %v", err)
	}
	m.Protocol = ProtocolWill
	if b.opts.OnMessage != nil {
		b.opts.OnMessage(m)
	}
	return nil
}
