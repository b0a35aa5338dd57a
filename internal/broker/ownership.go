package broker

import (
	"errors"
	"sync"
	"sync/atomic"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/moteiot/mote/internal/policy"
)

// A session belongs to the thing that created it. MQTT lets any client
// that connects with a client id take over the session under it: the live
// connection is closed and the newcomer inherits the subscriptions and
// the QoS 1/2 messages queued for it. Between devices of different things
// that would let one read (and steal) another's messages and kick it off
// at will, so a connection of another thing with a client id whose
// session exists is refused with 0x85 "client identifier not valid"
// (MQTT 3.1.1: return code 2). The owner of a persistent session is kept
// in its stored record (sessionRecord.Thing), so it holds across restarts.
//
// A client id is claimed in OnConnect, after authentication and before
// mochi looks the id up, so two things racing for a new id cannot both
// get it. A claim lasts as long as mochi keeps a client under the id (a
// live connection, or a persistent session while it is away) or the
// claiming connection is still being set up; a stale claim is replaced
// by the next claimant, and claims are removed when their session ends.

var (
	errClientIDOwned   = errors.New("client id belongs to another thing's session")
	errClientIDTooLong = errors.New("client id too long")
)

// clientOwners maps client ids to the thing whose session each is.
type clientOwners struct {
	mu sync.Mutex
	m  map[string]ownerClaim
}

type ownerClaim struct {
	thing string
	cl    *mqtt.Client // the connection (or restored session) that claimed it last
}

// claimClientID gives cl's client id to thing, unless another thing's
// session holds it.
func (b *Broker) claimClientID(cl *mqtt.Client, thing string) error {
	o := &b.owners
	o.mu.Lock()
	defer o.mu.Unlock()
	// A provisioning connection (owner "", provisioning.go) never keeps
	// the thing it just registered from connecting under the same id.
	if c, ok := o.m[cl.ID]; ok && c.thing != thing && c.thing != "" && b.claimHeld(cl.ID, c) {
		return errClientIDOwned
	}
	o.m[cl.ID] = ownerClaim{thing: thing, cl: cl}
	return nil
}

// claimHeld reports whether a claim still stands: mochi keeps a client
// under the id (connected, or a persistent session), or the claiming
// connection has not ended. Called with b.owners.mu held; no I/O.
func (b *Broker) claimHeld(id string, c ownerClaim) bool {
	if _, ok := b.server.Clients.Get(id); ok {
		return true
	}
	return !c.cl.Closed()
}

// setOwner records the owner of a session restored at start.
func (b *Broker) setOwner(cl *mqtt.Client, thing string) {
	b.owners.mu.Lock()
	b.owners.m[cl.ID] = ownerClaim{thing: thing, cl: cl}
	b.owners.mu.Unlock()
}

// releaseClientID ends cl's claim on its client id when no session is
// left under it. ending says mochi removes cl's session now (a clean
// session ended, or a persistent one expired); otherwise cl died before
// its session was established, and a session that mochi still keeps
// under the id (the thing's earlier one) keeps the claim.
func (b *Broker) releaseClientID(cl *mqtt.Client, ending bool) {
	o := &b.owners
	o.mu.Lock()
	defer o.mu.Unlock()
	c, ok := o.m[cl.ID]
	if !ok || (c.cl != cl && !c.cl.Closed()) {
		return // a newer connection holds it
	}
	if other, ok := b.server.Clients.Get(cl.ID); ok && !(ending && other == cl) {
		o.m[cl.ID] = ownerClaim{thing: c.thing, cl: other}
		return
	}
	delete(o.m, cl.ID)
}

// OnSessionEstablish runs after authentication and before mochi hands the
// new connection the session under its client id: the QoS 1/2 messages
// queued for it (or in flight to the connection it replaces) were checked
// against the receive policy when they were queued, and mochi resends them
// without asking again. Those that the thing may no longer receive are
// dropped here, so every delivery passes its current policy.
func (h *hook) OnSessionEstablish(cl *mqtt.Client, pk packets.Packet) {
	h.b.capKeepalive(cl) // before the CONNACK (protocol.go)
	if pk.Connect.Clean {
		return // mochi discards the old session
	}
	v, ok := h.connecting.Load(cl)
	if !ok {
		return
	}
	old, ok := h.b.server.Clients.Get(cl.ID)
	if !ok || old == cl {
		return
	}
	s := v.(*session)
	h.b.dropDenied(old, s.id.Thing, s.ev.Load())
}

// dropDenied removes the PUBLISH packets queued for cl that ev does not
// let it receive, and counts them as receive denials.
func (b *Broker) dropDenied(cl *mqtt.Client, thing string, ev *policy.Evaluator) {
	if cl.State.Inflight.Len() == 0 {
		return
	}
	for _, pk := range cl.State.Inflight.GetAll(false) {
		if pk.FixedHeader.Type != packets.Publish || canDeliver(ev, pk.TopicName) {
			continue
		}
		if !cl.State.Inflight.Delete(pk.PacketID) {
			continue
		}
		atomic.AddInt64(&b.server.Info.Inflight, -1)
		if l := b.sessionLog; l != nil {
			l.deleteMessage(cl.ID, pk.PacketID)
		}
		b.metrics.denied.WithLabelValues("receive").Inc()
		b.authLog.Info("queued message dropped: receive no longer allowed by policy",
			"client", clip(cl.ID), "thing", thing, "topic", clip(pk.TopicName))
	}
}

// canDeliver reports whether ev lets its client receive a message on
// topic, as OnACLCheck does for a delivery. A topic-alias-only packet (""
// topic) cannot be checked and is not delivered.
func canDeliver(ev *policy.Evaluator, topic string) bool {
	return topic != "" && ev.CanDeliver(topic)
}
