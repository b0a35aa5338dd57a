package rules

import (
	"encoding/json"
	"strings"
	"testing"
)

// decodeBoth decodes payload with the rules decoder and encoding/json and
// reports a difference, or "".
func decodeBoth(payload []byte) string {
	var d decoder
	var c container
	v, ok := d.decode(payload, &c)
	var std any
	stdErr := json.Unmarshal(payload, &std)
	switch {
	case ok != (stdErr == nil):
		return "valid = " + boolText(ok) + "; encoding/json says " + errText(stdErr)
	case !ok:
		if v.kind != KindUndefined {
			return "invalid payload decoded to " + v.String()
		}
		return ""
	case !valueEqualsAny(v, std):
		b, _ := json.Marshal(std)
		return "decoded " + v.String() + "; encoding/json decoded " + string(b)
	}
	// The value encodes to JSON that decodes to the same.
	out := v.AppendJSON(nil)
	var again any
	if err := json.Unmarshal(out, &again); err != nil || !valueEqualsAny(v, again) {
		return "AppendJSON = " + string(out) + ", which decodes differently: " + errText(err)
	}
	if !json.Valid(out) {
		return "AppendJSON = " + string(out) + ", not valid JSON"
	}
	return ""
}

func boolText(b bool) string {
	if b {
		return "true"
	}
	return "false"
}

func errText(err error) string {
	if err == nil {
		return "valid"
	}
	return err.Error()
}

// valueEqualsAny compares a Value with what encoding/json decodes into an
// any (numbers as float64).
func valueEqualsAny(v Value, x any) bool {
	switch x := x.(type) {
	case nil:
		return v.kind == KindNull
	case bool:
		return v.kind == KindBool && v.Bool() == x
	case float64:
		return v.isNumber() && v.Float() == x
	case string:
		return v.kind == KindString && v.str == x
	case []any:
		if v.kind != KindArray || v.Len() != len(x) {
			return false
		}
		elems := v.Elems()
		for i, e := range x {
			if !valueEqualsAny(elems[i], e) {
				return false
			}
			if i < 100 && v.Index(i) != elems[i] { // Index walks the tape: quadratic
				return false
			}
		}
		return true
	case map[string]any:
		if v.kind != KindObject || v.Len() != len(x) || len(v.Object()) != len(x) {
			return false
		}
		for k, e := range x {
			if !valueEqualsAny(v.Get(k), e) {
				return false
			}
		}
		return true
	}
	return false
}

func TestDecodeLikeEncodingJSON(t *testing.T) {
	for _, p := range []string{
		// Valid.
		`{}`, `[]`, `0`, `-0`, `-0.0`, `1`, `-1`, `1.5`, `1e3`, `1E+3`, `1e-3`, `0.1`, `123456789012345678`,
		`1234567890123456789`, `12345678901234567890`, `9223372036854775807`, `-9223372036854775808`,
		`9223372036854775808`, `0.30000000000000004`, `1.7976931348623157e308`, `5e-324`, `1e-400`,
		`123456789012345.6`, `1234567890123456.7`, `0.000000000000000000000000001`, `1e22`, `1e23`, `4.35e-22`,
		`true`, `false`, `null`, `""`, `"a"`, ` {"a" : [1, 2, {"b": null}] } `, "\t\n\r [ ]",
		`{"a": 1, "a": 2}`, `{"a": 1, "b": {"c": 1, "c": [2]}, "a": {}}`,
		`"\u00e9\n\t\"\\\/\b\f\r"`, `"\ud83d\ude00"`, `"\ud83d"`, `"\ud83dx"`, `"\ude00\ud83d"`, `"\ud83d\u0041"`,
		`"\uD83D\uDE00"`, "\"\xff\"", "\"a\xc3\"", "\"\xed\xa0\x80\"", `"é"`, `[[[[[]]]]]`, `[{}, {}, []]`,
		`{"` + strings.Repeat("k", 100) + `": "` + strings.Repeat("v", 1000) + `"}`,
		// Invalid.
		``, ` `, `{`, `}`, `[`, `[1,]`, `[,1]`, `{"a"}`, `{"a":}`, `{"a":1,}`, `{a:1}`, `{'a':1}`, `{"a":1 "b":2}`,
		`01`, `-`, `-a`, `1.`, `.5`, `1e`, `1e+`, `+1`, `0x10`, `NaN`, `Infinity`, `1e400`, `-1e400`, `tru`, `nul`,
		`truex`, `"abc`, `"\x"`, `"\u12"`, `"\u12g4"`, "\"a\nb\"", "\"\x00\"", `[1] [2]`, `{} x`, `1 2`,
		"\xef\xbb\xbf{}", `[1,2`, `{"a":[}`, `"\`,
	} {
		if diff := decodeBoth([]byte(p)); diff != "" {
			t.Errorf("decode(%q): %s", p, diff)
		}
	}
}

func TestDecodeDepth(t *testing.T) {
	for _, n := range []int{maxJSONDepth, maxJSONDepth + 1} {
		p := []byte(strings.Repeat("[", n) + strings.Repeat("]", n))
		if diff := decodeBoth(p); diff != "" {
			t.Errorf("%d nested arrays: %s", n, diff)
		}
		p = []byte(strings.Repeat(`{"a":`, n) + "1" + strings.Repeat("}", n))
		if diff := decodeBoth(p); diff != "" {
			t.Errorf("%d nested objects: %s", n, diff)
		}
	}
}

func TestDecodeLarge(t *testing.T) {
	var b strings.Builder
	b.WriteString("{")
	for i := range 2000 {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(`"k` + strings.Repeat("x", i%7) + string(rune('a'+i%26)) + `": [` + strings.Repeat("1,", i%5) + `{"n": -12.5e-1}]`)
	}
	b.WriteString("}")
	if diff := decodeBoth([]byte(b.String())); diff != "" {
		t.Error(diff)
	}
	big := `[` + strings.Repeat(`1,`, 100000) + `1]`
	if diff := decodeBoth([]byte(big)); diff != "" {
		t.Error(diff)
	}
}

func FuzzDecode(f *testing.F) {
	for _, s := range []string{`{"a": [1, 2.5, "x", true, null, {"b": -1e3}]}`, `"\ud83d\ude00"`, `{"a":1,"a":2}`, "\"\xff\""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		if diff := decodeBoth(payload); diff != "" {
			t.Errorf("decode(%q): %s", payload, diff)
		}
	})
}
