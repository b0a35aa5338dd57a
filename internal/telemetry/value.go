package telemetry

import (
	"encoding/json"
	"errors"
	"math"
	"strconv"
)

// Kind is the type of a Value.
type Kind uint8

// The kinds of values. The zero Kind is no value at all (the zero Value),
// which no store accepts.
const (
	KindNumber Kind = iota + 1 // a float64, never NaN or ±Inf
	KindBool                   // true or false
	KindString                 // a UTF-8 string of at most MaxStringLen bytes
)

func (k Kind) String() string {
	switch k {
	case KindNumber:
		return "number"
	case KindBool:
		return "bool"
	case KindString:
		return "string"
	}
	return "invalid"
}

// Value is one telemetry value: a number, a bool or a string. The zero
// Value is invalid. Values are comparable with ==. A Value marshals to JSON
// as the plain value (21.5, true, "on").
type Value struct {
	kind Kind
	num  float64 // KindNumber; 1 or 0 for KindBool
	str  string  // KindString
}

// Number returns a number value. Stores refuse NaN and ±Inf, which JSON
// cannot represent.
func Number(f float64) Value { return Value{kind: KindNumber, num: f} }

// Bool returns a bool value.
func Bool(b bool) Value {
	if b {
		return Value{kind: KindBool, num: 1}
	}
	return Value{kind: KindBool}
}

// String returns a string value.
func String(s string) Value { return Value{kind: KindString, str: s} }

// Kind returns the kind of v; 0 for the zero Value.
func (v Value) Kind() Kind { return v.kind }

// Float returns the number of a KindNumber value, and 0 for other kinds.
func (v Value) Float() float64 {
	if v.kind != KindNumber {
		return 0
	}
	return v.num
}

// Bool returns the value of a KindBool value, and false for other kinds.
func (v Value) Bool() bool { return v.kind == KindBool && v.num != 0 }

// Text returns the string of a KindString value, and "" for other kinds.
func (v Value) Text() string { return v.str }

// String returns v as JSON text, for messages and logs.
func (v Value) String() string { return string(v.AppendJSON(nil)) }

// valid reports whether v can be stored.
func (v Value) valid() bool {
	switch v.kind {
	case KindNumber:
		return !math.IsNaN(v.num) && !math.IsInf(v.num, 0)
	case KindBool, KindString:
		return true
	}
	return false
}

// AppendJSON appends v as JSON to b: a number in the shortest form that
// reads back as the same float64, true/false, or a quoted string. The zero
// Value (and a NaN or infinite number, which no store holds) appends null.
func (v Value) AppendJSON(b []byte) []byte {
	switch v.kind {
	case KindNumber:
		if !v.valid() {
			return append(b, "null"...)
		}
		return appendFloat(b, v.num)
	case KindBool:
		return strconv.AppendBool(b, v.num != 0)
	case KindString:
		q, _ := json.Marshal(v.str) // cannot fail for a string
		return append(b, q...)
	}
	return append(b, "null"...)
}

// appendFloat formats f like encoding/json: plain decimal notation between
// 1e-6 and 1e21, exponent notation outside with a short exponent.
func appendFloat(b []byte, f float64) []byte {
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// clean up e-09 to e-9
		n := len(b)
		if n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}

// MarshalJSON implements json.Marshaler.
func (v Value) MarshalJSON() ([]byte, error) {
	if v.kind == KindNumber && !v.valid() {
		return nil, errors.New("telemetry: number value is not finite")
	}
	return v.AppendJSON(nil), nil
}

// UnmarshalJSON implements json.Unmarshaler: a JSON number, bool or
// string. null leaves v unchanged; anything else is an error.
func (v *Value) UnmarshalJSON(b []byte) error {
	var x any
	if err := json.Unmarshal(b, &x); err != nil {
		return err
	}
	switch x := x.(type) {
	case nil:
	case float64:
		*v = Number(x)
	case bool:
		*v = Bool(x)
	case string:
		*v = String(x)
	default:
		return errors.New("telemetry: a value must be a number, a bool or a string")
	}
	return nil
}
