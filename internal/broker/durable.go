package broker

import (
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Durable publishes: a QoS 1/2 publish on a topic the journal wants (a rule
// stores it as telemetry) is acknowledged only once it is on disk. Waiting
// for the fsync on the client's read goroutine would allow one message per
// client per fsync, so the wait is pipelined:
//
//  1. OnPublish (read goroutine) checks the policy, applies backpressure,
//     appends the message to the journal without waiting (AppendAsync),
//     queues it on the session's durableQueue and tells mochi to drop the
//     packet (no PUBACK yet). The read goroutine goes on with the next
//     packet; it blocks only when maxDurablePending publishes of this
//     client are waiting.
//  2. The queue's drainer goroutine (one per client while it has publishes
//     waiting, none when idle) waits for each publish's fsync, in order,
//     and hands the packet back to mochi (InjectPacket as the same client).
//     OnPublish recognises it (injected) and lets it pass; mochi sends the
//     PUBACK — in the order the publishes came, as MQTT requires —
//     delivers it to subscribers and calls OnPublished, which takes the
//     journal sequence number for the bus.
//  3. If the journal fails the publish is not acknowledged: MQTT 5 clients
//     get PUBACK 0x80, MQTT 3.1.1 clients are disconnected (they send it
//     again after reconnecting).
//
// The telemetry itself reaches the store from the journal (package
// ingest), whatever happens to the connection after the append.

// maxDurablePending is how many publishes of one client may wait for
// their fsync before its read goroutine waits too.
const maxDurablePending = 256

// pendingPublish is a publish waiting for its fsync.
type pendingPublish struct {
	pk        packets.Packet
	seq       uint64
	received  time.Time
	done      <-chan error
	injecting bool // handed back to mochi: OnPublish/OnPublished of it are running

	replayTok uint64 // ownPublishBegin's token (replay.go)
}

// durableQueue holds a client's publishes that wait for their fsync, in
// arrival order. The zero value is ready to use.
type durableQueue struct {
	n       atomic.Int32 // len(items), read without the lock on every publish
	mu      sync.Mutex
	space   *sync.Cond // signalled when an item leaves
	items   []*pendingPublish
	byID    map[uint16]*pendingPublish
	running bool // a drainer goroutine is running
}

// samePayload reports whether two packets share one payload buffer: the
// packet mochi hands back to OnPublish after InjectPacket carries the very
// slice that was queued, a retransmission a new one.
func samePayload(a, b packets.Packet) bool {
	return len(a.Payload) == len(b.Payload) && unsafe.SliceData(a.Payload) == unsafe.SliceData(b.Payload)
}

// lookup returns the pending publish with pk's packet id; q.mu is held.
func (q *durableQueue) lookup(pk packets.Packet) *pendingPublish {
	if pk.FixedHeader.Qos == 0 {
		return nil
	}
	return q.byID[pk.PacketID]
}

// injected reports whether pk is a queued publish handed back to mochi
// after its fsync.
func (q *durableQueue) injected(pk packets.Packet) bool {
	if q.n.Load() == 0 {
		return false
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	p := q.lookup(pk)
	return p != nil && p.injecting && samePayload(p.pk, pk)
}

// take returns the pending publish that pk is the injection of (in
// OnPublished), or nil.
func (q *durableQueue) take(pk packets.Packet) *pendingPublish {
	if q.n.Load() == 0 {
		return nil
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	p := q.lookup(pk)
	if p == nil || !p.injecting || !samePayload(p.pk, pk) {
		return nil
	}
	return p
}

// persist is OnPublish's last step. It returns nil when mochi should
// acknowledge and deliver the publish now (nothing to make durable), and
// packets.ErrRejectPacket when the publish was queued for its fsync, was
// a retransmission of one queued, or was refused.
func (b *Broker) persist(cl *mqtt.Client, s *session, pk packets.Packet) error {
	j := b.opts.Journal
	if pk.FixedHeader.Qos == 0 || j == nil || !j.Wants(pk.TopicName) {
		return nil
	}
	q := &s.durable
	if q.n.Load() != 0 {
		q.mu.Lock()
		dup := q.lookup(pk) != nil
		q.mu.Unlock()
		if dup {
			return packets.ErrRejectPacket // the queued one will be acknowledged
		}
	}
	now := time.Now()
	tok := b.ownPublishBegin() // replay.go: until its local fan-out
	seq, done, err := j.AppendAsync(messageOf(cl, s, pk, now))
	if err != nil {
		b.ownPublishEnd(tok)
		b.journalFailed(cl, pk, err)
		return packets.ErrRejectPacket
	}
	// The packet is handed back later: resolve its topic alias now, so
	// that mochi does not apply it a second time.
	pk.Properties.TopicAliasFlag, pk.Properties.TopicAlias = false, 0
	p := &pendingPublish{pk: pk, seq: seq, received: now, done: done, replayTok: tok}

	q.mu.Lock()
	if q.space == nil {
		q.space = sync.NewCond(&q.mu)
		q.byID = make(map[uint16]*pendingPublish)
	}
	for len(q.items) >= maxDurablePending {
		q.space.Wait()
	}
	q.items = append(q.items, p)
	q.byID[pk.PacketID] = p
	q.n.Store(int32(len(q.items)))
	start := !q.running
	q.running = true
	q.mu.Unlock()
	if start {
		go b.drainDurable(cl, q)
	}
	return packets.ErrRejectPacket
}

// drainDurable hands a client's queued publishes back to mochi as their
// fsyncs complete, in order, and ends when the queue is empty.
func (b *Broker) drainDurable(cl *mqtt.Client, q *durableQueue) {
	for {
		q.mu.Lock()
		if len(q.items) == 0 {
			q.running = false
			q.mu.Unlock()
			return
		}
		p := q.items[0]
		q.mu.Unlock()

		err := <-p.done
		// The same fsync usually released the publishes behind this one
		// too: hand all that are ready back at once, corked, so that their
		// PUBACKs leave in one write.
		cc, _ := cl.Net.Conn.(*corkConn)
		if cc != nil {
			cc.cork()
		}
		for {
			b.release(cl, q, p, err)
			q.mu.Lock()
			if len(q.items) == 0 {
				q.mu.Unlock()
				break
			}
			p = q.items[0]
			q.mu.Unlock()
			select {
			case err = <-p.done:
				continue
			default:
			}
			break
		}
		if cc != nil {
			_ = cc.uncork()
		}
	}
}

// release hands one publish back to mochi after its fsync (err == nil) or
// refuses it, and removes it from the queue.
func (b *Broker) release(cl *mqtt.Client, q *durableQueue, p *pendingPublish, err error) {
	if err == nil {
		q.mu.Lock()
		p.injecting = true
		q.mu.Unlock()
		// mochi acknowledges, delivers and calls OnPublished; on a closed
		// connection the PUBACK write fails and it stops there (the client
		// sends the message again; the journal has it).
		if b.server.InjectPacket(cl, p.pk) == nil {
			b.notReceived.Add(1) // mochi counted it as received again
		}
	} else {
		b.journalFailed(cl, p.pk, err)
	}
	b.ownPublishEnd(p.replayTok)
	q.mu.Lock()
	q.items[0] = nil
	q.items = q.items[1:]
	if q.byID[p.pk.PacketID] == p {
		delete(q.byID, p.pk.PacketID)
	}
	q.n.Store(int32(len(q.items)))
	q.space.Broadcast()
	q.mu.Unlock()
}

// journalFailed refuses a publish the journal could not take (a full
// disk, or shutting down): MQTT 5 PUBACK 0x80 (Unspecified error: no
// reason code says "the server's storage failed", and 0x97 Quota exceeded
// would blame the client); MQTT 3.1.1, which has no negative PUBACK, gets
// its connection closed — without a DISCONNECT packet, which 3.1.1 does
// not allow a server to send — and sends the publish again after it
// reconnects.
func (b *Broker) journalFailed(cl *mqtt.Client, pk packets.Packet, err error) {
	b.metrics.dropped.WithLabelValues("journal_unavailable").Inc()
	b.dropLog.Error("publish refused: the ingest journal cannot take it", "client", cl.ID, "topic", pk.TopicName, "error", err)
	if !refuse(cl, pk, packets.ErrUnspecifiedError) {
		if cl.Properties.ProtocolVersion == 5 {
			_ = b.server.DisconnectClient(cl, packets.ErrServerUnavailable)
		} else {
			cl.Stop(packets.ErrServerUnavailable)
		}
	}
}
