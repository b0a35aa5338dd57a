package telemetry_test

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/telemetry"
)

func TestValueJSON(t *testing.T) {
	for _, tc := range []struct {
		v    telemetry.Value
		want string
	}{
		{telemetry.Number(21.5), `21.5`},
		{telemetry.Number(40), `40`},
		{telemetry.Number(-0.25), `-0.25`},
		{telemetry.Number(1e20), `100000000000000000000`},
		{telemetry.Number(1e21), `1e+21`},
		{telemetry.Number(1e-6), `0.000001`},
		{telemetry.Number(1e-7), `1e-7`},
		{telemetry.Number(-1.5e-300), `-1.5e-300`},
		{telemetry.Number(5e-324), `5e-324`},
		{telemetry.Bool(true), `true`},
		{telemetry.Bool(false), `false`},
		{telemetry.String("on"), `"on"`},
		{telemetry.String("a\"b\\c\n<>&"), `"a\"b\\c\n\u003c\u003e\u0026"`},
		{telemetry.String(""), `""`},
	} {
		got, err := json.Marshal(tc.v)
		if err != nil || string(got) != tc.want {
			t.Errorf("json.Marshal(%#v) = %s, %v; want %s", tc.v, got, err, tc.want)
			continue
		}
		if s := tc.v.String(); s != tc.want {
			t.Errorf("%#v.String() = %s; want %s", tc.v, s, tc.want)
		}
		var back telemetry.Value
		if err := json.Unmarshal(got, &back); err != nil || back != tc.v {
			t.Errorf("json.Unmarshal(%s) = %v, %v; want %v", got, back, err, tc.v)
		}
	}
	// Plain values inside a point.
	p := telemetry.Point{Thing: "d", Key: "k", TS: 5, Value: telemetry.Number(1.5)}
	got, _ := json.Marshal(p)
	if want := `{"thing":"d","key":"k","ts":5,"value":1.5}`; string(got) != want {
		t.Errorf("json.Marshal(%v) = %s; want %s", p, got, want)
	}
	for _, bad := range []telemetry.Value{telemetry.Number(math.NaN()), telemetry.Number(math.Inf(1))} {
		if b, err := json.Marshal(bad); err == nil {
			t.Errorf("json.Marshal(%#v) = %s; want an error", bad, b)
		}
	}
	if b, err := json.Marshal(telemetry.Value{}); err != nil || string(b) != "null" {
		t.Errorf("json.Marshal(Value{}) = %s, %v; want null", b, err)
	}
	for _, bad := range []string{`{}`, `[1]`, `nope`} {
		var v telemetry.Value
		if err := json.Unmarshal([]byte(bad), &v); err == nil {
			t.Errorf("json.Unmarshal(%s) into a Value succeeded; want an error", bad)
		}
	}
}

func TestValueAccessors(t *testing.T) {
	for _, tc := range []struct {
		v     telemetry.Value
		kind  telemetry.Kind
		float float64
		bool  bool
		text  string
	}{
		{telemetry.Number(2.5), telemetry.KindNumber, 2.5, false, ""},
		{telemetry.Bool(true), telemetry.KindBool, 0, true, ""},
		{telemetry.Bool(false), telemetry.KindBool, 0, false, ""},
		{telemetry.String("x"), telemetry.KindString, 0, false, "x"},
		{telemetry.Value{}, 0, 0, false, ""},
	} {
		if tc.v.Kind() != tc.kind || tc.v.Float() != tc.float || tc.v.Bool() != tc.bool || tc.v.Text() != tc.text {
			t.Errorf("%v: Kind, Float, Bool, Text = %v, %v, %v, %q; want %v, %v, %v, %q", tc.v,
				tc.v.Kind(), tc.v.Float(), tc.v.Bool(), tc.v.Text(), tc.kind, tc.float, tc.bool, tc.text)
		}
	}
	if got := telemetry.KindString.String(); got != "string" {
		t.Errorf("KindString.String() = %q; want string", got)
	}
}

func TestCursor(t *testing.T) {
	for _, c := range []telemetry.Cursor{
		{Thing: "dev-1", Key: "env.temp", TS: 1718000000000, Tie: 0},
		{Thing: "d", Key: strings.Repeat("k", 256), TS: 0, Tie: 1 << 40},
		{Thing: "d", Key: "ü", TS: telemetry.MaxTS, Tie: -1},
	} {
		s := c.Encode()
		got, err := telemetry.DecodeCursor(s)
		if err != nil || got != c {
			t.Errorf("DecodeCursor(%v.Encode()) = %v, %v; want %v", c, got, err, c)
		}
		if strings.ContainsAny(s, "+/=&?") {
			t.Errorf("%v.Encode() = %q; want it URL-safe", c, s)
		}
	}
	for _, bad := range []string{"", "!", "AQ", telemetry.Cursor{Thing: "d", Key: "k"}.Encode() + "AA", "AgFkAWsAAA"} {
		if _, err := telemetry.DecodeCursor(bad); core.KindOf(err) != core.KindInvalid || core.FieldOf(err) != "cursor" {
			t.Errorf("DecodeCursor(%q) error = %v; want an invalid cursor", bad, err)
		}
	}
}

func TestBuckets(t *testing.T) {
	for _, tc := range []struct {
		from, to, iv, want int64
	}{
		{0, 10000, 1000, 10},
		{0, 10001, 1000, 11},
		{500, 10000, 1000, 10},
		{500, 10001, 1000, 11},
		{999, 1000, 1000, 1},
		{1000, 1000, 1000, 0},
		{-1500, 500, 1000, 3}, // [-2000,-1000) [-1000,0) [0,1000)
		{math.MinInt64, math.MaxInt64, 1000, math.MaxInt64 / 1000 * 2},
	} {
		got := telemetry.BucketCount(tc.from, tc.to, tc.iv)
		// The last case only needs to be far above MaxBuckets.
		if got != tc.want && !(tc.from == math.MinInt64 && got > telemetry.MaxBuckets) {
			t.Errorf("BucketCount(%d, %d, %d) = %d; want %d", tc.from, tc.to, tc.iv, got, tc.want)
		}
	}
	for _, tc := range []struct{ ts, iv, want int64 }{{0, 1000, 0}, {999, 1000, 0}, {1000, 1000, 1000}, {-1, 1000, -1000}, {1718000000123, 3600000, 1717999200000}} {
		if got := telemetry.BucketStart(tc.ts, tc.iv); got != tc.want {
			t.Errorf("BucketStart(%d, %d) = %d; want %d", tc.ts, tc.iv, got, tc.want)
		}
	}
	if err := (telemetry.AggQuery{Things: []string{"d"}, From: 0, To: 1, Interval: time.Second, Func: telemetry.AggLast}).Validate(); err != nil {
		t.Errorf("Validate of a good query: %v", err)
	}
}
