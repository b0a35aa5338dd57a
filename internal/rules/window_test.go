package rules

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"
	"time"
)

// t0 is a window boundary for every hop used here (a whole hour).
var t0 = time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC)

func windowMsg(thing, payload string) *Message {
	return NewMessage(Input{Topic: "things/" + thing + "/telemetry", Thing: thing, ClientID: thing, Payload: []byte(payload)})
}

func mustAdd(t *testing.T, ws *Windows, thing, payload string, at time.Time) []WindowRow {
	t.Helper()
	rows, _, err := ws.Add(windowMsg(thing, payload), at)
	if err != nil {
		t.Fatalf("Add(%s, %s, %v) = %v", thing, payload, at, err)
	}
	return rows
}

func rowStrings(rows []WindowRow) []string {
	var out []string
	for _, r := range rows {
		out = append(out, fmt.Sprintf("%s %s-%s %s", r.Group, r.Start.UTC().Format("15:04:05"), r.End.UTC().Format("15:04:05"),
			r.Output.AppendJSON(nil)))
	}
	sort.Strings(out)
	return out
}

func TestWindowTumbling(t *testing.T) {
	s := MustParse("SELECT avg(temp) AS a, min(temp) AS lo, max(temp) AS hi, sum(temp) AS s, count(*) AS n, count(temp) AS nt, " +
		"topic(2) AS dev, window_start() AS ws, window_end() AS we FROM 'things/+/telemetry' GROUP BY thing, TUMBLING(1m)")
	ws := s.NewWindows(0)
	mustAdd(t, ws, "d1", `{"temp": 10}`, t0)                             // first second of the window: in it
	mustAdd(t, ws, "d1", `{"temp": 21}`, t0.Add(59999*time.Millisecond)) // last millisecond: in it
	mustAdd(t, ws, "d1", `{"hum": 3}`, t0.Add(30*time.Second))           // no temp: counted by count(*) only
	mustAdd(t, ws, "d2", `{"temp": 1.5}`, t0.Add(time.Second))
	mustAdd(t, ws, "d1", `{"temp": 99}`, t0.Add(time.Minute)) // the first millisecond of the next window
	// A payload naming another thing does not reach its window: the group
	// is the thing that published.
	mustAdd(t, ws, "d1", `{"temp": 1000, "thing": "d2"}`, t0.Add(time.Minute+time.Second))
	if rows := ws.Close(t0.Add(time.Minute - time.Millisecond)); len(rows) != 0 {
		t.Fatalf("Close before the end = %v; want nothing", rowStrings(rows))
	}
	got := rowStrings(ws.Close(t0.Add(time.Minute)))
	start := t0.UnixMilli()
	want := []string{
		fmt.Sprintf(`d1 10:00:00-10:01:00 {"a":15.5,"lo":10,"hi":21,"s":31,"n":3,"nt":2,"dev":"d1","ws":%d,"we":%d}`, start, start+60000),
		fmt.Sprintf(`d2 10:00:00-10:01:00 {"a":1.5,"lo":1.5,"hi":1.5,"s":1.5,"n":1,"nt":1,"dev":"d2","ws":%d,"we":%d}`, start, start+60000),
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("Close = \n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// d2 has nothing open any more: it is forgotten; d1 has its next window.
	if ws.Len() != 1 {
		t.Errorf("Len = %d after the close; want 1", ws.Len())
	}
	// An empty window emits nothing; d1's second window emits once.
	got = rowStrings(ws.Close(t0.Add(10 * time.Minute)))
	if len(got) != 1 || !strings.Contains(got[0], `"n":2`) || !strings.Contains(got[0], "d1 10:01:00-10:02:00") {
		t.Fatalf("second Close = %v", got)
	}
	if rows := ws.Close(t0.Add(20 * time.Minute)); len(rows) != 0 || ws.Len() != 0 {
		t.Fatalf("third Close = %v, Len %d; want nothing", rowStrings(rows), ws.Len())
	}
}

func TestWindowSliding(t *testing.T) {
	// 3 hops of 10s: each hop boundary emits the last 30s.
	s := MustParse("SELECT sum(v) AS s, count(*) AS n FROM 'things/+/telemetry' GROUP BY thing, SLIDING(30s, 10s)")
	ws := s.NewWindows(0)
	mustAdd(t, ws, "d", `{"v": 1}`, t0.Add(1*time.Second))  // hop 0
	mustAdd(t, ws, "d", `{"v": 2}`, t0.Add(12*time.Second)) // hop 1
	mustAdd(t, ws, "d", `{"v": 4}`, t0.Add(35*time.Second)) // hop 3
	got := rowStrings(ws.Close(t0.Add(70 * time.Second)))
	want := []string{
		`d 09:59:40-10:00:10 {"s":1,"n":1}`, // window ending after hop 0
		`d 09:59:50-10:00:20 {"s":3,"n":2}`, // hops -1..1
		`d 10:00:00-10:00:30 {"s":3,"n":2}`, // hops 0..2
		`d 10:00:10-10:00:40 {"s":6,"n":2}`, // hops 1..3
		`d 10:00:20-10:00:50 {"s":4,"n":1}`, // hops 2..4
		`d 10:00:30-10:01:00 {"s":4,"n":1}`, // hops 3..5
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("Close = \n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if ws.Len() != 0 {
		t.Errorf("Len = %d; want 0", ws.Len())
	}
}

func TestWindowHavingAndWhere(t *testing.T) {
	s := MustParse("SELECT avg(temp) AS a FROM 'things/+/telemetry' WHERE temp < 100 GROUP BY thing, TUMBLING(10s) HAVING avg(temp) > 30")
	ws := s.NewWindows(0)
	mustAdd(t, ws, "hot", `{"temp": 40}`, t0)
	mustAdd(t, ws, "hot", `{"temp": 500}`, t0) // filtered by WHERE
	mustAdd(t, ws, "cold", `{"temp": 20}`, t0)
	got := rowStrings(ws.Close(t0.Add(10 * time.Second)))
	if len(got) != 1 || got[0] != `hot 10:00:00-10:00:10 {"a":40}` {
		t.Fatalf("Close = %v; want only hot at 40", got)
	}
}

func TestWindowSkipsNonNumbers(t *testing.T) {
	s := MustParse("SELECT avg(temp) AS a, max(temp) AS m, count(temp) AS c FROM 'things/+/telemetry' GROUP BY thing, TUMBLING(10s)")
	ws := s.NewWindows(0)
	_, skipped, err := ws.Add(windowMsg("d", `{"temp": "hot"}`), t0)
	if err != nil || skipped != 2 { // avg and max skip it; count counts it
		t.Fatalf("Add(string) = %d skipped, %v; want 2, nil", skipped, err)
	}
	mustAdd(t, ws, "d", `not json`, t0)
	got := rowStrings(ws.Close(t0.Add(10 * time.Second)))
	if len(got) != 1 || got[0] != `d 10:00:00-10:00:10 {"a":null,"m":null,"c":1}` {
		t.Fatalf("Close = %v", got)
	}
}

func TestWindowLateAndGroupLimit(t *testing.T) {
	s := MustParse("SELECT count(*) AS n FROM 'things/+/telemetry' GROUP BY thing, TUMBLING(10s)")
	ws := s.NewWindows(2)
	mustAdd(t, ws, "a", `{}`, t0)
	mustAdd(t, ws, "b", `{}`, t0)
	if _, _, err := ws.Add(windowMsg("c", `{}`), t0); !errors.Is(err, ErrWindowGroups) {
		t.Fatalf("third group: Add = %v; want ErrWindowGroups", err)
	}
	mustAdd(t, ws, "a", `{}`, t0.Add(time.Second)) // an existing group is still served
	if rows := ws.Close(t0.Add(10 * time.Second)); len(rows) != 2 {
		t.Fatalf("Close = %v", rowStrings(rows))
	}
	if _, _, err := ws.Add(windowMsg("a", `{}`), t0.Add(9*time.Second)); !errors.Is(err, ErrWindowLate) {
		t.Fatalf("a message for an emitted window: Add = %v; want ErrWindowLate", err)
	}
	mustAdd(t, ws, "c", `{}`, t0.Add(11*time.Second)) // the closed groups left room
}

// TestWindowRingFull: a group that gets messages beyond its ring before a
// Close emits its old windows from Add, not loses them.
func TestWindowRingFull(t *testing.T) {
	s := MustParse("SELECT count(*) AS n FROM 'things/+/telemetry' GROUP BY thing, TUMBLING(10s)")
	ws := s.NewWindows(0)
	mustAdd(t, ws, "a", `{}`, t0)
	mustAdd(t, ws, "a", `{}`, t0.Add(10*time.Second)) // the next window: its slot is free (ring of 2)
	rows := mustAdd(t, ws, "a", `{}`, t0.Add(20*time.Second))
	if got := rowStrings(rows); len(got) != 1 || got[0] != `a 10:00:00-10:00:10 {"n":1}` {
		t.Fatalf("Add into a full ring = %v; want the first window", got)
	}
	if got := rowStrings(ws.Close(t0.Add(time.Hour))); len(got) != 2 {
		t.Fatalf("Close = %v; want the two other windows", got)
	}
}

// TestWindowProperty compares Windows with a brute-force reference that
// keeps every message, over random streams and window specs.
func TestWindowProperty(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	specs := []string{"TUMBLING(10s)", "TUMBLING(1m)", "SLIDING(30s, 10s)", "SLIDING(1m, 5s)", "SLIDING(20s, 20s)"}
	for iter := 0; iter < 100; iter++ {
		spec := specs[iter%len(specs)]
		s := MustParse("SELECT avg(v) AS a, min(v) AS lo, max(v) AS hi, sum(v) AS s, count(*) AS n FROM 'things/+/telemetry' GROUP BY thing, " + spec)
		w, _ := s.Window()
		ws := s.NewWindows(0)
		type msg struct {
			thing string
			at    time.Time
			v     int64
		}
		var msgs []msg
		got := map[string]string{}
		collect := func(rows []WindowRow) {
			for _, r := range rows {
				k := r.Group + " " + r.End.UTC().Format(time.RFC3339)
				if _, dup := got[k]; dup {
					t.Fatalf("%s: window %s emitted twice", spec, k)
				}
				got[k] = string(r.Output.AppendJSON(nil))
			}
		}
		now := t0
		for i := 0; i < 100; i++ {
			now = now.Add(time.Duration(rng.IntN(8000)) * time.Millisecond)
			m := msg{thing: fmt.Sprint("d", rng.IntN(3)), at: now, v: rng.Int64N(201) - 100}
			msgs = append(msgs, m)
			collect(mustAdd(t, ws, m.thing, fmt.Sprintf(`{"v": %d}`, m.v), m.at))
			if rng.IntN(10) == 0 {
				collect(ws.Close(now))
			}
		}
		collect(ws.Close(now.Add(2 * w.Length)))
		// The reference: every window end on a hop boundary, every message.
		want := map[string]string{}
		hop := w.Hop.Milliseconds()
		for end := floorDiv(t0.UnixMilli(), hop) * hop; end <= now.Add(2*w.Length).UnixMilli(); end += hop {
			for _, thing := range []string{"d0", "d1", "d2"} {
				var n, sum, lo, hi int64 = 0, 0, math.MaxInt64, math.MinInt64
				for _, m := range msgs {
					if ms := m.at.UnixMilli(); m.thing == thing && ms >= end-w.Length.Milliseconds() && ms < end {
						n, sum, lo, hi = n+1, sum+m.v, min(lo, m.v), max(hi, m.v)
					}
				}
				if n == 0 {
					continue
				}
				out := Object{{"a", floatValue(float64(sum) / float64(n))}, {"lo", intValue(lo)}, {"hi", intValue(hi)},
					{"s", intValue(sum)}, {"n", intValue(n)}}
				want[thing+" "+time.UnixMilli(end).UTC().Format(time.RFC3339)] = string(out.AppendJSON(nil))
			}
		}
		if len(got) != len(want) {
			t.Fatalf("%s: %d windows emitted; the reference has %d", spec, len(got), len(want))
		}
		for k, v := range want {
			if got[k] != v {
				t.Fatalf("%s: window %s = %s; want %s", spec, k, got[k], v)
			}
		}
	}
}

func TestWindowParseErrors(t *testing.T) {
	for _, c := range []struct{ sql, want string }{
		{"SELECT avg(temp) FROM 'a'", "at 1:8: aggregates and window functions need a window"},
		{"SELECT window_end() FROM 'a'", "at 1:8: aggregates and window functions need a window"},
		{"SELECT temp FROM 'a' WHERE avg(temp) > 1 GROUP BY thing, TUMBLING(1m)", "at 1:28: aggregate avg() is not allowed in WHERE"},
		{"SELECT avg(max(temp)) FROM 'a' GROUP BY thing, TUMBLING(1m)", "at 1:12: aggregate max() inside another aggregate"},
		{"SELECT avg(temp) FROM 'a' GROUP BY thing, TUMBLING(0s)", "at 1:52: a window duration must be positive"},
		{"SELECT avg(temp) FROM 'a' GROUP BY thing, TUMBLING(-1m)", "at 1:52: a window duration must be positive"},
		{"SELECT avg(temp) FROM 'a' GROUP BY thing, TUMBLING(60)", "at 1:52: duration 60 needs a unit"},
		{"SELECT avg(temp) FROM 'a' GROUP BY thing, TUMBLING(500ms)", "at 1:52: window length 500ms is shorter than 1s"},
		{"SELECT avg(temp) FROM 'a' GROUP BY thing, TUMBLING(48h)", "at 1:52: window length 48h is longer than 24h"},
		{"SELECT avg(temp) FROM 'a' GROUP BY thing, TUMBLING(9999999999999h)", "at 1:52: duration 9999999999999h is out of range"},
		{"SELECT avg(temp) FROM 'a' GROUP BY thing, SLIDING(1m, 2m)", "at 1:55: hop 2m is longer than the window length 1m"},
		{"SELECT avg(temp) FROM 'a' GROUP BY thing, SLIDING(1m, 7s)", "at 1:55: hop 7s does not divide the window length 1m"},
		{"SELECT avg(temp) FROM 'a' GROUP BY thing, SLIDING(1h, 1s)", "at 1:55: a window of 1h has 3600 hops of 1s; the limit is 100"},
		{"SELECT avg(temp) FROM 'a' GROUP BY thing, SLIDING(1m)", "at 1:53: expected ',' and the hop"},
		{"SELECT avg(temp) FROM 'a' GROUP BY thing", "at 1:41: GROUP BY needs a window"},
		{"SELECT avg(temp) FROM 'a' GROUP BY temp, TUMBLING(1m)", "at 1:36: GROUP BY groups by thing, thing(), topic(N) or clientid()"},
		{"SELECT temp FROM 'a' GROUP BY thing, TUMBLING(1m)", "at 1:8: field temp must be inside an aggregate"},
		{"SELECT * FROM 'a' GROUP BY thing, TUMBLING(1m)", "at 1:8: * is not allowed in a windowed rule"},
		{"SELECT avg(temp) FROM 'a' HAVING avg(temp) > 1", "at 1:27: HAVING needs GROUP BY"},
		{"SELECT avg(temp) FROM 'a' GROUP BY thing, TUMBLING(1m) HAVING temp > 1", "at 1:63: field temp must be inside an aggregate"},
		{"SELECT avg(*) FROM 'a' GROUP BY thing, TUMBLING(1m)", "at 1:12: avg(*) is not allowed"},
		{"SELECT temp FROM 'a' WHERE temp > 5m", "at 1:35: a duration such as 5m may appear only in TUMBLING() or SLIDING()"},
	} {
		_, err := Parse(c.sql)
		var pe *ParseError
		if err == nil || !errors.As(err, &pe) || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("Parse(%q) = %v; want %s...", c.sql, err, c.want)
		}
	}
	// Fields named like the new words still work, and GROUP BY is case
	// insensitive.
	for _, sql := range []string{
		"SELECT group, having, tumbling, sliding, by FROM 'a' WHERE group = 1",
		"select count(*) as n from 'a' group by topic(2), clientid(), sliding(1h, 1m) having count(*) > 1",
	} {
		if _, err := Parse(sql); err != nil {
			t.Errorf("Parse(%q) = %v", sql, err)
		}
	}
}

func TestWindowedEvalMessageRefused(t *testing.T) {
	s := MustParse("SELECT count(*) AS n FROM 'a' GROUP BY thing, TUMBLING(1m)")
	if _, ok, err := s.Eval(Input{Topic: "a"}); ok || err == nil {
		t.Fatalf("Eval of a windowed statement = %v, %v; want an error", ok, err)
	}
	if _, ok := MustParse("SELECT a FROM 'a'").Window(); ok {
		t.Fatal("Window() of a plain statement is ok")
	}
}

// FuzzWindowSpec parses window clauses and, when they parse, checks the
// canonical form round-trips and the window obeys the limits.
func FuzzWindowSpec(f *testing.F) {
	for _, s := range []string{
		"thing, TUMBLING(1m)", "topic(2), SLIDING(5m, 30s)", "clientid(), thing(), SLIDING(1h30m, 90s)",
		"thing, TUMBLING(0s)", "thing, SLIDING(1m, 7s)", "TUMBLING(1.5s)", "thing, SLIDING(24h, 15m) HAVING count(*) > 3",
		"thing, TUMBLING(9223372036854775807ns)", "thing, TUMBLING(1m", "thing, SLIDING(-1m, 1s)",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		sql := "SELECT avg(t) AS a, count(*) AS n FROM 'things/+/telemetry' GROUP BY " + spec
		s, err := Parse(sql)
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) || pe.Line < 1 || pe.Pos < 1 || pe.Msg == "" {
				t.Fatalf("Parse(%q) = %#v", sql, err)
			}
			return
		}
		w, ok := s.Window()
		if !ok || w.Hop < MinWindowHop || w.Length > MaxWindowLength || w.Hop > w.Length || w.Length%w.Hop != 0 ||
			w.Length/w.Hop > MaxWindowBuckets || !w.Sliding && w.Hop != w.Length {
			t.Fatalf("Parse(%q).Window() = %+v, %v", sql, w, ok)
		}
		canonical := s.String()
		s2, err := Parse(canonical)
		if err != nil || s2.String() != canonical {
			t.Fatalf("canonical %q does not round-trip: %v", canonical, err)
		}
		ws := s.NewWindows(10)
		if _, _, err := ws.Add(windowMsg("d", `{"t": 1}`), t0); err != nil {
			t.Fatal(err)
		}
		if rows := ws.Close(t0.Add(w.Length + w.Hop)); len(rows) == 0 && !strings.Contains(strings.ToUpper(canonical), "HAVING") {
			t.Fatalf("%q: no window emitted", canonical)
		}
	})
}

// TestWindowSaveRestore: windows saved in the middle and restored into a
// new Windows emit what the original would have.
func TestWindowSaveRestore(t *testing.T) {
	sql := "SELECT avg(v) AS a, max(v) AS m, count(*) AS n FROM 'things/+/telemetry' GROUP BY thing, SLIDING(30s, 10s)"
	orig := MustParse(sql).NewWindows(0)
	mustAdd(t, orig, "d1", `{"v": 1}`, t0)
	mustAdd(t, orig, "d1", `{"v": 2.5}`, t0.Add(15*time.Second))
	mustAdd(t, orig, "d2", `{"v": 7}`, t0.Add(15*time.Second))
	orig.Close(t0.Add(20 * time.Second)) // some windows emitted already
	data, err := orig.Save()
	if err != nil {
		t.Fatal(err)
	}
	restored := MustParse(sql).NewWindows(0)
	if n, err := restored.Restore(data, 0); err != nil || n != 2 {
		t.Fatalf("Restore = %d, %v; want 2 groups", n, err)
	}
	mustAdd(t, orig, "d1", `{"v": 4}`, t0.Add(25*time.Second))
	mustAdd(t, restored, "d1", `{"v": 4}`, t0.Add(25*time.Second))
	want := rowStrings(orig.Close(t0.Add(time.Hour)))
	got := rowStrings(restored.Close(t0.Add(time.Hour)))
	if len(want) < 4 || strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("restored windows emit\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// A limit restores only some groups.
	limited := MustParse(sql).NewWindows(0)
	if n, err := limited.Restore(data, 1); err != nil || n != 1 || limited.Len() != 1 {
		t.Fatalf("Restore with a limit of 1 = %d, %v", n, err)
	}
	// Corrupt data, or the state of another window, restores nothing.
	other := MustParse(strings.Replace(sql, "SLIDING(30s, 10s)", "TUMBLING(30s)", 1)).NewWindows(0)
	for name, c := range map[string]struct {
		ws   *Windows
		data []byte
	}{
		"truncated":    {MustParse(sql).NewWindows(0), data[:len(data)/2]},
		"garbage":      {MustParse(sql).NewWindows(0), []byte("not gob at all")},
		"another spec": {other, data},
		"empty":        {MustParse(sql).NewWindows(0), nil},
	} {
		if n, err := c.ws.Restore(c.data, 0); err == nil || n != 0 || c.ws.Len() != 0 {
			t.Errorf("%s: Restore = %d, %v, Len %d; want an error and nothing", name, n, err, c.ws.Len())
		}
	}
}
