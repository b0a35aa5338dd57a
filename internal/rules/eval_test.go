package rules

import (
	"encoding/json"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/core"
)

// testTime is the receive time of test messages: 2026-01-01T00:00:00.123Z.
var testTime = time.Date(2026, 1, 1, 0, 0, 0, 123e6, time.UTC)

func testInput(payload string) Input {
	return Input{
		Topic:    "things/dev-1/telemetry/env",
		Payload:  []byte(payload),
		ClientID: "client-1",
		Thing:    "dev-1",
		Received: testTime,
	}
}

// evalExpr evaluates expression x against payload and returns its value as
// JSON, "undefined" when it is undefined, or "error: ..." when the
// statement does not parse or evaluate.
func evalExpr(x, payload string) string {
	s, err := Parse("SELECT " + x + " AS v FROM '#'")
	if err != nil {
		return "error: " + err.Error()
	}
	out, ok, err := s.Eval(testInput(payload))
	switch {
	case err != nil:
		return "error: " + err.Error()
	case !ok:
		return "no match"
	}
	v, found := out.Get("v")
	if !found {
		return "undefined"
	}
	return v.String()
}

type exprCase struct {
	x, want string
}

// checkExprs evaluates each expression against payload.
func checkExprs(t *testing.T, payload string, cases []exprCase) {
	t.Helper()
	for _, c := range cases {
		if got := evalExpr(c.x, payload); got != c.want {
			t.Errorf("%s on %s = %s; want %s", c.x, payload, got, c.want)
		}
	}
}

// The payload most expression tests run against.
const testPayload = `{"temp": 21.5, "hum": 40, "name": "Dev One", "on": true, "off": false, "n": null,
	"a": {"b": [10, {"c": "x"}, [1, 2]]}, "arr": [1, 2, 3], "my key": 1, "k.with.dots": 2,
	"big": 9007199254740993, "s5": "5", "neg": -7, "obj": {"x": 1, "y": [true]}, "empty": ""}`

func TestLiterals(t *testing.T) {
	checkExprs(t, `{}`, []exprCase{
		{"1", "1"},
		{"-1", "-1"},
		{"1.5", "1.5"},
		{"-1.5", "-1.5"},
		{"1e3", "1000"},
		{"2.5E-3", "0.0025"},
		{"9223372036854775807", "9223372036854775807"},
		{"-9223372036854775808", "-9223372036854775808"},
		{"typeof(-9223372036854775808)", `"int"`},
		{"9223372036854775808", "9223372036854776000"}, // a float
		{"typeof(9223372036854775808)", `"float"`},
		{"typeof(1)", `"int"`},
		{"typeof(1.0)", `"float"`},
		{"'it''s'", `"it's"`},
		{"''", `""`},
		{"'line\nbreak'", `"line\nbreak"`},
		{"'é\"'", `"é\""`},
		{"true", "true"},
		{"FALSE", "false"},
		{"Null", "null"},
		{"- -1", "1"},
		{"-(-1)", "1"},
		{"-(1.5)", "-1.5"},
	})
}

func TestPaths(t *testing.T) {
	checkExprs(t, testPayload, []exprCase{
		{"temp", "21.5"},
		{"TEMP", "undefined"}, // field names are case-sensitive
		{"a.b[0]", "10"},
		{"a.b[1].c", `"x"`},
		{"a.b[2][1]", "2"},
		{"a.b[-1][0]", "1"},
		{"a.b[-3]", "10"},
		{"a.b[-4]", "undefined"},
		{"a.b[3]", "undefined"},
		{"a.b[1.5]", "undefined"},
		{"a.x.y", "undefined"},
		{"arr[0].x", "undefined"},
		{"arr.x", "undefined"},
		{"temp.x", "undefined"},
		{"temp[0]", "undefined"},
		{"n", "null"},
		{"n.x", "undefined"},
		{"missing", "undefined"},
		{`"my key"`, "1"},
		{`"k.with.dots"`, "2"},
		{`a."b"[0]`, "10"},
		{"a['b'][0]", "10"},
		{"a.b[1]['c']", `"x"`},
		{"arr[1 + 1]", "3"},
		{"arr[neg]", "undefined"},
		{"arr[hum - 39]", "2"},
		{"arr['x']", "undefined"},
		{"arr[n]", "undefined"},
		{"obj[name]", "undefined"},
		{"(a).b[0]", "10"},
		{"(a.b)[1].c", `"x"`},
		{"*.a.b[0]", "10"},
		{"*['my key']", "1"},
		{"*[0]", "undefined"},
		{"obj", `{"x":1,"y":[true]}`},
		{"obj.y", "[true]"},
		{"arr", "[1,2,3]"},
		{"split('a/b', '/')[1]", `"b"`},
		{"split('a/b', '/')[-1]", `"b"`},
	})
	checkExprs(t, `[1, {"a": 2}]`, []exprCase{
		{"*[1].a", "2"},
		{"*[0]", "1"},
		{"a", "undefined"},
	})
	checkExprs(t, `{"select": {"from": 1}, "end": 2}`, []exprCase{
		{`"select".from`, "1"}, // a keyword after '.' is a key
		{`"select".FROM`, "undefined"},
		{`"end"`, "2"},
	})
}

func TestArithmetic(t *testing.T) {
	checkExprs(t, testPayload, []exprCase{
		{"1 + 2", "3"},
		{"1 + 2.5", "3.5"},
		{"hum - 50", "-10"},
		{"temp * 2", "43"},
		{"typeof(temp * 2)", `"float"`},
		{"7 / 2", "3.5"},
		{"6 / 2", "3"},
		{"typeof(6 / 2)", `"int"`},
		{"-7 / 2", "-3.5"},
		{"7 % 3", "1"},
		{"-7 % 3", "-1"},
		{"7 % -3", "1"},
		{"7.5 % 2", "1.5"},
		{"1 / 0", "null"},
		{"1.5 / 0", "null"},
		{"1 / 0.0", "null"},
		{"1 % 0", "null"},
		{"1.5 % 0", "null"},
		{"9223372036854775807 + 1", "9223372036854776000"},
		{"typeof(9223372036854775807 + 1)", `"float"`},
		{"-9223372036854775808 - 1", "-9223372036854776000"},
		{"typeof(-9223372036854775808 - 1)", `"float"`},
		{"4294967296 * 4294967296", "18446744073709552000"},
		{"-9223372036854775808 / -1", "9223372036854776000"},
		{"-9223372036854775808 % -1", "0"},
		{"-(-9223372036854775808)", "9223372036854776000"},
		{"1e308 * 10", "null"},
		{"big + 0", "9007199254740993"},
		{"big + 0.0", "9007199254740992"},
		{"2 + 3 * 4", "14"},
		{"(2 + 3) * 4", "20"},
		{"10 - 2 - 3", "5"},
		{"2 * 3 % 4", "2"},
		{"-hum", "-40"},
		{"-name", "null"},
		{"'a' + 1", "null"},
		{"s5 + 1", "null"},
		{"on + 1", "null"},
		{"arr + 1", "null"},
		{"n + 1", "null"},
		{"missing + 1", "undefined"},
		{"missing + n", "undefined"},
		{"-missing", "undefined"},
		{"-n", "null"},
	})
}

func TestComparisons(t *testing.T) {
	checkExprs(t, testPayload, []exprCase{
		{"1 = 1", "true"},
		{"1 = 1.0", "true"},
		{"1 <> 1.0", "false"},
		{"1 != 2", "true"},
		{"1 < 2", "true"},
		{"2 <= 2", "true"},
		{"3 > 2.5", "true"},
		{"3 >= 3.5", "false"},
		{"big = 9007199254740992.0", "false"}, // int and float compare exactly
		{"big > 9007199254740992.0", "true"},
		{"9223372036854775807 < 9223372036854775808.0", "true"},
		{"-9223372036854775808 = -9223372036854775808.0", "true"},
		{"'a' < 'b'", "true"},
		{"'B' < 'a'", "true"}, // byte order
		{"'abc' = 'abc'", "true"},
		{"'ab' >= 'abc'", "false"},
		{"name = 'Dev One'", "true"},
		{"true = true", "true"},
		{"on = off", "false"},
		{"on != off", "true"},
		// Mismatched types: never equal, never ordered.
		{"'5' = 5", "false"},
		{"s5 = 5", "false"},
		{"s5 != 5", "true"},
		{"'a' < 1", "false"},
		{"'a' >= 1", "false"},
		{"true > false", "false"},
		{"true = 1", "false"},
		{"arr < arr", "false"},
		// Arrays and objects compare by content.
		{"arr = arr", "true"},
		{"a.b[2] = a.b[2]", "true"},
		{"arr = a.b[2]", "false"},
		{"obj = obj", "true"},
		{"obj = a", "false"},
		{"split('1', ',') = split('1', ',')", "true"},
		// Null and undefined make comparisons unknown.
		{"n = n", "null"},
		{"n = 1", "null"},
		{"1 != n", "null"},
		{"n < 1", "null"},
		{"missing = 1", "undefined"},
		{"missing = n", "undefined"},
		{"missing != missing", "undefined"},
		// Chains compare left to right.
		{"1 < 2 = true", "true"},
	})
}

// TestThreeValuedLogic checks AND, OR and NOT over true, false, null and
// undefined (the field u is missing).
func TestThreeValuedLogic(t *testing.T) {
	payload := `{"t": true, "f": false, "n": null, "num": 1}`
	vals := []string{"t", "f", "n", "u"}
	// want[op][i][j] is vals[i] op vals[j].
	and := [4][4]string{
		{"true", "false", "null", "undefined"},
		{"false", "false", "false", "false"},
		{"null", "false", "null", "undefined"},
		{"undefined", "false", "undefined", "undefined"},
	}
	or := [4][4]string{
		{"true", "true", "true", "true"},
		{"true", "false", "null", "undefined"},
		{"true", "null", "null", "undefined"},
		{"true", "undefined", "undefined", "undefined"},
	}
	var cases []exprCase
	for i, a := range vals {
		for j, b := range vals {
			cases = append(cases,
				exprCase{a + " AND " + b, and[i][j]},
				exprCase{a + " OR " + b, or[i][j]})
		}
	}
	cases = append(cases,
		exprCase{"NOT t", "false"},
		exprCase{"NOT f", "true"},
		exprCase{"NOT n", "null"},
		exprCase{"NOT u", "undefined"},
		exprCase{"NOT NOT t", "true"},
		// Operands that are not booleans are unknown (null).
		exprCase{"num AND t", "null"},
		exprCase{"num AND f", "false"},
		exprCase{"num OR t", "true"},
		exprCase{"NOT num", "null"},
		exprCase{"NOT 'true'", "null"},
		// Precedence: NOT > AND > OR.
		exprCase{"t OR t AND f", "true"},
		exprCase{"(t OR t) AND f", "false"},
		exprCase{"NOT f AND f", "false"},
		exprCase{"NOT (f AND f)", "true"},
		exprCase{"NOT num = 2", "true"},
	)
	checkExprs(t, payload, cases)
}

func TestWhere(t *testing.T) {
	payload := `{"t": true, "f": false, "n": null, "num": 1}`
	for _, c := range []struct {
		where string
		want  bool
	}{
		{"t", true},
		{"f", false},
		{"n", false},
		{"u", false},
		{"num", false}, // not a boolean
		{"NOT n", false},
		{"NOT u", false},
		{"n IS NULL", true},
		{"u IS NULL", true},
		{"NOT (num > 5)", true},
		{"NOT (u > 5)", false},
		{"num = 1 OR u = 1", true},
		{"num = 1 AND u = 1", false},
	} {
		s := MustParse("SELECT num FROM '#' WHERE " + c.where)
		_, ok, err := s.Eval(testInput(payload))
		if ok != c.want || err != nil {
			t.Errorf("WHERE %s = %v, %v; want %v", c.where, ok, err, c.want)
		}
	}
}

func TestPredicates(t *testing.T) {
	checkExprs(t, testPayload, []exprCase{
		{"n IS NULL", "true"},
		{"missing IS NULL", "true"},
		{"temp IS NULL", "false"},
		{"n IS NOT NULL", "false"},
		{"missing IS NOT NULL", "false"},
		{"temp IS NOT NULL", "true"},
		{"temp + 1 IS NULL", "false"},
		{"NOT temp IS NULL", "true"},

		{"2 IN (1, 2)", "true"},
		{"3 IN (1, 2)", "false"},
		{"2.0 IN (1, 2)", "true"},
		{"'2' IN (1, 2)", "false"},
		{"name IN ('a', 'Dev One')", "true"},
		{"3 IN (1, n)", "null"},
		{"1 IN (1, n)", "true"},
		{"3 IN (1, missing)", "undefined"},
		{"3 IN (missing, n)", "undefined"},
		{"n IN (1, 2)", "null"},
		{"missing IN (1, 2)", "undefined"},
		{"3 NOT IN (1, 2)", "true"},
		{"2 NOT IN (1, 2)", "false"},
		{"3 NOT IN (1, n)", "null"},
		{"arr IN (a.b[2], arr)", "true"},
		{"hum IN (hum - 1, hum + 0)", "true"},

		{"5 BETWEEN 1 AND 10", "true"},
		{"1 BETWEEN 1 AND 10", "true"},
		{"10 BETWEEN 1 AND 10", "true"},
		{"11 BETWEEN 1 AND 10", "false"},
		{"5 NOT BETWEEN 1 AND 10", "false"},
		{"11 NOT BETWEEN 1 AND 10", "true"},
		{"temp BETWEEN 20 AND 22 AND on", "true"},
		{"'b' BETWEEN 'a' AND 'c'", "true"},
		{"'b' BETWEEN 1 AND 'c'", "false"},
		{"n BETWEEN 1 AND 2", "null"},
		{"5 BETWEEN 1 AND n", "null"},
		{"0 BETWEEN 1 AND n", "false"},
		{"missing BETWEEN 1 AND 2", "undefined"},
		{"hum BETWEEN 30 + 5 AND 50 - 5", "true"},
	})
}

func TestCase(t *testing.T) {
	checkExprs(t, testPayload, []exprCase{
		{"CASE WHEN temp > 30 THEN 'hot' WHEN temp > 20 THEN 'warm' ELSE 'cold' END", `"warm"`},
		{"CASE WHEN temp > 30 THEN 'hot' ELSE 'cold' END", `"cold"`},
		{"CASE WHEN temp > 30 THEN 'hot' END", "undefined"},
		{"CASE WHEN n THEN 1 ELSE 2 END", "2"},
		{"CASE WHEN missing THEN 1 ELSE 2 END", "2"},
		{"CASE WHEN hum THEN 1 ELSE 2 END", "2"},
		{"CASE hum WHEN 30 THEN 'a' WHEN 40 THEN 'b' ELSE 'c' END", `"b"`},
		{"CASE hum WHEN 40.0 THEN 'b' END", `"b"`},
		{"CASE s5 WHEN 5 THEN 'number' WHEN '5' THEN 'string' END", `"string"`},
		{"CASE n WHEN n THEN 1 ELSE 2 END", "2"},
		{"CASE name WHEN 'x' THEN 1 END", "undefined"},
		{"CASE WHEN on THEN n END", "null"},
		// Branches not taken are not evaluated.
		{"CASE WHEN on THEN 1 ELSE CAST(name AS int) END", "1"},
		{"CASE WHEN off THEN CAST(name AS int) ELSE 2 END", "2"},
	})
}

func TestCast(t *testing.T) {
	checkExprs(t, testPayload, []exprCase{
		{"CAST('42' AS int)", "42"},
		{"CAST(' 42 ' AS INT)", "42"},
		{"CAST('-4.7' AS int)", "-4"},
		{"CAST('1e3' AS int)", "1000"},
		{"CAST(4.7 AS integer)", "4"},
		{"CAST(-4.7 AS int)", "-4"},
		{"CAST(true AS int)", "1"},
		{"CAST(s5 AS int) + 1", "6"},
		{"CAST('9223372036854775807' AS int)", "9223372036854775807"},
		{"CAST(1e30 AS int)", "error: at 1:8: cannot cast number 1e+30 to int: out of range"},
		{"CAST('1e30' AS int)", `error: at 1:8: cannot cast string '1e30' to int: out of range`},
		{"CAST(name AS int)", `error: at 1:8: cannot cast string 'Dev One' to int`},
		{"CAST('' AS int)", `error: at 1:8: cannot cast string '' to int`},
		{"CAST('0x10' AS int)", `error: at 1:8: cannot cast string '0x10' to int`},
		{"CAST('1_000' AS int)", `error: at 1:8: cannot cast string '1_000' to int`},
		{"CAST(arr AS int)", "error: at 1:8: cannot cast array to int"},
		{"CAST(obj AS bool)", "error: at 1:8: cannot cast object to bool"},
		{"CAST('3' AS float)", "3"},
		{"typeof(CAST(3 AS float))", `"float"`},
		{"CAST('.5' AS double)", "0.5"},
		{"CAST('5.' AS float)", "5"},
		{"CAST('+2.5e1' AS float)", "25"},
		{"CAST(false AS float)", "0"},
		{"CAST('NaN' AS float)", `error: at 1:8: cannot cast string 'NaN' to float`},
		{"CAST('inf' AS float)", `error: at 1:8: cannot cast string 'inf' to float`},
		{"CAST('1e999' AS float)", `error: at 1:8: cannot cast string '1e999' to float`},
		{"CAST(temp AS string)", `"21.5"`},
		{"CAST(hum AS varchar)", `"40"`},
		{"CAST(1e21 AS string)", `"1e+21"`},
		{"CAST(on AS string)", `"true"`},
		{"CAST(obj AS string)", `"{\"x\":1,\"y\":[true]}"`},
		{"CAST(name AS string)", `"Dev One"`},
		{"CAST('TRUE' AS bool)", "true"},
		{"CAST(' false ' AS boolean)", "false"},
		{"CAST('yes' AS bool)", `error: at 1:8: cannot cast string 'yes' to bool`},
		{"CAST(0 AS bool)", "false"},
		{"CAST(0.5 AS bool)", "true"},
		{"CAST(n AS int)", "null"},
		{"CAST(missing AS int)", "undefined"},
	})
}

func TestCastErrorPosition(t *testing.T) {
	s := MustParse("SELECT temp,\n  CAST(name AS int) AS x\nFROM '#'")
	_, ok, err := s.Eval(testInput(testPayload))
	var ee *EvalError
	if ok || !errors.As(err, &ee) || ee.Line != 2 || ee.Pos != 3 || err.Error() != "at 2:3: cannot cast string 'Dev One' to int" {
		t.Errorf("Eval = %v, %v; want at 2:3: cannot cast string 'Dev One' to int", ok, err)
	}
	// In WHERE, the error stops the evaluation too.
	s = MustParse("SELECT temp FROM '#' WHERE CAST(name AS int) > 1")
	if _, ok, err := s.Eval(testInput(testPayload)); ok || err == nil || err.Error() != "at 1:28: cannot cast string 'Dev One' to int" {
		t.Errorf("Eval = %v, %v; want at 1:28: cannot cast string 'Dev One' to int", ok, err)
	}
	// A false condition skips the projection, and its errors.
	s = MustParse("SELECT CAST(name AS int) AS x FROM '#' WHERE temp > 100")
	if _, ok, err := s.Eval(testInput(testPayload)); ok || err != nil {
		t.Errorf("Eval = %v, %v; want false, nil", ok, err)
	}
	// AND does not evaluate its right side when the left is false.
	s = MustParse("SELECT temp FROM '#' WHERE temp > 100 AND CAST(name AS int) > 1")
	if _, ok, err := s.Eval(testInput(testPayload)); ok || err != nil {
		t.Errorf("Eval = %v, %v; want false, nil", ok, err)
	}
}

func TestFunctions(t *testing.T) {
	checkExprs(t, testPayload, []exprCase{
		// The message.
		{"topic()", `"things/dev-1/telemetry/env"`},
		{"topic(1)", `"things"`},
		{"topic(2)", `"dev-1"`},
		{"topic(4)", `"env"`},
		{"topic(5)", "undefined"},
		{"topic(hum)", "undefined"},
		{"topic(hum - 38)", `"dev-1"`},
		{"topic(temp)", "null"},
		{"topic(n)", "null"},
		{"topic(missing)", "undefined"},
		{"clientid()", `"client-1"`},
		{"thing()", `"dev-1"`},
		{"timestamp()", "1767225600123"},
		{"payload()", `"` + strings.NewReplacer("\n", `\n`, "\t", `\t`, `"`, `\"`).Replace(testPayload) + `"`},

		// Numbers.
		{"abs(-3)", "3"},
		{"abs(3)", "3"},
		{"abs(-2.5)", "2.5"},
		{"abs(-9223372036854775808)", "9223372036854776000"},
		{"abs('x')", "null"},
		{"abs(n)", "null"},
		{"abs(missing)", "undefined"},
		{"round(2.5)", "3"},
		{"round(-2.5)", "-3"},
		{"round(2.4)", "2"},
		{"typeof(round(2.4))", `"int"`},
		{"round(7)", "7"},
		{"round(3.14159, 2)", "3.14"},
		{"round(-3.14159, 3)", "-3.142"},
		{"round(2.675, 2)", "2.68"},
		{"typeof(round(3.14159, 2))", `"float"`},
		{"round(1234.5, -2)", "1200"},
		{"round(1250, -2)", "1300"},
		{"round(-1250, -2)", "-1300"},
		{"round(1249, -2)", "1200"},
		{"round(5, -20)", "0"},
		{"round(1.5, 400)", "1.5"},
		{"round(1e300, 20)", "1e+300"},
		{"round(1.5, 1.5)", "null"},
		{"round('1.5')", "null"},
		{"round(1.5, n)", "null"},
		{"floor(2.7)", "2"},
		{"floor(-2.2)", "-3"},
		{"floor(5)", "5"},
		{"typeof(floor(2.7))", `"int"`},
		{"floor(1e300)", "1e+300"},
		{"ceil(2.2)", "3"},
		{"ceil(-2.7)", "-2"},
		{"ceil('x')", "null"},
		{"sign(-3)", "-1"},
		{"sign(0.0)", "0"},
		{"sign(2.5)", "1"},
		{"sqrt(16)", "4"},
		{"sqrt(2)", "1.4142135623730951"},
		{"sqrt(-1)", "null"},
		{"ln(1)", "0"},
		{"ln(0)", "null"},
		{"log10(1000)", "3"},
		{"exp(0)", "1"},
		{"exp(1000)", "null"},
		{"power(2, 10)", "1024"},
		{"typeof(power(2, 10))", `"int"`},
		{"power(2, -1)", "0.5"},
		{"power(2.0, 3)", "8"},
		{"typeof(power(2.0, 3))", `"float"`},
		{"power(2, 63)", "9223372036854776000"},
		{"power(-2, 63)", "-9223372036854775808"},
		{"typeof(power(-2, 63))", `"int"`},
		{"power(0, 0)", "1"},
		{"power(-8, 0.5)", "null"},
		{"power(10, 400)", "null"},
		{"mod(7, 3)", "1"},
		{"mod(7, 0)", "null"},

		// Strings.
		{"lower(name)", `"dev one"`},
		{"upper(name)", `"DEV ONE"`},
		{"upper('straße')", `"STRAßE"`},
		{"lower(1)", "null"},
		{"trim('  a b  ')", `"a b"`},
		{"ltrim('  a  ')", `"a  "`},
		{"rtrim('  a  ')", `"  a"`},
		{"length(name)", "7"},
		{"length('héllo')", "5"},
		{"length(arr)", "3"},
		{"length(obj)", "2"},
		{"length(*)", "15"},
		{"length(temp)", "null"},
		{"length(empty)", "0"},
		{"substring('hello', 2)", `"ello"`},
		{"substring('hello', 2, 3)", `"ell"`},
		{"substring('hello', 1, 100)", `"hello"`},
		{"substring('hello', 0, 2)", `"h"`},
		{"substring('hello', -5, 7)", `"h"`},
		{"substring('hello', 6)", `""`},
		{"substring('hello', 10, 2)", `""`},
		{"substring('hello', 2, 0)", `""`},
		{"substring('hello', 2, -1)", "null"},
		{"substring('héllo', 2, 2)", `"él"`},
		{"substring('hello', 1.5)", "null"},
		{"substring(5, 1)", "null"},
		{"replace('a-b-c', '-', '+')", `"a+b+c"`},
		{"replace('abc', '', 'x')", `"abc"`},
		{"startswith(name, 'Dev')", "true"},
		{"startswith(name, 'dev')", "false"},
		{"endswith(topic(), '/env')", "true"},
		{"startswith(temp, '2')", "null"},
		{"contains(name, 'v O')", "true"},
		{"contains(name, 'x')", "false"},
		{"contains(arr, 2)", "true"},
		{"contains(arr, 2.0)", "true"},
		{"contains(arr, '2')", "false"},
		{"contains(a.b, split('1,2', ','))", "false"},
		{"contains(temp, 2)", "null"},
		{"split('a,b,,c', ',')", `["a","b","","c"]`},
		{"split('abc', '')", `["a","b","c"]`},
		{"split(5, ',')", "null"},
		{"concat('a', 'b', 'c')", `"abc"`},
		{"concat(name, '-', hum)", `"Dev One-40"`},
		{"concat('t=', temp, ' on=', on, ' ', arr, obj)", `"t=21.5 on=true [1,2,3]{\"x\":1,\"y\":[true]}"`},
		{"concat('a', n, missing, 'b')", `"ab"`},
		{"concat(missing)", `""`},
		{"concat(1e21)", `"1e+21"`},
		{"encode('hi', 'base64')", `"aGk="`},
		{"encode('hi?', 'base64url')", `"aGk_"`},
		{"encode('hi', 'hex')", `"6869"`},
		{"encode(hum, 'hex')", `"3430"`},
		{"encode(n, 'hex')", "null"},
		{"encode(missing, 'hex')", "undefined"},
		{"encode('x', name)", "null"},
		{"encode(*, 'base64')", `"` + b64(testPayload) + `"`},
		{"decode('aGk=', 'base64')", `"hi"`},
		{"decode('aGk_', 'base64url')", `"hi?"`},
		{"decode('6869', 'hex')", `"hi"`},
		{"decode('zz', 'hex')", "null"},
		{"decode('/w==', 'base64')", "null"}, // not UTF-8

		// Nulls and types.
		{"coalesce(missing, n, hum)", "40"},
		{"coalesce(missing, n)", "null"},
		{"coalesce(missing)", "undefined"},
		{"coalesce(temp, CAST(name AS int))", "21.5"}, // stops at the first value
		{"isnull(n)", "true"},
		{"isnull(missing)", "true"},
		{"isnull(0)", "false"},
		{"isundefined(missing)", "true"},
		{"isundefined(n)", "false"},
		{"typeof(missing)", `"undefined"`},
		{"typeof(n)", `"null"`},
		{"typeof(on)", `"bool"`},
		{"typeof(hum)", `"int"`},
		{"typeof(temp)", `"float"`},
		{"typeof(name)", `"string"`},
		{"typeof(arr)", `"array"`},
		{"typeof(obj)", `"object"`},
		{"typeof(*)", `"object"`},

		// Function names are case-insensitive.
		{"UPPER(Name)", "undefined"},
		{"Upper(name)", `"DEV ONE"`},
		{"TOPIC(2)", `"dev-1"`},
	})
}

func TestStringLimit(t *testing.T) {
	payload := `{"s": "` + strings.Repeat("a", 1000) + `"}`
	checkExprs(t, payload, []exprCase{
		{"length(replace(s, 'a', s))", "1000000"},
		{"length(replace(s, 'a', concat(s, s)))", "null"},
		{"length(replace(replace(s, 'a', s), 'a', s))", "null"},
		{"length(replace(s, 'x', concat(s, s)))", "1000"},
		{"length(concat(replace(s, 'a', s), s, s))", "1002000"},
		{"length(concat(replace(s, 'a', s), replace(s, 'a', s)))", "null"},
		{"length(encode(replace(s, 'a', s), 'hex'))", "null"},
		{"length(encode(replace(s, 'a', substring(s, 1, 500)), 'hex'))", "1000000"},
		{"length(encode(replace(s, 'a', substring(s, 1, 700)), 'base64'))", "933336"},
		{"length(encode(replace(s, 'a', s), 'base64'))", "null"},
	})
}

func TestNewUUID(t *testing.T) {
	re := regexp.MustCompile(`^"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"$`)
	a, b := evalExpr("newuuid()", "{}"), evalExpr("newuuid()", "{}")
	if !re.MatchString(a) || !re.MatchString(b) || a == b {
		t.Errorf("newuuid() = %s, %s; want two different version 4 UUIDs", a, b)
	}
	s := MustParse("SELECT newuuid() AS a, newuuid() AS b FROM '#'")
	out, _, _ := s.Eval(testInput("{}"))
	if x, _ := out.Get("a"); x.Str() == out[1].Value.Str() {
		t.Errorf("two newuuid() in one statement = %v; want different", out)
	}
}

func TestMessageFunctionsEmpty(t *testing.T) {
	// A platform message has no client id nor thing; the receive time
	// defaults to now.
	s := MustParse("SELECT clientid() AS c, thing() AS t, timestamp() AS ts FROM '#'")
	before := time.Now().UnixMilli()
	out, ok, err := s.Eval(Input{Topic: "a/b", Payload: []byte("{}")})
	after := time.Now().UnixMilli()
	if !ok || err != nil || len(out) != 1 {
		t.Fatalf("Eval = %v, %v, %v; want only ts", out, ok, err)
	}
	if ts, _ := out.Get("ts"); ts.Int() < before || ts.Int() > after {
		t.Errorf("timestamp() = %v; want between %d and %d", ts, before, after)
	}
}

func b64(s string) string {
	out := evalExpr("encode('"+strings.ReplaceAll(s, "'", "''")+"', 'base64')", "{}")
	return strings.Trim(out, `"`)
}

// stmtCase evaluates a whole statement: want is the output as JSON, "no
// match" or "error: ...".
type stmtCase struct {
	sql, payload, want string
}

func checkStatements(t *testing.T, cases []stmtCase) {
	t.Helper()
	for _, c := range cases {
		got := evalStatement(c.sql, Input{Topic: "things/dev-1/telemetry", Payload: []byte(c.payload), Thing: "dev-1", ClientID: "c1", Received: testTime})
		if got != c.want {
			t.Errorf("%s on %q = %s; want %s", c.sql, c.payload, got, c.want)
		}
	}
}

func evalStatement(sql string, in Input) string {
	s, err := Parse(sql)
	if err != nil {
		return "error: " + err.Error()
	}
	out, ok, err := s.Eval(in)
	switch {
	case err != nil:
		return "error: " + err.Error()
	case !ok:
		return "no match"
	}
	return out.String()
}

func TestStatements(t *testing.T) {
	const p = `{"temp": 55.5, "hum": 40, "device": "from-payload", "n": null, "nested": {"a": 1}}`
	checkStatements(t, []stmtCase{
		{"SELECT temp, hum, topic(2) AS device, timestamp() AS ts FROM 'things/+/telemetry' WHERE temp > 50",
			p, `{"temp":55.5,"hum":40,"device":"dev-1","ts":1767225600123}`},
		{"SELECT temp FROM 'things/+/telemetry' WHERE temp > 60", p, "no match"},
		{"SELECT *, topic(2) AS device FROM '#'",
			p, `{"temp":55.5,"hum":40,"n":null,"nested":{"a":1},"device":"dev-1"}`},
		{"SELECT topic(2) AS device, * FROM '#'",
			p, `{"device":"dev-1","temp":55.5,"hum":40,"n":null,"nested":{"a":1}}`},
		{"SELECT * FROM '#'", p, `{"temp":55.5,"hum":40,"device":"from-payload","n":null,"nested":{"a":1}}`},
		// An explicit column replaces the member of * even when it is
		// undefined: a way to drop members.
		{"SELECT *, missing AS hum FROM '#'", p, `{"temp":55.5,"device":"from-payload","n":null,"nested":{"a":1}}`},
		{"SELECT * AS data, topic() AS t FROM '#'",
			p, `{"data":{"temp":55.5,"hum":40,"device":"from-payload","n":null,"nested":{"a":1}},"t":"things/dev-1/telemetry"}`},
		// Undefined values are omitted; null ones are kept.
		{"SELECT missing, n, temp FROM '#'", p, `{"n":null,"temp":55.5}`},
		{"SELECT missing FROM '#'", p, `{}`},
		// Output names.
		{"SELECT nested.a, temp + 1, nested['a'] AS b, (hum), 'x' FROM '#'", p, `{"a":1,"_2":56.5,"b":1,"hum":40,"_5":"x"}`},
		{"SELECT nested.a, nested['a'] FROM '#'", p, "error: at 1:18: duplicate output name 'a' (rename with AS)"},
		{"SELECT temp AS \"the temp\", hum AS \"select\" FROM '#'", p, `{"the temp":55.5,"select":40}`},
		// WHERE sees the payload, not the aliases.
		{"SELECT temp AS t FROM '#' WHERE t > 50", p, "no match"},
		// Payloads that are not JSON objects.
		{"SELECT * FROM '#'", `[1, 2]`, `{}`},
		{"SELECT *, * AS all FROM '#'", `[1, 2]`, `{"all":[1,2]}`},
		{"SELECT *, payload() AS raw FROM '#'", `hello`, `{"raw":"hello"}`},
		{"SELECT * AS all, temp FROM '#'", `hello`, `{}`},
		{"SELECT payload() AS raw, encode(*, 'hex') AS hex FROM '#'", "\xff\x00a", `{"raw":"/wBh","hex":"ff0061"}`},
		{"SELECT payload() AS raw FROM '#'", ``, `{"raw":""}`},
		{"SELECT * AS all FROM '#'", `42`, `{"all":42}`},
		{"SELECT * AS all FROM '#'", ` "str" `, `{"all":"str"}`},
		{"SELECT * AS all FROM '#'", `{"a":1} x`, `{}`},
		// Duplicate keys in the payload: first position, last value.
		{"SELECT * FROM '#'", `{"a": 1, "b": 2, "a": 3}`, `{"a":3,"b":2}`},
		{"SELECT a FROM '#'", `{"a": 1, "b": 2, "a": 3}`, `{"a":3}`},
		{"SELECT * AS x FROM '#'", `{"a": 1, "b": 2, "a": 3}`, `{"x":{"a":3,"b":2}}`},
		{"SELECT length(*) AS n FROM '#'", `{"a": 1, "b": 2, "a": 3}`, `{"n":2}`},
		// Escapes and Unicode.
		{"SELECT * FROM '#'", `{"a\u00e9\"": "x\ny\u2028", "\ud83d\ude00": "\ud800"}`, `{"aé\"":"x\ny\u2028","😀":"�"}`},
	})
}

func TestOutputJSON(t *testing.T) {
	s := MustParse("SELECT *, topic(2) AS device FROM '#'")
	in := testInput(testPayload)
	out, ok, err := s.Eval(in)
	if !ok || err != nil {
		t.Fatalf("Eval = %v, %v", ok, err)
	}
	b, err := json.Marshal(out)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != out.String() || string(out.AppendJSON(nil)) != out.String() {
		t.Errorf("json.Marshal = %s; want %s", b, out.String())
	}
	var fromJSON, fromMap any
	if err := json.Unmarshal(b, &fromJSON); err != nil {
		t.Fatal(err)
	}
	m, _ := json.Marshal(out.Map())
	json.Unmarshal(m, &fromMap)
	if !jsonEqual(fromJSON, fromMap) {
		t.Errorf("Map() = %s; want %s", m, b)
	}
	if v, _ := out.Get("big"); v.Any() != any(int64(9007199254740993)) {
		t.Errorf("big.Any() = %#v; want int64(9007199254740993)", v.Any())
	}
	if v, _ := out.Get("temp"); v.Any() != any(21.5) || v.Kind() != KindFloat || v.Float() != 21.5 {
		t.Errorf("temp = %#v; want float64(21.5)", v.Any())
	}
}

func TestSharedMessage(t *testing.T) {
	m := NewMessage(testInput(`{"temp": 55}`))
	a := MustParse("SELECT temp FROM 'things/#' WHERE temp > 50")
	b := MustParse("SELECT temp * 2 AS double FROM 'things/#'")
	for range 2 {
		outA, okA, errA := a.EvalMessage(m)
		outB, okB, errB := b.EvalMessage(m)
		if outA.String() != `{"temp":55}` || !okA || errA != nil || outB.String() != `{"double":110}` || !okB || errB != nil {
			t.Errorf("EvalMessage = %v %v %v, %v %v %v", outA, okA, errA, outB, okB, errB)
		}
	}
	if got := m.Payload().String(); got != `{"temp":55}` {
		t.Errorf("Payload() = %s", got)
	}
	if m.Input().Topic != "things/dev-1/telemetry/env" {
		t.Errorf("Input().Topic = %q", m.Input().Topic)
	}
}

func TestMatches(t *testing.T) {
	for _, c := range []struct {
		filter, topic string
		want          bool
	}{
		{"things/+/telemetry", "things/a/telemetry", true},
		{"things/+/telemetry", "things/a/b/telemetry", false},
		{"things/#", "things", true},
		{"things/#", "things/a/b", true},
		{"#", "$aws/things/a", false},
		{"$aws/things/+/shadow/update", "$aws/things/a/shadow/update", true},
		{"a/b", "a/b", true},
		{"a/b", "a/+", false},
	} {
		s := MustParse("SELECT * FROM '" + c.filter + "'")
		if got := s.Matches(c.topic); got != c.want {
			t.Errorf("FROM %q Matches(%q) = %v; want %v", c.filter, c.topic, got, c.want)
		}
		if s.Topic() != c.filter {
			t.Errorf("Topic() = %q; want %q", s.Topic(), c.filter)
		}
	}
}

// jsonEqual compares two values decoded by encoding/json, numbers by value.
func jsonEqual(a, b any) bool {
	switch x := a.(type) {
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, v := range x {
			w, ok := y[k]
			if !ok || !jsonEqual(v, w) {
				return false
			}
		}
		return true
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !jsonEqual(x[i], y[i]) {
				return false
			}
		}
		return true
	case int64:
		return jsonEqual(float64(x), b)
	case float64:
		switch y := b.(type) {
		case float64:
			return x == y
		case int64:
			return x == float64(y)
		}
		return false
	}
	return a == b
}

// TestConcurrent evaluates one statement from several goroutines, and
// reads outputs on another goroutine than the one that evaluated them.
func TestConcurrent(t *testing.T) {
	s := MustParse("SELECT *, * AS all, topic(2) AS device, a.b[1] AS ab FROM '#' WHERE temp > 0")
	outs := make(chan Object, 64)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for out := range outs {
			if len(out.String()) == 0 || len(out.Map()) == 0 {
				t.Error("empty output")
			}
		}
	}()
	errs := make(chan error, 8)
	for g := range 8 {
		go func() {
			for i := range 200 {
				payload := `{"temp": ` + string(rune('1'+g)) + `, "a": {"b": [1, {"i": ` + string(rune('0'+i%10)) + `}]}}`
				out, ok, err := s.Eval(testInput(payload))
				if !ok || err != nil {
					errs <- err
					return
				}
				outs <- out
			}
			errs <- nil
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	close(outs)
	<-done
}

// TestProperties: properties.NAME reads the message's user properties,
// the first of a repeated name, and falls back to the payload's
// properties object for a name the message does not carry.
func TestProperties(t *testing.T) {
	in := Input{Topic: "things/pump-1/telemetry", Payload: []byte(`{"temp": 80, "properties": {"site": "ams", "alert": "payload"}}`),
		Received: testTime, Properties: []core.Property{{Key: "alert", Value: "high"}, {Key: "alert", Value: "low"}, {Key: "$.ct", Value: "application/json"}}}
	for _, c := range []struct{ sql, want string }{
		{"SELECT properties.alert AS a FROM '#'", `{"a":"high"}`},
		{"SELECT properties.\"$.ct\" AS ct FROM '#'", `{"ct":"application/json"}`},
		{"SELECT properties.site AS s FROM '#'", `{"s":"ams"}`}, // not a property: the payload's
		{"SELECT properties.alert.x AS x FROM '#'", `{}`},       // a property has no fields
		{"SELECT properties.nothing AS n FROM '#'", `{}`},
		{"SELECT temp FROM '#' WHERE properties.alert = 'high'", `{"temp":80}`},
		{"SELECT temp FROM '#' WHERE properties.alert = 'low'", "no match"},
		{"SELECT properties FROM '#'", `{"properties":{"site":"ams","alert":"payload"}}`}, // the bare name is the payload's
	} {
		if got := evalStatement(c.sql, in); got != c.want {
			t.Errorf("%s = %s; want %s", c.sql, got, c.want)
		}
	}
	// Without properties every path is the payload's, as before.
	in.Properties = nil
	if got := evalStatement("SELECT properties.alert AS a FROM '#'", in); got != `{"a":"payload"}` {
		t.Errorf("without properties: %s", got)
	}
}
