// Package bus carries accepted device messages from the broker (and, later,
// the HTTP and CoAP device APIs) to the platform services that consume
// them: shadows, rules, telemetry.
//
// Bus is the seam: the rest of Mote only sees Subscribe, Publish and Close.
// A single node uses Local, which is in-process; a cluster uses
// internal/bus/natsbus, which carries the same messages over NATS. Both
// pass the conformance suite in internal/bus/bustest.
//
// Publish runs on the publisher's goroutine, on the MQTT hot path: it only
// matches topic filters and calls handlers (or, for NATS, buffers the
// message on the connection), and handlers must only enqueue (never block,
// never do I/O).
package bus

import (
	"sync"
	"sync/atomic"

	"github.com/moteiot/mote/internal/core"
)

// Handler receives a message. It must not block and must not modify the
// message's payload.
type Handler func(core.Message)

// Bus carries messages from publishers to the handlers whose MQTT topic
// filter matches the message's topic.
//
// Messages from one publisher goroutine reach each handler in the order
// they were published. A filter that starts with a wildcard (+ or #) does
// not match topics that start with '$'.
type Bus interface {
	// Subscribe calls h for every message whose topic matches filter. It
	// returns a function that removes the subscription; calling it more
	// than once is harmless.
	Subscribe(filter string, h Handler) (unsubscribe func())
	// Publish hands m to every matching subscription. It never blocks on
	// a slow handler.
	Publish(m core.Message)
	// Close releases the bus's resources. Publish after Close drops the
	// message.
	Close() error
}

var _ Bus = (*Local)(nil)

type subscription struct {
	id     uint64
	filter string
	valid  bool // core.ValidTopicFilter(filter), checked once at Subscribe
	h      Handler
}

// Local is the in-process Bus: Publish calls the matching handlers on the
// publisher's goroutine. The zero value is ready to use.
type Local struct {
	mu   sync.Mutex
	next uint64
	subs atomic.Pointer[[]subscription] // copy on write: Publish takes no lock
}

// Subscribe calls h for every message whose topic matches filter (MQTT
// wildcards; a filter starting with a wildcard does not match $ topics).
// An invalid filter matches nothing.
// It returns a function that removes the subscription.
func (b *Local) Subscribe(filter string, h Handler) (unsubscribe func()) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.next++
	id := b.next
	var cur []subscription
	if p := b.subs.Load(); p != nil {
		cur = *p
	}
	next := append(append([]subscription(nil), cur...), subscription{id: id, filter: filter, valid: core.ValidTopicFilter(filter), h: h})
	b.subs.Store(&next)
	return func() { b.remove(id) }
}

func (b *Local) remove(id uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	p := b.subs.Load()
	if p == nil {
		return
	}
	next := make([]subscription, 0, len(*p))
	for _, s := range *p {
		if s.id != id {
			next = append(next, s)
		}
	}
	b.subs.Store(&next)
}

// Publish hands m to every matching handler, in subscription order. The
// topic is checked once, the filters were checked at Subscribe. A message
// whose topic is not a valid topic name reaches no handler.
func (b *Local) Publish(m core.Message) {
	p := b.subs.Load()
	if p == nil || !core.ValidTopicName(m.Topic) {
		return
	}
	for _, s := range *p {
		if s.valid && core.MatchValid(s.filter, m.Topic) {
			s.h(m)
		}
	}
}

// Close removes every subscription. It always returns nil.
func (b *Local) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	empty := []subscription{}
	b.subs.Store(&empty)
	return nil
}
