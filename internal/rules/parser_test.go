package rules

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestParseErrors(t *testing.T) {
	for _, c := range []struct{ sql, want string }{
		{"", "at 1:1: expected SELECT, found end of input"},
		{"   ", "at 1:4: expected SELECT, found end of input"},
		{"SELEC temp FROM 'a'", "at 1:1: expected SELECT, found 'SELEC'"},
		{"SELECT", "at 1:7: expected an expression, found end of input"},
		{"SELECT FROM 'a'", "at 1:8: expected an expression, found 'FROM'"},
		{"SELECT temp, FROM 'a'", "at 1:14: expected an expression, found 'FROM'"},
		{"SELECT temp WHERE temp > 1", "at 1:13: expected FROM, found 'WHERE'"},
		{"SELECT temp, hum, topic(2) AS device WHERE temp > 50", "at 1:38: expected FROM, found 'WHERE'"},
		{"SELECT temp hum FROM 'a'", "at 1:13: expected FROM, found 'hum'"},
		{"SELECT temp FROM", "at 1:17: expected a topic filter in single quotes after FROM, found end of input"},
		{"SELECT temp FROM things", "at 1:18: expected a topic filter in single quotes after FROM, found 'things'"},
		{`SELECT temp FROM "a/b"`, `at 1:18: expected a topic filter in single quotes after FROM, found '"a/b"'`},
		{"SELECT temp FROM ''", "at 1:18: invalid topic filter '': it is empty"},
		{"SELECT temp FROM 'a/#/b'", "at 1:18: invalid topic filter 'a/#/b': '#' must be the last level"},
		{"SELECT temp FROM 'a/b#'", "at 1:18: invalid topic filter 'a/b#': a wildcard must be a whole level"},
		{"SELECT temp FROM 'a/+b'", "at 1:18: invalid topic filter 'a/+b': a wildcard must be a whole level"},
		{"SELECT temp FROM '$share/g/a'", "at 1:18: invalid topic filter '$share/g/a': a rule cannot use a shared subscription"},
		{"SELECT temp FROM 'a\x00'", "at 1:18: invalid topic filter 'a\x00': it contains a NUL character"},
		{"SELECT temp FROM 'a' temp", "at 1:22: expected WHERE, GROUP BY or end of input, found 'temp'"},
		{"SELECT temp FROM 'a' WHERE", "at 1:27: expected an expression, found end of input"},
		{"SELECT temp FROM 'a' WHERE temp > 1 x", "at 1:37: expected GROUP BY or end of input, found 'x'"},
		{"SELECT temp FROM 'a'; x", "at 1:23: expected end of input, found 'x'"},
		{"SELECT temp FROM 'a' WHERE temp >", "at 1:34: expected an expression, found end of input"},
		{"SELECT a\nFROM 'x'\nWHERE a >", "at 3:10: expected an expression, found end of input"},
		{"SELECT 'é', x y FROM 'x'", "at 1:15: expected FROM, found 'y'"},
		{"SELECT '\xff' FROM 'x'", "at 1:9: invalid UTF-8"},
		{"SELECT 'a'\n'\xff' FROM 'x'", "at 2:2: invalid UTF-8"},

		// Functions.
		{"SELECT foo(1) FROM 'a'", "at 1:8: unknown function 'foo'"},
		{"SELECT Foo() FROM 'a'", "at 1:8: unknown function 'Foo'"},
		{"SELECT abs() FROM 'a'", "at 1:8: abs() takes 1 argument, found 0"},
		{"SELECT abs(1, 2) FROM 'a'", "at 1:8: abs() takes 1 argument, found 2"},
		{"SELECT round(1, 2, 3) FROM 'a'", "at 1:8: round() takes 1 or 2 arguments, found 3"},
		{"SELECT substring('a') FROM 'a'", "at 1:8: substring() takes 2 or 3 arguments, found 1"},
		{"SELECT power(2) FROM 'a'", "at 1:8: power() takes 2 arguments, found 1"},
		{"SELECT topic(1, 2) FROM 'a'", "at 1:8: topic() takes 0 or 1 argument, found 2"},
		{"SELECT clientid(1) FROM 'a'", "at 1:8: clientid() takes no arguments, found 1"},
		{"SELECT concat() FROM 'a'", "at 1:8: concat() takes at least 1 argument, found 0"},
		{"SELECT topic(0) FROM 'a'", "at 1:14: topic() takes a level number from 1, found 0"},
		{"SELECT topic(-1) FROM 'a'", "at 1:14: topic() takes a level number from 1, found -1"},
		{"SELECT topic('2') FROM 'a'", "at 1:14: topic() takes a level number from 1, found 2"},
		{"SELECT topic(1.5) FROM 'a'", "at 1:14: topic() takes a level number from 1, found 1.5"},
		{"SELECT encode(x, 'rot13') FROM 'a'", "at 1:18: unknown encoding 'rot13': want 'base64', 'base64url' or 'hex'"},
		{"SELECT decode(x, 1) FROM 'a'", "at 1:18: unknown encoding '1': want 'base64', 'base64url' or 'hex'"},
		{"SELECT abs(1 FROM 'a'", "at 1:14: expected ',' or ')' after an argument of abs(), found 'FROM'"},
		{"SELECT abs(,) FROM 'a'", "at 1:12: expected an expression, found ','"},
		{"SELECT \"abs\"(1) FROM 'a'", "at 1:13: expected FROM, found '('"},

		// CAST.
		{"SELECT CAST(x AS date) FROM 'a'", "at 1:18: unknown type 'date': want int, float, string or bool"},
		{"SELECT CAST(x, 'int') FROM 'a'", "at 1:14: expected AS in CAST, found ','"},
		{"SELECT CAST x FROM 'a'", "at 1:13: expected '(' after CAST, found 'x'"},
		{"SELECT CAST(x AS 'int') FROM 'a'", "at 1:18: expected a type (int, float, string or bool), found string 'int'"},
		{"SELECT CAST(x AS int FROM 'a'", "at 1:22: expected ')' after the type in CAST, found 'FROM'"},

		// Tokens.
		{"SELECT 'abc FROM x", "at 1:8: unterminated string"},
		{`SELECT "abc FROM x`, "at 1:8: unterminated quoted identifier"},
		{"SELECT a || b FROM 'x'", "at 1:10: unexpected '|': join strings with concat()"},
		{"SELECT `a` FROM 'x'", "at 1:8: unexpected '`': quote identifiers with double quotes"},
		{"SELECT a FROM 'x' WHERE a == 1", "at 1:28: expected an expression, found '='"},
		{"SELECT a FROM 'x' WHERE a ! 1", "at 1:27: unexpected character '!'"},
		{"SELECT a FROM 'x' WHERE a = #", "at 1:29: unexpected character '#'"},
		{"SELECT température FROM 'x'", `at 1:12: unexpected character 'é': quote names that are not plain ASCII identifiers, as in "température"`},
		{`SELECT "température" FROM 'x'`, ""},
		{"SELECT a FROM 'x' WHERE a = 1 /* open", "at 1:31: unterminated comment"},
		{"SELECT 1abc FROM 'x'", "at 1:8: malformed number '1a'"},
		{"SELECT 1e999 FROM 'x'", "at 1:8: number 1e999 is out of range"},
		{"SELECT +a FROM 'x'", "at 1:8: unary '+' is not supported"},
		{"SELECT " + strings.Repeat("x", 40) + "! FROM 'x'", "at 1:48: unexpected character '!'"},
		{"SELECT a b" + strings.Repeat("c", 40) + " FROM 'x'", "at 1:10: expected FROM, found 'bccccccccccccccccccccccccccccccc...'"},

		// Projection.
		{"SELECT a AS FROM 'x'", "at 1:13: expected a name after AS, found 'FROM'"},
		{"SELECT a AS 'b' FROM 'x'", "at 1:13: expected a name after AS, found string 'b'"},
		{"SELECT a, a FROM 'x'", "at 1:11: duplicate output name 'a' (rename with AS)"},
		{"SELECT a, b AS a FROM 'x'", "at 1:11: duplicate output name 'a' (rename with AS)"},
		{"SELECT x.a, y.a FROM 'x'", "at 1:13: duplicate output name 'a' (rename with AS)"},
		{"SELECT 1, 2 AS _1 FROM 'x'", "at 1:11: duplicate output name '_1' (rename with AS)"},
		{"SELECT *, * FROM 'x'", "at 1:11: * may appear only once in SELECT"},
		{"SELECT a. FROM 'x'", "at 1:16: expected FROM, found string 'x'"}, // a.FROM is a path
		{"SELECT a.1 FROM 'x'", "at 1:10: expected a field name after '.', found '1'"},

		// Expressions.
		{"SELECT a IS 5 FROM 'x'", "at 1:13: expected NULL or NOT NULL after IS, found '5'"},
		{"SELECT a IS NOT 5 FROM 'x'", "at 1:17: expected NULL after IS NOT, found '5'"},
		{"SELECT a IN 1 FROM 'x'", "at 1:13: expected '(' after IN, found '1'"},
		{"SELECT a IN () FROM 'x'", "at 1:14: expected an expression, found ')'"},
		{"SELECT a IN (1 2) FROM 'x'", "at 1:16: expected ',' or ')' in the IN list, found '2'"},
		{"SELECT a NOT 1 FROM 'x'", "at 1:10: expected FROM, found 'NOT'"},
		{"SELECT a BETWEEN 1 OR 2 FROM 'x'", "at 1:20: expected AND in BETWEEN, found 'OR'"},
		{"SELECT CASE END FROM 'x'", "at 1:13: expected an expression, found 'END'"},
		{"SELECT CASE a THEN 1 END FROM 'x'", "at 1:15: expected WHEN, found 'THEN'"},
		{"SELECT CASE WHEN a 1 END FROM 'x'", "at 1:20: expected THEN, found '1'"},
		{"SELECT CASE WHEN a THEN 1 FROM 'x'", "at 1:27: expected WHEN, ELSE or END, found 'FROM'"},
		{"SELECT (a FROM 'x'", "at 1:11: expected ')', found 'FROM'"},
		{"SELECT a[1 FROM 'x'", "at 1:12: expected ']', found 'FROM'"},
		{"SELECT a = NOT b FROM 'x'", "at 1:12: expected an expression, found 'NOT'"},
		{"SELECT select FROM 'x'", "at 1:8: expected an expression, found 'select'"},
		{"SELECT from FROM 'x'", "at 1:8: expected an expression, found 'from'"},
	} {
		_, err := Parse(c.sql)
		if c.want == "" {
			if err != nil {
				t.Errorf("Parse(%q) = %v; want no error", c.sql, err)
			}
			continue
		}
		var pe *ParseError
		if err == nil || !errors.As(err, &pe) || err.Error() != c.want {
			t.Errorf("Parse(%q) = %v; want %s", c.sql, err, c.want)
		}
	}
}

func TestLimits(t *testing.T) {
	long := "SELECT a FROM 'x' WHERE a = '" + strings.Repeat("x", MaxSQLBytes) + "'"
	if _, err := Parse(long); err == nil || err.Error() != "at 1:1: statement is 16414 bytes long; the limit is 16384" {
		t.Errorf("Parse(16414 bytes) = %v", err)
	}
	ok := "SELECT a FROM 'x' WHERE a = '" + strings.Repeat("x", MaxSQLBytes-30) + "'"
	if _, err := Parse(ok); err != nil || len(ok) != MaxSQLBytes {
		t.Errorf("Parse(%d bytes) = %v", len(ok), err)
	}

	nest := func(open, x, close string, n int) string {
		return "SELECT " + strings.Repeat(open, n) + x + strings.Repeat(close, n) + " AS v FROM 'x'"
	}
	for _, c := range []struct {
		sql, want string
	}{
		{nest("(", "1", ")", 63), ""},
		{nest("(", "1", ")", 64), "at 1:72: expression nested too deeply (the limit is 64 levels)"},
		{nest("(", "1", ")", 5000), "at 1:72: expression nested too deeply (the limit is 64 levels)"},
		{nest("NOT ", "true", "", 63), ""},
		{nest("NOT ", "true", "", 64), "at 1:264: expression nested too deeply (the limit is 64 levels)"},
		{nest("- ", "1", "", 5000), "at 1:136: expression nested too deeply (the limit is 64 levels)"},
		{nest("abs(", "1", ")", 63), ""},
		{nest("abs(", "1", ")", 64), "at 1:264: expression nested too deeply (the limit is 64 levels)"},
		{nest("a[", "1", "]", 100), "at 1:136: expression nested too deeply (the limit is 64 levels)"},
		{nest("CASE WHEN ", "1", " THEN 1 END", 100), "at 1:648: expression nested too deeply (the limit is 64 levels)"},
		// Long chains are loops, not nesting.
		{"SELECT 1" + strings.Repeat(" + 1", 3000) + " AS v FROM 'x'", ""},
		{"SELECT a" + strings.Repeat(".a", 3000) + " AS v FROM 'x'", ""},
	} {
		_, err := Parse(c.sql)
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != c.want {
			t.Errorf("Parse(%.40q...) = %v; want %q", c.sql, err, c.want)
		}
	}
	if got := evalStatement("SELECT 1"+strings.Repeat(" + 1", 3000)+" AS v FROM 'x'", Input{}); got != `{"v":3001}` {
		t.Errorf("3000 additions = %s", got)
	}
	if got := evalExpr(strings.Repeat("(", 63)+"1"+strings.Repeat(")", 63), "{}"); got != "1" {
		t.Errorf("63 parentheses = %s", got)
	}
}

// TestCanonical checks String(): canonical SQL that parses to itself.
func TestCanonical(t *testing.T) {
	for _, c := range []struct{ sql, want string }{
		{"select temp from 'a'", "SELECT temp FROM 'a'"},
		{"SELECT  temp ,hum AS h FROM 'a/+/b' where temp>50;", "SELECT temp, hum AS h FROM 'a/+/b' WHERE temp > 50"},
		{"SELECT * FROM '#'", "SELECT * FROM '#'"},
		{"SELECT *, topic(2) AS device FROM '#'", "SELECT *, topic(2) AS device FROM '#'"},
		{"SELECT (*) FROM '#'", "SELECT (*) FROM '#'"},
		{"SELECT * AS all FROM '#'", "SELECT * AS \"all\" FROM '#'"[:0] + "SELECT * AS all FROM '#'"},
		{"SELECT *[0].a FROM '#'", "SELECT *[0].a FROM '#'"},
		{"SELECT a.b[2].c, a['b'], a[\"x\"], \"my key\", \"a\"\"b\" FROM 'x'", `SELECT a.b[2].c, a.b, a[x], "my key", "a""b" FROM 'x'`},
		{`SELECT "from", "a".b, a."c d", "_ok", "9x" AS "1" FROM 'x'`, `SELECT "from", a.b, a."c d", _ok, "9x" AS "1" FROM 'x'`},
		{"SELECT a.FROM, a.select FROM 'x'", `SELECT a."FROM", a."select" FROM 'x'`},
		{"SELECT 'it''s', 1.0, 1e3, 2.5e-7, -0.0, 10, -5, - 5, -(5), - -5 FROM 'x'",
			"SELECT 'it''s', 1.0, 1000.0, 2.5e-07, -0.0, 10, -5, -5, -5, 5 FROM 'x'"},
		{"SELECT true, FALSE, null FROM 'x'", "SELECT TRUE, FALSE, NULL FROM 'x'"},
		{"SELECT a - -5, a - (-5), -a, -(-a), - (a + b), -(a * b), -a.b FROM 'x'",
			"SELECT a - -5, a - -5, -a, - -a, -(a + b), -(a * b), -a.b FROM 'x'"},
		{"SELECT (-5)[0], -5[0], (a + b).c, (a).b, (-a).b AS nb FROM 'x'", "SELECT (-5)[0], -5[0], (a + b).c, a.b, (-a).b AS nb FROM 'x'"},
		{"SELECT 1 + 2 * 3, (1 + 2) * 3, 1 - (2 - 3), (1 - 2) - 3, 1 / (2 * 3), 2 * (3 % 4) FROM 'x'",
			"SELECT 1 + 2 * 3, (1 + 2) * 3, 1 - (2 - 3), 1 - 2 - 3, 1 / (2 * 3), 2 * (3 % 4) FROM 'x'"},
		{"SELECT * FROM 'x' WHERE a = 1 AND (b = 2 OR c = 3) AND NOT d OR e <> f",
			"SELECT * FROM 'x' WHERE a = 1 AND (b = 2 OR c = 3) AND NOT d OR e != f"},
		{"SELECT * FROM 'x' WHERE NOT (a AND b) AND (NOT c) AND NOT NOT d",
			"SELECT * FROM 'x' WHERE NOT (a AND b) AND NOT c AND NOT NOT d"},
		{"SELECT * FROM 'x' WHERE (a = b) = c AND a = (b = c)", "SELECT * FROM 'x' WHERE a = b = c AND a = (b = c)"},
		{"SELECT * FROM 'x' WHERE a is null and b IS NOT NULL and (a + 1) is null and (a = 1) IS NULL",
			"SELECT * FROM 'x' WHERE a IS NULL AND b IS NOT NULL AND a + 1 IS NULL AND a = 1 IS NULL"},
		{"SELECT * FROM 'x' WHERE a in (1, 'b', c + 1) and a not in (null) and (a in (1)) in (true)",
			"SELECT * FROM 'x' WHERE a IN (1, 'b', c + 1) AND a NOT IN (NULL) AND a IN (1) IN (TRUE)"},
		{"SELECT * FROM 'x' WHERE a between 1 and 2 and b not between c + 1 and (d = 1)",
			"SELECT * FROM 'x' WHERE a BETWEEN 1 AND 2 AND b NOT BETWEEN c + 1 AND (d = 1)"},
		{"select case when a then 1 when b then 2 else 3 end, case x when 1 then 'a' end from 'x'",
			"SELECT CASE WHEN a THEN 1 WHEN b THEN 2 ELSE 3 END, CASE x WHEN 1 THEN 'a' END FROM 'x'"},
		{"SELECT cast(a AS INTEGER), CAST(b as Double), cast(c as varchar), cast(d as boolean) FROM 'x'",
			"SELECT CAST(a AS int), CAST(b AS float), CAST(c AS string), CAST(d AS bool) FROM 'x'"},
		{"SELECT TOPIC(2), Concat(a, 'b', 1), encode(*, 'base64') FROM 'x'",
			"SELECT topic(2), concat(a, 'b', 1), encode(*, 'base64') FROM 'x'"},
		{"SELECT a -- comment\n, /* block\ncomment */ b FROM 'x'", "SELECT a, b FROM 'x'"},
		{"SELECT 1--2\nFROM 'x'", "SELECT 1 FROM 'x'"},
		{"SELECT 9223372036854775807, -9223372036854775808, 9223372036854775808 FROM 'x'",
			"SELECT 9223372036854775807, -9223372036854775808, 9.223372036854776e+18 FROM 'x'"},
		{"SELECT a FROM 'it''s/#'", "SELECT a FROM 'it''s/#'"},
	} {
		s, err := Parse(c.sql)
		if err != nil {
			t.Errorf("Parse(%q) = %v", c.sql, err)
			continue
		}
		if got := s.String(); got != c.want {
			t.Errorf("Parse(%q).String() = %s; want %s", c.sql, got, c.want)
		}
		s2, err := Parse(s.String())
		if err != nil || s2.String() != s.String() {
			t.Errorf("Parse(%q) = %v, %v; want the same", s.String(), s2, err)
		}
	}
}

func TestColumns(t *testing.T) {
	s := MustParse(`SELECT a.b.c, x[0], *, "odd key", 1 + 2, topic(2), v AS renamed FROM 'x'`)
	want := []string{"c", "_2", "*", "odd key", "_5", "_6", "renamed"}
	if got := s.Columns(); !reflect.DeepEqual(got, want) {
		t.Errorf("Columns() = %q; want %q", got, want)
	}
}

func TestMustParsePanics(t *testing.T) {
	defer func() {
		if r := recover(); r != "rules: at 1:1: expected SELECT, found 'x'" {
			t.Errorf("recover() = %v", r)
		}
	}()
	MustParse("x")
}
