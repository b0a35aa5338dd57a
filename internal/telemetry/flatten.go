package telemetry

import (
	"encoding/json"
	"errors"
	"math"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/moteiot/mote/internal/core"
)

// Flatten turns a telemetry payload (a JSON object) into fields, following
// the rules of the package documentation, and returns their time in Unix
// milliseconds: the top-level "ts" member if there is one, else received.
//
// Fields come in the order of the document; a key that appears twice keeps
// the position of its first and the value of its last appearance. Errors
// are *core.Error values: KindInvalid for a payload that is not a JSON
// object, a bad "ts", a number out of the float64 range or an empty member
// name, KindTooLarge for a payload beyond a limit; Field names the key
// concerned ("payload" for the payload as a whole).
func Flatten(payload []byte, received time.Time) (ts int64, fields []Field, err error) {
	if !json.Valid(payload) {
		return 0, nil, syntaxError(payload)
	}
	f := flattener{data: payload, fields: make([]Field, 0, 8)}
	f.skipSpace()
	if f.data[f.pos] != '{' {
		return 0, nil, &core.Error{Kind: core.KindInvalid, Field: "payload",
			Msg: "telemetry payload must be a JSON object, not " + describe(f.data[f.pos])}
	}
	if err := f.object("", 0); err != nil {
		return 0, nil, err
	}
	if f.hasTS {
		ts = f.ts
	} else {
		ts = received.UnixMilli()
		if ts < 0 || ts > MaxTS {
			return 0, nil, core.Invalid("ts", "receive time %s is outside 1970..9999", received.UTC().Format(time.RFC3339Nano))
		}
	}
	return ts, dedupe(f.fields), nil
}

// syntaxError explains why payload is not valid JSON.
func syntaxError(payload []byte) error {
	var raw json.RawMessage
	err := json.Unmarshal(payload, &raw)
	if err == nil { // cannot happen: json.Valid said no
		err = errors.New("invalid JSON")
	}
	msg := "telemetry payload is not valid JSON: " + err.Error()
	var se *json.SyntaxError
	if errors.As(err, &se) {
		msg += " (at byte " + strconv.FormatInt(se.Offset, 10) + ")"
	}
	return &core.Error{Kind: core.KindInvalid, Field: "payload", Msg: msg}
}

// describe names the JSON type that starts with c.
func describe(c byte) string {
	switch c {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	return "a number"
}

// flattener walks a payload that json.Valid accepted, so it never meets a
// syntax error.
type flattener struct {
	data   []byte
	pos    int
	fields []Field
	hasTS  bool
	ts     int64
}

func (f *flattener) skipSpace() {
	for f.pos < len(f.data) {
		switch f.data[f.pos] {
		case ' ', '\t', '\n', '\r':
			f.pos++
		default:
			return
		}
	}
}

// indexKeys are the array index segments "0" to "63".
var indexKeys = func() []string {
	s := make([]string, MaxArrayLen)
	for i := range s {
		s[i] = strconv.Itoa(i)
	}
	return s
}()

func join(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}

func tooLarge(field, format string, args ...any) error {
	e := core.Invalid(field, format, args...).(*core.Error)
	e.Kind = core.KindTooLarge
	return e
}

// checkKey checks the length of a key (also of a prefix: every key below
// it is longer).
func checkKey(key string) error {
	if len(key) > MaxKeyLen {
		return tooLarge(key, "telemetry key %q is %d bytes long; at most %d are allowed", key, len(key), MaxKeyLen)
	}
	return nil
}

// object reads the object at f.pos (the '{'), whose members have keys
// below prefix ("" at the top level).
func (f *flattener) object(prefix string, depth int) error {
	f.pos++ // '{'
	f.skipSpace()
	if f.data[f.pos] == '}' {
		f.pos++
		return nil
	}
	for {
		f.skipSpace()
		name := f.string()
		if !validName(name) {
			field := prefix
			if field == "" {
				field = "payload"
			}
			if name == "" {
				return core.Invalid(field, "telemetry payload has an empty member name (in %s)", where(prefix))
			}
			return core.Invalid(field, "telemetry member name %q (in %s) must not start or end with a dot or contain two dots in a row", truncate(name, 64), where(prefix))
		}
		key := join(prefix, name)
		if err := checkKey(key); err != nil {
			return err
		}
		f.skipSpace()
		f.pos++ // ':'
		f.skipSpace()
		var err error
		if depth == 0 && name == "ts" {
			err = f.timestamp()
		} else {
			err = f.value(key, depth+1)
		}
		if err != nil {
			return err
		}
		f.skipSpace()
		c := f.data[f.pos]
		f.pos++ // ',' or '}'
		if c == '}' {
			return nil
		}
	}
}

// validName reports whether a member name makes a well-formed dotted key:
// not empty, no empty segment.
func validName(name string) bool {
	if name == "" || name[0] == '.' || name[len(name)-1] == '.' {
		return false
	}
	for i := 1; i < len(name); i++ {
		if name[i] == '.' && name[i-1] == '.' {
			return false
		}
	}
	return true
}

func where(prefix string) string {
	if prefix == "" {
		return "the top-level object"
	}
	return strconv.Quote(prefix)
}

// array reads the array at f.pos (the '[') whose elements have the keys
// prefix.0, prefix.1, ...
func (f *flattener) array(prefix string, depth int) error {
	f.pos++ // '['
	f.skipSpace()
	if f.data[f.pos] == ']' {
		f.pos++
		return nil
	}
	for i := 0; ; i++ {
		if i == MaxArrayLen {
			return tooLarge(prefix, "telemetry array %q has more than %d elements", prefix, MaxArrayLen)
		}
		key := prefix + "." + indexKeys[i]
		if err := checkKey(key); err != nil {
			return err
		}
		f.skipSpace()
		if err := f.value(key, depth+1); err != nil {
			return err
		}
		f.skipSpace()
		c := f.data[f.pos]
		f.pos++ // ',' or ']'
		if c == ']' {
			return nil
		}
	}
}

// value reads the value at f.pos, the value of key.
func (f *flattener) value(key string, depth int) error {
	switch c := f.data[f.pos]; c {
	case '{':
		return f.object(key, depth)
	case '[':
		return f.array(key, depth)
	case '"':
		s := f.string()
		if len(s) > MaxStringLen {
			return tooLarge(key, "telemetry value of %q is a string of %d bytes; at most %d are allowed", key, len(s), MaxStringLen)
		}
		return f.emit(key, String(s))
	case 't':
		f.pos += 4
		return f.emit(key, Bool(true))
	case 'f':
		f.pos += 5
		return f.emit(key, Bool(false))
	case 'n':
		f.pos += 4
		return nil
	}
	n, ok := f.number()
	if !ok {
		return core.Invalid(key, "telemetry value of %q is a number beyond the range of a 64-bit float", key)
	}
	return f.emit(key, Number(n))
}

func (f *flattener) emit(key string, v Value) error {
	if len(f.fields) == MaxFields {
		return tooLarge(key, "telemetry payload has more than %d values (at %q)", MaxFields, key)
	}
	f.fields = append(f.fields, Field{Key: key, Value: v})
	return nil
}

// number reads the number at f.pos; ok is false if it is beyond the range
// of float64.
func (f *flattener) number() (float64, bool) {
	start := f.pos
	for f.pos < len(f.data) {
		switch f.data[f.pos] {
		case '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', '-', '+', '.', 'e', 'E':
			f.pos++
			continue
		}
		break
	}
	n, err := strconv.ParseFloat(string(f.data[start:f.pos]), 64)
	if err != nil && (math.IsInf(n, 0) || math.IsNaN(n)) {
		return 0, false
	}
	return n, true
}

// string reads the string at f.pos (the opening quote).
func (f *flattener) string() string {
	f.pos++ // '"'
	start := f.pos
	escaped, ascii := false, true
	for {
		c := f.data[f.pos]
		if c == '"' {
			break
		}
		if c == '\\' {
			escaped = true
			f.pos += 2
			continue
		}
		if c >= utf8.RuneSelf {
			ascii = false
		}
		f.pos++
	}
	raw := f.data[start:f.pos]
	f.pos++ // '"'
	if !escaped && (ascii || utf8.Valid(raw)) {
		return string(raw)
	}
	// Escapes or invalid UTF-8: decode exactly as encoding/json does
	// (invalid bytes become U+FFFD).
	var s string
	if err := json.Unmarshal(f.data[start-1:f.pos], &s); err != nil {
		panic("telemetry: flatten: string of valid JSON does not decode: " + err.Error())
	}
	return s
}

// timestamp reads the top-level "ts" member.
func (f *flattener) timestamp() error {
	switch c := f.data[f.pos]; c {
	case 'n':
		f.pos += 4
		return nil
	case '"':
		s := f.string()
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return core.Invalid("ts", "telemetry ts %q is not an RFC 3339 time such as 2024-06-10T06:13:20.5Z", truncate(s, 64))
		}
		ms := t.UnixMilli()
		if ms < 0 || ms > MaxTS || t.Year() > 9999 {
			return core.Invalid("ts", "telemetry ts %q is outside 1970..9999", s)
		}
		f.hasTS, f.ts = true, ms
		return nil
	case '{', '[', 't', 'f':
		return core.Invalid("ts", "telemetry ts must be milliseconds since the Unix epoch or an RFC 3339 string, not %s", describe(c))
	}
	start := f.pos
	n, ok := f.number()
	if !ok || n < 0 || n >= float64(MaxTS+1) {
		return core.Invalid("ts", "telemetry ts %s is outside 0..%d (milliseconds since the Unix epoch: 1970..9999)", truncate(string(f.data[start:f.pos]), 64), MaxTS)
	}
	f.hasTS, f.ts = true, int64(n) // cuts a fraction off
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// dedupe removes repeated keys, keeping the first position and the last
// value of each.
func dedupe(fields []Field) []Field {
	if len(fields) < 2 {
		return fields
	}
	if len(fields) <= 16 {
		dup := false
		for i := 1; i < len(fields) && !dup; i++ {
			for j := 0; j < i; j++ {
				if fields[i].Key == fields[j].Key {
					dup = true
					break
				}
			}
		}
		if !dup {
			return fields
		}
	}
	index := make(map[string]int, len(fields))
	out := fields[:0]
	for _, fd := range fields {
		if i, ok := index[fd.Key]; ok {
			out[i].Value = fd.Value
			continue
		}
		index[fd.Key] = len(out)
		out = append(out, fd)
	}
	return out
}
