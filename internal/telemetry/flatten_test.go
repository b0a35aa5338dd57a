package telemetry_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/telemetry"
)

var received = time.Date(2024, 6, 10, 6, 13, 20, 123456789, time.UTC) // 1718000000123 ms

const receivedMS = 1718000000123

func n(key string, v float64) telemetry.Field {
	return telemetry.Field{Key: key, Value: telemetry.Number(v)}
}
func b(key string, v bool) telemetry.Field {
	return telemetry.Field{Key: key, Value: telemetry.Bool(v)}
}
func s(key, v string) telemetry.Field { return telemetry.Field{Key: key, Value: telemetry.String(v)} }

func TestFlatten(t *testing.T) {
	for _, tc := range []struct {
		name    string
		payload string
		ts      int64
		fields  []telemetry.Field
	}{
		{"flat", `{"temp":21.5,"hum":40,"ok":true,"state":"on"}`, receivedMS,
			[]telemetry.Field{n("temp", 21.5), n("hum", 40), b("ok", true), s("state", "on")}},
		{"nested", `{"env":{"temp":21,"inner":{"deep":false}},"x":1}`, receivedMS,
			[]telemetry.Field{n("env.temp", 21), b("env.inner.deep", false), n("x", 1)}},
		{"arrays", `{"a":[5,6,{"b":7},[8,"nine"]]}`, receivedMS,
			[]telemetry.Field{n("a.0", 5), n("a.1", 6), n("a.2.b", 7), n("a.3.0", 8), s("a.3.1", "nine")}},
		{"null skipped", `{"a":null,"b":1,"c":[null,2],"d":{"e":null}}`, receivedMS,
			[]telemetry.Field{n("b", 1), n("c.1", 2)}},
		{"empty object and array", `{"a":{},"b":[],"c":1}`, receivedMS, []telemetry.Field{n("c", 1)}},
		{"empty payload object", ` { } `, receivedMS, nil},
		{"ts as number", `{"ts":1700000000000,"v":1}`, 1700000000000, []telemetry.Field{n("v", 1)}},
		{"ts with a fraction", `{"v":1,"ts":1700000000000.9}`, 1700000000000, []telemetry.Field{n("v", 1)}},
		{"ts as exponent", `{"ts":1.7e12}`, 1700000000000, nil},
		{"ts 0", `{"ts":0,"v":1}`, 0, []telemetry.Field{n("v", 1)}},
		{"ts as RFC 3339", `{"ts":"2024-06-10T06:13:20.5Z","v":1}`, 1718000000500, []telemetry.Field{n("v", 1)}},
		{"ts as RFC 3339 with offset", `{"ts":"2024-06-10T08:13:20+02:00"}`, 1718000000000, nil},
		{"ts null", `{"ts":null,"v":1}`, receivedMS, []telemetry.Field{n("v", 1)}},
		{"nested ts is a field", `{"gps":{"ts":5}}`, receivedMS, []telemetry.Field{n("gps.ts", 5)}},
		{"duplicate key: last value, first place", `{"a":1,"b":2,"a":3}`, receivedMS, []telemetry.Field{n("a", 3), n("b", 2)}},
		{"dotted name meets nesting", `{"a":{"b":1},"a.b":2}`, receivedMS, []telemetry.Field{n("a.b", 2)}},
		{"objects merge", `{"a":{"x":1},"a":{"y":2}}`, receivedMS, []telemetry.Field{n("a.x", 1), n("a.y", 2)}},
		{"escapes", `{"k\u00e9y":"line\nbreak \"q\" \ud83c\udf21","tab\t":1}`, receivedMS,
			[]telemetry.Field{s("kéy", "line\nbreak \"q\" 🌡"), n("tab\t", 1)}},
		{"utf-8", `{"Grüße":"🌡"}`, receivedMS, []telemetry.Field{s("Grüße", "🌡")}},
		{"invalid utf-8 replaced", "{\"a\":\"x\xffy\"}", receivedMS, []telemetry.Field{s("a", "x\uFFFDy")}},
		{"numbers", `{"a":-0.5,"b":1e3,"c":-2E-2,"d":123456789012345678901234567890,"e":5e-324,"f":1e-400}`, receivedMS,
			[]telemetry.Field{n("a", -0.5), n("b", 1000), n("c", -0.02), n("d", 1.2345678901234568e29), n("e", 5e-324), n("f", 0)}},
		{"whitespace", " \n\t{ \"a\" : [ 1 , 2 ] , \"b\" : { } }\r\n", receivedMS, []telemetry.Field{n("a.0", 1), n("a.1", 2)}},
		{"64 array elements", `{"a":[` + strings.Repeat("1,", 63) + `1]}`, receivedMS, repeatFields("a.", 64)},
		{"256 fields", object(256), receivedMS, repeatFields("k", 256)},
		{"256-byte key", `{"` + strings.Repeat("k", 256) + `":1}`, receivedMS, []telemetry.Field{n(strings.Repeat("k", 256), 1)}},
		{"4 KiB string", `{"s":"` + strings.Repeat("x", 4096) + `"}`, receivedMS, []telemetry.Field{s("s", strings.Repeat("x", 4096))}},
		{"4 KiB string with escapes", `{"s":"` + strings.Repeat(`\n`, 4096) + `"}`, receivedMS, []telemetry.Field{s("s", strings.Repeat("\n", 4096))}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts, fields, err := telemetry.Flatten([]byte(tc.payload), received)
			if err != nil {
				t.Fatalf("Flatten(%.80q) error: %v", tc.payload, err)
			}
			if ts != tc.ts {
				t.Errorf("Flatten(%.80q) ts = %d; want %d", tc.payload, ts, tc.ts)
			}
			if !slices.Equal(fields, tc.fields) {
				t.Errorf("Flatten(%.80q) fields = %v; want %v", tc.payload, fields, tc.fields)
			}
		})
	}
}

// object returns a payload with the fields k0 .. k<n-1>.
func object(n int) string {
	var sb strings.Builder
	sb.WriteString("{")
	for i := range n {
		if i > 0 {
			sb.WriteString(",")
		}
		fmt.Fprintf(&sb, `"k%d":1`, i)
	}
	sb.WriteString("}")
	return sb.String()
}

func repeatFields(prefix string, count int) []telemetry.Field {
	var fs []telemetry.Field
	for i := range count {
		fs = append(fs, n(prefix+strconv.Itoa(i), 1))
	}
	return fs
}

func TestFlattenErrors(t *testing.T) {
	for _, tc := range []struct {
		name    string
		payload string
		kind    core.Kind
		field   string
		msg     string // part of the message
	}{
		{"empty", ``, core.KindInvalid, "payload", "not valid JSON"},
		{"invalid JSON", `{"a":1,}`, core.KindInvalid, "payload", "not valid JSON"},
		{"truncated", `{"a":`, core.KindInvalid, "payload", "not valid JSON"},
		{"two values", `{} {}`, core.KindInvalid, "payload", "not valid JSON"},
		{"array", `[1,2]`, core.KindInvalid, "payload", "must be a JSON object, not an array"},
		{"number", `42`, core.KindInvalid, "payload", "not a number"},
		{"string", `"x"`, core.KindInvalid, "payload", "not a string"},
		{"null", `null`, core.KindInvalid, "payload", "not null"},
		{"empty name", `{"":1}`, core.KindInvalid, "payload", "empty member name"},
		{"empty nested name", `{"a":{"b":{"":1}}}`, core.KindInvalid, "a.b", "empty member name"},
		{"empty name with null", `{"":null}`, core.KindInvalid, "payload", "empty member name"},
		{"name starts with a dot", `{".0":""}`, core.KindInvalid, "payload", "must not start or end with a dot"},
		{"name ends with a dot", `{"a":{"b.":1}}`, core.KindInvalid, "a", "must not start or end with a dot"},
		{"name with two dots", `{"a..b":1}`, core.KindInvalid, "payload", "two dots in a row"},
		{"number out of range", `{"big":1e400}`, core.KindInvalid, "big", "beyond the range"},
		{"negative out of range", `{"a":[-1e400]}`, core.KindInvalid, "a.0", "beyond the range"},
		{"ts bool", `{"ts":true}`, core.KindInvalid, "ts", "not a boolean"},
		{"ts object", `{"ts":{"a":1}}`, core.KindInvalid, "ts", "not an object"},
		{"ts array", `{"ts":[1]}`, core.KindInvalid, "ts", "not an array"},
		{"ts negative", `{"ts":-1}`, core.KindInvalid, "ts", "outside"},
		{"ts after 9999", `{"ts":253402300800000}`, core.KindInvalid, "ts", "outside"},
		{"ts huge", `{"ts":1e400}`, core.KindInvalid, "ts", "outside"},
		{"ts bad string", `{"ts":"yesterday"}`, core.KindInvalid, "ts", "RFC 3339"},
		{"ts date only", `{"ts":"2024-06-10"}`, core.KindInvalid, "ts", "RFC 3339"},
		{"ts before 1970", `{"ts":"1969-12-31T23:59:59Z"}`, core.KindInvalid, "ts", "outside"},
		{"65 array elements", `{"a":[` + strings.Repeat("1,", 64) + `1]}`, core.KindTooLarge, "a", "more than 64 elements"},
		{"65 nulls", `{"a":[` + strings.Repeat("null,", 64) + `null]}`, core.KindTooLarge, "a", "more than 64 elements"},
		{"257 fields", object(257), core.KindTooLarge, "k256", "more than 256 values"},
		{"257 fields in arrays", `{"a":[` + strings.Repeat("1,", 63) + `1],"b":[` + strings.Repeat("1,", 63) + `1],"c":[` + strings.Repeat("1,", 63) + `1],"d":[` + strings.Repeat("1,", 63) + `1],"e":1}`,
			core.KindTooLarge, "e", "more than 256 values"},
		{"257-byte key", `{"` + strings.Repeat("k", 257) + `":1}`, core.KindTooLarge, strings.Repeat("k", 257), "at most 256"},
		{"257-byte dotted key", `{"` + strings.Repeat("k", 200) + `":{"` + strings.Repeat("j", 56) + `":1}}`,
			core.KindTooLarge, strings.Repeat("k", 200) + "." + strings.Repeat("j", 56), "at most 256"},
		{"deep nesting", `{"a":` + strings.Repeat("[", 200) + strings.Repeat("]", 200) + `}`, core.KindTooLarge, "a" + strings.Repeat(".0", 128), "at most 256"},
		{"long string", `{"s":"` + strings.Repeat("x", 4097) + `"}`, core.KindTooLarge, "s", "string of 4097 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts, fields, err := telemetry.Flatten([]byte(tc.payload), received)
			if err == nil {
				t.Fatalf("Flatten(%.80q) = %d, %v; want an error", tc.payload, ts, fields)
			}
			if k := core.KindOf(err); k != tc.kind {
				t.Errorf("Flatten(%.80q) error %q of kind %s; want %s", tc.payload, err, k, tc.kind)
			}
			if f := core.FieldOf(err); f != tc.field {
				t.Errorf("Flatten(%.80q) error %q about %.80q; want %.80q", tc.payload, err, f, tc.field)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("Flatten(%.80q) error %q; want it to contain %q", tc.payload, err, tc.msg)
			}
		})
	}
}

func TestFlattenReceivedOutOfRange(t *testing.T) {
	_, _, err := telemetry.Flatten([]byte(`{"a":1}`), time.Time{})
	if core.FieldOf(err) != "ts" {
		t.Errorf("Flatten with a zero receive time: error %v; want one about ts", err)
	}
	ts, _, err := telemetry.Flatten([]byte(`{"a":1,"ts":5}`), time.Time{})
	if err != nil || ts != 5 {
		t.Errorf("Flatten with a ts and a zero receive time = %d, %v; want 5, nil", ts, err)
	}
}

// reference is Flatten written plainly on encoding/json's tokenizer: the
// oracle of the fuzz test.
func reference(payload []byte, recv time.Time) (int64, []telemetry.Field, error) {
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return 0, nil, err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return 0, nil, errors.New("not an object")
	}
	r := &ref{dec: dec}
	if err := r.object("", true); err != nil {
		return 0, nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return 0, nil, errors.New("trailing data")
	}
	ts := recv.UnixMilli()
	if r.hasTS {
		ts = r.ts
	}
	if ts < 0 || ts > telemetry.MaxTS {
		return 0, nil, errors.New("ts out of range")
	}
	// last value, first place
	var out []telemetry.Field
	idx := map[string]int{}
	for _, f := range r.fields {
		if i, ok := idx[f.Key]; ok {
			out[i].Value = f.Value
			continue
		}
		idx[f.Key] = len(out)
		out = append(out, f)
	}
	return ts, out, nil
}

type ref struct {
	dec    *json.Decoder
	fields []telemetry.Field
	hasTS  bool
	ts     int64
}

func (r *ref) object(prefix string, top bool) error {
	for r.dec.More() {
		tok, err := r.dec.Token()
		if err != nil {
			return err
		}
		name := tok.(string)
		if name == "" || strings.HasPrefix(name, ".") || strings.HasSuffix(name, ".") || strings.Contains(name, "..") {
			return errors.New("bad name")
		}
		key := name
		if prefix != "" {
			key = prefix + "." + name
		}
		if len(key) > telemetry.MaxKeyLen {
			return errors.New("key too long")
		}
		if top && name == "ts" {
			if err := r.timestamp(); err != nil {
				return err
			}
			continue
		}
		if err := r.value(key); err != nil {
			return err
		}
	}
	_, err := r.dec.Token() // '}'
	return err
}

func (r *ref) timestamp() error {
	tok, err := r.dec.Token()
	if err != nil {
		return err
	}
	switch v := tok.(type) {
	case nil:
		return nil
	case json.Number:
		f, err := strconv.ParseFloat(string(v), 64)
		if (err != nil && math.IsInf(f, 0)) || f < 0 || f >= float64(telemetry.MaxTS+1) {
			return errors.New("ts out of range")
		}
		r.hasTS, r.ts = true, int64(f)
		return nil
	case string:
		tm, err := time.Parse(time.RFC3339Nano, v)
		if err != nil || tm.UnixMilli() < 0 || tm.UnixMilli() > telemetry.MaxTS {
			return errors.New("bad ts")
		}
		r.hasTS, r.ts = true, tm.UnixMilli()
		return nil
	}
	return errors.New("bad ts type")
}

func (r *ref) value(key string) error {
	tok, err := r.dec.Token()
	if err != nil {
		return err
	}
	var v telemetry.Value
	switch tv := tok.(type) {
	case json.Delim:
		if tv == '{' {
			return r.object(key, false)
		}
		for i := 0; r.dec.More(); i++ {
			if i == telemetry.MaxArrayLen {
				return errors.New("array too long")
			}
			k := key + "." + strconv.Itoa(i)
			if len(k) > telemetry.MaxKeyLen {
				return errors.New("key too long")
			}
			if err := r.value(k); err != nil {
				return err
			}
		}
		_, err := r.dec.Token() // ']'
		return err
	case nil:
		return nil
	case bool:
		v = telemetry.Bool(tv)
	case string:
		if len(tv) > telemetry.MaxStringLen {
			return errors.New("string too long")
		}
		v = telemetry.String(tv)
	case json.Number:
		f, err := strconv.ParseFloat(string(tv), 64)
		if err != nil && (math.IsInf(f, 0) || math.IsNaN(f)) {
			return errors.New("number out of range")
		}
		v = telemetry.Number(f)
	}
	if len(r.fields) == telemetry.MaxFields {
		return errors.New("too many fields")
	}
	r.fields = append(r.fields, telemetry.Field{Key: key, Value: v})
	return nil
}

func FuzzFlatten(f *testing.F) {
	for _, seed := range []string{
		`{"temp":21.5,"env":{"hum":40,"door":"open"},"ok":true,"acc":[0.1,0.2],"note":null,"ts":1718000000000}`,
		`{"ts":"2024-06-10T06:13:20.5Z","a":{"b":[1,[2,{"c":"d"}]]}}`,
		`{"a":1,"a":{"b":2},"a.b":3}`,
		`{"k\u00e9y":"\ud83c\udf21\n","x":-1.5e-7}`,
		`[1]`, `{"":1}`, `{"a":1e999}`, `not json`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		ts, fields, err := telemetry.Flatten(payload, received)
		wantTS, wantFields, wantErr := reference(payload, received)
		if (err == nil) != (wantErr == nil) {
			t.Fatalf("Flatten(%q) error = %v; the reference's = %v", payload, err, wantErr)
		}
		if err != nil {
			var ce *core.Error
			if !errors.As(err, &ce) || (ce.Kind != core.KindInvalid && ce.Kind != core.KindTooLarge) {
				t.Fatalf("Flatten(%q) error %v; want a *core.Error of kind invalid or too_large", payload, err)
			}
			return
		}
		if ts != wantTS || !slices.Equal(fields, wantFields) {
			t.Fatalf("Flatten(%q) = %d, %v; the reference gives %d, %v", payload, ts, fields, wantTS, wantFields)
		}
		if len(fields) > telemetry.MaxFields {
			t.Fatalf("Flatten(%q) gave %d fields; want at most %d", payload, len(fields), telemetry.MaxFields)
		}
		seen := map[string]bool{}
		var points []telemetry.Point
		for _, fd := range fields {
			if fd.Key == "" || len(fd.Key) > telemetry.MaxKeyLen || slices.Contains(strings.Split(fd.Key, "."), "") {
				t.Fatalf("Flatten(%q) gave the key %q", payload, fd.Key)
			}
			if seen[fd.Key] {
				t.Fatalf("Flatten(%q) gave the key %q twice", payload, fd.Key)
			}
			seen[fd.Key] = true
			js, err := json.Marshal(fd.Value)
			if err != nil || !json.Valid(js) {
				t.Fatalf("Flatten(%q): value of %q marshals to %q, %v; want valid JSON", payload, fd.Key, js, err)
			}
			var back telemetry.Value
			if err := json.Unmarshal(js, &back); err != nil || back != fd.Value {
				t.Fatalf("Flatten(%q): value %v of %q reads back from %s as %v, %v", payload, fd.Value, fd.Key, js, back, err)
			}
			if fd.Value.Kind() == telemetry.KindString && !utf8.ValidString(fd.Value.Text()) {
				t.Fatalf("Flatten(%q): value of %q is not UTF-8", payload, fd.Key)
			}
			points = append(points, telemetry.Point{Thing: "dev", Key: fd.Key, TS: ts, Value: fd.Value})
		}
		if err := telemetry.ValidatePoints(points); err != nil {
			t.Fatalf("Flatten(%q) gave points a store refuses: %v", payload, err)
		}
	})
}

func BenchmarkFlatten(b *testing.B) {
	payload := []byte(`{"ts":1718000000000,"temp":21.5,"hum":40.25,"volt":3.71}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := telemetry.Flatten(payload, received); err != nil {
			b.Fatal(err)
		}
	}
}
