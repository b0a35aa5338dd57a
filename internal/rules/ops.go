package rules

import (
	"math"
	"strconv"
	"strings"
)

// unknown is the result of an operator one of whose operands is null or
// undefined: undefined if any of them is undefined, null otherwise.
func unknown(a, b Value) Value {
	if a.kind == KindUndefined || b.kind == KindUndefined {
		return undefined
	}
	return null
}

// arith applies + - * / % to two values. Numbers only: anything else is
// null (undefined if an operand is undefined). Two ints give an int unless
// the result overflows or, for /, is not whole; division by zero is null.
func arith(op byte, a, b Value) Value {
	if a.isUnknown() || b.isUnknown() {
		return unknown(a, b)
	}
	if !a.isNumber() || !b.isNumber() {
		return null
	}
	if a.kind == KindInt && b.kind == KindInt {
		x, y := int64(a.num), int64(b.num)
		switch op {
		case '+':
			if s := x + y; (s > x) == (y > 0) {
				return intValue(s)
			}
		case '-':
			if d := x - y; (d < x) == (y > 0) {
				return intValue(d)
			}
		case '*':
			if x == 0 || y == 0 {
				return intValue(0)
			}
			if p := x * y; p/y == x && !(x == -1 && y == math.MinInt64) && !(y == -1 && x == math.MinInt64) {
				return intValue(p)
			}
		case '/':
			if y == 0 {
				return null
			}
			if x%y == 0 && !(x == math.MinInt64 && y == -1) {
				return intValue(x / y)
			}
		case '%':
			if y == 0 {
				return null
			}
			return intValue(x % y)
		}
		// overflow or an inexact quotient: compute in float64
	}
	x, y := a.Float(), b.Float()
	switch op {
	case '+':
		return floatValue(x + y)
	case '-':
		return floatValue(x - y)
	case '*':
		return floatValue(x * y)
	case '/':
		if y == 0 {
			return null
		}
		return floatValue(x / y)
	default:
		if y == 0 {
			return null
		}
		return floatValue(math.Mod(x, y))
	}
}

func negate(a Value) Value {
	switch a.kind {
	case KindUndefined, KindNull:
		return a
	case KindInt:
		if int64(a.num) != math.MinInt64 {
			return intValue(-int64(a.num))
		}
		return floatValue(-a.Float())
	case KindFloat:
		return floatValue(-a.Float())
	}
	return null
}

// cmpNumbers compares two numbers exactly, whatever mix of int and float.
func cmpNumbers(a, b Value) int {
	switch {
	case a.kind == KindInt && b.kind == KindInt:
		return cmpInt(int64(a.num), int64(b.num))
	case a.kind == KindFloat && b.kind == KindFloat:
		x, y := a.Float(), b.Float()
		switch {
		case x < y:
			return -1
		case x > y:
			return 1
		}
		return 0
	case a.kind == KindInt:
		return cmpIntFloat(int64(a.num), b.Float())
	default:
		return -cmpIntFloat(int64(b.num), a.Float())
	}
}

func cmpInt(x, y int64) int {
	switch {
	case x < y:
		return -1
	case x > y:
		return 1
	}
	return 0
}

func cmpIntFloat(i int64, f float64) int {
	switch {
	case f >= 1<<63:
		return -1
	case f < -(1 << 63):
		return 1
	}
	t := math.Trunc(f)
	if c := cmpInt(i, int64(t)); c != 0 {
		return c
	}
	switch {
	case f > t:
		return -1
	case f < t:
		return 1
	}
	return 0
}

// equal reports whether two values are equal: numbers by value (1 = 1.0),
// strings, booleans and nulls by content, arrays element by element,
// objects member by member in any order. Values of different types are
// never equal.
func equal(a, b Value) bool {
	if a.isNumber() && b.isNumber() {
		return cmpNumbers(a, b) == 0
	}
	if a.kind != b.kind {
		return false
	}
	switch a.kind {
	case KindBool:
		return a.num == b.num
	case KindString:
		return a.str == b.str
	case KindArray:
		x, y := a.Elems(), b.Elems()
		if len(x) != len(y) {
			return false
		}
		for i := range x {
			if !equal(x[i], y[i]) {
				return false
			}
		}
		return true
	case KindObject:
		x := a.Object()
		if len(x) != b.Len() {
			return false
		}
		for _, m := range x {
			v := b.Get(m.Key)
			if v.kind == KindUndefined || !equal(m.Value, v) {
				return false
			}
		}
		return true
	}
	return true // null, undefined
}

// compare evaluates a comparison operator. An unknown operand makes the
// result unknown; = and != compare any two values (see equal); the
// ordering operators compare two numbers or two strings (byte-wise) and
// are false for any other pair.
func compare(op string, a, b Value) Value {
	if a.isUnknown() || b.isUnknown() {
		return unknown(a, b)
	}
	switch op {
	case "=":
		return boolValue(equal(a, b))
	case "!=":
		return boolValue(!equal(a, b))
	}
	var c int
	switch {
	case a.isNumber() && b.isNumber():
		c = cmpNumbers(a, b)
	case a.kind == KindString && b.kind == KindString:
		c = strings.Compare(a.str, b.str)
	default:
		return falseVal
	}
	switch op {
	case "<":
		return boolValue(c < 0)
	case "<=":
		return boolValue(c <= 0)
	case ">":
		return boolValue(c > 0)
	default:
		return boolValue(c >= 0)
	}
}

// truth classifies a value for the logical operators: a boolean is itself,
// anything else (null, undefined, a number...) is unknown.
func isTrue(v Value) bool  { return v.kind == KindBool && v.num == 1 }
func isFalse(v Value) bool { return v.kind == KindBool && v.num == 0 }

// logicUnknown is the unknown result of AND/OR: undefined if an operand
// is undefined, else null.
func logicUnknown(a, b Value) Value {
	if a.kind == KindUndefined || b.kind == KindUndefined {
		return undefined
	}
	return null
}

func not(v Value) Value {
	switch {
	case v.kind == KindBool:
		return boolValue(v.num == 0)
	case v.kind == KindUndefined:
		return undefined
	}
	return null
}

// castTo converts v (neither null nor undefined) to kind, or says why it
// cannot.
func castTo(v Value, kind Kind) (Value, string) {
	switch kind {
	case KindInt:
		switch v.kind {
		case KindInt:
			return v, ""
		case KindFloat:
			if i, ok := floatToInt(v.Float()); ok {
				return intValue(i), ""
			}
			return undefined, "cannot cast " + describeValue(v) + " to int: out of range"
		case KindBool:
			return intValue(int64(v.num)), ""
		case KindString:
			n, ok := parseNumber(v.str)
			if !ok {
				break
			}
			if n.kind == KindInt {
				return n, ""
			}
			if i, ok := floatToInt(n.Float()); ok {
				return intValue(i), ""
			}
			return undefined, "cannot cast " + describeValue(v) + " to int: out of range"
		}
	case KindFloat:
		switch v.kind {
		case KindInt, KindFloat:
			return floatValue(v.Float()), ""
		case KindBool:
			return floatValue(float64(v.num)), ""
		case KindString:
			if n, ok := parseNumber(v.str); ok {
				return floatValue(n.Float()), ""
			}
		}
	case KindString:
		return stringValue(toText(v)), ""
	case KindBool:
		switch v.kind {
		case KindBool:
			return v, ""
		case KindInt, KindFloat:
			return boolValue(v.Float() != 0), ""
		case KindString:
			switch strings.ToLower(strings.TrimSpace(v.str)) {
			case "true":
				return trueVal, ""
			case "false":
				return falseVal, ""
			}
		}
	}
	return undefined, "cannot cast " + describeValue(v) + " to " + castTypeNames[kind]
}

// floatToInt truncates f toward zero if the result fits in an int64.
func floatToInt(f float64) (int64, bool) {
	if f >= -(1<<63) && f < 1<<63 {
		return int64(f), true
	}
	return 0, false
}

// parseNumber parses text as a number: optional white space, an optional
// sign, digits with an optional fraction ("1.5", "1.", ".5") and an
// optional exponent. Integers that fit in int64 are ints.
func parseNumber(s string) (Value, bool) {
	s = strings.TrimSpace(s)
	i := 0
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		i++
	}
	digits, isInt := 0, true
	for i < len(s) && isDigit(s[i]) {
		i++
		digits++
	}
	if i < len(s) && s[i] == '.' {
		isInt = false
		i++
		for i < len(s) && isDigit(s[i]) {
			i++
			digits++
		}
	}
	if digits == 0 {
		return undefined, false
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		isInt = false
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		j := i
		for i < len(s) && isDigit(s[i]) {
			i++
		}
		if i == j {
			return undefined, false
		}
	}
	if i != len(s) {
		return undefined, false
	}
	if isInt {
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			return intValue(n), true
		}
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return undefined, false
	}
	return floatValue(f), true
}

// toText is the text of a value for concat() and CAST(x AS string): a
// string as is, anything else as JSON.
func toText(v Value) string {
	if v.kind == KindString {
		return v.str
	}
	return string(v.AppendJSON(nil))
}

// describeValue names a value in an error message: its type and, for a
// scalar, the value in SQL notation.
func describeValue(v Value) string {
	switch v.kind {
	case KindString:
		return "string " + quoteSnippet(quoteName(v.str))
	case KindInt, KindFloat:
		return "number " + string(v.AppendJSON(nil))
	case KindBool:
		return "boolean " + string(v.AppendJSON(nil))
	}
	return v.kind.String()
}
