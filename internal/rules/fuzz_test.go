package rules

import (
	"encoding/json"
	"errors"
	"testing"
)

// fuzzInputs are the messages FuzzParse evaluates each statement against.
var fuzzInputs = []Input{
	testInput(testPayload),
	testInput(`[1, "a", null, {"b": [true]}]`),
	testInput("\xff\x00 not json"),
	{Topic: "a"},
}

// checkEval evaluates s against in and checks the result is consistent:
// an error is an *EvalError and comes without output; an output is valid
// JSON with distinct keys.
func checkEval(t *testing.T, s *Statement, m *Message) {
	t.Helper()
	out, ok, err := s.EvalMessage(m)
	if err != nil {
		var ee *EvalError
		if !errors.As(err, &ee) || ee.Line < 1 || ee.Pos < 1 || ok || out != nil {
			t.Fatalf("%s: Eval = %v, %v, %#v", s, out, ok, err)
		}
		return
	}
	if !ok {
		if out != nil {
			t.Fatalf("%s: Eval = %v, false", s, out)
		}
		return
	}
	b := out.AppendJSON(nil)
	if !json.Valid(b) {
		t.Fatalf("%s: output %q is not valid JSON", s, b)
	}
	var decoded map[string]any
	if err := json.Unmarshal(b, &decoded); err != nil || len(decoded) != len(out) {
		t.Fatalf("%s: output %s has repeated keys (%v)", s, b, err)
	}
	if m, _ := json.Marshal(out.Map()); !json.Valid(m) {
		t.Fatalf("%s: Map() = %s", s, m)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"SELECT temp, hum, topic(2) AS device, timestamp() AS ts FROM 'things/+/telemetry' WHERE temp > 50",
		"SELECT *, topic(2) AS device FROM '#'",
		"SELECT a.b[2].c, \"my key\", * AS all, *[0] FROM 'x' WHERE a IN (1, 'b') AND b NOT BETWEEN 1 AND 2 OR c IS NOT NULL",
		"SELECT CASE WHEN a THEN 1 ELSE -2.5e3 END, CASE x WHEN 1 THEN 'it''s' END, CAST(a AS int) FROM 'a/#'",
		"SELECT concat(a, 'b'), round(a, 2), substring(s, 2, 3), encode(*, 'hex'), coalesce(a, b) FROM 'a' WHERE NOT NOT a",
		"SELECT - -a, -(-5), (-5)[0], a - -1 FROM 'x' -- comment\n/* block */",
		"SELECT avg(temp) AS a, count(*) AS n, window_end() AS at FROM 'things/+/telemetry' WHERE temp > 0 GROUP BY thing, SLIDING(5m, 30s) HAVING max(temp) > 30",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, sql string) {
		s, err := Parse(sql)
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) || pe.Line < 1 || pe.Pos < 1 || pe.Msg == "" {
				t.Fatalf("Parse(%q) = %#v", sql, err)
			}
			return
		}
		canonical := s.String()
		s2, err := Parse(canonical)
		if err != nil {
			if len(canonical) > MaxSQLBytes {
				return // canonical form can be longer than the input
			}
			t.Fatalf("Parse(%q).String() = %q, which does not parse: %v", sql, canonical, err)
		}
		if got := s2.String(); got != canonical {
			t.Fatalf("Parse(%q).String() = %q, which parses to %q", sql, canonical, got)
		}
		for _, in := range fuzzInputs {
			checkEval(t, s, NewMessage(in))
		}
	})
}

// fuzzStatements are the statements FuzzEval evaluates against arbitrary
// payloads.
var fuzzStatements = []string{
	"SELECT * FROM '#'",
	"SELECT *, topic(2) AS device, timestamp() AS ts, payload() AS raw, encode(*, 'base64') AS b64 FROM '#'",
	"SELECT * AS all, typeof(*) AS t, length(*) AS n FROM '#'",
	"SELECT temp, hum, topic(2) AS device FROM '#' WHERE temp > 50",
	"SELECT a.b[2].c, a[0], a[-1], *[0], *[1].x, \"my key\" FROM '#' WHERE a IS NOT NULL OR b = 'x'",
	"SELECT concat(a, b, temp) AS c, round(temp, 1) AS r, abs(temp) AS a, temp * 2 + hum / 3 AS x, temp % 7 AS m FROM '#'",
	"SELECT CAST(temp AS int) AS i, CAST(a AS string) AS s, CAST(b AS float) AS f, CAST(on AS bool) AS o FROM '#'",
	"SELECT CASE WHEN temp > 1 THEN 'a' WHEN temp IN (1, 2) THEN a ELSE * END AS k FROM '#' WHERE NOT (a = b)",
	"SELECT lower(a) AS l, substring(a, 2, 3) AS s, split(a, ',') AS p, contains(*, a) AS c, a = * AS eq FROM '#'",
	"SELECT *[length(*) - 1] AS last, coalesce(x, y, *) AS v FROM '#' WHERE * IS NOT NULL",
}

func FuzzEval(f *testing.F) {
	for _, s := range []string{
		`{"temp": 55.5, "hum": 40, "a": {"b": [0, 1, {"c": "x"}]}, "my key": 1}`,
		`[1, 2, {"x": 3}]`,
		`{"a": "x,y", "b": "1e3", "temp": "hot", "on": "TRUE", "a": 1}`,
		"\xff\xfe binary",
		`"just a string"`,
	} {
		f.Add([]byte(s))
	}
	stmts := make([]*Statement, len(fuzzStatements))
	for i, sql := range fuzzStatements {
		stmts[i] = MustParse(sql)
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		in := testInput("")
		in.Payload = payload
		m := NewMessage(in)
		for _, s := range stmts {
			checkEval(t, s, m)              // shared message
			checkEval(t, s, NewMessage(in)) // fresh message
		}
	})
}
