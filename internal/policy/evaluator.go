package policy

import (
	"github.com/moteiot/mote/internal/core"
	"slices"
	"strings"
)

// Evaluator is a set of documents compiled for one client (variables
// substituted). It is immutable and safe for concurrent use. Its methods do
// not allocate. A nil *Evaluator allows nothing.
type Evaluator struct {
	publish, subscribe, receive rules
}

// rules are the patterns of one action.
type rules struct {
	allow, deny []string
}

// Compile compiles docs for the client with the variables v.
//
// The documents must be valid: if any fails Validate, the Evaluator allows
// nothing. An allow pattern whose variables have an unsafe value (empty, or
// containing '+', '#', '/' or NUL) is dropped; in a deny pattern, a level
// that such a value left containing '+' or '#' becomes that wildcard.
func Compile(docs []Document, v Vars) *Evaluator {
	e := &Evaluator{}
	for _, d := range docs {
		if d.Validate() != nil {
			return &Evaluator{}
		}
	}
	for _, d := range docs {
		for _, s := range d.Statements {
			var pub, sub, recv bool
			for _, a := range s.Actions {
				switch a {
				case Publish:
					pub = true
				case Subscribe:
					// An allow on subscribe implies receive on the same
					// topics; a deny on subscribe refuses SUBSCRIBE
					// requests only (what a wildcard subscriber gets is
					// decided by receive statements).
					sub, recv = true, recv || s.Effect == Allow
				case Receive:
					recv = true
				}
			}
			for _, t := range s.Topics {
				pattern, unsafe, _ := substitute(t, v)
				deny := s.Effect == Deny
				if deny {
					pattern = widen(pattern)
				} else if unsafe {
					continue
				}
				if pub {
					e.publish.add(pattern, deny)
				}
				if sub {
					e.subscribe.add(pattern, deny)
				}
				if recv {
					e.receive.add(pattern, deny)
				}
			}
		}
	}
	return e
}

// UsesClientID reports whether any pattern of docs uses ${clientid}. If
// none does, Compile gives the same Evaluator for every client of a thing,
// and one Evaluator may be shared by all of them.
func UsesClientID(docs []Document) bool {
	for _, d := range docs {
		for _, s := range d.Statements {
			for _, t := range s.Topics {
				if strings.Contains(t, "${clientid}") {
					return true
				}
			}
		}
	}
	return false
}

func (r *rules) add(pattern string, deny bool) {
	list := &r.allow
	if deny {
		list = &r.deny
	}
	if !slices.Contains(*list, pattern) {
		*list = append(*list, pattern)
	}
}

// widen turns each level of a deny pattern that contains '#' into "#",
// dropping the levels after it, and each other level that contains '+'
// into "+". Levels of a valid filter are unchanged; the others are what a
// variable value with wildcards made.
func widen(pattern string) string {
	if !strings.ContainsAny(pattern, "+#") {
		return pattern
	}
	levels := strings.Split(pattern, "/")
	for i, level := range levels {
		if strings.Contains(level, "#") {
			levels = append(levels[:i], "#")
			break
		}
		if strings.Contains(level, "+") {
			levels[i] = "+"
		}
	}
	return strings.Join(levels, "/")
}

// CanPublish reports whether the client may publish to topic.
func (e *Evaluator) CanPublish(topic string) bool {
	if e == nil || !core.ValidTopicName(topic) {
		return false
	}
	return anyMatch(e.publish.allow, topic) && !anyMatch(e.publish.deny, topic)
}

// CanSubscribe reports whether the client may subscribe to filter, which may
// be a shared subscription.
func (e *Evaluator) CanSubscribe(filter string) bool {
	if e == nil || !core.ValidTopicFilter(filter) {
		return false
	}
	filter = core.StripShare(filter)
	allowed := false
	for _, p := range e.subscribe.allow {
		if core.CoversValid(p, filter) {
			allowed = true
			break
		}
	}
	if !allowed {
		return false
	}
	for _, p := range e.subscribe.deny {
		if core.MatchValid(p, filter) { // the filter as written: its '+' and '#' are plain level names here
			return false
		}
	}
	return true
}

// CanDeliver reports whether a message published on topic may be
// delivered to the client on one of its subscriptions: the client may
// receive topic, and some allow-subscribe pattern still matches it (so that
// taking subscribe away also ends the deliveries of subscriptions made
// before). Deny-subscribe patterns play no part: they refuse SUBSCRIBE
// requests as written, while receive statements decide per topic.
func (e *Evaluator) CanDeliver(topic string) bool {
	return e.CanReceive(topic) && anyMatch(e.subscribe.allow, topic)
}

// CanReceive reports whether a message published on topic may be delivered
// to the client.
func (e *Evaluator) CanReceive(topic string) bool {
	if e == nil || !core.ValidTopicName(topic) {
		return false
	}
	return anyMatch(e.receive.allow, topic) && !anyMatch(e.receive.deny, topic)
}

// anyMatch reports whether topic matches any of the patterns.
func anyMatch(patterns []string, topic string) bool {
	for _, p := range patterns {
		if core.MatchValid(p, topic) {
			return true
		}
	}
	return false
}
