package rules

import (
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// maxJSONDepth is the deepest nesting of arrays and objects a payload may
// have, the same as encoding/json's.
const maxJSONDepth = 10000

// A payload is decoded into a tape: a flat array of pointer-free nodes in
// document order, plus one copy of the payload text whose substrings are
// the strings. Decoding allocates the copy and the tape (neither holds
// pointers the garbage collector must follow, and no write barrier runs),
// and values from the payload refer to tape nodes rather than being built
// one by one.
type tape struct {
	data   string   // the payload
	nodes  []node   // nodes[0] is the payload's value
	extras []string // strings that needed unescaping
}

// node is one JSON value, or an object key (a string node before the
// value). A composite's children follow it: for an object, key and value
// nodes alternately.
type node struct {
	kind  Kind
	flags uint8
	// string: data[a:b], or extras[a] with flagExtra; array, object: a =
	// number of elements or members, b = index after the last descendant;
	// bool, int, float: Value.num is b<<32 | a.
	a, b uint32
}

func scalarNode(v Value) node { return node{kind: v.kind, a: uint32(v.num), b: uint32(v.num >> 32)} }

func (n *node) num() uint64 { return uint64(n.b)<<32 | uint64(n.a) }

const (
	flagExtra uint8 = 1 << iota // the string is extras[a]
	flagDup                     // the object repeats a key
)

// next returns the index of the node after node i and its descendants.
func (t *tape) next(i uint32) uint32 {
	if k := t.nodes[i].kind; k == KindArray || k == KindObject {
		return t.nodes[i].b
	}
	return i + 1
}

func (t *tape) str(i uint32) string {
	n := &t.nodes[i]
	if n.flags&flagExtra != 0 {
		return t.extras[n.a]
	}
	return t.data[n.a:n.b]
}

// decoder decodes payloads into tapes. It accepts exactly what
// encoding/json accepts and decodes to the same values, except that
// integers that fit in int64 stay int64: duplicate keys keep the first
// position and the last value, invalid UTF-8 in strings becomes U+FFFD
// (both as encoding/json into an any), and a number out of float64 range
// makes the whole payload invalid (encoding/json refuses it).
type decoder struct {
	t     *tape
	data  string
	pos   int
	depth int
	keys  []uint32 // scratch: key nodes of the objects being decoded
	buf   []byte   // scratch: unescaping
	ok    bool
}

// decode decodes payload into c (whose tape fields it sets) and returns
// the payload's value; ok is false when the payload is not exactly one JSON
// value surrounded by optional white space.
func (d *decoder) decode(payload []byte, c *container) (v Value, ok bool) {
	// Most payloads that are not JSON are rejected without copying them.
	i := 0
	for i < len(payload) && isSpace(payload[i]) {
		i++
	}
	if i == len(payload) {
		return undefined, false
	}
	switch ch := payload[i]; {
	case ch == '{', ch == '[', ch == '"', ch == '-', ch >= '0' && ch <= '9', ch == 't', ch == 'f', ch == 'n':
	default:
		return undefined, false
	}
	t := &c.tape
	t.data = string(payload)
	t.nodes = make([]node, 0, len(payload)/6+8) // a typical member (2 nodes) takes 12 bytes or more
	d.t, d.data, d.pos, d.depth, d.ok = t, t.data, i, 0, true
	d.keys = d.keys[:0]
	d.value()
	d.skipSpace()
	ok = d.ok && d.pos == len(d.data)
	d.t, d.data = nil, ""
	if !ok {
		*t = tape{}
		return undefined, false
	}
	return c.value(0), true
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func (d *decoder) skipSpace() {
	for d.pos < len(d.data) && isSpace(d.data[d.pos]) {
		d.pos++
	}
}

func (d *decoder) fail() { d.ok = false; d.pos = len(d.data) }

// value decodes one value onto the tape.
func (d *decoder) value() {
	d.skipSpace()
	if d.pos >= len(d.data) {
		d.fail()
		return
	}
	switch c := d.data[d.pos]; c {
	case '{':
		d.object()
	case '[':
		d.array()
	case '"':
		d.string()
	case 't':
		d.literal("true", node{kind: KindBool, a: 1})
	case 'f':
		d.literal("false", node{kind: KindBool})
	case 'n':
		d.literal("null", node{kind: KindNull})
	default:
		if c == '-' || c >= '0' && c <= '9' {
			d.number()
			return
		}
		d.fail()
	}
}

func (d *decoder) literal(word string, n node) {
	if !strings.HasPrefix(d.data[d.pos:], word) {
		d.fail()
		return
	}
	d.pos += len(word)
	d.t.nodes = append(d.t.nodes, n)
}

func (d *decoder) object() {
	if d.depth++; d.depth > maxJSONDepth {
		d.fail()
		return
	}
	d.pos++ // '{'
	self := uint32(len(d.t.nodes))
	d.t.nodes = append(d.t.nodes, node{kind: KindObject})
	keys := len(d.keys)
	d.skipSpace()
	if d.pos < len(d.data) && d.data[d.pos] == '}' {
		d.pos++
	} else {
		for d.ok {
			d.skipSpace()
			if d.pos >= len(d.data) || d.data[d.pos] != '"' {
				d.fail()
				return
			}
			d.keys = append(d.keys, uint32(len(d.t.nodes)))
			d.string()
			d.skipSpace()
			if d.pos >= len(d.data) || d.data[d.pos] != ':' {
				d.fail()
				return
			}
			d.pos++
			d.value()
			d.skipSpace()
			if d.pos >= len(d.data) {
				d.fail()
				return
			}
			c := d.data[d.pos]
			d.pos++
			if c == '}' {
				break
			}
			if c != ',' {
				d.fail()
				return
			}
		}
	}
	n := &d.t.nodes[self]
	n.a, n.b = uint32(len(d.keys)-keys), uint32(len(d.t.nodes))
	if d.hasDup(d.keys[keys:]) {
		n.flags |= flagDup
	}
	d.keys = d.keys[:keys]
	d.depth--
}

// hasDup reports whether two of the key nodes are the same string.
func (d *decoder) hasDup(keys []uint32) bool {
	if len(keys) < 2 {
		return false
	}
	if len(keys) <= 16 {
		for i := 1; i < len(keys); i++ {
			ki := d.t.str(keys[i])
			for j := 0; j < i; j++ {
				if d.t.str(keys[j]) == ki {
					return true
				}
			}
		}
		return false
	}
	seen := make(map[string]struct{}, len(keys))
	for _, k := range keys {
		s := d.t.str(k)
		if _, ok := seen[s]; ok {
			return true
		}
		seen[s] = struct{}{}
	}
	return false
}

func (d *decoder) array() {
	if d.depth++; d.depth > maxJSONDepth {
		d.fail()
		return
	}
	d.pos++ // '['
	self := uint32(len(d.t.nodes))
	d.t.nodes = append(d.t.nodes, node{kind: KindArray})
	count := uint32(0)
	d.skipSpace()
	if d.pos < len(d.data) && d.data[d.pos] == ']' {
		d.pos++
	} else {
		for d.ok {
			d.value()
			count++
			d.skipSpace()
			if d.pos >= len(d.data) {
				d.fail()
				return
			}
			c := d.data[d.pos]
			d.pos++
			if c == ']' {
				break
			}
			if c != ',' {
				d.fail()
				return
			}
		}
	}
	n := &d.t.nodes[self]
	n.a, n.b = count, uint32(len(d.t.nodes))
	d.depth--
}

// plain marks the bytes that a string can contain as they are: not '"',
// '\\', control characters or the start of a multi-byte UTF-8 sequence.
var plain = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// string decodes the string starting at the '"' at d.pos.
func (d *decoder) string() {
	d.pos++
	start := d.pos
	for i := start; i < len(d.data); {
		c := d.data[i]
		switch {
		case plain[c]:
			i++
		case c == '"':
			d.pos = i + 1
			d.t.nodes = append(d.t.nodes, node{kind: KindString, a: uint32(start), b: uint32(i)})
			return
		case c == '\\':
			d.slowString(start)
			return
		case c < 0x20:
			d.fail()
			return
		case c < utf8.RuneSelf:
			i++
		default:
			r, size := utf8.DecodeRuneInString(d.data[i:])
			if r == utf8.RuneError && size == 1 {
				d.slowString(start)
				return
			}
			i += size
		}
	}
	d.fail()
}

// slowString decodes a string with escapes or invalid UTF-8 from start,
// the position after its opening quote, into an extra string.
func (d *decoder) slowString(start int) {
	b := d.buf[:0]
	i := start
	for i < len(d.data) {
		c := d.data[i]
		switch {
		case c == '"':
			d.pos = i + 1
			d.buf = b
			d.t.nodes = append(d.t.nodes, node{kind: KindString, flags: flagExtra, a: uint32(len(d.t.extras))})
			d.t.extras = append(d.t.extras, string(b))
			return
		case c < 0x20:
			d.fail()
			return
		case c == '\\':
			if i+1 >= len(d.data) {
				d.fail()
				return
			}
			e := d.data[i+1]
			i += 2
			switch e {
			case '"', '\\', '/':
				b = append(b, e)
			case 'b':
				b = append(b, '\b')
			case 'f':
				b = append(b, '\f')
			case 'n':
				b = append(b, '\n')
			case 'r':
				b = append(b, '\r')
			case 't':
				b = append(b, '\t')
			case 'u':
				r, ok := hex4(d.data, i)
				if !ok {
					d.fail()
					return
				}
				i += 4
				if utf16.IsSurrogate(r) {
					r2, ok := rune(0), false
					if i+1 < len(d.data) && d.data[i] == '\\' && d.data[i+1] == 'u' {
						r2, ok = hex4(d.data, i+2)
					}
					if dec := utf16.DecodeRune(r, r2); ok && dec != utf8.RuneError {
						i += 6
						r = dec
					} else {
						r = utf8.RuneError
					}
				}
				b = utf8.AppendRune(b, r)
			default:
				d.fail()
				return
			}
		case c < utf8.RuneSelf:
			b = append(b, c)
			i++
		default:
			r, size := utf8.DecodeRuneInString(d.data[i:])
			if r == utf8.RuneError && size == 1 {
				b = append(b, "\uFFFD"...)
			} else {
				b = append(b, d.data[i:i+size]...)
			}
			i += size
		}
	}
	d.fail()
}

func hex4(s string, i int) (rune, bool) {
	if i+4 > len(s) {
		return 0, false
	}
	var r rune
	for _, c := range []byte(s[i : i+4]) {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// pow10 holds the powers of ten that float64 represents exactly.
var pow10 = [...]float64{1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10,
	1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22}

// number decodes a JSON number at d.pos. Numbers of at most 15 significant
// digits whose decimal exponent is within ±22 are converted exactly
// without strconv (one correctly rounded multiplication or division, as
// in strconv's own fast path).
func (d *decoder) number() {
	v, ok := scanNumber(d.data, &d.pos)
	if !ok {
		d.fail()
		return
	}
	d.t.nodes = append(d.t.nodes, scalarNode(v))
}

func scanNumber(s string, pos *int) (Value, bool) {
	start, i := *pos, *pos
	neg := s[i] == '-'
	if neg {
		i++
	}
	if i >= len(s) {
		return undefined, false
	}
	var mant uint64
	digits := 0 // significant digits in mant
	switch {
	case s[i] == '0':
		i++
	case s[i] >= '1' && s[i] <= '9':
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			mant = mant*10 + uint64(s[i]-'0')
			digits++
			i++
		}
	default:
		return undefined, false
	}
	isInt := true
	frac := 0
	if i < len(s) && s[i] == '.' {
		isInt = false
		i++
		j := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			if mant != 0 || s[i] != '0' {
				digits++
			}
			mant = mant*10 + uint64(s[i]-'0')
			i++
		}
		if i == j {
			return undefined, false
		}
		frac = i - j
	}
	exp, expOK := 0, true
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		isInt = false
		i++
		expNeg := false
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			expNeg = s[i] == '-'
			i++
		}
		j := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			if exp < 1000 {
				exp = exp*10 + int(s[i]-'0')
			} else {
				expOK = false
			}
			i++
		}
		if i == j {
			return undefined, false
		}
		if expNeg {
			exp = -exp
		}
	}
	*pos = i
	if isInt && digits <= 18 {
		n := int64(mant)
		if neg {
			n = -n
		}
		return intValue(n), true
	}
	if !isInt && digits <= 15 && expOK {
		if e := exp - frac; e >= -22 && e <= 22 {
			f := float64(mant)
			if e < 0 {
				f /= pow10[-e]
			} else {
				f *= pow10[e]
			}
			if neg {
				f = -f
			}
			return floatValue(f), true
		}
	}
	text := s[start:i]
	if isInt {
		if n, err := strconv.ParseInt(text, 10, 64); err == nil {
			return intValue(n), true
		}
	}
	f, err := strconv.ParseFloat(text, 64)
	if err != nil {
		return undefined, false // out of range, as encoding/json refuses it
	}
	return floatValue(f), true
}
