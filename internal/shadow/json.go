package shadow

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/moteiot/mote/internal/core"
)

// The JSON values of a shadow are the trees encoding/json decodes with
// UseNumber: nil, bool, string, json.Number, []any and map[string]any.
// Metadata leaves made here are metaLeaf; leaves read back from the
// store are {"timestamp": n} maps, which encode the same way.

// metaLeaf is the metadata of one leaf: {"timestamp": seconds}.
type metaLeaf int64

// decode parses one JSON value with numbers kept exact.
func decode(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("trailing data after the JSON value")
	}
	return v, nil
}

// appendValue appends v as JSON, object keys sorted, so that equal trees
// encode to equal bytes.
func appendValue(b []byte, v any) []byte {
	switch v := v.(type) {
	case nil:
		return append(b, "null"...)
	case bool:
		if v {
			return append(b, "true"...)
		}
		return append(b, "false"...)
	case string:
		return core.AppendJSONString(b, v)
	case json.Number:
		if v == "" {
			return append(b, '0')
		}
		return append(b, v...)
	case int64:
		return strconv.AppendInt(b, v, 10)
	case metaLeaf:
		b = append(b, `{"timestamp":`...)
		b = strconv.AppendInt(b, int64(v), 10)
		return append(b, '}')
	case []any:
		b = append(b, '[')
		for i, e := range v {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendValue(b, e)
		}
		return append(b, ']')
	case map[string]any:
		return appendObject(b, v)
	}
	// Not reachable with the trees above; keep the output valid anyway.
	return append(b, "null"...)
}

func appendObject(b []byte, m map[string]any) []byte {
	if len(m) == 0 {
		return append(b, "{}"...)
	}
	var small [16]string
	keys := small[:0]
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = core.AppendJSONString(b, k)
		b = append(b, ':')
		b = appendValue(b, m[k])
	}
	return append(b, '}')
}

// equal reports whether two JSON values are equal: objects key by key,
// arrays element by element, numbers by numeric value.
func equal(a, b any) bool {
	switch a := a.(type) {
	case nil:
		return b == nil
	case bool:
		bb, ok := b.(bool)
		return ok && a == bb
	case string:
		bs, ok := b.(string)
		return ok && a == bs
	case json.Number:
		bn, ok := b.(json.Number)
		return ok && numbersEqual(string(a), string(bn))
	case []any:
		bl, ok := b.([]any)
		if !ok || len(a) != len(bl) {
			return false
		}
		for i := range a {
			if !equal(a[i], bl[i]) {
				return false
			}
		}
		return true
	case map[string]any:
		bm, ok := b.(map[string]any)
		if !ok || len(a) != len(bm) {
			return false
		}
		for k, av := range a {
			bv, ok := bm[k]
			if !ok || !equal(av, bv) {
				return false
			}
		}
		return true
	}
	return false
}

// numbersEqual compares two JSON number literals by value: 1, 1.0 and
// 10e-1 are equal. Exponents too long to compare fall back to the text.
func numbersEqual(a, b string) bool {
	if a == b {
		return true
	}
	an, aok := normNumber(a)
	bn, bok := normNumber(b)
	return aok && bok && an == bn
}

// number is a JSON number in normal form: value = ±0.digits × 10^exp,
// digits without leading or trailing zeros ("" for zero).
type number struct {
	neg    bool
	digits string
	exp    int64
}

func normNumber(s string) (number, bool) {
	var n number
	if strings.HasPrefix(s, "-") {
		n.neg = true
		s = s[1:]
	}
	mant, expPart, hasExp := strings.Cut(strings.ToLower(s), "e")
	var exp int64
	if hasExp {
		if len(expPart) > 15 {
			return n, false
		}
		e, err := strconv.ParseInt(expPart, 10, 64)
		if err != nil {
			return n, false
		}
		exp = e
	}
	intPart, frac, _ := strings.Cut(mant, ".")
	digits := intPart + frac
	exp += int64(len(intPart))
	trimmed := strings.TrimLeft(digits, "0")
	exp -= int64(len(digits) - len(trimmed))
	trimmed = strings.TrimRight(trimmed, "0")
	if trimmed == "" {
		return number{}, true // zero, whatever its sign
	}
	n.digits, n.exp = trimmed, exp
	return n, true
}
