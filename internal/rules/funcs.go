package rules

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"math"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxStringBytes is the longest string a function returns: a longer
// result is null, so that a statement cannot build huge strings.
const MaxStringBytes = 1 << 20

// funcDef describes a function of the dialect.
type funcDef struct {
	min, max int // number of arguments; max < 0: no limit

	// Exactly one way to evaluate. f1/f2/f3 are strict: they are called
	// only when no argument is null or undefined (an undefined argument
	// gives undefined, else a null one gives null), with as many arguments
	// as the call has (so a function with optional arguments sets several).
	f0    func(m *Message) Value
	f1    func(a Value) Value
	f2    func(a, b Value) Value
	f3    func(a, b, c Value) Value
	build func(args []evalFn, call *callExpr) evalFn // anything else

	// check validates constant arguments at parse time: it returns the
	// index of the bad argument and a message, or "".
	check func(args []expr) (int, string)
}

func (d *funcDef) arity() string {
	plural := func(n int) string {
		if n == 1 {
			return "1 argument"
		}
		return strconv.Itoa(n) + " arguments"
	}
	switch {
	case d.max == 0:
		return "no arguments"
	case d.max < 0:
		return "at least " + plural(d.min)
	case d.min == d.max:
		return plural(d.min)
	case d.max == d.min+1:
		return strconv.Itoa(d.min) + " or " + plural(d.max)
	}
	return strconv.Itoa(d.min) + " to " + plural(d.max)
}

var funcs map[string]*funcDef

func init() {
	funcs = map[string]*funcDef{
		// The message.
		"topic":     {min: 0, max: 1, build: buildTopic, check: checkTopic},
		"clientid":  {f0: func(m *Message) Value { return nonEmpty(m.in.ClientID) }},
		"thing":     {f0: func(m *Message) Value { return nonEmpty(m.in.Thing) }},
		"timestamp": {f0: func(m *Message) Value { return intValue(m.timestamp()) }},
		"payload":   {f0: (*Message).payloadText},
		"newuuid":   {f0: func(*Message) Value { return stringValue(newUUID()) }},

		// Numbers.
		"abs":   {min: 1, max: 1, f1: fnAbs},
		"round": {min: 1, max: 2, f1: func(a Value) Value { return fnRound(a, intValue(0)) }, f2: fnRound},
		"floor": {min: 1, max: 1, f1: func(a Value) Value { return roundWith(a, math.Floor) }},
		"ceil":  {min: 1, max: 1, f1: func(a Value) Value { return roundWith(a, math.Ceil) }},
		"sign":  {min: 1, max: 1, f1: fnSign},
		"sqrt":  {min: 1, max: 1, f1: floatFn(math.Sqrt)},
		"ln":    {min: 1, max: 1, f1: floatFn(math.Log)},
		"log10": {min: 1, max: 1, f1: floatFn(math.Log10)},
		"exp":   {min: 1, max: 1, f1: floatFn(math.Exp)},
		"power": {min: 2, max: 2, f2: fnPower},
		"mod":   {min: 2, max: 2, f2: func(a, b Value) Value { return arith('%', a, b) }},

		// Strings.
		"lower":      {min: 1, max: 1, f1: stringFn(strings.ToLower)},
		"upper":      {min: 1, max: 1, f1: stringFn(strings.ToUpper)},
		"trim":       {min: 1, max: 1, f1: stringFn(strings.TrimSpace)},
		"ltrim":      {min: 1, max: 1, f1: stringFn(func(s string) string { return strings.TrimLeftFunc(s, unicode.IsSpace) })},
		"rtrim":      {min: 1, max: 1, f1: stringFn(func(s string) string { return strings.TrimRightFunc(s, unicode.IsSpace) })},
		"length":     {min: 1, max: 1, f1: fnLength},
		"substring":  {min: 2, max: 3, f2: func(s, start Value) Value { return fnSubstring(s, start, undefined) }, f3: fnSubstring},
		"replace":    {min: 3, max: 3, f3: fnReplace},
		"startswith": {min: 2, max: 2, f2: stringPred(strings.HasPrefix)},
		"endswith":   {min: 2, max: 2, f2: stringPred(strings.HasSuffix)},
		"contains":   {min: 2, max: 2, f2: fnContains},
		"split":      {min: 2, max: 2, f2: fnSplit},
		"concat":     {min: 1, max: -1, build: buildConcat},
		"encode":     {min: 2, max: 2, build: buildEncode, check: checkEncoding},
		"decode":     {min: 2, max: 2, f2: fnDecode, check: checkEncoding},

		// Nulls and types.
		"coalesce":    {min: 1, max: -1, build: buildCoalesce},
		"isnull":      {min: 1, max: 1, build: buildIs(func(v Value) bool { return v.isUnknown() })},
		"isundefined": {min: 1, max: 1, build: buildIs(func(v Value) bool { return v.kind == KindUndefined })},
		"typeof":      {min: 1, max: 1, build: buildTypeof},
	}
}

func nonEmpty(s string) Value {
	if s == "" {
		return undefined
	}
	return stringValue(s)
}

func constant(x expr) (Value, bool) {
	if lit, ok := x.(*literal); ok {
		return lit.v, true
	}
	return undefined, false
}

func checkTopic(args []expr) (int, string) {
	if len(args) == 1 {
		if v, ok := constant(args[0]); ok && (v.kind != KindInt || v.Int() < 1) {
			return 0, "topic() takes a level number from 1, found " + quoteSnippet(toText(v))
		}
	}
	return 0, ""
}

func buildTopic(args []evalFn, call *callExpr) evalFn {
	if len(args) == 0 {
		return func(m *Message) Value { return stringValue(m.in.Topic) }
	}
	if v, ok := constant(call.args[0]); ok {
		n := v.Int()
		return func(m *Message) Value { return topicLevel(m.in.Topic, n) }
	}
	arg := args[0]
	return func(m *Message) Value {
		v := arg(m)
		switch {
		case v.isUnknown():
			return v
		case v.kind != KindInt:
			return null
		}
		return topicLevel(m.in.Topic, v.Int())
	}
}

// topicLevel returns level n (from 1) of topic, undefined if it has fewer.
func topicLevel(topic string, n int64) Value {
	if n < 1 {
		return undefined
	}
	for ; n > 1; n-- {
		i := strings.IndexByte(topic, '/')
		if i < 0 {
			return undefined
		}
		topic = topic[i+1:]
	}
	if i := strings.IndexByte(topic, '/'); i >= 0 {
		topic = topic[:i]
	}
	return stringValue(topic)
}

func newUUID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40 // version 4
	b[8] = b[8]&0x3f | 0x80 // RFC 4122 variant
	var s [36]byte
	hex.Encode(s[0:8], b[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], b[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], b[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], b[8:10])
	s[23] = '-'
	hex.Encode(s[24:], b[10:])
	return string(s[:])
}

func fnAbs(a Value) Value {
	switch a.kind {
	case KindInt:
		if i := a.Int(); i < 0 {
			return negate(a)
		}
		return a
	case KindFloat:
		return floatValue(math.Abs(a.Float()))
	}
	return null
}

func fnSign(a Value) Value {
	if !a.isNumber() {
		return null
	}
	return intValue(int64(cmpNumbers(a, intValue(0))))
}

// wholeNumber returns a whole float f as an int when it fits, else as is.
func wholeNumber(f float64) Value {
	if i, ok := floatToInt(f); ok {
		return intValue(i)
	}
	return floatValue(f)
}

func roundWith(a Value, f func(float64) float64) Value {
	switch a.kind {
	case KindInt:
		return a
	case KindFloat:
		return wholeNumber(f(a.Float()))
	}
	return null
}

// fnRound rounds half away from zero to digits decimal places (negative:
// to tens, hundreds...). With digits <= 0 the result is an int when it
// fits.
func fnRound(a, digits Value) Value {
	if !a.isNumber() || digits.kind != KindInt {
		return null
	}
	d := digits.Int()
	if a.kind == KindInt {
		if d >= 0 {
			return a
		}
		if d < -18 {
			return intValue(0)
		}
		p := int64(math.Pow10(int(-d)))
		x := a.Int()
		q, r := x/p, x%p
		if r >= 0 && 2*r >= p {
			q++
		} else if r < 0 && -2*r >= p {
			q--
		}
		return arith('*', intValue(q), intValue(p))
	}
	x := a.Float()
	switch {
	case d == 0:
		return wholeNumber(math.Round(x))
	case d > 15:
		return a
	case d < -308:
		return intValue(0)
	}
	p := math.Pow10(int(math.Abs(float64(d))))
	var r float64
	if d > 0 {
		if s := x * p; !math.IsInf(s, 0) {
			r = math.Round(s) / p
		} else {
			r = x
		}
	} else {
		r = math.Round(x/p) * p
	}
	if d < 0 {
		return wholeNumber(r)
	}
	return floatValue(r)
}

func floatFn(f func(float64) float64) func(Value) Value {
	return func(a Value) Value {
		if !a.isNumber() {
			return null
		}
		return floatValue(f(a.Float()))
	}
}

// fnPower is an int when both are ints, the exponent is not negative and
// the result fits; a float otherwise.
func fnPower(a, b Value) Value {
	if !a.isNumber() || !b.isNumber() {
		return null
	}
	if a.kind == KindInt && b.kind == KindInt && b.Int() >= 0 {
		result, base, exp := intValue(1), a, b.Int()
		for exp > 0 && result.kind == KindInt {
			if exp&1 == 1 {
				result = arith('*', result, base)
			}
			exp >>= 1
			if exp > 0 {
				base = arith('*', base, base)
			}
		}
		if result.kind == KindInt {
			return result
		}
	}
	return floatValue(math.Pow(a.Float(), b.Float()))
}

func stringFn(f func(string) string) func(Value) Value {
	return func(a Value) Value {
		if a.kind != KindString {
			return null
		}
		return stringValue(f(a.str))
	}
}

func stringPred(f func(s, x string) bool) func(a, b Value) Value {
	return func(a, b Value) Value {
		if a.kind != KindString || b.kind != KindString {
			return null
		}
		return boolValue(f(a.str, b.str))
	}
}

// fnLength counts the characters of a string, the elements of an array or
// the members of an object.
func fnLength(a Value) Value {
	switch a.kind {
	case KindString:
		return intValue(int64(utf8.RuneCountInString(a.str)))
	case KindArray, KindObject:
		return intValue(int64(a.Len()))
	}
	return null
}

// fnSubstring is SQL's SUBSTRING(s FROM start [FOR length]) on characters
// numbered from 1: the characters at positions start to start+length-1
// that exist. Without length, to the end.
func fnSubstring(s, start, length Value) Value {
	if s.kind != KindString || start.kind != KindInt || length.kind != KindUndefined && length.kind != KindInt {
		return null
	}
	from := start.Int()
	to := int64(math.MaxInt64) // exclusive
	if length.kind == KindInt {
		n := length.Int()
		if n < 0 {
			return null
		}
		if from <= 0 || n <= math.MaxInt64-from {
			to = from + n
		}
	}
	if from < 1 {
		from = 1
	}
	if to <= from {
		return stringValue("")
	}
	pos, begin, end := int64(1), len(s.str), len(s.str)
	for i := range s.str {
		if pos == from {
			begin = i
		}
		if pos == to {
			end = i
			break
		}
		pos++
	}
	if begin > end {
		begin = end
	}
	return stringValue(s.str[begin:end])
}

func fnReplace(s, old, repl Value) Value {
	if s.kind != KindString || old.kind != KindString || repl.kind != KindString {
		return null
	}
	if old.str == "" {
		return s
	}
	n := strings.Count(s.str, old.str)
	if n == 0 {
		return s
	}
	if grow := len(repl.str) - len(old.str); grow > 0 && grow > (MaxStringBytes-len(s.str))/n {
		return null
	}
	return stringValue(strings.ReplaceAll(s.str, old.str, repl.str))
}

// fnContains: for a string, whether it contains the string x; for an
// array, whether an element equals x.
func fnContains(a, x Value) Value {
	switch a.kind {
	case KindString:
		if x.kind != KindString {
			return null
		}
		return boolValue(strings.Contains(a.str, x.str))
	case KindArray:
		for _, e := range a.Elems() {
			if equal(e, x) {
				return trueVal
			}
		}
		return falseVal
	}
	return null
}

func fnSplit(s, sep Value) Value {
	if s.kind != KindString || sep.kind != KindString {
		return null
	}
	parts := strings.Split(s.str, sep.str)
	elems := make([]Value, len(parts))
	for i, p := range parts {
		elems[i] = stringValue(p)
	}
	return arrayValue(elems)
}

// buildConcat joins its arguments as text (see toText), skipping null and
// undefined ones.
func buildConcat(args []evalFn, _ *callExpr) evalFn {
	return func(m *Message) Value {
		var b []byte
		for _, a := range args {
			v := a(m)
			switch v.kind {
			case KindUndefined, KindNull:
			case KindString:
				b = append(b, v.str...)
			default:
				b = v.AppendJSON(b)
			}
			if len(b) > MaxStringBytes {
				return null
			}
		}
		return stringValue(string(b))
	}
}

var encodings = map[string]bool{"base64": true, "base64url": true, "hex": true}

func checkEncoding(args []expr) (int, string) {
	if v, ok := constant(args[1]); ok && (v.kind != KindString || !encodings[v.str]) {
		return 1, "unknown encoding " + quoteSnippet(quoteName(toText(v))) + ": want 'base64', 'base64url' or 'hex'"
	}
	return 0, ""
}

func encode(b []byte, enc string) Value {
	if len(b) > MaxStringBytes/2 && (enc == "hex" || len(b) > MaxStringBytes/4*3) {
		return null
	}
	switch enc {
	case "base64":
		return stringValue(base64.StdEncoding.EncodeToString(b))
	case "base64url":
		return stringValue(base64.RawURLEncoding.EncodeToString(b))
	case "hex":
		return stringValue(hex.EncodeToString(b))
	}
	return null
}

// buildEncode encodes the text of a value (see toText), or with * the raw
// payload bytes.
func buildEncode(args []evalFn, call *callExpr) evalFn {
	encArg := args[1]
	if isStar(call.args[0]) {
		return func(m *Message) Value {
			enc := encArg(m)
			if enc.isUnknown() {
				return enc
			}
			return encode(m.in.Payload, enc.str)
		}
	}
	x := args[0]
	return func(m *Message) Value {
		v, enc := x(m), encArg(m)
		if v.isUnknown() || enc.isUnknown() {
			return unknown(v, enc)
		}
		if enc.kind != KindString {
			return null
		}
		return encode([]byte(toText(v)), enc.str)
	}
}

// fnDecode decodes a string; the result must be UTF-8 text, else null.
func fnDecode(s, enc Value) Value {
	if s.kind != KindString || enc.kind != KindString {
		return null
	}
	var b []byte
	var err error
	switch enc.str {
	case "base64":
		b, err = base64.StdEncoding.DecodeString(s.str)
	case "base64url":
		b, err = base64.RawURLEncoding.DecodeString(strings.TrimRight(s.str, "="))
	case "hex":
		b, err = hex.DecodeString(s.str)
	default:
		return null
	}
	if err != nil || !utf8.Valid(b) {
		return null
	}
	return stringValue(string(b))
}

// buildCoalesce returns the first argument that is neither null nor
// undefined, evaluating no further; if there is none, null if one was
// null, else undefined.
func buildCoalesce(args []evalFn, _ *callExpr) evalFn {
	return func(m *Message) Value {
		result := undefined
		for _, a := range args {
			v := a(m)
			if !v.isUnknown() {
				return v
			}
			if v.kind == KindNull {
				result = null
			}
		}
		return result
	}
}

func buildIs(pred func(Value) bool) func(args []evalFn, _ *callExpr) evalFn {
	return func(args []evalFn, _ *callExpr) evalFn {
		x := args[0]
		return func(m *Message) Value { return boolValue(pred(x(m))) }
	}
}

func buildTypeof(args []evalFn, _ *callExpr) evalFn {
	x := args[0]
	return func(m *Message) Value { return stringValue(x(m).kind.String()) }
}
