package broker

import (
	"context"
	"strconv"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/store"
)

// presence publishes connect and disconnect events and writes connection
// state to the registry in batches, off the connection's goroutine.
type presence struct {
	b        *Broker
	rec      PresenceRecorder
	interval time.Duration

	mu      sync.Mutex
	pending map[string]store.Presence // thing → latest change

	// events are published by run's goroutine, in order, so that the
	// connection's own goroutine does not pay for JSON and fan-out.
	events chan Event
}

func newPresence(b *Broker, rec PresenceRecorder, interval time.Duration) *presence {
	return &presence{b: b, rec: rec, interval: interval, pending: make(map[string]store.Presence), events: make(chan Event, 4096)}
}

// Event is the JSON published on $mote/events/presence/{connected|disconnected}/{clientid}.
type Event struct {
	Event           string    `json:"event"` // connected, disconnected
	ClientID        string    `json:"clientId"`
	Thing           string    `json:"thing"`
	Time            time.Time `json:"time"`
	RemoteAddr      string    `json:"remoteAddr"`
	Listener        string    `json:"listener"` // tcp, tls, ws
	ProtocolVersion byte      `json:"protocolVersion"`
	CleanSession    bool      `json:"cleanSession"`
	Reason          string    `json:"reason,omitempty"` // disconnects: client_disconnect, connection_lost, keepalive_timeout, kicked, credential_expired, taken_over, server_shutdown, protocol_error, client_disconnect_with_will, node_lost (cluster.go)
	WillSent        bool      `json:"willSent,omitempty"`
}

func (p *presence) event(s *session, kind, reason string) Event {
	return Event{
		Event:           kind,
		ClientID:        s.cl.ID,
		Thing:           s.id.Thing,
		Time:            time.Now().UTC(),
		RemoteAddr:      s.cl.Net.Remote,
		Listener:        s.listener,
		ProtocolVersion: s.cl.Properties.ProtocolVersion,
		CleanSession:    s.cl.Properties.Clean,
		Reason:          reason,
		WillSent:        s.willSent.Load(),
	}
}

func (p *presence) connected(s *session) { p.queue(p.event(s, "connected", "")) }

func (p *presence) disconnected(s *session, reason string) {
	p.queue(p.event(s, "disconnected", reason))
}

// queue hands an event to run. Once the broker is closing, events are
// dropped: every client is being disconnected, and presence is reset at
// the next start.
func (p *presence) queue(e Event) {
	if p.b.closed.Load() {
		return
	}
	select {
	case p.events <- e:
	case <-p.b.stop:
	}
}

func (p *presence) publish(e Event) {
	topic := core.PresenceConnected + e.ClientID
	if e.Event == "disconnected" {
		topic = core.PresenceDisconnected + e.ClientID
	}
	body := e.appendJSON(make([]byte, 0, 256))
	if err := p.b.platformPublish(topic, body, false, 1); err != nil {
		p.b.log.Debug("presence event not published", "topic", topic, "error", err)
	}
	if fn := p.b.opts.OnMessage; fn != nil {
		fn(core.Message{Topic: topic, Payload: body, QoS: 1, Received: e.Time, Protocol: "platform"})
	}
}

// appendJSON appends e as encoding/json would marshal it without HTML
// escaping (the same bytes, TestEventJSON), without reflection: one event
// per connect and per disconnect.
func (e Event) appendJSON(b []byte) []byte {
	b = append(b, `{"event":`...)
	b = core.AppendJSONString(b, e.Event)
	b = append(b, `,"clientId":`...)
	b = core.AppendJSONString(b, e.ClientID)
	b = append(b, `,"thing":`...)
	b = core.AppendJSONString(b, e.Thing)
	b = append(b, `,"time":"`...)
	b = e.Time.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","remoteAddr":`...)
	b = core.AppendJSONString(b, e.RemoteAddr)
	b = append(b, `,"listener":`...)
	b = core.AppendJSONString(b, e.Listener)
	b = append(b, `,"protocolVersion":`...)
	b = strconv.AppendUint(b, uint64(e.ProtocolVersion), 10)
	b = append(b, `,"cleanSession":`...)
	b = strconv.AppendBool(b, e.CleanSession)
	if e.Reason != "" {
		b = append(b, `,"reason":`...)
		b = core.AppendJSONString(b, e.Reason)
	}
	if e.WillSent {
		b = append(b, `,"willSent":true`...)
	}
	return append(b, '}')
}

// record queues a thing's connection state for the registry.
func (p *presence) record(thing string, connected bool) {
	p.mu.Lock()
	p.pending[thing] = store.Presence{Thing: thing, Connected: connected, At: time.Now(), Node: p.b.opts.NodeID}
	p.mu.Unlock()
}

// run flushes presence every interval until stop, then once more.
func (p *presence) run(stop <-chan struct{}) {
	t := time.NewTicker(p.interval)
	defer t.Stop()
	for {
		select {
		case e := <-p.events:
			p.publish(e)
		case <-t.C:
			p.flush()
			p.b.activity.flush(p.rec, false)
			p.b.hook.sweep()
		case <-stop:
			p.drain()
			p.flush()
			p.b.activity.flush(p.rec, true)
			return
		}
	}
}

// drain publishes the events already queued.
func (p *presence) drain() {
	for {
		select {
		case e := <-p.events:
			p.publish(e)
		default:
			return
		}
	}
}

func (p *presence) flush() {
	p.mu.Lock()
	if len(p.pending) == 0 {
		p.mu.Unlock()
		return
	}
	batch := make([]store.Presence, 0, len(p.pending))
	for _, c := range p.pending {
		batch = append(batch, c)
	}
	clear(p.pending)
	p.mu.Unlock()
	if p.rec == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.rec.RecordPresence(ctx, batch); err != nil {
		p.b.log.Error("record presence", "changes", len(batch), "error", err)
		// Put them back unless newer changes arrived meanwhile.
		p.mu.Lock()
		for _, c := range batch {
			if _, newer := p.pending[c.Thing]; !newer {
				p.pending[c.Thing] = c
			}
		}
		p.mu.Unlock()
	}
}

// sweep forgets connections that were closed between CONNECT and CONNACK.
func (h *hook) sweep() {
	h.connecting.Range(func(k, _ any) bool {
		if cl := k.(*mqtt.Client); cl.Closed() {
			h.connecting.Delete(k)
			h.b.releaseClientID(cl, false) // its claim on the client id, unless a session holds it
		}
		return true
	})
}
