package broker

import (
	"context"
	"encoding/json"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/moteiot/mote/internal/store"
)

// Retained messages survive a restart: mochi keeps them in memory
// (its topic index), and every change it makes — a retained publish, a
// retained delete (empty payload), an expiry — is recorded here and
// written to the store in the background, one transaction for all changes
// of a flush interval (the publisher never waits for the store). At start
// they are put back into the topic index before the listeners open. A
// crash loses at most the changes of the last interval.

// retainedFlush is how often retained changes are written.
const retainedFlush = 100 * time.Millisecond

// retainedRecord is how a retained message is stored (JSON).
type retainedRecord struct {
	Topic      string                 `json:"topic"`
	Payload    []byte                 `json:"payload"`
	QoS        byte                   `json:"qos"`
	Created    int64                  `json:"created"`          // Unix seconds
	Expiry     int64                  `json:"expiry,omitempty"` // Unix seconds; 0: never
	Origin     string                 `json:"origin,omitempty"`
	Format     *byte                  `json:"payloadFormat,omitempty"`
	Type       string                 `json:"contentType,omitempty"`
	Response   string                 `json:"responseTopic,omitempty"`
	Correlate  []byte                 `json:"correlationData,omitempty"`
	User       []packets.UserProperty `json:"user,omitempty"`
	ExpiryProp uint32                 `json:"messageExpiry,omitempty"`
	Thing      string                 `json:"thing,omitempty"` // whose quota it counts against (retainquota.go)
}

func recordOf(pk packets.Packet) retainedRecord {
	r := retainedRecord{
		Topic: pk.TopicName, Payload: pk.Payload, QoS: pk.FixedHeader.Qos, Created: pk.Created, Expiry: pk.Expiry,
		Origin: pk.Origin, Type: pk.Properties.ContentType, Response: pk.Properties.ResponseTopic,
		Correlate: pk.Properties.CorrelationData, User: pk.Properties.User, ExpiryProp: pk.Properties.MessageExpiryInterval,
	}
	if pk.Properties.PayloadFormatFlag {
		f := pk.Properties.PayloadFormat
		r.Format = &f
	}
	return r
}

func (r retainedRecord) packet() packets.Packet {
	pk := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: r.QoS, Retain: true},
		TopicName:   r.Topic, Payload: r.Payload, Created: r.Created, Expiry: r.Expiry, Origin: r.Origin,
		Properties: packets.Properties{ContentType: r.Type, ResponseTopic: r.Response, CorrelationData: r.Correlate,
			User: r.User, MessageExpiryInterval: r.ExpiryProp},
	}
	if r.Format != nil {
		pk.Properties.PayloadFormat, pk.Properties.PayloadFormatFlag = *r.Format, true
	}
	return pk
}

// retainedLog collects retained changes for the store.
type retainedLog struct {
	st      store.RetainedStore
	mu      sync.Mutex
	pending map[string][]byte // topic → record (nil: delete)
	failed  atomic.Int64
}

// record notes a change; it runs on the publisher's goroutine and only
// takes a map entry.
func (l *retainedLog) record(topic string, data []byte) {
	l.mu.Lock()
	if l.pending == nil {
		l.pending = make(map[string][]byte)
	}
	l.pending[topic] = data
	l.mu.Unlock()
}

// flush writes what is pending. On failure the changes are put back
// (unless newer ones came meanwhile) for the next attempt.
func (l *retainedLog) flush(b *Broker) {
	l.mu.Lock()
	batch := l.pending
	l.pending = nil
	l.mu.Unlock()
	if len(batch) == 0 {
		return
	}
	changes := make([]store.RetainedMessage, 0, len(batch))
	for topic, data := range batch {
		changes = append(changes, store.RetainedMessage{Topic: topic, Data: data})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := l.st.Apply(ctx, changes); err != nil {
		l.failed.Add(1)
		b.dropLog.Error("retained messages not stored; retrying", "messages", len(changes), "error", err)
		l.mu.Lock()
		if l.pending == nil {
			l.pending = make(map[string][]byte)
		}
		for topic, data := range batch {
			if _, newer := l.pending[topic]; !newer {
				l.pending[topic] = data
			}
		}
		l.mu.Unlock()
	}
}

// OnRetainMessage runs when mochi stores (r = 1) or removes (r = -1) a
// retained message.
func (h *hook) OnRetainMessage(cl *mqtt.Client, pk packets.Packet, r int64) {
	owner := h.b.retainedChanged(cl, pk, r)
	l := h.b.retained
	if l == nil || cl == h.b.relay {
		return // a message from another node: that node stored it (cluster.go)
	}
	switch {
	case r > 0 && len(pk.Payload) > 0:
		if pk.Created == 0 {
			pk.Created = time.Now().Unix()
		}
		rec := recordOf(pk)
		rec.Thing = owner
		data, err := json.Marshal(rec)
		if err != nil {
			return
		}
		l.record(pk.TopicName, data)
	case r < 0:
		l.record(pk.TopicName, nil)
	}
}

// OnRetainedExpired runs when mochi drops an expired retained message.
func (h *hook) OnRetainedExpired(topic string) {
	h.b.retainQuota.remove(topic)
	if l := h.b.retained; l != nil {
		l.record(topic, nil)
	}
}

// loadRetained puts the stored retained messages back into mochi's topic
// index; expired ones are deleted instead.
func (b *Broker) loadRetained(ctx context.Context) error {
	if b.retained == nil {
		return nil
	}
	list, err := b.retained.st.List(ctx)
	if err != nil {
		return err
	}
	now := time.Now().Unix()
	for _, m := range list {
		var r retainedRecord
		if err := json.Unmarshal(m.Data, &r); err != nil || r.Topic != m.Topic || len(r.Payload) == 0 {
			b.log.Warn("stored retained message unreadable; dropped", "topic", m.Topic, "error", err)
			b.retained.record(m.Topic, nil)
			continue
		}
		if r.Expiry > 0 && r.Expiry < now {
			b.retained.record(m.Topic, nil)
			continue
		}
		b.server.Topics.RetainMessage(r.packet())
		b.retainQuota.set(r.Thing, r.Topic, int64(len(r.Payload)))
	}
	atomic.StoreInt64(&b.server.Info.Retained, int64(b.server.Topics.Retained.Len()))
	return nil
}

// runStateWriter writes retained and session changes every retainedFlush
// until stop, then once more.
func (b *Broker) runStateWriter() {
	t := time.NewTicker(retainedFlush)
	defer t.Stop()
	flush := func() {
		if b.retained != nil {
			b.retained.flush(b)
		}
		if b.sessionLog != nil {
			b.sessionLog.flush(b)
		}
	}
	for {
		select {
		case <-t.C:
			flush()
		case <-b.stop:
			flush()
			return
		}
	}
}
