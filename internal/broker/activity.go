package broker

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/store"
)

// ActivityRecorder keeps what devices did in the registry: their last
// packet and what the broker refused or could not use. The presence
// recorder is asked for it (store.ThingStore has both).
type ActivityRecorder interface {
	RecordActivity(ctx context.Context, batch []store.Activity) error
}

// activity tracks each connection's last packet and counters on the hot
// path with atomics only; the presence loop flushes them in batches
// (last seen at most every LastSeenInterval per connection, counters at
// every tick). It is a hook of its own, added after the main one.
type activity struct {
	mqtt.HookBase
	b       *Broker
	conns   sync.Map // *mqtt.Client → *connActivity
	invalid prometheus.Counter
	log     *slog.Logger

	mu   sync.Mutex
	gone map[string]store.Activity // of closed connections, not yet written
}

// connActivity is one connection's activity since the last flush.
type connActivity struct {
	thing     string
	telemetry string // things/{thing}/telemetry
	last      atomic.Int64
	written   atomic.Int64 // the last value of last that was written
	denied    atomic.Int64
	invalid   atomic.Int64
	deniedAt  atomic.Int64
	invalidAt atomic.Int64
	topic     atomic.Pointer[string] // the latest denied topic
}

func newActivity(b *Broker, reg prometheus.Registerer) *activity {
	a := &activity{
		b:    b,
		gone: make(map[string]store.Activity),
		invalid: prometheus.NewCounter(prometheus.CounterOpts{Name: "mote_telemetry_invalid_total",
			Help: "Messages on things/{thing}/telemetry that are not a JSON object (delivered, but not stored as telemetry)."}),
		log: throttled(b.log, "telemetry"),
	}
	if reg != nil {
		reg.MustRegister(a.invalid)
	}
	return a
}

func (a *activity) ID() string { return "mote-activity" }

func (a *activity) Provides(b byte) bool {
	return bytes.Contains([]byte{
		mqtt.OnSessionEstablished,
		mqtt.OnPacketRead,
		mqtt.OnPublished,
		mqtt.OnDisconnect,
	}, []byte{b})
}

func (a *activity) OnSessionEstablished(cl *mqtt.Client, _ packets.Packet) {
	s := a.b.current(cl)
	if s == nil {
		return
	}
	c := &connActivity{thing: s.id.Thing, telemetry: core.ThingTopic(s.id.Thing, "telemetry")}
	now := time.Now().UnixMilli()
	c.last.Store(now)
	c.written.Store(now) // the connect time is written with presence
	a.conns.Store(cl, c)
}

// OnPacketRead marks the connection active: any packet (PUBLISH,
// PINGREQ, SUBSCRIBE, acknowledgements) counts.
func (a *activity) OnPacketRead(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if v, ok := a.conns.Load(cl); ok {
		v.(*connActivity).last.Store(time.Now().UnixMilli())
	}
	return pk, nil
}

// OnPublished counts telemetry that is not a JSON object: it is delivered
// like any message, but the telemetry rule cannot store it.
func (a *activity) OnPublished(cl *mqtt.Client, pk packets.Packet) {
	if pk.Ignore || cl.Net.Inline {
		return
	}
	v, ok := a.conns.Load(cl)
	if !ok {
		return
	}
	c := v.(*connActivity)
	if pk.TopicName != c.telemetry || jsonObject(pk.Payload) {
		return
	}
	c.invalid.Add(1)
	c.invalidAt.Store(time.Now().UnixMilli())
	a.invalid.Inc()
	a.log.Info("telemetry is not a JSON object; delivered but not stored", "client", cl.ID, "thing", c.thing, "topic", pk.TopicName, "size", len(pk.Payload))
}

func jsonObject(p []byte) bool {
	p = bytes.TrimLeft(p, " \t\r\n")
	return len(p) > 0 && p[0] == '{' && json.Valid(p)
}

// httpMessage records a message a device sent over the HTTP device API:
// its last activity, and telemetry that is not a JSON object. It is not
// the MQTT hot path; a mutex is enough.
func (a *activity) httpMessage(thing, topic string, payload []byte) {
	now := time.Now()
	act := store.Activity{Thing: thing, LastSeen: now}
	if topic == core.ThingTopic(thing, "telemetry") && !jsonObject(payload) {
		act.InvalidTelemetry, act.LastInvalidAt = 1, now
		a.invalid.Inc()
		a.log.Info("telemetry is not a JSON object; delivered but not stored", "thing", thing, "topic", topic, "size", len(payload), "protocol", "http")
	}
	a.mu.Lock()
	a.gone[thing] = merge(a.gone[thing], act)
	a.mu.Unlock()
}

// denied counts a publish the thing's policies refused.
func (a *activity) denied(cl *mqtt.Client, topic string) {
	v, ok := a.conns.Load(cl)
	if !ok {
		return
	}
	c := v.(*connActivity)
	c.denied.Add(1)
	c.deniedAt.Store(time.Now().UnixMilli())
	c.topic.Store(&topic)
}

func (a *activity) OnDisconnect(cl *mqtt.Client, _ error, _ bool) {
	v, ok := a.conns.LoadAndDelete(cl)
	if !ok {
		return
	}
	act, _ := v.(*connActivity).take(0, true)
	a.mu.Lock()
	a.gone[act.Thing] = merge(a.gone[act.Thing], act)
	a.mu.Unlock()
}

// take returns what c did since the last take, and whether there is
// anything to write: counters always, the last packet once it is
// interval newer than the one written (or always with final).
func (c *connActivity) take(interval time.Duration, final bool) (store.Activity, bool) {
	act := store.Activity{Thing: c.thing, PublishDenied: c.denied.Swap(0), InvalidTelemetry: c.invalid.Swap(0)}
	if act.PublishDenied > 0 {
		act.LastDeniedAt = time.UnixMilli(c.deniedAt.Load())
		if t := c.topic.Load(); t != nil {
			act.LastDeniedTopic = *t
		}
	}
	if act.InvalidTelemetry > 0 {
		act.LastInvalidAt = time.UnixMilli(c.invalidAt.Load())
	}
	last, written := c.last.Load(), c.written.Load()
	if last > written && (final || last-written >= interval.Milliseconds()) {
		act.LastSeen = time.UnixMilli(last)
		c.written.Store(last)
	}
	return act, !act.LastSeen.IsZero() || act.PublishDenied > 0 || act.InvalidTelemetry > 0
}

func merge(old, act store.Activity) store.Activity {
	if old.Thing == "" {
		return act
	}
	old.PublishDenied += act.PublishDenied
	old.InvalidTelemetry += act.InvalidTelemetry
	if act.LastSeen.After(old.LastSeen) {
		old.LastSeen = act.LastSeen
	}
	if act.LastDeniedAt.After(old.LastDeniedAt) {
		old.LastDeniedAt, old.LastDeniedTopic = act.LastDeniedAt, act.LastDeniedTopic
	}
	if act.LastInvalidAt.After(old.LastInvalidAt) {
		old.LastInvalidAt = act.LastInvalidAt
	}
	return old
}

// flush writes the activity since the last flush in one batch (from the
// presence loop, off the connections' goroutines). final writes every
// connection's last packet (at shutdown).
func (a *activity) flush(rec PresenceRecorder, final bool) {
	ar, ok := rec.(ActivityRecorder)
	if !ok {
		return
	}
	a.mu.Lock()
	byThing := a.gone
	a.gone = make(map[string]store.Activity)
	a.mu.Unlock()
	a.conns.Range(func(_, v any) bool {
		if act, ok := v.(*connActivity).take(a.b.opts.LastSeenInterval, final); ok {
			byThing[act.Thing] = merge(byThing[act.Thing], act)
		}
		return true
	})
	if len(byThing) == 0 {
		return
	}
	batch := make([]store.Activity, 0, len(byThing))
	for _, act := range byThing {
		batch = append(batch, act)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := ar.RecordActivity(ctx, batch); err != nil {
		a.b.log.Error("record activity", "things", len(batch), "error", err)
		a.mu.Lock() // retried at the next flush
		for _, act := range batch {
			a.gone[act.Thing] = merge(a.gone[act.Thing], act)
		}
		a.mu.Unlock()
	}
}
