package broker

import (
	"strconv"
	"sync"
	"sync/atomic"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/moteiot/mote/internal/core"
)

// Retained messages live in memory (mochi's topic index) and in the store,
// so they are limited: per thing, a number of messages
// (Options.MaxRetainedPerThing) and payload bytes
// (MaxRetainedBytesPerThing), and for the whole server payload bytes
// (MaxRetainedBytes). A retained publish that would take a thing or the
// server over a limit is refused (see limitRetained); replacing a retained
// message is charged only the difference, a change that does not grow
// usage (a smaller payload, a clear) always passes, and platform messages
// are counted but never refused.
//
// A retained message belongs to the thing that published it last. The
// accounting follows what mochi really retains (OnRetainMessage, expiry,
// loading at start), so it is exact; the check and the change are two
// steps, so concurrent publishes of one thing (several connections, HTTP)
// may overshoot its limits by the publishes in between.

// retainedQuota accounts retained messages by owner.
type retainedQuota struct {
	perThing      int   // 0: no limit
	perThingBytes int64 // 0: no limit
	total         int64 // 0: no limit

	mu     sync.Mutex
	topics map[string]retainedEntry  // topic → its owner and size
	things map[string]*retainedUsage // thing → what it holds ("" is not kept)
	bytes  atomic.Int64              // payload bytes of every retained message

	// owners hands the thing of an HTTP device publish (PublishAs) to
	// OnRetainMessage, which sees only mochi's inline client.
	owners sync.Map // topic → thing
}

type retainedEntry struct {
	thing string // "" for platform messages (and wills of gone clients)
	size  int64
}

type retainedUsage struct {
	count int
	bytes int64
}

// Reasons a retained publish is refused (label of
// mote_mqtt_retained_refused_total).
const (
	retainedThingCount = "thing_count"
	retainedThingBytes = "thing_bytes"
	retainedServer     = "server_bytes"
)

func newRetainedQuota(perThing int, perThingBytes, total int64) *retainedQuota {
	return &retainedQuota{
		perThing: perThing, perThingBytes: perThingBytes, total: total,
		topics: make(map[string]retainedEntry),
		things: make(map[string]*retainedUsage),
	}
}

// check reports why thing may not retain size payload bytes on topic now,
// or "" if it may.
func (q *retainedQuota) check(thing, topic string, size int64) string {
	q.mu.Lock()
	defer q.mu.Unlock()
	old, had := q.topics[topic]
	var u retainedUsage
	if p := q.things[thing]; p != nil {
		u = *p
	}
	growCount, growBytes := int64(1), size
	if had && old.thing == thing {
		growCount, growBytes = 0, size-old.size
	}
	switch {
	case q.perThing > 0 && growCount > 0 && u.count+1 > q.perThing:
		return retainedThingCount
	case q.perThingBytes > 0 && growBytes > 0 && u.bytes+growBytes > q.perThingBytes:
		return retainedThingBytes
	}
	serverGrow := size
	if had {
		serverGrow -= old.size
	}
	if q.total > 0 && serverGrow > 0 && q.bytes.Load()+serverGrow > q.total {
		return retainedServer
	}
	return ""
}

// set records that topic now holds a retained message of thing.
func (q *retainedQuota) set(thing, topic string, size int64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.releaseLocked(topic)
	q.topics[topic] = retainedEntry{thing: thing, size: size}
	q.bytes.Add(size)
	if thing == "" {
		return
	}
	u := q.things[thing]
	if u == nil {
		u = &retainedUsage{}
		q.things[thing] = u
	}
	u.count++
	u.bytes += size
}

// remove records that topic holds no retained message any more.
func (q *retainedQuota) remove(topic string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.releaseLocked(topic)
}

func (q *retainedQuota) releaseLocked(topic string) {
	old, ok := q.topics[topic]
	if !ok {
		return
	}
	delete(q.topics, topic)
	q.bytes.Add(-old.size)
	if u := q.things[old.thing]; u != nil {
		u.count--
		u.bytes -= old.size
		if u.count <= 0 {
			delete(q.things, old.thing)
		}
	}
}

// usage returns what thing holds (for tests).
func (q *retainedQuota) usage(thing string) (count int, bytes int64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if u := q.things[thing]; u != nil {
		return u.count, u.bytes
	}
	return 0, 0
}

// retainOwner names the thing a retained message that mochi stores
// belongs to: the publisher's, that of an HTTP device publish, or "" for
// a platform message.
func (b *Broker) retainOwner(cl *mqtt.Client, topic string) string {
	if cl == nil {
		return ""
	}
	if cl.Net.Inline {
		if v, ok := b.retainQuota.owners.LoadAndDelete(topic); ok {
			return v.(string)
		}
		return ""
	}
	if s := b.current(cl); s != nil {
		return s.id.Thing
	}
	if s := b.offlineSession(cl); s != nil {
		return s.id.Thing // a will sent after the connection ended
	}
	return ""
}

// refuseRetained counts and logs a retained publish over a limit.
func (b *Broker) refuseRetained(reason, client, thing, topic, protocol string, size int) {
	b.metrics.retainedRefused.WithLabelValues(reason).Inc()
	b.dropLog.Warn("retained publish refused: over the retained-message quota", "reason", reason,
		"client", client, "thing", thing, "topic", topic, "bytes", size, "protocol", protocol)
}

// limitRetained applies the retained-message quota to an MQTT publish in
// OnPublish: nil lets it pass. Over a limit the message is not published
// at all (neither retained nor delivered):
//   - MQTT 5 QoS 1/2: PUBACK (PUBREC) 0x97 "quota exceeded";
//   - QoS 0 (both versions): dropped;
//   - MQTT 3.1.1 QoS 1/2, which has no way to say no: the connection is
//     closed without the acknowledgement (no DISCONNECT: a 3.1.1 server
//     sends none), so the device knows the message was not taken and
//     sends it again after reconnecting.
//
// Every refusal is counted in mote_mqtt_retained_refused_total{reason}.
func (b *Broker) limitRetained(cl *mqtt.Client, s *session, pk packets.Packet) error {
	if !pk.FixedHeader.Retain || len(pk.Payload) == 0 {
		return nil // clearing a retained message always works
	}
	reason := b.retainQuota.check(s.id.Thing, pk.TopicName, int64(len(pk.Payload)))
	if reason == "" {
		return nil
	}
	b.refuseRetained(reason, cl.ID, s.id.Thing, pk.TopicName, "mqtt", len(pk.Payload))
	if refuse(cl, pk, packets.ErrQuotaExceeded) || pk.FixedHeader.Qos == 0 {
		return packets.ErrRejectPacket
	}
	cl.Stop(packets.ErrQuotaExceeded)
	return packets.ErrRejectPacket
}

// RetainedQuotaError is returned by PublishAs for a retained message over
// a quota. It is a core.KindQuota error (HTTP 507).
type RetainedQuotaError struct {
	Thing  string
	Reason string // thing_count, thing_bytes or server_bytes
}

func (e *RetainedQuotaError) Error() string {
	switch e.Reason {
	case retainedThingCount:
		return "thing " + strconv.Quote(e.Thing) + " holds as many retained messages as it may (max-retained-per-thing); clear one first"
	case retainedThingBytes:
		return "the retained messages of thing " + strconv.Quote(e.Thing) + " would exceed max-retained-bytes-per-thing; clear one first"
	default:
		return "the server holds as many retained message bytes as it may (max-retained-bytes)"
	}
}

// Unwrap makes the error a core.KindQuota one.
func (e *RetainedQuotaError) Unwrap() error {
	return &core.Error{Kind: core.KindQuota, Msg: e.Error()}
}

// checkRetainedHTTP applies the quota to an HTTP device publish.
func (b *Broker) checkRetainedHTTP(thing, clientID, topic string, payload []byte, retain bool) error {
	if !retain || len(payload) == 0 {
		return nil
	}
	reason := b.retainQuota.check(thing, topic, int64(len(payload)))
	if reason == "" {
		return nil
	}
	b.refuseRetained(reason, clientID, thing, topic, "http", len(payload))
	return &RetainedQuotaError{Thing: thing, Reason: reason}
}

// retainedChanged keeps the accounting of a change mochi made to its
// retained messages (r > 0 stored, r < 0 removed).
func (b *Broker) retainedChanged(cl *mqtt.Client, pk packets.Packet, r int64) string {
	switch {
	case r > 0 && len(pk.Payload) > 0:
		owner := b.retainOwner(cl, pk.TopicName)
		b.retainQuota.set(owner, pk.TopicName, int64(len(pk.Payload)))
		return owner
	case len(pk.Payload) == 0:
		if cl != nil && cl.Net.Inline {
			b.retainQuota.owners.Delete(pk.TopicName)
		}
		b.retainQuota.remove(pk.TopicName)
	}
	return ""
}
