package fleetquery

import (
	"errors"
	"strings"
	"testing"
	"time"
)

var now = time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)

func sensor() *Doc {
	return &Doc{
		Name:       "sensor-1",
		Type:       "thermo",
		Attributes: map[string]string{"site": "amsterdam", "floor": "3", "serial-no": "A7"},
		Tags:       []string{"eu", "pilot"},
		Groups:     []string{"lab"},
		Connected:  true,
		Enabled:    true,
		LastSeen:   now.Add(-10 * time.Minute),
		Shadows: map[string]*Shadow{
			"":       {Reported: map[string]any{"firmware": "1.4.2", "battery": 71.0, "wifi": map[string]any{"rssi": -60.0}, "ok": true}, Desired: map[string]any{"interval": 60.0}},
			"config": {Reported: map[string]any{"mode": "eco"}},
		},
		Telemetry: map[string]any{"temp": 21.5, "door": "open"},
	}
}

func TestMatch(t *testing.T) {
	d, bare := sensor(), &Doc{Name: "bare", Enabled: false}
	for _, tc := range []struct {
		q          string
		want, bare bool
	}{
		{"name = 'sensor-1'", true, false},
		{"name != 'sensor-1'", false, true},
		{"name LIKE 'sensor-*'", true, false},
		{"name like 's?nsor-?'", true, false},
		{"name NOT LIKE '*-1'", false, true},
		{"name > 'sensor-0' AND name < 'sensor-2'", true, false},
		{"type = 'thermo'", true, false},
		{"type != 'thermo'", false, false}, // no type: no comparison matches
		{"NOT EXISTS type", false, true},
		{"groups = 'lab'", true, false},
		{"groups != 'lab'", false, true},
		{"tags IN ('us', 'eu')", true, false},
		{"tags NOT IN ('us')", true, true},
		{"tags LIKE 'pil*'", true, false},
		{"attributes.site = 'amsterdam'", true, false},
		{"attributes.floor >= 3", true, false},
		{"attributes.floor < 3", false, false},
		{"attributes.site > 3", false, false},
		{`attributes."serial-no" = 'A7'`, true, false},
		{"attributes.serial-no = 'A7'", true, false},
		{"connected = true", true, false},
		{"connected = false", false, true},
		{"enabled != true", false, true},
		{"lastSeen > now() - 1h", true, false},
		{"lastSeen < now() - 1h", false, false},
		{"lastSeen >= '2026-12-05T11:00:00Z'", true, false},
		{"EXISTS lastSeen", true, false},
		{"shadow.reported.firmware = '1.4.2'", true, false},
		{"version(shadow.reported.firmware) < '1.5'", true, false},
		{"version(shadow.reported.firmware) >= '1.4.10'", false, false},
		{"shadow.reported.battery > 50", true, false},
		{"shadow.reported.battery > '50'", false, false}, // a number is not text
		{"shadow.reported.wifi.rssi >= -70", true, false},
		{"shadow.reported.ok = true", true, false},
		{"shadow.reported.ok != false", true, false},
		{"shadow.desired.interval = 60", true, false},
		{"EXISTS shadow.reported.wifi", true, false},
		{"EXISTS shadow.reported.nothing", false, false},
		{"shadow.name.config.reported.mode IN ('eco', 'max')", true, false},
		{"shadow.name.other.reported.mode = 'eco'", false, false},
		{"telemetry.temp > 20.5", true, false},
		{"telemetry.door = 'open'", true, false},
		{"telemetry.door = 1", false, false},
		{"telemetry.door != 1", true, false},
		{"(type = 'x' OR attributes.site = 'amsterdam') AND connected = true AND version(shadow.reported.firmware) < '2'", true, false},
		{"NOT (connected = true OR enabled = true)", false, true},
		{"name = 'a' OR name = 'sensor-1' OR name = 'b'", true, false},
	} {
		q, err := Parse(tc.q, Limits{})
		if err != nil {
			t.Errorf("Parse(%q) = %v", tc.q, err)
			continue
		}
		if got := q.Match(d, now); got != tc.want {
			t.Errorf("Parse(%q).Match(sensor) = %v; want %v", tc.q, got, tc.want)
		}
		if got := q.Match(bare, now); got != tc.bare {
			t.Errorf("Parse(%q).Match(bare) = %v; want %v", tc.q, got, tc.bare)
		}
		// The canonical form means the same.
		q2, err := Parse(q.String(), Limits{})
		if err != nil {
			t.Errorf("Parse(String() of %q = %q) = %v", tc.q, q.String(), err)
			continue
		}
		if q2.String() != q.String() || q2.Match(d, now) != tc.want {
			t.Errorf("round trip of %q: %q → %q", tc.q, q.String(), q2.String())
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ q, want string }{
		{"", "at 1:1: empty query"},
		{"name = ", "at 1:8: expected a value"},
		{"colour = 'red'", "at 1:1: unknown field \"colour\""},
		{"name = 'a' AND\n  bogus.x = 1", "at 2:3: unknown field \"bogus.x\""},
		{"connected = 'yes'", "at 1:13: connected is true or false: it cannot be compared with text 'yes' using ="},
		{"name = 3", "at 1:8: name is text"},
		{"groups > 'a'", "at 1:10: groups is a set of names"},
		{"lastSeen < 'yesterday'", "at 1:12: lastSeen is compared with now() - DURATION"},
		{"type = now()", "at 1:8: now() can only be compared with lastSeen"},
		{"version(connected) < '1'", "at 1:9: version() reads a version string"},
		{"name = 'open", "at 1:8: unterminated '-quoted text"},
		{"(name = 'a'", "at 1:12: expected ')' to close the '(' at 1:1"},
		{"name = 'a' name = 'b'", "at 1:12: unexpected 'name': expected AND, OR"},
		{"name ~ 'a'", "at 1:6: unexpected character '~'"},
		{"lastSeen > now() - 1y", "at 1:20: bad duration 1y"},
		{"name IN ('a' 'b')", "at 1:14: expected ',' or ')' in the IN list"},
		{"name LIKE 3", "at 1:11: LIKE takes a quoted pattern"},
		{"shadow.reported = 1", "shadow[.name.SHADOW].reported.PATH"},
		{"attributes = 'x'", "attributes needs a key"},
		{"name = 1h", "at 1:8: a duration such as 1h is only valid after now()"},
		{"NOT", "at 1:4: expected a field"},
		{"AND = 1", "at 1:1: expected a field, found the keyword AND"},
	} {
		_, err := Parse(tc.q, Limits{})
		var pe *Error
		if !errors.As(err, &pe) {
			t.Errorf("Parse(%q) = %v; want an *Error containing %q", tc.q, err, tc.want)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%q) = %q; want it to contain %q", tc.q, err, tc.want)
		}
	}
}

func TestLimits(t *testing.T) {
	deep := strings.Repeat("(", 40) + "name = 'a'" + strings.Repeat(")", 40)
	if _, err := Parse(deep, Limits{MaxDepth: 32}); err == nil || !strings.Contains(err.Error(), "nested deeper than 32") {
		t.Errorf("Parse(40 parens) = %v; want the depth limit", err)
	}
	if _, err := Parse(deep, Limits{MaxDepth: 41}); err != nil {
		t.Errorf("Parse(40 parens, depth 41) = %v", err)
	}
	nots := strings.Repeat("NOT ", 100) + "connected = true"
	if _, err := Parse(nots, Limits{}); err == nil || !strings.Contains(err.Error(), "nested deeper") {
		t.Errorf("Parse(100 NOTs) = %v; want the depth limit", err)
	}
	long := "name IN ('a'" + strings.Repeat(", 'a'", 2000) + ")"
	if _, err := Parse(long, Limits{MaxLength: 4096}); err == nil || !strings.Contains(err.Error(), "more than the limit of 4096") {
		t.Errorf("Parse(%d bytes) = %v; want the length limit", len(long), err)
	}
	// A wide but flat query within the limits is fine and evaluates
	// without deep recursion.
	wide := "name = 'x'" + strings.Repeat(" OR name = 'x'", 250)
	q, err := Parse(wide, Limits{MaxLength: 1 << 20})
	if err != nil {
		t.Fatalf("Parse(wide) = %v", err)
	}
	if q.Match(sensor(), now) {
		t.Errorf("wide query matched sensor-1")
	}
}

func TestCompareVersions(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"1.5", "1.5", 0},
		{"1.4.2", "1.5", -1},
		{"1.10", "1.9", 1},
		{"v2.0.0", "2.0.0", 0},
		{"1.5", "1.5.0", -1},
		{"1.0-rc1", "1.0.1", -1},
		{"1.0-rc1", "1.0-rc2", -1},
		{"010", "9", 1},
		{"", "0", -1},
	} {
		if got := CompareVersions(tc.a, tc.b); got != tc.want {
			t.Errorf("CompareVersions(%q, %q) = %d; want %d", tc.a, tc.b, got, tc.want)
		}
		if got := CompareVersions(tc.b, tc.a); got != -tc.want {
			t.Errorf("CompareVersions(%q, %q) = %d; want %d", tc.b, tc.a, got, -tc.want)
		}
	}
}

func TestGlob(t *testing.T) {
	for _, tc := range []struct {
		p, s string
		want bool
	}{
		{"a*", "abc", true}, {"*c", "abc", true}, {"a*c", "abbbc", true}, {"a?c", "abc", true},
		{"a?c", "ac", false}, {"*", "", true}, {"a", "a", true}, {"a*b*c", "axbyc", true}, {"a*b*c", "axbyd", false},
		{strings.Repeat("*a", 30) + "b", strings.Repeat("a", 200), false},
	} {
		if got := globMatcher(tc.p)(tc.s); got != tc.want {
			t.Errorf("glob(%q, %q) = %v; want %v", tc.p, tc.s, got, tc.want)
		}
	}
}

// TestPostings: a thing that matches a query has a key of every group
// of the query's postings.
func TestPostings(t *testing.T) {
	d := sensor()
	keys := map[string]bool{}
	for _, k := range DocKeys(d) {
		keys[k] = true
	}
	for _, tc := range []struct {
		q      string
		groups int
	}{
		{"attributes.site = 'amsterdam' AND type = 'thermo' AND connected = true AND version(shadow.reported.firmware) < '1.5'", 3},
		{"tags IN ('x', 'eu') AND enabled = true", 2},
		{"groups = 'lab'", 1},
		{"attributes.floor = 3", 0}, // a number: not by text
		{"type = 'thermo' OR connected = true", 0},
		{"NOT type = 'x'", 0},
		{"type != 'x'", 0},
	} {
		q, err := Parse(tc.q, Limits{})
		if err != nil {
			t.Fatal(err)
		}
		ps := q.Postings()
		if len(ps) != tc.groups {
			t.Errorf("Postings(%q) = %q; want %d groups", tc.q, ps, tc.groups)
		}
		if !q.Match(d, now) {
			continue
		}
		for _, g := range ps {
			found := false
			for _, k := range g {
				found = found || keys[k]
			}
			if !found {
				t.Errorf("Postings(%q): the matching sensor has no key of %q", tc.q, g)
			}
		}
	}
}
