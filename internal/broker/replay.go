package broker

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/moteiot/mote/internal/core"
)

// The offline queue of a session whose node died (docs/cluster.md, "A
// dead node's sessions"; cluster/replay.go). In a cluster every QoS 1/2
// message is in the JetStream relay stream with a sequence number. With
// each persistent session it writes, a node stores a replay point P
// (sessionRecord.ReplayFrom = P+1): every message with a sequence up to P
// that matches the session is in what was written (queued) or was
// delivered.
//
// P is the lower of two positions, read before the flush takes what it
// writes:
//   - the relay consumer's handed position: a message of another node up
//     to it went through mochi's fan-out here already (Relay is
//     synchronous), so it is in the sessions' queues;
//   - for each publish of this node in flight (its PUBACK, and so its
//     local fan-out, waits for JetStream: durable.go, inject.go), the
//     handed position when it began. Its sequence is above that (JetStream
//     gives it one later), so a message stored but not yet fanned out here
//     is never below P.
//
// Platform and bridged messages are fanned out here before they are
// relayed (broker.go platformPublish, cluster.Node.Publish): their
// sequence comes after.
//
// A node that loads a session from the store — handed over by its live
// node, left by a dead one, or its own at a restart — subscribes it here
// first, then reads the stream from P+1 up to the stream's last sequence
// (read after the subscription, so this node's own consumer and publishes
// cover what follows) and queues each message that matches one of its
// subscriptions (shared ones excluded: the group's other members got it)
// and that its thing may receive, as QoS 1 (at most the subscription's
// QoS), up to ReplayMax messages and the session's queue bound, within
// ReplayTimeout. A device that resumes waits for it before its CONNACK;
// the messages are in the session's queue that mochi then sends. A
// message may come twice (in the written queue and in the replay, or
// through the live relay): QoS 1 allows it.

// SessionReplayer is what the broker needs of the cluster's relay stream
// to replay it into sessions (implemented in the daemon over
// *cluster.JSRelay). Nil: no replay (one node, or no JetStream relay).
type SessionReplayer interface {
	// ReplayPoint returns the sequence up to which the relay's messages of
	// other nodes went through this broker's fan-out.
	ReplayPoint() uint64
	// Replay calls fn with each message of the relay stream from from up
	// to the stream's last sequence now, until fn returns false or ctx
	// ends. missing counts the sequences the stream's limits removed.
	Replay(ctx context.Context, from uint64, fn func(seq uint64, m core.Message) bool) (read int, missing uint64, err error)
	// LivePosition returns the sequence after which this node's relay
	// consumer hands the other nodes' messages to the broker from now on;
	// running: it runs, and may be handing over the first one after seq
	// now; ok false: no such position (replay them all).
	LivePosition(ctx context.Context) (seq uint64, running, ok bool, err error)
}

// replayState is the broker's side of the replay point.
type replayState struct {
	mu   sync.Mutex
	next uint64
	open map[uint64]uint64 // own publishes in flight: token → handed position when it began

	done, timeout, limit, failed atomic.Uint64 // replays by result
	queued, missing, denied      atomic.Uint64
}

// ownPublishBegin notes a QoS 1/2 publish of this node that the relay
// stream is about to take; ownPublishEnd, with its token, that its local
// fan-out is over (or that it was refused). Token 0: no replay here.
func (b *Broker) ownPublishBegin() uint64 {
	rp := b.opts.Replay
	if rp == nil {
		return 0
	}
	r := &b.replay
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.open == nil {
		r.open = make(map[uint64]uint64)
	}
	r.next++
	r.open[r.next] = rp.ReplayPoint()
	return r.next
}

func (b *Broker) ownPublishEnd(token uint64) {
	if token == 0 {
		return
	}
	r := &b.replay
	r.mu.Lock()
	delete(r.open, token)
	r.mu.Unlock()
}

// replayPoint returns P (see above); ok is false without a relay.
func (b *Broker) replayPoint() (p uint64, ok bool) {
	rp := b.opts.Replay
	if rp == nil {
		return 0, false
	}
	r := &b.replay
	r.mu.Lock()
	defer r.mu.Unlock()
	p = rp.ReplayPoint()
	for _, lb := range r.open {
		p = min(p, lb)
	}
	return p, true
}

// withReplayFrom returns a stored session record with its replay point.
func withReplayFrom(data []byte, from uint64) []byte {
	var r sessionRecord
	if json.Unmarshal(data, &r) != nil {
		return data
	}
	r.ReplayFrom = from
	out, err := json.Marshal(r)
	if err != nil {
		return data
	}
	return out
}

// replayTarget is a session to replay into.
type replayTarget struct {
	cl   *mqtt.Client // the session's client in mochi (subscribed here)
	s    *session     // its permissions
	from uint64       // the first sequence it may lack
	n    int          // messages queued
	full bool         // its bound reached
}

// replaySessions queues to each target the relay stream's messages from
// its replay point on (see above), in one pass from the lowest, bounded by
// ReplayTimeout, ReplayMax per session and the sessions' queue bound.
func (b *Broker) replaySessions(targets []*replayTarget) {
	rp := b.opts.Replay
	if rp == nil || len(targets) == 0 {
		return
	}
	from := targets[0].from
	for _, t := range targets[1:] {
		from = min(from, t.from)
	}
	ctx, cancel := context.WithTimeout(context.Background(), b.opts.ReplayTimeout)
	defer cancel()
	start := time.Now()
	r := &b.replay
	left := len(targets)
	// The other nodes' messages after the relay consumer's position reach
	// the sessions through it (they are subscribed already): not replayed,
	// but for the first one, which it may be handing over right now.
	live, running, bounded, err := rp.LivePosition(ctx)
	if err != nil {
		bounded = false // replay them all: duplicates, not losses
	}
	firstAbove := running
	read, missing, err := rp.Replay(ctx, from, func(seq uint64, m core.Message) bool {
		if bounded && seq > live {
			if firstAbove {
				firstAbove = false
			} else if m.Node != b.opts.NodeID {
				return true
			}
		}
		if m.QoS == 0 {
			return true
		}
		for _, t := range targets {
			if t.full || seq < t.from {
				continue
			}
			if b.replayOne(t, m) && t.full {
				left--
			}
		}
		return left > 0
	})
	r.missing.Add(missing)
	queued := 0
	for _, t := range targets {
		queued += t.n
	}
	r.queued.Add(uint64(queued))
	switch {
	case err != nil && ctx.Err() != nil:
		r.timeout.Add(1)
		b.dropLog.Warn("persistent session replay ended by --cluster-session-replay-timeout; later messages are not queued",
			"sessions", len(targets), "read", read, "queued", queued, "timeout", b.opts.ReplayTimeout)
	case err != nil:
		r.failed.Add(1)
		b.dropLog.Warn("persistent session replay failed", "sessions", len(targets), "read", read, "queued", queued, "error", err)
	case left == 0:
		r.limit.Add(1)
		b.dropLog.Warn("persistent session replay stopped at --cluster-session-replay-max (or the session's queue bound)",
			"sessions", len(targets), "read", read, "queued", queued, "max", b.opts.ReplayMax)
	default:
		r.done.Add(1)
	}
	if missing > 0 {
		b.dropLog.Warn("persistent session replay: messages older than the relay stream's limits are missing", "missing", missing)
	}
	b.log.Info("persistent sessions replayed from the relay stream", "sessions", len(targets), "from", from,
		"read", read, "queued", queued, "took", time.Since(start).Round(time.Millisecond))
}

// replayOne queues m to t's session when one of its subscriptions matches
// and its thing may receive it; it reports whether m matched.
func (b *Broker) replayOne(t *replayTarget, m core.Message) bool {
	cl := t.cl
	qos, ok := byte(0), false
	for filter, sub := range cl.State.Subscriptions.GetAll() {
		if strings.HasPrefix(filter, "$share/") || strings.HasPrefix(filter, "$queue/") {
			continue // a shared group's other members had it
		}
		if sub.NoLocal && m.ClientID == cl.ID {
			continue
		}
		if core.MatchFilter(filter, m.Topic) {
			qos, ok = max(qos, sub.Qos), true
		}
	}
	if !ok {
		return false
	}
	if ev := t.s.ev.Load(); ev == nil || !ev.CanReceive(m.Topic) {
		b.replay.denied.Add(1)
		return true
	}
	if t.n >= b.opts.ReplayMax || cl.State.Inflight.Len() >= int(b.server.Options.Capabilities.MaximumInflight) {
		t.full = true
		return true
	}
	qos = min(qos, m.QoS, 1)
	if qos == 0 {
		return true // a QoS 0 subscription: nothing was owed
	}
	id, err := cl.NextPacketID()
	if err != nil {
		t.full = true
		return true
	}
	pk := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: qos},
		TopicName:   m.Topic,
		Payload:     m.Payload,
		PacketID:    uint16(id),
		Origin:      m.ClientID,
		Created:     time.Now().Unix(),
	}
	pk.ProtocolVersion = cl.Properties.ProtocolVersion
	for _, p := range m.Properties {
		pk.Properties.User = append(pk.Properties.User, packets.UserProperty{Key: p.Key, Val: p.Value})
	}
	if !cl.State.Inflight.Set(pk) {
		return true
	}
	atomic.AddInt64(&b.server.Info.Inflight, 1)
	if l := b.sessionLog; l != nil && persistent(cl) {
		l.putMessage(cl.ID, pk)
	}
	t.n++
	return true
}

// registerReplay counts replays (mote_cluster_session_replay_*).
func (b *Broker) registerReplay(reg prometheus.Registerer) error {
	if reg == nil || b.opts.Replay == nil {
		return nil
	}
	counter := func(name, help string, labels prometheus.Labels, v *atomic.Uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: labels},
			func() float64 { return float64(v.Load()) })
	}
	const help = "Replays of the relay stream into persistent sessions loaded from the store (handed over, left by a dead node, or restored at start), by result: done, timeout (--cluster-session-replay-timeout), limit (--cluster-session-replay-max or the session's queue bound), error."
	r := &b.replay
	for _, c := range []prometheus.Collector{
		counter("mote_cluster_session_replay_total", help, prometheus.Labels{"result": "done"}, &r.done),
		counter("mote_cluster_session_replay_total", help, prometheus.Labels{"result": "timeout"}, &r.timeout),
		counter("mote_cluster_session_replay_total", help, prometheus.Labels{"result": "limit"}, &r.limit),
		counter("mote_cluster_session_replay_total", help, prometheus.Labels{"result": "error"}, &r.failed),
		counter("mote_cluster_session_replay_messages_total", "Messages of the relay stream queued to persistent sessions by a replay.", nil, &r.queued),
		counter("mote_cluster_session_replay_missing_total", "Relay stream messages a replay wanted that the stream's limits (--cluster-relay-max-age, --cluster-relay-max-bytes) had removed.", nil, &r.missing),
		counter("mote_cluster_session_replay_denied_total", "Replayed messages matching a session's subscription that its thing may not receive (not queued).", nil, &r.denied),
	} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}
