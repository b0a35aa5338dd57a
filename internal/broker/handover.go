package broker

import (
	"context"
	"encoding/json"
	"errors"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/moteiot/mote/internal/store"
)

// Persistent sessions in a cluster (docs/cluster.md). A persistent
// session lives in the memory of one node at a time, the node its device
// was connected to last: that node queues the messages for it while the
// device is away (messages accepted on other nodes reach it through the
// relay), so each is queued once. Its stored record names that node
// (sessionRecord.Node). At start a cluster node restores only the
// sessions it held; the others stay in the store.
//
// When a device connects to node B with Clean Start 0 under a client id
// that B does not hold, B reads the stored record (which also refuses
// another thing's client id, 0x85, as on one node) and asks the node named
// in it to release the session (ClusterLink.ReleaseSession, a NATS
// request bounded by HandoverTimeout). That node closes a live connection
// (MQTT 5: 0x8E), stops queueing for it, writes the session — its
// subscriptions and the messages in flight or queued, at most
// HandoverMaxMessages of them, the oldest dropped beyond — to the store in
// one transaction, forgets it, and answers. B then loads the session from
// the store and mochi resumes it as if B had held it: the subscriptions
// are active, the queued QoS 1/2 messages are sent again, and those the
// thing may no longer receive are dropped (OnSessionEstablish). When no
// node answers within the timeout (it died), B resumes what the store
// has: what the dead node had written by its last flush.

// HandoverLink is what the broker needs of the cluster to move sessions
// between nodes (implemented by *cluster.Node). A ClusterLink that does
// not implement it leaves sessions node-local.
type HandoverLink interface {
	// ReleaseSession asks node to release clientID's session and waits for
	// its answer until ctx ends.
	ReleaseSession(ctx context.Context, node, clientID string) error
}

// clusterSession reads the stored session of clientID for a device
// connecting here in a cluster, when this node does not hold it. A session
// that belongs to another thing refuses the connection (0x85).
func (b *Broker) clusterSession(ctx context.Context, clientID, thing string) (*store.StoredSession, *sessionRecord, error) {
	if b.handover == nil || b.sessionLog == nil {
		return nil, nil, nil
	}
	if _, ok := b.server.Clients.Get(clientID); ok {
		return nil, nil, nil // held here: mochi takes it over, ownership.go checks the thing
	}
	st, ok, err := b.sessionLog.st.Get(ctx, clientID)
	if err != nil {
		return nil, nil, err
	}
	if !ok {
		return nil, nil, nil
	}
	var r sessionRecord
	if err := json.Unmarshal(st.Data, &r); err != nil || r.Client.ID != clientID || r.Thing == "" {
		return nil, nil, nil // unreadable: a new session replaces it
	}
	if r.Thing != thing {
		return nil, nil, errClientIDOwned
	}
	return &st, &r, nil
}

// resumeFromCluster makes the session of a device connecting here with
// Clean Start 0 this node's: released by the node that held it, then
// loaded from the store and handed to mochi, which resumes it for cl,
// with what the relay stream has after the session's replay point
// (replay.go).
func (b *Broker) resumeFromCluster(cl *mqtt.Client, s *session, st *store.StoredSession, r *sessionRecord) {
	b.resumeFrom(cl, s, r.Node, st, r)
}

// resumeFrom is resumeFromCluster for a session held by node (st and r:
// the store's copy, nil when the store had none: read after the release).
func (b *Broker) resumeFrom(cl *mqtt.Client, s *session, node string, st *store.StoredSession, r *sessionRecord) {
	if node != "" && node != b.opts.NodeID {
		ctx, cancel := context.WithTimeout(context.Background(), b.opts.HandoverTimeout)
		err := b.handover.ReleaseSession(ctx, node, cl.ID)
		cancel()
		if err != nil {
			b.dropLog.Warn("persistent session not handed over by its node; resuming what the store has",
				"client", clip(cl.ID), "thing", s.id.Thing, "node", node, "error", err)
		}
		ctx, cancel = context.WithTimeout(context.Background(), b.opts.HandoverTimeout)
		fresh, ok, err := b.sessionLog.st.Get(ctx, cl.ID)
		cancel()
		if err != nil || !ok {
			b.dropLog.Warn("persistent session not read after its handover", "client", clip(cl.ID), "error", err)
			return
		}
		var fr sessionRecord
		if json.Unmarshal(fresh.Data, &fr) != nil || fr.Thing != s.id.Thing {
			return
		}
		st, r = &fresh, &fr
	}
	if st == nil || r == nil {
		return
	}
	old := b.restoreOne(cl.ID, s, st, r)
	if r.ReplayFrom > 0 && b.opts.Replay != nil {
		// Subscribed here now: the relay stream after its replay point,
		// before the CONNACK (bounded by ReplayTimeout).
		b.replaySessions([]*replayTarget{{cl: old, s: s, from: r.ReplayFrom}})
	}
}

// restoreOne puts a stored session into mochi as a disconnected client,
// as restoreSessions does at start, subscribed (it queues what is
// published from now on) until the connection resuming it takes it over.
func (b *Broker) restoreOne(id string, live *session, st *store.StoredSession, r *sessionRecord) *mqtt.Client {
	c := r.Client
	old := b.server.NewClient(nil, c.Listener, c.ID, false)
	old.Properties.Username = c.Username
	old.Properties.Clean = c.Clean
	old.Properties.ProtocolVersion = c.ProtocolVersion
	old.Properties.Props = packets.Properties{
		SessionExpiryInterval: c.Properties.SessionExpiryInterval, SessionExpiryIntervalFlag: c.Properties.SessionExpiryIntervalFlag,
		RequestProblemInfoFlag: c.Properties.RequestProblemInfoFlag, RequestProblemInfo: c.Properties.RequestProblemInfo,
		RequestResponseInfo: c.Properties.RequestResponseInfo, ReceiveMaximum: c.Properties.ReceiveMaximum,
		User: c.Properties.User, MaximumPacketSize: c.Properties.MaximumPacketSize,
	}
	old.Stop(packets.ErrServerShuttingDown)
	for _, sub := range r.Subs {
		sb := packets.Subscription{Filter: sub.Filter, RetainHandling: sub.RetainHandling, Qos: sub.Qos,
			RetainAsPublished: sub.RetainAsPublished, NoLocal: sub.NoLocal, Identifier: sub.Identifier}
		old.State.Subscriptions.Add(sub.Filter, sb) // mochi subscribes the new connection to these
		if !strings.HasPrefix(sub.Filter, "$share/") && b.server.Topics.Subscribe(old.ID, sb) {
			atomic.AddInt64(&b.server.Info.Subscriptions, 1)
		}
	}
	stored := make(map[uint16]bool, len(st.Messages))
	for _, m := range st.Messages {
		var ir inflightRecord
		if err := json.Unmarshal(m.Data, &ir); err != nil || ir.Message.PacketID != m.PacketID {
			continue
		}
		if old.State.Inflight.Set(ir.packet()) {
			atomic.AddInt64(&b.server.Info.Inflight, 1)
			stored[m.PacketID] = true
		}
	}
	l := b.sessionLog
	l.mu.Lock()
	l.known[id] = true
	if len(stored) > 0 {
		l.stored[id] = stored
	}
	l.mu.Unlock()
	// Its permissions for what mochi queues to it until the connection
	// resuming it takes over (OnACLCheck reads them; addSession drops
	// the entry then).
	os := &session{cl: old, listener: c.Listener, id: live.id}
	os.setEvaluator(live.ev.Load(), live.evaluatorGen())
	b.offline.Store(id, os)
	b.server.Clients.Add(old)
	b.sharedJoin(id, restoredFilters(r.Subs)) // shared.go
	b.log.Info("persistent session resumed from the cluster", "client", clip(id), "thing", live.id.Thing,
		"from", r.Node, "subscriptions", len(r.Subs), "messages", len(stored))
	return old
}

// ReleaseSession hands this node's session of clientID over to another
// node (cluster.Node calls it for a node's request): a live connection is
// closed (MQTT 5: 0x8E, session taken over), the session stops receiving
// messages, is written to the store with its queued messages (at most
// HandoverMaxMessages, the oldest dropped beyond) and is forgotten here. It
// reports whether this node held the session, and how many messages were
// dropped for the bound.
func (b *Broker) ReleaseSession(ctx context.Context, clientID string) (held bool, dropped int, err error) {
	if b.sessionLog == nil {
		return false, 0, nil
	}
	cl, ok := b.server.Clients.Get(clientID)
	if !ok {
		return false, 0, nil
	}
	var s *session
	if v, ok := b.sessions.Load(clientID); ok {
		s = v.(*session)
		s.takenOver.Store(true) // its disconnect is not the session's end
		b.log.Info("disconnecting client: its session moves to another node", "client", clip(clientID), "thing", s.id.Thing)
		b.closeClient(s.cl, packets.ErrSessionTakenOver)
		if err := waitUntil(ctx, func() bool { return b.current(s.cl) == nil }); err != nil {
			return true, 0, errors.New("connection not closed in time")
		}
		cl = s.cl
	} else if v, ok := b.offline.Load(clientID); ok && v.(*session).cl == cl {
		s = v.(*session)
	}
	if s == nil || !persistent(cl) {
		return false, 0, nil
	}
	// No more messages for it here: then what it has is final (one that a
	// publish in progress queues meanwhile is written after). The replay
	// point is read before: the next node replays what came after it.
	rec := recordOfSession(cl, s.id, time.Now().UnixMilli(), "")
	if p, ok := b.replayPoint(); ok {
		rec = withReplayFrom(rec, p+1)
	}
	b.server.UnsubscribeClient(cl)
	msgs := cl.State.Inflight.GetAll(false)
	sort.Slice(msgs, func(i, j int) bool {
		if msgs[i].Created != msgs[j].Created {
			return msgs[i].Created < msgs[j].Created
		}
		return msgs[i].PacketID < msgs[j].PacketID
	})
	seen := make(map[uint16]bool, len(msgs)) // written, or dropped for the bound
	for _, pk := range msgs {
		seen[pk.PacketID] = true
	}
	if max := b.opts.HandoverMaxMessages; max > 0 && len(msgs) > max {
		dropped = len(msgs) - max
		msgs = msgs[dropped:]
	}
	c := store.SessionChanges{Clients: []store.SessionClient{{ID: clientID, Data: rec, Reset: true}}}
	for _, pk := range msgs {
		c.Messages = append(c.Messages, store.SessionMessage{Client: clientID, PacketID: pk.PacketID, Data: encodeInflight(clientID, pk)})
	}
	l := b.sessionLog
	l.flushMu.Lock()
	defer l.flushMu.Unlock()
	l.forget(clientID)
	if err := l.st.Apply(ctx, c); err != nil {
		return true, dropped, err
	}
	// A publish that looked its subscribers up before the unsubscribe may
	// have queued one more meanwhile: written too.
	var late store.SessionChanges
	for _, pk := range cl.State.Inflight.GetAll(false) {
		if !seen[pk.PacketID] {
			late.Messages = append(late.Messages, store.SessionMessage{Client: clientID, PacketID: pk.PacketID, Data: encodeInflight(clientID, pk)})
		}
	}
	if err := l.st.Apply(ctx, late); err != nil {
		return true, dropped, err
	}
	n := cl.State.Inflight.Len()
	cl.ClearInflights()
	atomic.AddInt64(&b.server.Info.Inflight, -int64(n))
	b.offline.CompareAndDelete(clientID, s)
	b.server.Clients.Delete(clientID)
	b.releaseClientID(cl, true)
	return true, dropped, nil
}

// waitUntil polls cond until it holds or ctx ends.
func waitUntil(ctx context.Context, cond func() bool) error {
	t := time.NewTicker(2 * time.Millisecond)
	defer t.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}

// forgetSession drops this node's copy of clientID's session (live or
// offline) without touching the store: another node accepted a new
// connection under the id and owns the session now.
func (b *Broker) forgetSession(clientID string, cl *mqtt.Client) {
	if cur, ok := b.server.Clients.Get(clientID); !ok || cur != cl {
		return // a newer connection here holds the id
	}
	if b.current(cl) != nil {
		return // connected here again meanwhile
	}
	b.server.UnsubscribeClient(cl)
	n := cl.State.Inflight.Len()
	cl.ClearInflights()
	atomic.AddInt64(&b.server.Info.Inflight, -int64(n))
	if v, ok := b.offline.Load(clientID); ok && v.(*session).cl == cl {
		b.offline.CompareAndDelete(clientID, v)
	}
	b.server.Clients.Delete(clientID)
	b.releaseClientID(cl, true)
	if l := b.sessionLog; l != nil {
		l.forget(clientID)
	}
}

// forget drops what the log holds of clientID, pending or stored: the
// session now belongs to another node.
func (l *sessionLog) forget(clientID string) {
	l.mu.Lock()
	delete(l.client, clientID)
	delete(l.msgs, clientID)
	delete(l.known, clientID)
	delete(l.stored, clientID)
	delete(l.last, clientID)
	delete(l.lastP, clientID)
	l.mu.Unlock()
}
