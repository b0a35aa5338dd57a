// Package bus carries accepted device messages from the broker (and, later,
// the HTTP and CoAP device APIs) to the platform services that consume
// them: shadows, rules, telemetry. In a single node it is in-process; a
// cluster will put NATS behind the same two methods.
//
// Publish runs on the publisher's goroutine, on the MQTT hot path: it only
// matches topic filters and calls handlers, and handlers must only enqueue
// (never block, never do I/O).
package bus

import (
	"sync"
	"sync/atomic"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/policy"
)

// Handler receives a message. It must not block and must not modify the
// message's payload.
type Handler func(core.Message)

type subscription struct {
	id     uint64
	filter string
	valid  bool // policy.ValidTopicFilter(filter), checked once at Subscribe
	h      Handler
}

// Bus is an in-process message bus. The zero value is ready to use.
type Bus struct {
	mu   sync.Mutex
	next uint64
	subs atomic.Pointer[[]subscription] // copy on write: Publish takes no lock
}

// Subscribe calls h for every message whose topic matches filter (MQTT
// wildcards; a filter starting with a wildcard does not match $ topics).
// An invalid filter matches nothing.
// It returns a function that removes the subscription.
func (b *Bus) Subscribe(filter string, h Handler) (unsubscribe func()) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.next++
	id := b.next
	var cur []subscription
	if p := b.subs.Load(); p != nil {
		cur = *p
	}
	next := append(append([]subscription(nil), cur...), subscription{id: id, filter: filter, valid: policy.ValidTopicFilter(filter), h: h})
	b.subs.Store(&next)
	return func() { b.remove(id) }
}

func (b *Bus) remove(id uint64) {
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
func (b *Bus) Publish(m core.Message) {
	p := b.subs.Load()
	if p == nil || !policy.ValidTopicName(m.Topic) {
		return
	}
	for _, s := range *p {
		if s.valid && policy.MatchValid(s.filter, m.Topic) {
			s.h(m)
		}
	}
}
