package broker

import (
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/moteiot/mote/internal/core"
)

// Shared subscriptions in a cluster (docs/cluster.md). On one node mochi
// delivers a message once per shared group ($share/group/filter), to one
// member. In a cluster each node would do so for its own members, so a
// group with members on two nodes got each message twice. Instead, a node
// with members of a group joins a NATS queue group for it on the subjects
// of its filter (SharedLink); every accepted message is on NATS already
// (the relay), and NATS gives each to one node of the queue group, which
// delivers it to one local member (RelayShared). Every other delivery
// leaves the shared groups out (OnSelectSubscribers), so a message reaches
// a group once in the cluster. QoS is kept; delivery to the chosen node is
// core NATS, at most once, like the relay.
//
// While a node is joined it keeps a placeholder member in mochi's topic
// index under each group (never a client), so that mochi always asks
// OnSelectSubscribers about a shared delivery: without one, a delivery
// whose last member left a moment before would go to the topic's ordinary
// subscribers instead. Joining, leaving and shared deliveries are ordered
// by one mutex.

// SharedLink is the cluster's side of shared subscriptions (implemented
// by *cluster.Node). A ClusterLink that does not implement it leaves
// shared groups node-local.
type SharedLink interface {
	// SharedJoin starts taking the group's share of the messages on filter
	// (share is "$share/group/filter"); SharedLeave stops. They must not
	// wait for the network.
	SharedJoin(share, group, filter string) error
	SharedLeave(share string)
}

// sharedPlaceholder is the client id of the placeholder members.
const sharedPlaceholder = "\x00mote-shared"

// sharedClientID is the inline client that shared deliveries are
// injected from.
const sharedClientID = "mote-cluster-shared"

type sharedGroups struct {
	link SharedLink
	cl   *mqtt.Client

	mu        sync.Mutex                     // orders join, leave and deliveries
	members   map[string]map[string]struct{} // share → client ids
	selecting string                         // the share being delivered (under mu)

	delivered, noMember, failed atomic.Uint64
}

// splitShare returns the group and filter of "$share/group/filter".
func splitShare(filter string) (group, f string, ok bool) {
	rest, ok := strings.CutPrefix(filter, "$share/")
	if !ok {
		return "", "", false
	}
	group, f, ok = strings.Cut(rest, "/")
	return group, f, ok && group != "" && f != ""
}

// sharedJoin records client as a member of the shares among filters.
func (b *Broker) sharedJoin(client string, filters []string) {
	sh := b.shared
	if sh == nil {
		return
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	for _, f := range filters {
		group, filter, ok := splitShare(f)
		if !ok {
			continue
		}
		m := sh.members[f]
		if m == nil {
			if err := sh.link.SharedJoin(f, group, filter); err != nil {
				b.dropLog.Error("shared subscription not joined on the cluster; its messages reach this node's members only through other nodes' choice", "share", clip(f), "error", err)
				continue
			}
			m = map[string]struct{}{}
			sh.members[f] = m
			b.server.Topics.Subscribe(sharedPlaceholder, packets.Subscription{Filter: f, Qos: 2})
		}
		m[client] = struct{}{}
	}
}

// sharedLeave removes client from the shares among filters.
func (b *Broker) sharedLeave(client string, filters []string) {
	sh := b.shared
	if sh == nil {
		return
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	for _, f := range filters {
		m := sh.members[f]
		if m == nil {
			continue
		}
		delete(m, client)
		if len(m) == 0 {
			delete(sh.members, f)
			sh.link.SharedLeave(f)
			b.server.Topics.Unsubscribe(f, sharedPlaceholder)
		}
	}
}

func subscriptionFilters(subs []packets.Subscription, codes []byte) []string {
	out := make([]string, 0, len(subs))
	for i, s := range subs {
		if codes != nil && (i >= len(codes) || codes[i] >= 0x80) {
			continue
		}
		out = append(out, s.Filter)
	}
	return out
}

// OnSelectSubscribers leaves the shared groups out of every delivery but
// a shared one, which goes to one member of its group only.
func (h *hook) OnSelectSubscribers(subs *mqtt.Subscribers, pk packets.Packet) *mqtt.Subscribers {
	sh := h.b.shared
	if sh == nil {
		return subs
	}
	if pk.Origin != sharedClientID {
		subs.Shared = map[string]map[string]packets.Subscription{}
		return subs
	}
	// A shared delivery: sh.mu is held by RelayShared on this goroutine.
	members := subs.Shared[sh.selecting]
	delete(members, sharedPlaceholder)
	subs.Shared = map[string]map[string]packets.Subscription{}
	subs.Subscriptions = map[string]packets.Subscription{}
	subs.InlineSubscriptions = map[int]mqtt.InlineSubscription{}
	if len(members) == 0 {
		sh.noMember.Add(1)
		return subs
	}
	subs.Shared[sh.selecting] = members
	sh.delivered.Add(1)
	return subs
}

// RelayShared delivers a message to one local member of share (NATS chose
// this node for it). The message was accepted on some node, maybe this
// one: no publish hook runs and it goes nowhere else.
func (b *Broker) RelayShared(m core.Message, share string) error {
	sh := b.shared
	if sh == nil || b.closed.Load() {
		return core.Errorf(core.KindUnavailable, "broker is shutting down")
	}
	pk := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: min(m.QoS, 2)},
		TopicName:   m.Topic,
		Payload:     m.Payload,
		Created:     time.Now().Unix(),
		PacketID:    uint16(min(m.QoS, 2)),
	}
	for _, p := range m.Properties {
		pk.Properties.User = append(pk.Properties.User, packets.UserProperty{Key: p.Key, Val: p.Value})
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.members[share] == nil {
		sh.noMember.Add(1) // left meanwhile
		return nil
	}
	sh.selecting = share
	err := b.server.InjectPacket(sh.cl, pk)
	sh.selecting = ""
	if err != nil {
		sh.failed.Add(1)
		return core.Errorf(core.KindUnavailable, "shared delivery: %v", err)
	}
	b.notReceived.Add(1)
	return nil
}
