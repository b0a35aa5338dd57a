package broker

import (
	"context"
	"encoding/json"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/storage"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/moteiot/mote/internal/auth"
	"github.com/moteiot/mote/internal/store"
)

// Persistent sessions survive a restart. A session is persistent when the
// client asked for one (MQTT 5: a Session Expiry Interval above zero;
// MQTT 3.1.1: Clean Session 0). What mochi keeps of it in memory — the
// client with its subscriptions, and the QoS 1/2 messages in flight to it
// (the offline queue while it is away) — is recorded here as it changes
// and written to the store in the background with the retained messages,
// one transaction per flush interval; neither a publisher nor a
// subscriber waits for the store. A message acknowledged by its client
// within one interval of being queued is never written at all. At start
// the sessions are put back before the listeners accept anyone, so a
// device that reconnects with Clean Start 0 finds its subscriptions and
// gets what was queued for it. A crash loses at most the changes of the
// last interval.

// sessionRecord is how a persistent session is stored (JSON).
type sessionRecord struct {
	Client     storage.Client         `json:"client"`
	Thing      string                 `json:"thing"`
	Credential string                 `json:"credential,omitempty"`
	Method     string                 `json:"method,omitempty"`
	Type       string                 `json:"type,omitempty"`
	Subs       []storage.Subscription `json:"subscriptions,omitempty"`
	// Disconnected is when the client went away (Unix milliseconds); 0
	// means it was connected when the record was written.
	Disconnected int64 `json:"disconnectedMs,omitempty"`
	// Node is the cluster node that holds the session in memory ("" for a
	// single node, or a session released to the store: handover.go).
	Node string `json:"node,omitempty"`
	// ReplayFrom is the first relay stream sequence that may be missing
	// from this record (replay.go); 0: no replay point (no relay).
	ReplayFrom uint64 `json:"replayFrom,omitempty"`
}

// inflightRecord is how a message in flight to a session is stored.
type inflightRecord struct {
	Message storage.Message `json:"message"`
	Expiry  int64           `json:"expiry,omitempty"` // Unix seconds; 0: never
	Version byte            `json:"protocolVersion,omitempty"`
}

// persistent reports whether cl's session outlives its connection.
func persistent(cl *mqtt.Client) bool {
	if cl.Net.Inline {
		return false
	}
	if cl.Properties.ProtocolVersion == 5 {
		return cl.Properties.Props.SessionExpiryInterval > 0
	}
	return !cl.Properties.Clean
}

// recordOfSession encodes cl's session as it is now.
func recordOfSession(cl *mqtt.Client, id auth.Identity, disconnected int64, node string) []byte {
	p := cl.Properties.Props
	r := sessionRecord{
		Client: storage.Client{
			ID: cl.ID, T: storage.ClientKey, Username: cl.Properties.Username, Listener: cl.Net.Listener,
			ProtocolVersion: cl.Properties.ProtocolVersion, Clean: cl.Properties.Clean,
			Properties: storage.ClientProperties{
				SessionExpiryInterval: p.SessionExpiryInterval, SessionExpiryIntervalFlag: p.SessionExpiryIntervalFlag,
				MaximumPacketSize: p.MaximumPacketSize, ReceiveMaximum: p.ReceiveMaximum,
				RequestProblemInfo: p.RequestProblemInfo, RequestProblemInfoFlag: p.RequestProblemInfoFlag,
				RequestResponseInfo: p.RequestResponseInfo, User: p.User,
				// Topic aliases belong to a connection: not restored.
			},
			// The will belongs to the connection too: a restored session
			// has none.
		},
		Thing: id.Thing, Credential: id.Credential, Method: id.Method, Type: id.Type,
		Disconnected: disconnected, Node: node,
	}
	for filter, sub := range cl.State.Subscriptions.GetAll() {
		r.Subs = append(r.Subs, storage.Subscription{
			T: storage.SubscriptionKey, Client: cl.ID, Filter: filter, Identifier: sub.Identifier,
			RetainHandling: sub.RetainHandling, Qos: sub.Qos, RetainAsPublished: sub.RetainAsPublished, NoLocal: sub.NoLocal,
		})
	}
	data, _ := json.Marshal(r) // plain data: cannot fail
	return data
}

func encodeInflight(client string, pk packets.Packet) []byte {
	r := inflightRecord{
		Message: storage.Message{
			T: storage.InflightKey, Client: client, Origin: pk.Origin, PacketID: pk.PacketID,
			FixedHeader: pk.FixedHeader, TopicName: pk.TopicName, Payload: pk.Payload, Created: pk.Created,
			Properties: storage.MessageProperties{
				CorrelationData: pk.Properties.CorrelationData, SubscriptionIdentifier: pk.Properties.SubscriptionIdentifier,
				User: pk.Properties.User, ContentType: pk.Properties.ContentType, ResponseTopic: pk.Properties.ResponseTopic,
				MessageExpiryInterval: pk.Properties.MessageExpiryInterval,
				PayloadFormat:         pk.Properties.PayloadFormat, PayloadFormatFlag: pk.Properties.PayloadFormatFlag,
			},
		},
		Expiry: pk.Expiry, Version: pk.ProtocolVersion,
	}
	data, _ := json.Marshal(r)
	return data
}

func (r inflightRecord) packet() packets.Packet {
	pk := r.Message.ToPacket()
	pk.Expiry, pk.ProtocolVersion = r.Expiry, r.Version
	return pk
}

// sessionLog collects changes to persistent sessions for the store. Its
// methods run on connection goroutines and only touch maps.
type sessionLog struct {
	st store.SessionStore
	// flushMu orders a flush and a session's handover to another node
	// (handover.go), so a flush never writes over a handed-over session.
	flushMu sync.Mutex
	mu      sync.Mutex
	client  map[string]store.SessionClient        // pending session changes
	msgs    map[string]map[uint16]*packets.Packet // pending messages by client; nil packet: delete
	known   map[string]bool                       // sessions in the store (or being written)
	stored  map[string]map[uint16]bool            // messages in the store (or being written)
	// In a cluster (replay.go): each session's last record and the
	// replay point written with it, to move the point on (refresh).
	track  bool // a relay to replay from: keep last and lastP
	last   map[string][]byte
	lastP  map[string]uint64
	failed atomic.Int64
}

func newSessionLog(st store.SessionStore) *sessionLog {
	return &sessionLog{st: st, client: map[string]store.SessionClient{}, msgs: map[string]map[uint16]*packets.Packet{},
		known: map[string]bool{}, stored: map[string]map[uint16]bool{},
		last: map[string][]byte{}, lastP: map[string]uint64{}}
}

// putSession records the session's current state; reset drops the
// messages stored for an earlier session with the same client id.
func (l *sessionLog) putSession(id string, data []byte, reset bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if prev, ok := l.client[id]; ok && (prev.Reset || prev.Data == nil) {
		reset = true // the earlier reset or delete is not written yet
	}
	if reset {
		delete(l.msgs, id)
		delete(l.stored, id)
	}
	l.client[id] = store.SessionClient{ID: id, Data: data, Reset: reset}
	l.known[id] = true
	if l.track {
		l.last[id] = data
	}
}

// deleteSession records that the session ended.
func (l *sessionLog) deleteSession(id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, pending := l.client[id]; !pending && !l.known[id] {
		return // never stored
	}
	l.client[id] = store.SessionClient{ID: id}
	delete(l.msgs, id)
	delete(l.stored, id)
	delete(l.known, id)
	delete(l.last, id)
	delete(l.lastP, id)
}

// pendingOf returns client's pending messages, creating the map; l.mu is
// held.
func (l *sessionLog) pendingOf(client string) map[uint16]*packets.Packet {
	m := l.msgs[client]
	if m == nil {
		m = make(map[uint16]*packets.Packet)
		l.msgs[client] = m
	}
	return m
}

// putMessage records a message in flight to client.
func (l *sessionLog) putMessage(client string, pk packets.Packet) {
	l.mu.Lock()
	l.pendingOf(client)[pk.PacketID] = &pk
	l.mu.Unlock()
}

// deleteMessage records that a message in flight was acknowledged or
// dropped. A message written neither to the store nor in a batch being
// written costs nothing.
func (l *sessionLog) deleteMessage(client string, id uint16) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stored[client][id] {
		l.pendingOf(client)[id] = nil // written (or being written): delete it
		return
	}
	if m := l.msgs[client]; m != nil {
		delete(m, id)
		if len(m) == 0 {
			delete(l.msgs, client)
		}
	}
}

// flush writes what is pending. On failure the changes go back (unless
// newer ones came meanwhile) for the next attempt.
func (l *sessionLog) flush(b *Broker) {
	l.flushMu.Lock()
	defer l.flushMu.Unlock()
	p, replay := b.replayPoint() // before what it covers is taken (replay.go)
	l.mu.Lock()
	if replay {
		l.refresh(p, b.opts.ReplayMax)
	}
	clients, msgs := l.client, l.msgs
	if len(clients) == 0 && len(msgs) == 0 {
		l.mu.Unlock()
		return
	}
	l.client, l.msgs = map[string]store.SessionClient{}, map[string]map[uint16]*packets.Packet{}
	for client, m := range msgs {
		for id, pk := range m {
			s := l.stored[client]
			if pk != nil {
				if s == nil {
					s = make(map[uint16]bool)
					l.stored[client] = s
				}
				s[id] = true
			} else if s != nil {
				delete(s, id)
			}
		}
	}
	l.mu.Unlock()

	var c store.SessionChanges
	for _, sc := range clients {
		if replay && sc.Data != nil {
			sc.Data = withReplayFrom(sc.Data, p+1)
			l.mu.Lock()
			if _, ok := l.last[sc.ID]; ok {
				l.lastP[sc.ID] = p
			}
			l.mu.Unlock()
		}
		c.Clients = append(c.Clients, sc)
	}
	for client, m := range msgs {
		for id, pk := range m {
			sm := store.SessionMessage{Client: client, PacketID: id}
			if pk != nil {
				sm.Data = encodeInflight(client, *pk)
			}
			c.Messages = append(c.Messages, sm)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := l.st.Apply(ctx, c); err != nil {
		l.failed.Add(1)
		b.dropLog.Error("persistent sessions not stored; retrying", "sessions", len(c.Clients), "messages", len(c.Messages), "error", err)
		l.putBack(clients, msgs)
	}
}

// tracked makes a session restored from the store one whose replay point
// refresh moves on (once its replay is over).
func (l *sessionLog) tracked(id string, r sessionRecord) {
	if !l.track {
		return
	}
	data, _ := json.Marshal(r) // plain data: cannot fail
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.last[id]; ok || !l.known[id] {
		return // written again meanwhile, or ended
	}
	l.last[id] = data
	if r.ReplayFrom > 0 {
		l.lastP[id] = r.ReplayFrom - 1
	}
}

// refreshBudget bounds the session records a flush rewrites only to move
// their replay point on.
const refreshBudget = 256

// refresh queues the records of sessions whose stored replay point lags
// p by a quarter of replayMax sequences or more (at most refreshBudget a
// flush), so that a replay from it queues at most that many messages a
// device had already (the sequences count every relayed message, matching
// or not) and never runs into its bound before the ones it lacks. l.mu is
// held.
func (l *sessionLog) refresh(p uint64, replayMax int) {
	lag := uint64(max(replayMax/4, 1))
	n := 0
	for id, data := range l.last {
		if n >= refreshBudget {
			return
		}
		if _, pending := l.client[id]; pending || p < l.lastP[id]+lag {
			continue
		}
		l.client[id] = store.SessionClient{ID: id, Data: data}
		n++
	}
}

func (l *sessionLog) putBack(clients map[string]store.SessionClient, msgs map[string]map[uint16]*packets.Packet) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for client, m := range msgs {
		if sc, ok := l.client[client]; ok && (sc.Reset || sc.Data == nil) {
			continue // the session was reset or ended after this batch
		}
		cur := l.pendingOf(client)
		for id, pk := range m {
			if _, newer := cur[id]; !newer {
				cur[id] = pk
			}
		}
	}
	for id, sc := range clients {
		newer, ok := l.client[id]
		if !ok {
			l.client[id] = sc
			continue
		}
		if sc.Reset || sc.Data == nil { // keep the failed reset or delete
			newer.Reset = newer.Data != nil
			l.client[id] = newer
		}
	}
}

// Hooks: what mochi tells us about sessions.

// OnQosPublish runs when a QoS 1/2 message is put in flight to a client,
// connected or not (then it is the offline queue).
func (h *hook) OnQosPublish(cl *mqtt.Client, pk packets.Packet, _ int64, _ int) {
	if l := h.b.sessionLog; l != nil && persistent(cl) {
		l.putMessage(cl.ID, pk)
	}
}

// OnQosDropped runs when a message in flight expired or was discarded.
func (h *hook) OnQosDropped(cl *mqtt.Client, pk packets.Packet) {
	if l := h.b.sessionLog; l != nil && persistent(cl) {
		l.deleteMessage(cl.ID, pk.PacketID)
	}
}

func (h *hook) OnSubscribed(cl *mqtt.Client, pk packets.Packet, codes []byte) {
	if s := h.b.current(cl); s != nil {
		s.markSubscribe(nil) // the ACL checks of the SUBSCRIBE are over (hooks.go)
	}
	h.b.saveSession(cl)
	h.b.sharedJoin(cl.ID, subscriptionFilters(pk.Filters, codes)) // shared.go
}

func (h *hook) OnUnsubscribed(cl *mqtt.Client, pk packets.Packet) {
	h.b.saveSession(cl)
	h.b.sharedLeave(cl.ID, subscriptionFilters(pk.Filters, nil)) // shared.go
}

// saveSession records a live persistent session's current state.
func (b *Broker) saveSession(cl *mqtt.Client) {
	if b.sessionLog == nil || !persistent(cl) {
		return
	}
	if s := b.current(cl); s != nil {
		b.sessionLog.putSession(cl.ID, recordOfSession(cl, s.id, 0, b.opts.NodeID), false)
	}
}

// sessionEstablished records a new or resumed session; a client that no
// longer asks for a persistent session ends the stored one.
func (b *Broker) sessionEstablished(cl *mqtt.Client, s *session) {
	l := b.sessionLog
	if l == nil {
		return
	}
	if !persistent(cl) {
		l.deleteSession(cl.ID)
		return
	}
	l.putSession(cl.ID, recordOfSession(cl, s.id, 0, b.opts.NodeID), cl.Properties.Clean)
}

// sessionEnded records a disconnection: the session ends (expire) or
// lives on, disconnected.
func (b *Broker) sessionEnded(cl *mqtt.Client, s *session, expire bool) {
	l := b.sessionLog
	if l == nil {
		return
	}
	switch {
	case expire || !persistent(cl):
		l.deleteSession(cl.ID)
	default:
		l.putSession(cl.ID, recordOfSession(cl, s.id, time.Now().UnixMilli(), b.opts.NodeID), false)
	}
}

// restoredSession is a stored session being put back at start.
type restoredSession struct {
	rec  sessionRecord
	msgs []inflightRecord
}

// loadSessions reads the stored sessions before mochi starts; sessions
// that expired while the server was down are deleted instead.
func (b *Broker) loadSessions(ctx context.Context) error {
	if b.sessionLog == nil {
		return nil
	}
	list, err := b.sessionLog.st.List(ctx)
	if err != nil {
		return err
	}
	now := time.Now().UnixMilli()
	maxExpiry := b.opts.MaxSessionExpiry.Milliseconds()
	b.restoring = make(map[string]*restoredSession, len(list))
	for _, st := range list {
		var r sessionRecord
		if err := json.Unmarshal(st.Data, &r); err != nil || r.Client.ID != st.ID || r.Thing == "" {
			b.log.Warn("stored session unreadable; dropped", "client", st.ID, "error", err)
			b.sessionLog.known[st.ID] = true
			b.sessionLog.deleteSession(st.ID)
			continue
		}
		b.sessionLog.known[st.ID] = true
		if b.handover != nil && r.Node != b.opts.NodeID {
			// A cluster node restores only the sessions it held; the others
			// are loaded when their device connects (handover.go).
			delete(b.sessionLog.known, st.ID)
			continue
		}
		expiry := maxExpiry
		if r.Client.ProtocolVersion == 5 {
			expiry = min(expiry, int64(r.Client.Properties.SessionExpiryInterval)*1000)
		}
		if r.Disconnected > 0 && r.Disconnected+expiry <= now {
			b.sessionLog.deleteSession(st.ID)
			continue
		}
		rs := &restoredSession{rec: r}
		stored := make(map[uint16]bool, len(st.Messages))
		for _, m := range st.Messages {
			var ir inflightRecord
			if err := json.Unmarshal(m.Data, &ir); err != nil || ir.Message.PacketID != m.PacketID {
				continue // unreadable: dropped at the next write of this id
			}
			stored[m.PacketID] = true
			rs.msgs = append(rs.msgs, ir)
		}
		if len(stored) > 0 {
			b.sessionLog.stored[st.ID] = stored
		}
		b.restoring[st.ID] = rs
	}
	return nil
}

// StoredClients hands mochi the stored sessions (called from Serve).
func (h *hook) StoredClients() ([]storage.Client, error) {
	out := make([]storage.Client, 0, len(h.b.restoring))
	for _, rs := range h.b.restoring {
		out = append(out, rs.rec.Client)
	}
	return out, nil
}

// StoredSubscriptions hands mochi the stored sessions' subscriptions.
func (h *hook) StoredSubscriptions() ([]storage.Subscription, error) {
	var out []storage.Subscription
	for _, rs := range h.b.restoring {
		out = append(out, rs.rec.Subs...)
	}
	return out, nil
}

// restoreSessions runs after mochi has recreated the stored clients and
// before the listeners accept: it gives each its messages in flight and
// the permissions under which messages are queued for it. A session whose
// thing no longer exists is ended.
func (b *Broker) restoreSessions(ctx context.Context) {
	if b.restoring == nil {
		return
	}
	restored, messages := 0, 0
	var (
		replay []*replayTarget // replay.go: what the relay stream has after their replay points
		ids    []string
	)
	for id, rs := range b.restoring {
		cl, ok := b.server.Clients.Get(id)
		if !ok {
			continue
		}
		ev, gen, err := b.compile(ctx, rs.rec.Thing, id)
		if err != nil {
			b.log.Info("stored session not restored", "client", id, "thing", rs.rec.Thing, "error", err)
			b.server.UnsubscribeClient(cl)
			b.server.Clients.Delete(id)
			b.sessionLog.deleteSession(id)
			continue
		}
		s := &session{cl: cl, listener: rs.rec.Client.Listener,
			id: auth.Identity{Thing: rs.rec.Thing, Credential: rs.rec.Credential, Method: rs.rec.Method, Type: rs.rec.Type}}
		s.setEvaluator(ev, gen)
		for _, m := range rs.msgs {
			if cl.State.Inflight.Set(m.packet()) {
				atomic.AddInt64(&b.server.Info.Inflight, 1)
				messages++
			}
		}
		b.offline.Store(id, s)
		b.sharedJoin(id, restoredFilters(rs.rec.Subs)) // shared.go
		if s.evaluatorGen() < b.policyGen() {
			b.recompile([]*session{s}) // policies changed meanwhile; a refresh may have missed it
		}
		b.setOwner(cl, rs.rec.Thing)
		restored++
		if rs.rec.ReplayFrom > 0 {
			replay = append(replay, &replayTarget{cl: cl, s: s, from: rs.rec.ReplayFrom})
		}
		ids = append(ids, id)
	}
	b.replaySessions(replay) // before the listeners accept (b.ready)
	for _, id := range ids {
		b.sessionLog.tracked(id, b.restoring[id].rec) // its replay point moves on from now
	}
	b.restoring = nil
	if restored > 0 {
		b.log.Info("persistent sessions restored", "sessions", restored, "messages", messages)
	}
}

// restoredFilters returns the filters of stored subscriptions.
func restoredFilters(subs []storage.Subscription) []string {
	out := make([]string, len(subs))
	for i, s := range subs {
		out[i] = s.Filter
	}
	return out
}
