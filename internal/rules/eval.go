package rules

import (
	"encoding/base64"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/moteiot/mote/internal/core"
)

// Input is a device message as a rule sees it.
type Input struct {
	Topic    string
	Payload  []byte
	ClientID string
	Thing    string
	Received time.Time // zero: the time the Message is first asked for it
	// Properties are the message's MQTT 5 user properties (an Azure
	// device's property bag), read as properties.NAME.
	Properties []core.Property
}

// InputOf returns the rule input of a message from the bus.
func InputOf(m core.Message) Input {
	return Input{Topic: m.Topic, Payload: m.Payload, ClientID: m.ClientID, Thing: m.Thing, Received: m.Received,
		Properties: m.Properties}
}

// property returns the value of the message's first user property named
// key.
func (m *Message) property(key string) (string, bool) {
	for _, p := range m.in.Properties {
		if p.Key == key {
			return p.Value, true
		}
	}
	return "", false
}

// Message is an Input with its payload decoded on first use, so that all
// the statements evaluated against one message share one JSON decode. A
// Message is not safe for concurrent use: evaluate the statements of one
// message on one goroutine. Outputs do not refer to the payload's bytes
// (the decoder copies them), but the payload must not be modified while
// statements are evaluated against the Message.
type Message struct {
	in      Input
	decoded bool
	root    Value     // the decoded payload; undefined when it is not JSON
	tc      container // its tape
	raw     string
	rawSet  bool
	ts      int64
	tsSet   bool
	err     *EvalError

	// An emitted window (window_state.go): its aggregates and bounds.
	aggs             []Value
	winStart, winEnd int64
}

// NewMessage returns a Message for in. Nothing is decoded yet.
func NewMessage(in Input) *Message { return &Message{in: in} }

// Input returns the message's input.
func (m *Message) Input() Input { return m.in }

var decoders = sync.Pool{New: func() any { return new(decoder) }}

// Payload returns the payload decoded as JSON, or undefined when it is not
// JSON. Numbers without fraction or exponent that fit in int64 are ints.
func (m *Message) Payload() Value {
	if !m.decoded {
		m.decoded = true
		d := decoders.Get().(*decoder)
		m.root, _ = d.decode(m.in.Payload, &m.tc)
		if cap(d.keys) <= 4096 && cap(d.buf) <= 64<<10 {
			decoders.Put(d)
		}
	}
	return m.root
}

// payloadText is payload(): the payload as a string when it is UTF-8,
// else its base64 (standard alphabet, with padding).
func (m *Message) payloadText() Value {
	if !m.rawSet {
		m.rawSet = true
		if utf8.Valid(m.in.Payload) {
			m.raw = string(m.in.Payload)
		} else {
			m.raw = base64.StdEncoding.EncodeToString(m.in.Payload)
		}
	}
	return stringValue(m.raw)
}

// timestamp is the receive time in milliseconds since the Unix epoch.
func (m *Message) timestamp() int64 {
	if !m.tsSet {
		m.tsSet = true
		t := m.in.Received
		if t.IsZero() {
			t = time.Now()
		}
		m.ts = t.UnixMilli()
	}
	return m.ts
}

// fail records the first evaluation error of the current evaluation.
func (m *Message) fail(pos position, msg string) {
	if m.err == nil {
		m.err = &EvalError{Line: pos.line, Pos: pos.col, Msg: msg}
	}
}

// Statement is a compiled rule: SELECT ... FROM 'filter' [WHERE ...]. It is
// immutable and safe for concurrent use.
type Statement struct {
	ast   *statement
	from  string
	where evalFn // nil: no WHERE
	items []compiledItem
	star  bool        // the projection has a bare *
	names []string    // the explicit output names, which the members of * give way to
	win   *windowPlan // non-nil: a windowed statement (window_state.go)
}

type compiledItem struct {
	name string
	fn   evalFn // nil: the bare *
}

// Parse parses and compiles a statement. Errors are *ParseError.
func Parse(sql string) (*Statement, error) {
	ast, err := parse(sql)
	if err != nil {
		return nil, err
	}
	s := &Statement{ast: ast, from: ast.from}
	if ast.where != nil {
		s.where = compile(ast.where)
	}
	for _, it := range ast.items {
		if it.x == nil {
			s.star = true
			s.items = append(s.items, compiledItem{name: "*"})
			continue
		}
		s.items = append(s.items, compiledItem{name: it.name, fn: compile(it.x)})
		s.names = append(s.names, it.name)
	}
	if ast.group != nil {
		s.win = compileWindow(ast)
	}
	return s, nil
}

// MustParse is Parse that panics on error, for statements in code.
func MustParse(sql string) *Statement {
	s, err := Parse(sql)
	if err != nil {
		panic("rules: " + err.Error())
	}
	return s
}

// String returns the statement in canonical form; parsing it gives the
// same statement.
func (s *Statement) String() string {
	var b strings.Builder
	s.ast.write(&b)
	return b.String()
}

// Topic returns the topic filter of the FROM clause.
func (s *Statement) Topic() string { return s.from }

// Matches reports whether a message on topic is for this statement (MQTT
// filter matching; a filter starting with a wildcard does not match topics
// starting with '$').
func (s *Statement) Matches(topic string) bool { return core.MatchFilter(s.from, topic) }

// Columns returns the output names of the projection in order, "*" for
// the members of the payload.
func (s *Statement) Columns() []string {
	out := make([]string, len(s.items))
	for i, it := range s.items {
		out[i] = it.name
	}
	return out
}

// Eval evaluates the statement against one message; see EvalMessage.
func (s *Statement) Eval(in Input) (Object, bool, error) {
	return s.EvalMessage(NewMessage(in))
}

// EvalMessage evaluates the statement against m, whatever its topic (check
// Matches first). ok is false when the WHERE condition is not true (false,
// null or undefined). err is an *EvalError when a CAST fails; then ok is
// false. The output has one member per projection whose value is not
// undefined, and the payload's members for a *, in projection order.
func (s *Statement) EvalMessage(m *Message) (out Object, ok bool, err error) {
	m.err = nil
	if s.win != nil {
		p := s.ast.group.pos
		return nil, false, &EvalError{Line: p.line, Pos: p.col, Msg: "a windowed statement gives outputs when its windows close (Windows), not per message"}
	}
	if s.where != nil {
		v := s.where(m)
		if m.err != nil {
			return nil, false, m.err
		}
		if !isTrue(v) {
			return nil, false, nil
		}
	}
	n := len(s.items)
	if s.star {
		n += m.Payload().Len()
	}
	out = make(Object, 0, n)
	for _, it := range s.items {
		if it.fn == nil {
			out = s.appendStar(out, m.Payload())
			continue
		}
		if v := it.fn(m); v.kind != KindUndefined {
			out = append(out, Member{Key: it.name, Value: v})
		}
	}
	if m.err != nil {
		return nil, false, m.err
	}
	return out, true, nil
}

// appendStar appends the members of the payload object that no explicit
// projection names.
func (s *Statement) appendStar(out Object, root Value) Object {
	if root.kind != KindObject {
		return out
	}
	c, i := root.c, uint32(root.num)
	if n := c.nodes[i]; n.flags&flagDup == 0 {
		j := i + 1
		for k := uint32(0); k < n.a; k++ {
			if key := c.str(j); !s.named(key) {
				out = append(out, Member{Key: key, Value: c.value(j + 1)})
			}
			j = c.next(j + 1)
		}
		return out
	}
	for _, mem := range root.Object() {
		if !s.named(mem.Key) {
			out = append(out, mem)
		}
	}
	return out
}

// named reports whether an explicit projection is named key.
func (s *Statement) named(key string) bool {
	for _, name := range s.names {
		if name == key {
			return true
		}
	}
	return false
}
