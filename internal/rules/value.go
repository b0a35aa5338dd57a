package rules

import (
	"math"
	"strconv"

	"github.com/moteiot/mote/internal/core"
)

// Kind is the type of a Value.
type Kind uint8

// The kinds of values. Numbers are KindInt (int64) when they are written
// without a fraction or exponent and fit in 64 bits, KindFloat (float64)
// otherwise; both are "number" to the dialect.
const (
	KindUndefined Kind = iota // a missing field: omitted from the output
	KindNull
	KindBool
	KindInt
	KindFloat
	KindString
	KindArray
	KindObject
)

var kindNames = [...]string{"undefined", "null", "bool", "int", "float", "string", "array", "object"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Value is a JSON value as the rules engine sees it, plus "undefined". The
// zero Value is undefined. Values are immutable and cheap to copy; arrays
// and objects share their elements.
type Value struct {
	kind Kind
	num  uint64 // KindBool: 0 or 1; KindInt: int64 bits; KindFloat: float64 bits
	str  string // KindString
	c    *container
}

// container holds the elements of an array or the members of an object
// built by a function, or a decoded payload whose composite values are
// nodes of the tape (then Value.num is the node's index).
type container struct {
	elems   []Value
	members Object
	tape
}

func (c *container) isTape() bool { return c.nodes != nil }

// value returns tape node i as a Value.
func (c *container) value(i uint32) Value {
	n := &c.nodes[i]
	switch n.kind {
	case KindString:
		return stringValue(c.str(i))
	case KindArray, KindObject:
		return Value{kind: n.kind, num: uint64(i), c: c}
	}
	return Value{kind: n.kind, num: n.num()}
}

// tapeElems materializes the elements of tape array i.
func (c *container) tapeElems(i uint32) []Value {
	out := make([]Value, c.nodes[i].a)
	j := i + 1
	for k := range out {
		out[k] = c.value(j)
		j = c.next(j)
	}
	return out
}

// tapeMembers materializes the members of tape object i, without
// repeated keys.
func (c *container) tapeMembers(i uint32) Object {
	out := make(Object, c.nodes[i].a)
	j := i + 1
	for k := range out {
		out[k] = Member{Key: c.str(j), Value: c.value(j + 1)}
		j = c.next(j + 1)
	}
	if c.nodes[i].flags&flagDup != 0 {
		return dedupe(out)
	}
	return out
}

// tapeGet returns member key of tape object i (the last if repeated).
func (c *container) tapeGet(i uint32, key string) (Value, bool) {
	n := c.nodes[i]
	found, at := false, uint32(0)
	j := i + 1
	for k := uint32(0); k < n.a; k++ {
		if c.str(j) == key {
			found, at = true, j+1
			if n.flags&flagDup == 0 {
				break
			}
		}
		j = c.next(j + 1)
	}
	if !found {
		return undefined, false
	}
	return c.value(at), true
}

// dedupe removes repeated keys from an object: a key keeps the position of
// its first occurrence and the value of its last, as JSON.parse does.
func dedupe(o Object) Object {
	index := make(map[string]int, len(o))
	out := o[:0]
	for _, m := range o {
		if i, ok := index[m.Key]; ok {
			out[i].Value = m.Value
			continue
		}
		index[m.Key] = len(out)
		out = append(out, m)
	}
	clear(o[len(out):])
	return out[:len(out):len(out)]
}

// Member is one key/value pair of an Object.
type Member struct {
	Key   string
	Value Value
}

// Object is a JSON object whose members keep their order. It is the output
// of a rule; AppendJSON and MarshalJSON encode it without reflection.
type Object []Member

var (
	undefined = Value{}
	null      = Value{kind: KindNull}
	trueVal   = Value{kind: KindBool, num: 1}
	falseVal  = Value{kind: KindBool}
)

func boolValue(b bool) Value {
	if b {
		return trueVal
	}
	return falseVal
}

func intValue(i int64) Value { return Value{kind: KindInt, num: uint64(i)} }

// floatValue returns f as a number, or null when f is NaN or infinite
// (JSON cannot carry those).
func floatValue(f float64) Value {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return null
	}
	return Value{kind: KindFloat, num: math.Float64bits(f)}
}

func stringValue(s string) Value { return Value{kind: KindString, str: s} }

func arrayValue(elems []Value) Value {
	return Value{kind: KindArray, c: &container{elems: elems}}
}

func objectValue(members Object) Value {
	return Value{kind: KindObject, c: &container{members: members}}
}

// Kind reports the type of v.
func (v Value) Kind() Kind { return v.kind }

// IsUnknown reports whether v is null or undefined.
func (v Value) isUnknown() bool { return v.kind <= KindNull }

func (v Value) isNumber() bool { return v.kind == KindInt || v.kind == KindFloat }

// Bool returns the boolean of a KindBool value, false otherwise.
func (v Value) Bool() bool { return v.kind == KindBool && v.num == 1 }

// Int returns a KindInt value, a KindFloat value truncated, 0 otherwise.
func (v Value) Int() int64 {
	switch v.kind {
	case KindInt:
		return int64(v.num)
	case KindFloat:
		return int64(math.Float64frombits(v.num))
	}
	return 0
}

// Float returns a number as float64, 0 for other kinds.
func (v Value) Float() float64 {
	switch v.kind {
	case KindInt:
		return float64(int64(v.num))
	case KindFloat:
		return math.Float64frombits(v.num)
	}
	return 0
}

// Str returns the text of a KindString value, "" otherwise.
func (v Value) Str() string { return v.str }

// Len returns the number of elements of an array, members of an object,
// bytes of a string, 0 otherwise.
func (v Value) Len() int {
	switch v.kind {
	case KindArray:
		if v.c.isTape() {
			return int(v.c.nodes[v.num].a)
		}
		return len(v.c.elems)
	case KindObject:
		if v.c.isTape() {
			if n := v.c.nodes[v.num]; n.flags&flagDup == 0 {
				return int(n.a)
			}
		}
		return len(v.Object())
	case KindString:
		return len(v.str)
	}
	return 0
}

// Index returns element i of an array, undefined when out of range or
// when v is not an array.
func (v Value) Index(i int) Value {
	if v.kind != KindArray || i < 0 || i >= v.Len() {
		return undefined
	}
	if !v.c.isTape() {
		return v.c.elems[i]
	}
	j := uint32(v.num) + 1
	for ; i > 0; i-- {
		j = v.c.next(j)
	}
	return v.c.value(j)
}

// Elems returns the elements of an array (do not modify them).
func (v Value) Elems() []Value {
	switch {
	case v.kind != KindArray:
		return nil
	case v.c.isTape():
		return v.c.tapeElems(uint32(v.num))
	}
	return v.c.elems
}

// Object returns the members of an object (do not modify them).
func (v Value) Object() Object {
	switch {
	case v.kind != KindObject:
		return nil
	case v.c.isTape():
		return v.c.tapeMembers(uint32(v.num))
	}
	return v.c.members
}

// Get returns member key of an object, undefined when absent or when v is
// not an object.
func (v Value) Get(key string) Value {
	if v.kind != KindObject {
		return undefined
	}
	if v.c.isTape() {
		val, _ := v.c.tapeGet(uint32(v.num), key)
		return val
	}
	val, _ := v.c.members.Get(key)
	return val
}

// Any returns v as the value encoding/json would decode: nil, bool, int64,
// float64, string, []any or map[string]any (undefined is nil too).
func (v Value) Any() any {
	switch v.kind {
	case KindBool:
		return v.num == 1
	case KindInt:
		return int64(v.num)
	case KindFloat:
		return math.Float64frombits(v.num)
	case KindString:
		return v.str
	case KindArray:
		elems := v.Elems()
		out := make([]any, len(elems))
		for i, e := range elems {
			out[i] = e.Any()
		}
		return out
	case KindObject:
		return v.Object().Map()
	}
	return nil
}

// String returns v as JSON text ("undefined" for undefined).
func (v Value) String() string {
	if v.kind == KindUndefined {
		return "undefined"
	}
	return string(v.AppendJSON(nil))
}

// MarshalJSON encodes v; undefined encodes as null.
func (v Value) MarshalJSON() ([]byte, error) { return v.AppendJSON(nil), nil }

// AppendJSON appends v as compact JSON to dst; undefined appends null.
func (v Value) AppendJSON(dst []byte) []byte {
	switch v.kind {
	case KindBool:
		if v.num == 1 {
			return append(dst, "true"...)
		}
		return append(dst, "false"...)
	case KindInt:
		return strconv.AppendInt(dst, int64(v.num), 10)
	case KindFloat:
		return appendFloat(dst, math.Float64frombits(v.num))
	case KindString:
		return core.AppendJSONString(dst, v.str)
	case KindArray:
		if v.c.isTape() {
			return v.c.appendJSON(dst, uint32(v.num))
		}
		dst = append(dst, '[')
		for i, e := range v.c.elems {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = e.AppendJSON(dst)
		}
		return append(dst, ']')
	case KindObject:
		if v.c.isTape() {
			return v.c.appendJSON(dst, uint32(v.num))
		}
		return v.c.members.AppendJSON(dst)
	}
	return append(dst, "null"...)
}

// appendJSON appends tape node i as JSON.
func (c *container) appendJSON(dst []byte, i uint32) []byte {
	n := &c.nodes[i]
	switch n.kind {
	case KindString:
		return core.AppendJSONString(dst, c.str(i))
	case KindArray:
		dst = append(dst, '[')
		j := i + 1
		for k := uint32(0); k < n.a; k++ {
			if k > 0 {
				dst = append(dst, ',')
			}
			dst = c.appendJSON(dst, j)
			j = c.next(j)
		}
		return append(dst, ']')
	case KindObject:
		if n.flags&flagDup != 0 {
			return c.tapeMembers(i).AppendJSON(dst)
		}
		dst = append(dst, '{')
		j := i + 1
		for k := uint32(0); k < n.a; k++ {
			if k > 0 {
				dst = append(dst, ',')
			}
			dst = core.AppendJSONString(dst, c.str(j))
			dst = append(dst, ':')
			dst = c.appendJSON(dst, j+1)
			j = c.next(j + 1)
		}
		return append(dst, '}')
	}
	return Value{kind: n.kind, num: n.num()}.AppendJSON(dst)
}

// Get returns the value of member key (the last one if o repeats it).
func (o Object) Get(key string) (Value, bool) {
	for i := len(o) - 1; i >= 0; i-- {
		if o[i].Key == key {
			return o[i].Value, true
		}
	}
	return undefined, false
}

// Map returns o as a map[string]any (see Value.Any).
func (o Object) Map() map[string]any {
	m := make(map[string]any, len(o))
	for _, mem := range o {
		m[mem.Key] = mem.Value.Any()
	}
	return m
}

// String returns o as JSON text.
func (o Object) String() string { return string(o.AppendJSON(nil)) }

// MarshalJSON encodes o as a JSON object in member order.
func (o Object) MarshalJSON() ([]byte, error) { return o.AppendJSON(nil), nil }

// AppendJSON appends o as a compact JSON object in member order to dst.
// It does not escape HTML characters; a nil Object appends {}.
func (o Object) AppendJSON(dst []byte) []byte {
	dst = append(dst, '{')
	for i, m := range o {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = core.AppendJSONString(dst, m.Key)
		dst = append(dst, ':')
		dst = m.Value.AppendJSON(dst)
	}
	return append(dst, '}')
}

// appendFloat formats f as encoding/json does.
func appendFloat(dst []byte, f float64) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(dst, "null"...) // never stored, but stay valid JSON
	}
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	dst = strconv.AppendFloat(dst, f, format, -1, 64)
	if format == 'e' {
		// clean up e-09 to e-9
		n := len(dst)
		if n >= 4 && dst[n-4] == 'e' && dst[n-3] == '-' && dst[n-2] == '0' {
			dst[n-2] = dst[n-1]
			dst = dst[:n-1]
		}
	}
	return dst
}
