// Package live feeds the web console's live view: once a second it turns
// the broker's running totals into messages per second, it keeps the
// most recent presence events, and it lets a browser follow a thing's
// messages. Everything comes off the bus, whose handlers must never block:
// each watcher has a bounded queue, and what a slow browser cannot take is
// dropped and counted, never waited for.
package live

import (
	"bytes"
	"encoding/json"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moteiot/mote/internal/bus"
	"github.com/moteiot/mote/internal/core"
)

// Totals are running counters sampled once a second.
type Totals struct {
	MessagesIn  int64
	MessagesOut int64
	Connected   int64
}

// Stats is one sample: rates over the last second.
type Stats struct {
	Time        time.Time `json:"time"`
	MessagesIn  float64   `json:"messagesInPerSecond"`
	MessagesOut float64   `json:"messagesOutPerSecond"`
	Connected   int64     `json:"connections"`
}

// Event is one message as the console shows it.
type Event struct {
	Topic    string          `json:"topic"`
	Thing    string          `json:"thing,omitempty"`
	ClientID string          `json:"clientId,omitempty"`
	Time     time.Time       `json:"time"`
	Payload  json.RawMessage `json:"payload,omitempty"` // when it is JSON
	Text     string          `json:"text,omitempty"`    // otherwise, as text (at most 4 KiB)
	Size     int             `json:"size"`
}

// Options configure a Hub.
type Options struct {
	Bus bus.Bus
	// Remote, in a cluster, carries the messages accepted on the other
	// nodes (cluster.Node.Relayed): watchers see the whole cluster's
	// events, not only this node's. nil alone.
	Remote bus.Bus
	Totals func() Totals // nil: no stats
	Recent int           // presence events kept; 0: 50
	// PositionKeys are the telemetry keys of latitude and longitude
	// (--position-keys; zero: "lat", "lon").
	PositionKeys [2]string
}

// Hub is the console's live source.
type Hub struct {
	opts Options

	mu       sync.Mutex
	recent   []Event // the latest presence events: a ring once full
	next     int     // where the next event goes once recent is full
	stats    Stats
	last     Totals
	lastAt   time.Time
	watchers map[*Watcher]struct{} // stats watchers

	unsub func()
	stop  chan struct{}
	done  chan struct{}
}

// New starts a Hub: it subscribes to presence events and samples the
// totals once a second until Close.
func New(o Options) *Hub {
	if o.Recent <= 0 {
		o.Recent = 50
	}
	if o.PositionKeys[0] == "" || o.PositionKeys[1] == "" {
		o.PositionKeys = [2]string{"lat", "lon"}
	}
	h := &Hub{opts: o, watchers: map[*Watcher]struct{}{}, stop: make(chan struct{}), done: make(chan struct{})}
	if o.Bus != nil {
		h.unsub = h.subscribe(presenceFilter, h.onPresence)
	}
	go h.run()
	return h
}

// subscribe subscribes h to filter on the bus and, in a cluster, on the
// other nodes' messages.
func (h *Hub) subscribe(filter string, handler bus.Handler) (unsubscribe func()) {
	u := h.opts.Bus.Subscribe(filter, handler)
	if h.opts.Remote == nil {
		return u
	}
	r := h.opts.Remote.Subscribe(filter, handler)
	return func() { u(); r() }
}

// Close stops sampling and leaves the bus.
func (h *Hub) Close() error {
	select {
	case <-h.stop:
		return nil
	default:
	}
	close(h.stop)
	<-h.done
	if h.unsub != nil {
		h.unsub()
	}
	return nil
}

func (h *Hub) run() {
	defer close(h.done)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	h.sample(time.Now())
	for {
		select {
		case <-h.stop:
			return
		case now := <-t.C:
			h.sample(now)
		}
	}
}

func (h *Hub) sample(now time.Time) {
	if h.opts.Totals == nil {
		return
	}
	cur := h.opts.Totals()
	h.mu.Lock()
	st := Stats{Time: now.UTC().Truncate(time.Millisecond), Connected: cur.Connected}
	if !h.lastAt.IsZero() {
		if d := now.Sub(h.lastAt).Seconds(); d > 0 {
			st.MessagesIn = max(0, float64(cur.MessagesIn-h.last.MessagesIn)/d)
			st.MessagesOut = max(0, float64(cur.MessagesOut-h.last.MessagesOut)/d)
		}
	}
	h.last, h.lastAt, h.stats = cur, now, st
	ws := make([]*Watcher, 0, len(h.watchers))
	for w := range h.watchers {
		ws = append(ws, w)
	}
	h.mu.Unlock()
	for _, w := range ws {
		w.offer(Item{Kind: "stats", Stats: &st})
	}
}

// Stats returns the latest sample.
func (h *Hub) Stats() Stats {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.stats
}

// RecentPresence returns the latest presence events, newest last.
func (h *Hub) RecentPresence() []Event {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]Event, 0, len(h.recent))
	out = append(out, h.recent[h.next:]...)
	return append(out, h.recent[:h.next]...)
}

func (h *Hub) onPresence(m core.Message) {
	e := eventOf(m)
	// A ring: once full, an event costs no allocation. (Copying the list
	// for every event was the largest allocation of an MQTT connect:
	// ~6 KB per connect and per disconnect; docs/benchmarks.md.)
	h.mu.Lock()
	if len(h.recent) < h.opts.Recent {
		h.recent = append(h.recent, e)
	} else {
		h.recent[h.next] = e
		h.next = (h.next + 1) % len(h.recent)
	}
	h.mu.Unlock()
}

// maxText bounds a non-JSON payload shown as text.
const maxText = 4 << 10

func eventOf(m core.Message) Event {
	e := Event{Topic: m.Topic, Thing: m.Thing, ClientID: m.ClientID, Time: m.Received.UTC(), Size: len(m.Payload)}
	if e.Time.IsZero() {
		e.Time = time.Now().UTC()
	}
	if len(m.Payload) <= 64<<10 && json.Valid(m.Payload) {
		e.Payload = json.RawMessage(m.Payload)
	} else {
		t := m.Payload
		if len(t) > maxText {
			t = t[:maxText]
		}
		e.Text = strings.ToValidUTF8(string(t), "\uFFFD")
	}
	return e
}

// Item is one thing a watcher receives.
type Item struct {
	Kind  string // "stats", "presence", "message", "position", "telemetry"
	Stats *Stats
	Event *Event
}

// WatchOptions choose what a watcher receives.
type WatchOptions struct {
	Stats    bool
	Presence bool
	Thing    string // "" none: this thing's messages
	Queue    int    // 0: 256
	// Positions: every thing's telemetry that may hold a position (kind
	// "position"; the payload is not checked here: the reader parses it
	// off the bus's goroutine).
	Positions bool
	// Telemetry: these things' telemetry messages (kind "telemetry"),
	// for the live widgets of dashboards.
	Telemetry []string
}

// Watcher is one browser's subscription. Its queue is bounded; items
// that do not fit are dropped and counted.
type Watcher struct {
	C       <-chan Item
	c       chan Item
	dropped atomic.Int64
	unsubs  []func()
	h       *Hub
	once    sync.Once
}

// Watch subscribes a watcher; Close it when the browser goes.
func (h *Hub) Watch(o WatchOptions) *Watcher {
	if o.Queue <= 0 {
		o.Queue = 256
	}
	w := &Watcher{c: make(chan Item, o.Queue), h: h}
	w.C = w.c
	if o.Stats {
		h.mu.Lock()
		h.watchers[w] = struct{}{}
		h.mu.Unlock()
	}
	if h.opts.Bus != nil {
		if o.Presence {
			w.unsubs = append(w.unsubs, h.subscribe(presenceFilter, w.onMessage("presence")))
		}
		if o.Positions {
			w.unsubs = append(w.unsubs, h.subscribe(telemetryFilter, w.onPosition))
		}
		for _, t := range o.Telemetry {
			w.unsubs = append(w.unsubs, h.subscribe(core.ThingsPrefix+t+"/telemetry", w.onMessage("telemetry")))
		}
		if o.Thing != "" {
			for _, f := range ThingFilters(o.Thing) {
				w.unsubs = append(w.unsubs, h.subscribe(f, w.onMessage("message")))
			}
		}
	}
	return w
}

// ThingFilters are the bus filters of a thing's messages: its telemetry
// and other device topics, its platform topics (shadows, commands,
// methods) and its command and file events.
func ThingFilters(thing string) []string {
	return []string{
		"things/" + thing + "/#",
		"$mote/things/" + thing + "/#",
		"$aws/things/" + thing + "/#",
		"$mote/events/commands/" + thing + "/#",
		"$mote/events/files/" + thing + "/#",
	}
}

func (w *Watcher) onMessage(kind string) bus.Handler {
	return func(m core.Message) {
		e := eventOf(m)
		w.offer(Item{Kind: kind, Event: &e})
	}
}

// onPosition passes on a telemetry message that names both position
// keys (Options.PositionKeys; a byte search: no parsing on the bus's
// goroutine).
func (w *Watcher) onPosition(m core.Message) {
	k := w.h.opts.PositionKeys
	if !bytes.Contains(m.Payload, []byte(`"`+k[0]+`"`)) || !bytes.Contains(m.Payload, []byte(`"`+k[1]+`"`)) {
		return
	}
	thing := strings.TrimSuffix(strings.TrimPrefix(m.Topic, core.ThingsPrefix), "/telemetry")
	at := m.Received.UTC()
	if at.IsZero() {
		at = time.Now().UTC()
	}
	w.offer(Item{Kind: "position", Event: &Event{Topic: m.Topic, Thing: thing, Time: at, Payload: json.RawMessage(m.Payload), Size: len(m.Payload)}})
}

// offer enqueues without blocking; a full queue drops the item.
func (w *Watcher) offer(it Item) {
	select {
	case w.c <- it:
	default:
		w.dropped.Add(1)
	}
}

// Dropped returns how many items did not fit the queue, and resets it.
func (w *Watcher) Dropped() int64 { return w.dropped.Swap(0) }

// Close ends the subscription.
func (w *Watcher) Close() {
	w.once.Do(func() {
		for _, u := range w.unsubs {
			u()
		}
		w.h.mu.Lock()
		delete(w.h.watchers, w)
		w.h.mu.Unlock()
	})
}

// telemetryFilter matches every thing's telemetry.
const telemetryFilter = "things/+/telemetry"

// presenceFilter matches every presence event.
const presenceFilter = "$mote/events/presence/#"
