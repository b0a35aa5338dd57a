// Package telemetrytest is the conformance suite of telemetry.Store: every
// backend runs it from its own tests and must pass it unchanged.
//
//	func TestConformance(t *testing.T) {
//		telemetrytest.Run(t, func(t *testing.T) telemetry.Store {
//			s := openEmptyStore(t)
//			t.Cleanup(func() { s.Close() })
//			return s
//		})
//	}
//
// The suite uses only the telemetry.Store interface. It checks round trips
// of every kind of value, the order of points, cursor pagination, Latest,
// every aggregate against hand-computed numbers, exactly-once appends,
// retention, Keys, the validation of queries and concurrent use.
// Durability across a reopen is backend-specific and is not tested here.
package telemetrytest

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/telemetry"
)

// Run runs the conformance suite. open must return a new, empty store for
// each call and arrange for it to be closed when t ends (t.Cleanup).
func Run(t *testing.T, open func(t *testing.T) telemetry.Store) {
	t.Run("RoundTrip", func(t *testing.T) { testRoundTrip(t, open) })
	t.Run("Order", func(t *testing.T) { testOrder(t, open) })
	t.Run("RangeSelection", func(t *testing.T) { testRangeSelection(t, open) })
	t.Run("Pagination", func(t *testing.T) { testPagination(t, open) })
	t.Run("Latest", func(t *testing.T) { testLatest(t, open) })
	t.Run("Aggregate", func(t *testing.T) { testAggregate(t, open) })
	t.Run("ExactlyOnce", func(t *testing.T) { testExactlyOnce(t, open) })
	t.Run("SpansOnce", func(t *testing.T) { testSpansOnce(t, open) })
	t.Run("DeleteBefore", func(t *testing.T) { testDeleteBefore(t, open) })
	t.Run("Keys", func(t *testing.T) { testKeys(t, open) })
	t.Run("InvalidPoints", func(t *testing.T) { testInvalidPoints(t, open) })
	t.Run("QueryValidation", func(t *testing.T) { testQueryValidation(t, open) })
	t.Run("Concurrency", func(t *testing.T) { testConcurrency(t, open) })
}

// all is a time range that holds every valid point.
const allFrom, allTo = 0, telemetry.MaxTS + 1

func pt(thing, key string, ts int64, v telemetry.Value) telemetry.Point {
	return telemetry.Point{Thing: thing, Key: key, TS: ts, Value: v}
}

func num(f float64) telemetry.Value { return telemetry.Number(f) }

func must(t *testing.T, op string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", op, err)
	}
}

func appendPoints(t *testing.T, s telemetry.Store, points []telemetry.Point, seq uint64) {
	t.Helper()
	must(t, fmt.Sprintf("Append(%d points, seq %d)", len(points), seq), s.Append(t.Context(), points, seq))
}

// rangeAll returns every point of the things in one page.
func rangeAll(t *testing.T, s telemetry.Store, things ...string) []telemetry.Point {
	t.Helper()
	got, next, err := s.Range(t.Context(), telemetry.RangeQuery{Things: things, From: allFrom, To: allTo, Limit: telemetry.MaxLimit})
	must(t, fmt.Sprintf("Range(%q)", things), err)
	if next != "" {
		t.Fatalf("Range(%q): got a next cursor; want one page", things)
	}
	return got
}

func eqPoints(t *testing.T, op string, got, want []telemetry.Point) {
	t.Helper()
	if got == nil {
		t.Errorf("%s = nil; want a non-nil slice", op)
	}
	if !slices.Equal(got, want) {
		t.Errorf("%s = %s; want %s", op, fmtPoints(got), fmtPoints(want))
	}
}

func fmtPoints(ps []telemetry.Point) string {
	var b strings.Builder
	b.WriteString("[")
	for i, p := range ps {
		if i > 0 {
			b.WriteString(" ")
		}
		v := p.Value.String()
		if len(v) > 40 {
			v = v[:40] + "…"
		}
		fmt.Fprintf(&b, "%s/%s@%d=%s", p.Thing, p.Key, p.TS, v)
	}
	b.WriteString("]")
	return b.String()
}

func testRoundTrip(t *testing.T, open func(t *testing.T) telemetry.Store) {
	s := open(t)
	values := []telemetry.Value{
		num(21.5), num(0), num(-17), num(21), num(1e300), num(-2.5e-300), num(5e-324), num(math.MaxFloat64),
		num(1 << 53), num(-(1 << 60)), num(0.1), num(123456789.123456789), num(math.Copysign(0, -1)), // -0 may read back as 0 (SQLite)
		telemetry.Bool(true), telemetry.Bool(false),
		telemetry.String(""), telemetry.String("on"), telemetry.String("Grüße \"quoted\" \\ back\nslash 🌡 <>&\x00nul"),
		telemetry.String(strings.Repeat("x", telemetry.MaxStringLen)),
	}
	var in []telemetry.Point
	for i, v := range values {
		in = append(in, pt("dev-1", fmt.Sprintf("k%02d", i), 1718000000000+int64(i), v))
	}
	in = append(in, pt("dev-1", "edge.min", 0, num(1)), pt("dev-1", "edge.max", telemetry.MaxTS, num(2)))
	appendPoints(t, s, in, 1)
	got := rangeAll(t, s, "dev-1")
	want := slices.Clone(in)
	slices.SortFunc(want, func(a, b telemetry.Point) int { return strings.Compare(a.Key, b.Key) })
	eqPoints(t, "Range", got, want)
	for i := range got {
		if i < len(want) && got[i].Value.Kind() != want[i].Value.Kind() {
			t.Errorf("Range[%d].Value.Kind() = %v; want %v", i, got[i].Value.Kind(), want[i].Value.Kind())
		}
	}
}

func testOrder(t *testing.T, open func(t *testing.T) telemetry.Store) {
	s := open(t)
	// Appended out of order, with several points per millisecond: within a
	// series points come by time, and points of one millisecond in the
	// order they were appended, whether they arrived in time order or late.
	appendPoints(t, s, []telemetry.Point{
		pt("b", "x", 30, num(1)),
		pt("a", "y", 5, num(2)),
		pt("b", "x", 10, num(3)),
		pt("a", "x", 7, num(4)),
		pt("b", "x", 20, num(5)),
		pt("b", "x", 50, num(6)),
		pt("b", "x", 50, num(7)),
	}, 1)
	appendPoints(t, s, []telemetry.Point{
		pt("b", "x", 20, num(8)),  // late, same ms as an earlier late point
		pt("b", "x", 60, num(9)),  // in order
		pt("b", "x", 10, num(10)), // late
		pt("b", "x", 60, num(11)), // same ms as the last point
		pt("b", "x", 50, num(12)), // late, same ms as in-order points
		pt("a", "x", 7, num(13)),
	}, 2)
	appendPoints(t, s, []telemetry.Point{pt("b", "x", 60, num(14)), pt("b", "w", 1, num(15))}, 3)
	want := []telemetry.Point{
		pt("a", "x", 7, num(4)), pt("a", "x", 7, num(13)),
		pt("a", "y", 5, num(2)),
		pt("b", "w", 1, num(15)),
		pt("b", "x", 10, num(3)), pt("b", "x", 10, num(10)),
		pt("b", "x", 20, num(5)), pt("b", "x", 20, num(8)),
		pt("b", "x", 30, num(1)),
		pt("b", "x", 50, num(6)), pt("b", "x", 50, num(7)), pt("b", "x", 50, num(12)),
		pt("b", "x", 60, num(9)), pt("b", "x", 60, num(11)), pt("b", "x", 60, num(14)),
	}
	eqPoints(t, `Range(["b" "a"])`, rangeAll(t, s, "b", "a"), want)
	eqPoints(t, `Range(["a" "b"])`, rangeAll(t, s, "a", "b"), want)
}

func testRangeSelection(t *testing.T, open func(t *testing.T) telemetry.Store) {
	s, ctx := open(t), t.Context()
	appendPoints(t, s, []telemetry.Point{
		pt("a", "x", 100, num(1)), pt("a", "x", 200, num(2)), pt("a", "x", 300, num(3)),
		pt("a", "y", 100, telemetry.String("s")), pt("a", "z", 150, telemetry.Bool(true)),
		pt("b", "x", 100, num(4)), pt("c", "x", 100, num(5)),
	}, 1)
	for _, tc := range []struct {
		name     string
		q        telemetry.RangeQuery
		want     []telemetry.Point
		wantNext bool
	}{
		{"one key", telemetry.RangeQuery{Things: []string{"a"}, Keys: []string{"x"}, From: 0, To: 1000, Limit: 100},
			[]telemetry.Point{pt("a", "x", 100, num(1)), pt("a", "x", 200, num(2)), pt("a", "x", 300, num(3))}, false},
		{"from inclusive, to exclusive", telemetry.RangeQuery{Things: []string{"a"}, Keys: []string{"x"}, From: 200, To: 300, Limit: 100},
			[]telemetry.Point{pt("a", "x", 200, num(2))}, false},
		{"two keys, listed backwards", telemetry.RangeQuery{Things: []string{"a"}, Keys: []string{"z", "y"}, From: 0, To: 1000, Limit: 100},
			[]telemetry.Point{pt("a", "y", 100, telemetry.String("s")), pt("a", "z", 150, telemetry.Bool(true))}, false},
		{"key of two things", telemetry.RangeQuery{Things: []string{"c", "a"}, Keys: []string{"x"}, From: 100, To: 101, Limit: 100},
			[]telemetry.Point{pt("a", "x", 100, num(1)), pt("c", "x", 100, num(5))}, false},
		{"things and keys named twice", telemetry.RangeQuery{Things: []string{"b", "b"}, Keys: []string{"x", "x"}, From: 0, To: 1000, Limit: 100},
			[]telemetry.Point{pt("b", "x", 100, num(4))}, false},
		{"unknown thing", telemetry.RangeQuery{Things: []string{"nope"}, From: 0, To: 1000, Limit: 100}, []telemetry.Point{}, false},
		{"unknown key", telemetry.RangeQuery{Things: []string{"a"}, Keys: []string{"nope"}, From: 0, To: 1000, Limit: 100}, []telemetry.Point{}, false},
		{"empty time range", telemetry.RangeQuery{Things: []string{"a"}, From: 301, To: 1000, Limit: 100}, []telemetry.Point{}, false},
		{"negative from", telemetry.RangeQuery{Things: []string{"b"}, From: math.MinInt64, To: math.MaxInt64, Limit: 100},
			[]telemetry.Point{pt("b", "x", 100, num(4))}, false},
		{"limit", telemetry.RangeQuery{Things: []string{"a"}, From: 0, To: 1000, Limit: 2},
			[]telemetry.Point{pt("a", "x", 100, num(1)), pt("a", "x", 200, num(2))}, true},
		{"limit exactly all", telemetry.RangeQuery{Things: []string{"a"}, From: 0, To: 1000, Limit: 5},
			[]telemetry.Point{pt("a", "x", 100, num(1)), pt("a", "x", 200, num(2)), pt("a", "x", 300, num(3)),
				pt("a", "y", 100, telemetry.String("s")), pt("a", "z", 150, telemetry.Bool(true))}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, next, err := s.Range(ctx, tc.q)
			must(t, "Range", err)
			eqPoints(t, fmt.Sprintf("Range(%+v)", tc.q), got, tc.want)
			if (next != "") != tc.wantNext {
				t.Errorf("Range(%+v) next = %q; want a cursor: %v", tc.q, next, tc.wantNext)
			}
		})
	}
}

func testPagination(t *testing.T, open func(t *testing.T) telemetry.Store) {
	s, ctx := open(t), t.Context()
	// 2,500 points in 6 series with runs of equal timestamps, appended in
	// 5 batches, some series late.
	var all []telemetry.Point
	id := 0
	for batch := range 5 {
		var points []telemetry.Point
		for i := range 500 {
			thing := []string{"p1", "p2"}[i%2]
			key := []string{"k1", "k2", "k3"}[i%3]
			ts := int64(1000 + (batch*500+i)/7) // 7 points per ms across series
			if batch == 3 {
				ts -= 300 // late data
			}
			points = append(points, pt(thing, key, ts, num(float64(id))))
			id++
		}
		appendPoints(t, s, points, uint64(batch+1))
		all = append(all, points...)
	}
	want := rangeAll(t, s, "p1", "p2")
	if len(want) != len(all) {
		t.Fatalf("Range(all) returned %d points; want %d", len(want), len(all))
	}
	for _, limit := range []int{1000, 100, 7, 2500, 2499} {
		t.Run(fmt.Sprint(limit), func(t *testing.T) {
			var got []telemetry.Point
			seen := make(map[float64]bool)
			cursor := ""
			for page := 0; ; page++ {
				if page > len(all) {
					t.Fatalf("more than %d pages", len(all))
				}
				ps, next, err := s.Range(ctx, telemetry.RangeQuery{Things: []string{"p2", "p1"}, From: 0, To: 1 << 40, Limit: limit, Cursor: cursor})
				must(t, fmt.Sprintf("Range page %d", page), err)
				if len(ps) > limit {
					t.Fatalf("page %d has %d points; want at most %d", page, len(ps), limit)
				}
				if next != "" && len(ps) != limit {
					t.Errorf("page %d has %d points and a next cursor; want %d (only the last page is short)", page, len(ps), limit)
				}
				for _, p := range ps {
					if seen[p.Value.Float()] {
						t.Errorf("page %d: point %v seen twice", page, p)
					}
					seen[p.Value.Float()] = true
				}
				got = append(got, ps...)
				if next == "" {
					break
				}
				cursor = next
			}
			if len(seen) != len(all) {
				t.Errorf("pages returned %d distinct points; want %d", len(seen), len(all))
			}
			if !slices.Equal(got, want) {
				t.Errorf("pages concatenated differ from one Range of everything")
			}
		})
	}
	// A cursor narrows a query that names other keys too.
	ps, next, err := s.Range(ctx, telemetry.RangeQuery{Things: []string{"p1"}, Keys: []string{"k2"}, From: 0, To: 1 << 40, Limit: 3})
	must(t, "Range k2", err)
	ps2, _, err := s.Range(ctx, telemetry.RangeQuery{Things: []string{"p1"}, Keys: []string{"k2"}, From: 0, To: 1 << 40, Limit: 3, Cursor: next})
	must(t, "Range k2 page 2", err)
	var wantK2 []telemetry.Point
	for _, p := range want {
		if p.Thing == "p1" && p.Key == "k2" {
			wantK2 = append(wantK2, p)
		}
	}
	eqPoints(t, "Range(p1/k2) pages 1 and 2", append(ps, ps2...), wantK2[:6])
}

func testLatest(t *testing.T, open func(t *testing.T) telemetry.Store) {
	s, ctx := open(t), t.Context()
	appendPoints(t, s, []telemetry.Point{
		pt("a", "x", 100, num(1)), pt("a", "x", 300, num(3)), pt("a", "x", 200, num(2)),
		pt("a", "y", 100, telemetry.String("old")), pt("a", "y", 400, telemetry.String("new")),
		pt("b", "x", 50, telemetry.Bool(false)),
	}, 1)
	appendPoints(t, s, []telemetry.Point{
		pt("a", "z", 5, num(1)), pt("a", "z", 5, num(2)), // same ms: the last appended wins
		pt("b", "x", 40, telemetry.Bool(true)), // older than b/x's latest
	}, 2)
	for _, tc := range []struct {
		name         string
		things, keys []string
		want         []telemetry.Point
	}{
		{"all keys", []string{"b", "a"}, nil, []telemetry.Point{
			pt("a", "x", 300, num(3)), pt("a", "y", 400, telemetry.String("new")), pt("a", "z", 5, num(2)),
			pt("b", "x", 50, telemetry.Bool(false)),
		}},
		{"some keys", []string{"a", "b", "c"}, []string{"x"}, []telemetry.Point{
			pt("a", "x", 300, num(3)), pt("b", "x", 50, telemetry.Bool(false)),
		}},
		{"unknown", []string{"c"}, nil, []telemetry.Point{}},
	} {
		got, err := s.Latest(ctx, tc.things, tc.keys)
		must(t, "Latest", err)
		eqPoints(t, fmt.Sprintf("Latest(%q, %q)", tc.things, tc.keys), got, tc.want)
	}
}

func testAggregate(t *testing.T, open func(t *testing.T) telemetry.Store) {
	s, ctx := open(t), t.Context()
	const sec = 1000
	// Buckets of 10 s:
	//   [0, 10s)   t: 1, 2, 4 (ts 1s, 2s, 3s, appended 3s, 1s, 2s)
	//   [10s, 20s) t: nothing
	//   [20s, 30s) t: 10, "str", true
	//   [30s, 40s) t: only "only string"
	//   [40s, 50s) t: 5 then 7 at the same ms; 6 earlier
	//   [0, 10s)   u: 100 (at 9.999 s)
	appendPoints(t, s, []telemetry.Point{
		pt("agg", "t", 3*sec, num(4)),
		pt("agg", "t", 1*sec, num(1)),
		pt("agg", "t", 2*sec, num(2)),
		pt("agg", "t", 20*sec, num(10)),
		pt("agg", "t", 25*sec, telemetry.String("str")),
		pt("agg", "t", 29*sec+999, telemetry.Bool(true)),
		pt("agg", "t", 35*sec, telemetry.String("only string")),
		pt("agg", "t", 45*sec, num(5)),
		pt("agg", "u", 10*sec-1, num(100)),
		pt("other", "t", 1*sec, num(1000)),
	}, 1)
	appendPoints(t, s, []telemetry.Point{
		pt("agg", "t", 45*sec, num(7)),
		pt("agg", "t", 41*sec, num(6)),
		pt("agg", "t", 49*sec+999, telemetry.String("late string")),
	}, 2)
	b := func(key string, ts int64, v float64) telemetry.Bucket {
		return telemetry.Bucket{Thing: "agg", Key: key, TS: ts, Value: v}
	}
	all := telemetry.AggQuery{Things: []string{"agg"}, From: 0, To: 60 * sec, Interval: 10 * time.Second}
	with := func(q telemetry.AggQuery, f telemetry.AggFunc) telemetry.AggQuery { q.Func = f; return q }
	for _, tc := range []struct {
		name string
		q    telemetry.AggQuery
		want []telemetry.Bucket
	}{
		{"min", with(all, telemetry.AggMin), []telemetry.Bucket{b("t", 0, 1), b("t", 20*sec, 10), b("t", 40*sec, 5), b("u", 0, 100)}},
		{"max", with(all, telemetry.AggMax), []telemetry.Bucket{b("t", 0, 4), b("t", 20*sec, 10), b("t", 40*sec, 7), b("u", 0, 100)}},
		{"avg", with(all, telemetry.AggAvg), []telemetry.Bucket{b("t", 0, 7.0/3), b("t", 20*sec, 10), b("t", 40*sec, 6), b("u", 0, 100)}},
		{"sum", with(all, telemetry.AggSum), []telemetry.Bucket{b("t", 0, 7), b("t", 20*sec, 10), b("t", 40*sec, 18), b("u", 0, 100)}},
		{"count", with(all, telemetry.AggCount), []telemetry.Bucket{b("t", 0, 3), b("t", 20*sec, 3), b("t", 30*sec, 1), b("t", 40*sec, 4), b("u", 0, 1)}},
		{"first", with(all, telemetry.AggFirst), []telemetry.Bucket{b("t", 0, 1), b("t", 20*sec, 10), b("t", 40*sec, 6), b("u", 0, 100)}},
		{"last", with(all, telemetry.AggLast), []telemetry.Bucket{b("t", 0, 4), b("t", 20*sec, 10), b("t", 40*sec, 7), b("u", 0, 100)}},
		{"avg of two ints", telemetry.AggQuery{Things: []string{"agg"}, Keys: []string{"t"}, From: 0, To: 2*sec + 1, Interval: time.Minute, Func: telemetry.AggAvg},
			[]telemetry.Bucket{b("t", 0, 1.5)}},
		{"from and to cut buckets", telemetry.AggQuery{Things: []string{"agg"}, Keys: []string{"t"}, From: 2 * sec, To: 45 * sec, Interval: 10 * time.Second, Func: telemetry.AggSum},
			[]telemetry.Bucket{b("t", 0, 6), b("t", 20*sec, 10), b("t", 40*sec, 6)}},
		{"first and last at the same ms", telemetry.AggQuery{Things: []string{"agg"}, Keys: []string{"t"}, From: 45 * sec, To: 46 * sec, Interval: time.Second, Func: telemetry.AggLast},
			[]telemetry.Bucket{b("t", 45*sec, 7)}},
		{"first at the same ms", telemetry.AggQuery{Things: []string{"agg"}, Keys: []string{"t"}, From: 45 * sec, To: 46 * sec, Interval: time.Second, Func: telemetry.AggFirst},
			[]telemetry.Bucket{b("t", 45*sec, 5)}},
		{"one bucket for all", telemetry.AggQuery{Things: []string{"agg", "other"}, Keys: []string{"t"}, From: 0, To: 24 * 3600 * sec, Interval: 24 * time.Hour, Func: telemetry.AggCount},
			[]telemetry.Bucket{b("t", 0, 11), {Thing: "other", Key: "t", TS: 0, Value: 1}}},
		{"epoch-aligned hour", telemetry.AggQuery{Things: []string{"agg"}, Keys: []string{"u"}, From: 5 * sec, To: 7200 * sec, Interval: time.Hour, Func: telemetry.AggMax},
			[]telemetry.Bucket{b("u", 0, 100)}},
		{"nothing in range", telemetry.AggQuery{Things: []string{"agg"}, From: 100 * sec, To: 200 * sec, Interval: 10 * time.Second, Func: telemetry.AggCount},
			[]telemetry.Bucket{}},
		{"unknown thing", telemetry.AggQuery{Things: []string{"nope"}, From: 0, To: 200 * sec, Interval: 10 * time.Second, Func: telemetry.AggCount},
			[]telemetry.Bucket{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.Aggregate(ctx, tc.q)
			must(t, "Aggregate", err)
			if got == nil {
				t.Errorf("Aggregate(%+v) = nil; want a non-nil slice", tc.q)
			}
			if !eqBuckets(got, tc.want) {
				t.Errorf("Aggregate(%+v) = %v; want %v", tc.q, got, tc.want)
			}
		})
	}
}

// eqBuckets compares buckets, values to 1e-12 relative.
func eqBuckets(got, want []telemetry.Bucket) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		g, w := got[i], want[i]
		if g.Thing != w.Thing || g.Key != w.Key || g.TS != w.TS ||
			math.Abs(g.Value-w.Value) > 1e-12*math.Max(1, math.Abs(w.Value)) {
			return false
		}
	}
	return true
}

// testSpansOnce: a batch given message by message (telemetry.Span) stores
// the messages above the replay point and those without a sequence
// number, and skips the others — how two writers of one journal (a node
// and the survivor adopting its backlog) overlap without a duplicate.
func testSpansOnce(t *testing.T, open func(t *testing.T) telemetry.Store) {
	s, ctx := open(t), t.Context()
	sa, ok := s.(telemetry.SpanAppender)
	if !ok {
		t.Fatalf("%T does not implement telemetry.SpanAppender", s)
	}
	p := func(ts ...int64) []telemetry.Point {
		var out []telemetry.Point
		for _, x := range ts {
			out = append(out, pt("d", "k", x, num(float64(x))))
		}
		return out
	}
	// Messages 1–3 (one point each, message 2 two points).
	must(t, "AppendSpans 1-3", sa.AppendSpans(ctx, p(1, 2, 3, 4), []telemetry.Span{{End: 1, Seq: 1}, {End: 3, Seq: 2}, {End: 4, Seq: 3}}))
	// Another writer's batch overlapping it: messages 2–5 and a point
	// without a sequence number; 2 and 3 are skipped.
	must(t, "AppendSpans 2-5", sa.AppendSpans(ctx, p(2, 3, 4, 5, 6, 100), []telemetry.Span{{End: 2, Seq: 2}, {End: 3, Seq: 3}, {End: 4, Seq: 4}, {End: 5, Seq: 5}, {End: 6, Seq: 0}}))
	// A batch wholly at or below the point, but for one point without a
	// sequence number: only that point is stored, the point stays.
	must(t, "AppendSpans old", sa.AppendSpans(ctx, p(1, 7), []telemetry.Span{{End: 1, Seq: 1}, {End: 2, Seq: 0}}))
	if got, err := s.LastSeq(ctx); err != nil || got != 5 {
		t.Errorf("LastSeq() = %d, %v; want 5", got, err)
	}
	if err := sa.AppendSpans(ctx, p(1, 2), []telemetry.Span{{End: 1, Seq: 9}}); err == nil {
		t.Errorf("AppendSpans with spans covering 1 of 2 points: no error")
	}
	eqPoints(t, "Range", rangeAll(t, s, "d"), p(1, 2, 3, 4, 5, 6, 7, 100))
}

func testExactlyOnce(t *testing.T, open func(t *testing.T) telemetry.Store) {
	s, ctx := open(t), t.Context()
	lastSeq := func(want uint64) {
		t.Helper()
		got, err := s.LastSeq(ctx)
		must(t, "LastSeq", err)
		if got != want {
			t.Errorf("LastSeq() = %d; want %d", got, want)
		}
	}
	lastSeq(0)
	appendPoints(t, s, []telemetry.Point{pt("d", "k", 1, num(1)), pt("d", "k", 2, num(2))}, 5)
	lastSeq(5)
	appendPoints(t, s, []telemetry.Point{pt("d", "k", 1, num(1)), pt("d", "k", 2, num(2))}, 5) // a replay
	appendPoints(t, s, []telemetry.Point{pt("d", "k", 3, num(3))}, 4)                          // older still
	lastSeq(5)
	appendPoints(t, s, []telemetry.Point{pt("d", "k", 3, num(3))}, 6)
	lastSeq(6)
	appendPoints(t, s, []telemetry.Point{pt("d", "k", 4, num(4))}, 0) // not from the WAL
	lastSeq(6)
	appendPoints(t, s, nil, 9) // a message without points moves LastSeq
	lastSeq(9)
	appendPoints(t, s, []telemetry.Point{pt("d", "k", 5, num(5))}, 9)
	lastSeq(9)
	eqPoints(t, "Range", rangeAll(t, s, "d"), []telemetry.Point{
		pt("d", "k", 1, num(1)), pt("d", "k", 2, num(2)), pt("d", "k", 3, num(3)), pt("d", "k", 4, num(4)),
	})
}

func testDeleteBefore(t *testing.T, open func(t *testing.T) telemetry.Store) {
	s, ctx := open(t), t.Context()
	appendPoints(t, s, []telemetry.Point{
		pt("a", "x", 100, num(1)), pt("a", "x", 200, num(2)), pt("a", "x", 300, num(3)),
		pt("a", "old", 50, num(4)), pt("a", "old", 199, telemetry.String("s")),
		pt("b", "x", 250, num(5)),
	}, 1)
	// A longer series.
	var long []telemetry.Point
	for i := range 2500 {
		long = append(long, pt("c", "long", int64(i/2), num(float64(i))))
	}
	appendPoints(t, s, long, 2)

	n, err := s.DeleteBefore(ctx, 200)
	must(t, "DeleteBefore(200)", err)
	if want := int64(1 + 2 + 400); n != want {
		t.Errorf("DeleteBefore(200) = %d; want %d", n, want)
	}
	eqPoints(t, "Range(a, b) after DeleteBefore(200)", rangeAll(t, s, "a", "b"), []telemetry.Point{
		pt("a", "x", 200, num(2)), pt("a", "x", 300, num(3)), pt("b", "x", 250, num(5)),
	})
	keys, err := s.Keys(ctx, "a")
	must(t, "Keys(a)", err)
	if want := []string{"x"}; !slices.Equal(keys, want) {
		t.Errorf("Keys(a) = %q; want %q (a/old has no points left)", keys, want)
	}
	n, err = s.DeleteBefore(ctx, 200)
	must(t, "DeleteBefore(200) again", err)
	if n != 0 {
		t.Errorf("DeleteBefore(200) again = %d; want 0", n)
	}
	n, err = s.DeleteBefore(ctx, 1000)
	must(t, "DeleteBefore(1000)", err)
	if want := int64(2*1000 - 400 + 3); n != want {
		t.Errorf("DeleteBefore(1000) = %d; want %d", n, want)
	}
	got := rangeAll(t, s, "a", "b", "c")
	if len(got) != 500 || got[0] != pt("c", "long", 1000, num(2000)) {
		t.Errorf("Range after DeleteBefore(1000): %d points starting %v; want 500 starting c/long@1000", len(got), got[:min(1, len(got))])
	}
	for _, thing := range []string{"a", "b"} {
		keys, err := s.Keys(ctx, thing)
		must(t, "Keys", err)
		if len(keys) != 0 {
			t.Errorf("Keys(%q) = %q; want none", thing, keys)
		}
	}
	// A series deleted entirely can come back.
	appendPoints(t, s, []telemetry.Point{pt("a", "x", 5, num(6))}, 3)
	eqPoints(t, "Range(a) after a new point", rangeAll(t, s, "a"), []telemetry.Point{pt("a", "x", 5, num(6))})
	latest, err := s.Latest(ctx, []string{"a", "b", "c"}, nil)
	must(t, "Latest", err)
	eqPoints(t, "Latest", latest, []telemetry.Point{pt("a", "x", 5, num(6)), pt("c", "long", 1249, num(2499))})
}

func testKeys(t *testing.T, open func(t *testing.T) telemetry.Store) {
	s, ctx := open(t), t.Context()
	appendPoints(t, s, []telemetry.Point{
		pt("a", "env.temp", 1, num(1)), pt("a", "b", 1, num(1)), pt("a", "acc.0", 1, num(1)),
		pt("a", "b", 2, num(1)), pt("a2", "z", 1, num(1)), pt("b", "q", 1, num(1)),
	}, 0)
	for _, tc := range []struct {
		thing string
		want  []string
	}{
		{"a", []string{"acc.0", "b", "env.temp"}},
		{"a2", []string{"z"}},
		{"none", []string{}},
	} {
		got, err := s.Keys(ctx, tc.thing)
		must(t, "Keys", err)
		if got == nil || !slices.Equal(got, tc.want) {
			t.Errorf("Keys(%q) = %#v; want %q", tc.thing, got, tc.want)
		}
	}
	_, err := s.Keys(ctx, "")
	wantInvalid(t, `Keys("")`, err, "thing")
}

// wantInvalid checks that err is a KindInvalid error about field.
func wantInvalid(t *testing.T, op string, err error, field string) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: got no error; want an invalid %s", op, field)
		return
	}
	if k := core.KindOf(err); k != core.KindInvalid {
		t.Errorf("%s: got error %q of kind %s; want kind invalid", op, err, k)
	}
	if f := core.FieldOf(err); f != field {
		t.Errorf("%s: got error %q about field %q; want %q", op, err, f, field)
	}
}

func testInvalidPoints(t *testing.T, open func(t *testing.T) telemetry.Store) {
	s, ctx := open(t), t.Context()
	good := pt("a", "k", 1, num(1))
	for _, tc := range []struct {
		name  string
		bad   telemetry.Point
		field string
	}{
		{"empty thing", pt("", "k", 1, num(1)), "points[1].thing"},
		{"bad thing", pt("a/b", "k", 1, num(1)), "points[1].thing"},
		{"empty key", pt("a", "", 1, num(1)), "points[1].key"},
		{"long key", pt("a", strings.Repeat("k", telemetry.MaxKeyLen+1), 1, num(1)), "points[1].key"},
		{"negative ts", pt("a", "k", -1, num(1)), "points[1].ts"},
		{"ts after 9999", pt("a", "k", telemetry.MaxTS+1, num(1)), "points[1].ts"},
		{"no value", pt("a", "k", 1, telemetry.Value{}), "points[1].value"},
		{"NaN", pt("a", "k", 1, num(math.NaN())), "points[1].value"},
		{"Inf", pt("a", "k", 1, num(math.Inf(-1))), "points[1].value"},
		{"long string", pt("a", "k", 1, telemetry.String(strings.Repeat("s", telemetry.MaxStringLen+1))), "points[1].value"},
	} {
		err := s.Append(ctx, []telemetry.Point{good, tc.bad}, 7)
		wantInvalid(t, "Append with "+tc.name, err, tc.field)
	}
	eqPoints(t, "Range after refused appends", rangeAll(t, s, "a"), []telemetry.Point{})
	if seq, err := s.LastSeq(ctx); err != nil || seq != 0 {
		t.Errorf("LastSeq() = %d, %v; want 0", seq, err)
	}
}

func testQueryValidation(t *testing.T, open func(t *testing.T) telemetry.Store) {
	s, ctx := open(t), t.Context()
	appendPoints(t, s, []telemetry.Point{pt("a", "k", 1, num(1))}, 1)
	okRange := telemetry.RangeQuery{Things: []string{"a"}, From: 0, To: 10, Limit: 10}
	r := func(f func(q *telemetry.RangeQuery)) telemetry.RangeQuery { q := okRange; f(&q); return q }
	many := make([]string, telemetry.MaxQueryThings+1)
	for i := range many {
		many[i] = fmt.Sprintf("t%d", i)
	}
	for _, tc := range []struct {
		name  string
		q     telemetry.RangeQuery
		field string
	}{
		{"no things", r(func(q *telemetry.RangeQuery) { q.Things = nil }), "things"},
		{"bad thing", r(func(q *telemetry.RangeQuery) { q.Things = []string{"a", "x y"} }), "things"},
		{"too many things", r(func(q *telemetry.RangeQuery) { q.Things = many }), "things"},
		{"empty key", r(func(q *telemetry.RangeQuery) { q.Keys = []string{""} }), "keys"},
		{"long key", r(func(q *telemetry.RangeQuery) { q.Keys = []string{strings.Repeat("k", 257)} }), "keys"},
		{"from = to", r(func(q *telemetry.RangeQuery) { q.From, q.To = 5, 5 }), "to"},
		{"from > to", r(func(q *telemetry.RangeQuery) { q.From, q.To = 6, 5 }), "to"},
		{"limit 0", r(func(q *telemetry.RangeQuery) { q.Limit = 0 }), "limit"},
		{"limit -1", r(func(q *telemetry.RangeQuery) { q.Limit = -1 }), "limit"},
		{"limit 10001", r(func(q *telemetry.RangeQuery) { q.Limit = telemetry.MaxLimit + 1 }), "limit"},
		{"bad cursor", r(func(q *telemetry.RangeQuery) { q.Cursor = "not a cursor!" }), "cursor"},
		{"cut cursor", r(func(q *telemetry.RangeQuery) {
			c := telemetry.Cursor{Thing: "a", Key: "k", TS: 5, Tie: 1}.Encode()
			q.Cursor = c[:len(c)-3]
		}), "cursor"},
	} {
		_, _, err := s.Range(ctx, tc.q)
		wantInvalid(t, "Range with "+tc.name, err, tc.field)
	}

	okAgg := telemetry.AggQuery{Things: []string{"a"}, From: 0, To: 10000 * 1000, Interval: time.Second, Func: telemetry.AggAvg}
	a := func(f func(q *telemetry.AggQuery)) telemetry.AggQuery { q := okAgg; f(&q); return q }
	if _, err := s.Aggregate(ctx, okAgg); err != nil {
		t.Errorf("Aggregate with 10,000 buckets: %v", err)
	}
	if _, err := s.Aggregate(ctx, a(func(q *telemetry.AggQuery) { q.From, q.To = 500, 10000*1000 })); err != nil {
		t.Errorf("Aggregate with 10,000 unaligned buckets: %v", err)
	}
	for _, tc := range []struct {
		name  string
		q     telemetry.AggQuery
		field string
	}{
		{"no things", a(func(q *telemetry.AggQuery) { q.Things = nil }), "things"},
		{"bad key", a(func(q *telemetry.AggQuery) { q.Keys = []string{"k", ""} }), "keys"},
		{"from = to", a(func(q *telemetry.AggQuery) { q.To = q.From }), "to"},
		{"unknown func", a(func(q *telemetry.AggQuery) { q.Func = "median" }), "func"},
		{"no func", a(func(q *telemetry.AggQuery) { q.Func = "" }), "func"},
		{"interval < 1s", a(func(q *telemetry.AggQuery) { q.Interval = 999 * time.Millisecond }), "interval"},
		{"interval 0", a(func(q *telemetry.AggQuery) { q.Interval = 0 }), "interval"},
		{"interval not in ms", a(func(q *telemetry.AggQuery) { q.Interval = time.Second + time.Microsecond }), "interval"},
		{"10,001 buckets", a(func(q *telemetry.AggQuery) { q.To = 10001 * 1000 }), "interval"},
		{"10,001 unaligned buckets", a(func(q *telemetry.AggQuery) { q.From, q.To = 500, 10000*1000+1 }), "interval"},
		{"huge range", a(func(q *telemetry.AggQuery) { q.From, q.To = math.MinInt64, math.MaxInt64 }), "interval"},
	} {
		_, err := s.Aggregate(ctx, tc.q)
		wantInvalid(t, "Aggregate with "+tc.name, err, tc.field)
	}

	_, err := s.Latest(ctx, nil, nil)
	wantInvalid(t, "Latest without things", err, "things")
	_, err = s.Latest(ctx, []string{"a"}, []string{""})
	wantInvalid(t, "Latest with an empty key", err, "keys")
}

func testConcurrency(t *testing.T, open func(t *testing.T) telemetry.Store) {
	s, ctx := open(t), t.Context()
	const writers, batches, per = 4, 20, 50
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for b := range batches {
				var points []telemetry.Point
				for i := range per {
					points = append(points, pt(fmt.Sprintf("w%d", w), fmt.Sprintf("k%d", i%5), int64(b*per+i), num(float64(i))))
				}
				if err := s.Append(ctx, points, 0); err != nil {
					t.Errorf("Append: %v", err)
					return
				}
			}
		})
		wg.Go(func() {
			for range batches {
				if _, _, err := s.Range(ctx, telemetry.RangeQuery{Things: []string{"w0", "w1"}, From: 0, To: 1 << 40, Limit: 100}); err != nil {
					t.Errorf("Range: %v", err)
					return
				}
				if _, err := s.Latest(ctx, []string{"w2", "w3"}, nil); err != nil {
					t.Errorf("Latest: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	got, err := s.Aggregate(ctx, telemetry.AggQuery{Things: []string{"w0", "w1", "w2", "w3"}, Keys: []string{"k0"},
		From: 0, To: 1 << 40, Interval: 1 << 40 * time.Millisecond, Func: telemetry.AggCount})
	must(t, "Aggregate", err)
	if len(got) != writers {
		t.Fatalf("Aggregate count = %v; want %d series", got, writers)
	}
	for _, b := range got {
		if b.Value != batches*per/5 {
			t.Errorf("Aggregate count of %s/%s = %v; want %d", b.Thing, b.Key, b.Value, batches*per/5)
		}
	}
}
