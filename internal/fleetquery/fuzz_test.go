package fleetquery

import "testing"

// FuzzParse: Parse never panics, and a query that parses prints to a
// canonical form that parses again to the same form and the same result.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"name = 'a'", "name LIKE 'sensor-*' AND connected = true",
		"version(shadow.reported.firmware) < '1.5' OR NOT EXISTS type",
		"lastSeen < now() - 1h", "tags IN ('a', 'b')", `attributes."x y" >= -3.5`,
		"shadow.name.cfg.desired.a.b != true", "telemetry.t > 1e3", "((name = 'x'))",
		"name = 'it''s'", "name <> 'a'", "lastSeen > now() + 7d",
	} {
		f.Add(s)
	}
	d := sensor()
	f.Fuzz(func(t *testing.T, src string) {
		q, err := Parse(src, Limits{})
		if err != nil {
			return
		}
		out := q.String()
		q2, err := Parse(out, Limits{MaxLength: 1 << 20, MaxDepth: 1 << 10})
		if err != nil {
			t.Fatalf("Parse(%q) ok, but its String %q: %v", src, out, err)
		}
		if q2.String() != out {
			t.Fatalf("String not canonical: %q → %q → %q", src, out, q2.String())
		}
		if q.Match(d, now) != q2.Match(d, now) {
			t.Fatalf("%q and its String %q match differently", src, out)
		}
	})
}
