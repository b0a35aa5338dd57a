package core

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestValidTopicName(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{"a", true},
		{"things/t1/telemetry", true},
		{"/", true},
		{"a//b", true},
		{"$SYS/broker", true},
		{"$share/g/x", true},
		{"ü/€", true},
		{" ", true},
		{strings.Repeat("a", 65535), true},
		{"", false},
		{strings.Repeat("a", 65536), false},
		{"a/+", false},
		{"a/#", false},
		{"a+b", false},
		{"a\x00b", false},
		{"a/\xff", false},
		{"\xed\xa0\x80", false}, // a UTF-16 surrogate
	}
	for _, tt := range tests {
		if got := ValidTopicName(tt.in); got != tt.want {
			t.Errorf("ValidTopicName(%q) = %v; want %v", short(tt.in), got, tt.want)
		}
	}
}

func TestValidTopicFilter(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{"a", true},
		{"#", true},
		{"+", true},
		{"/", true},
		{"a/#", true},
		{"a/+/b", true},
		{"+/+/#", true},
		{"a//b", true},
		{"/#", true},
		{"$SYS/#", true},
		{"$share/g/a/#", true},
		{"$share/g/#", true},
		{"$share/g//", true},
		{"$share", true}, // not a shared subscription
		{"$shared/g", true},
		{strings.Repeat("a", 65535), true},
		{"", false},
		{strings.Repeat("a", 65536), false},
		{"a/#/b", false},
		{"#/a", false},
		{"a#", false},
		{"a/b#", false},
		{"a/#b", false},
		{"a+", false},
		{"a/+b", false},
		{"++", false},
		{"##", false},
		{"a\x00", false},
		{"\xff", false},
		{"$share/", false},
		{"$share//a", false},
		{"$share/g", false},
		{"$share/g/", false},
		{"$share/g+/a", false},
		{"$share/#/a", false},
		{"$share/g/a/#/b", false},
		{"$share/g\xff/a", false},
	}
	for _, tt := range tests {
		if got := ValidTopicFilter(tt.in); got != tt.want {
			t.Errorf("ValidTopicFilter(%q) = %v; want %v", short(tt.in), got, tt.want)
		}
	}
}

func TestStripShare(t *testing.T) {
	tests := []struct{ in, want string }{
		{"$share/g/a/b", "a/b"},
		{"$share/g/#", "#"},
		{"$share/g/$SYS/x", "$SYS/x"},
		{"a/b", "a/b"},
		{"$share", "$share"},
		{"$share/g", "$share/g"},
		{"$shared/g/a", "$shared/g/a"},
		{"x/$share/g/a", "x/$share/g/a"},
	}
	for _, tt := range tests {
		if got := StripShare(tt.in); got != tt.want {
			t.Errorf("StripShare(%q) = %q; want %q", tt.in, got, tt.want)
		}
	}
}

func TestMatchFilter(t *testing.T) {
	tests := []struct {
		filter, topic string
		want          bool
	}{
		{"a/b", "a/b", true},
		{"a/b", "a/c", false},
		{"a/b", "a/b/c", false},
		{"a/b", "a", false},
		{"A", "a", false},
		{"a/+", "a/b", true},
		{"a/+", "a/", true}, // '+' matches an empty level
		{"a/+", "a", false},
		{"a/+", "a/b/c", false},
		{"+/+", "/", true},
		{"+", "/a", false},
		{"/+", "/a", true},
		{"a/#", "a", true}, // '#' matches the parent level too
		{"a/#", "a/", true},
		{"a/#", "a/b/c", true},
		{"a/#", "ab", false},
		{"a/#", "b/a", false},
		{"a/b/#", "a/b", true},
		{"a/b/#", "a", false},
		{"a/+/#", "a", false},
		{"a/+/#", "a/b", true},
		{"+/#", "a", true},
		{"#", "a", true},
		{"#", "/", true},
		{"#", "a/b/c", true},
		{"a//b", "a//b", true},
		{"a//b", "a/b", false},
		{"a/+/b", "a//b", true},
		{"a/b/", "a/b/", true},
		{"a/b", "a/b/", false},
		{"ü/+", "ü/€", true},
		// $-topics are not matched by a leading wildcard (MQTT-4.7.2-1).
		{"#", "$SYS", false},
		{"#", "$SYS/a", false},
		{"+", "$", false},
		{"+/a", "$SYS/a", false},
		{"+/#", "$SYS/a", false},
		{"$SYS/#", "$SYS", true},
		{"$SYS/#", "$SYS/a/b", true},
		{"$SYS/+", "$SYS/a", true},
		{"a/+", "a/$b", true},
		{"a/#", "a/$b", true},
		// $share is not special: callers strip it.
		{"$share/g/a", "a", false},
		{"$share/g/a", "$share/g/a", true},
		// Invalid filters and topics match nothing.
		{"a/#/b", "a/x/b", false},
		{"a+", "a+", false},
		{"", "", false},
		{"#", "", false},
		{"a/#", "a/+", false},
		{"a/#", "a/#", false},
		{"#", "a\x00", false},
		{"#", "\xff", false},
	}
	for _, tt := range tests {
		if got := MatchFilter(tt.filter, tt.topic); got != tt.want {
			t.Errorf("MatchFilter(%q, %q) = %v; want %v", tt.filter, tt.topic, got, tt.want)
		}
		if got := refMatch(tt.filter, tt.topic); got != tt.want {
			t.Errorf("refMatch(%q, %q) = %v; want %v (the reference is wrong)", tt.filter, tt.topic, got, tt.want)
		}
	}
}

func TestFilterCovers(t *testing.T) {
	tests := []struct {
		outer, inner string
		want         bool
	}{
		{"things/#", "things/+/x", true},
		{"things/+/x", "things/#", false},
		{"things/t1/#", "things/t1", true},
		{"things/t1/#", "things/t1/#", true},
		{"things/t1/#", "things/+/#", false},
		{"things/t1/#", "things/#", false},
		{"#", "#", true},
		{"#", "a/b", true},
		{"#", "+/#", true},
		{"+/#", "#", true}, // both match every topic that does not begin with '$'
		{"+/#", "+", true},
		{"+", "#", false},
		{"+", "a/b", false},
		{"+/+", "a/b", true},
		{"+/+", "+/#", false},
		{"a/#", "a", true},
		{"a/#", "a/#", true},
		{"a", "a/#", false},
		{"a/+", "a/+", true},
		{"a/+", "a/b", true},
		{"a/b", "a/+", false},
		{"a/b", "a/b", true},
		{"a/b", "a/c", false},
		{"a/+", "a/b/c", false},
		{"a/+", "a", false},
		{"a/+/#", "a/#", false}, // "a/#" matches "a"
		{"a/+/#", "a/b", true},
		{"a/+/#", "a/b/c/d", true},
		{"a/+/#", "a/+/#", true},
		{"a//#", "a//b", true},
		{"a/+", "a/", true},
		// $-topics
		{"#", "$SYS/a", false},
		{"#", "$SYS/#", false},
		{"+", "$SYS", false},
		{"+/#", "$x/#", false},
		{"$SYS/#", "$SYS/+", true},
		{"$SYS/#", "$SYS", true},
		{"$SYS/+", "+/+", false},
		{"#", "a/$b", true},
		// Invalid filters cover nothing and are covered by nothing.
		{"#", "a/#/b", false},
		{"a/#/b", "a/x/b", false},
		{"#", "", false},
	}
	for _, tt := range tests {
		if got := FilterCovers(tt.outer, tt.inner); got != tt.want {
			t.Errorf("FilterCovers(%q, %q) = %v; want %v", tt.outer, tt.inner, got, tt.want)
		}
	}
}

func TestFiltersOverlap(t *testing.T) {
	tests := []struct {
		a, b string
		want bool
	}{
		{"things/#", "things/secret/#", true},
		{"things/+", "things/secret/#", true}, // things/secret
		{"things/+/x", "things/secret/#", true},
		{"things/+/x", "things/secret/y", false},
		{"things/public/#", "things/secret/#", false},
		{"#", "a", true},
		{"#", "+", true},
		{"+", "a/b", false},
		{"+/+", "a/b", true},
		{"+/+", "a", false},
		{"+/#", "a", true},
		{"a/+/#", "a", false},
		{"a/#", "a", true},
		{"a", "a", true},
		{"a", "b", false},
		{"a/+", "+/b", true},
		{"a/b", "a/b/c", false},
		{"a/b/#", "a/+/c", true},
		{"a//b", "a/+/b", true},
		// $-topics
		{"#", "$SYS/#", false},
		{"+/a", "$SYS/a", false},
		{"$SYS/#", "$SYS/a", true},
		{"$SYS/+", "$SYS/#", true},
		{"$SYS/a", "$SYS/b", false},
		{"$a", "$b", false},
		// Invalid filters overlap nothing.
		{"#", "a/#/b", false},
		{"", "#", false},
	}
	for _, tt := range tests {
		if got := FiltersOverlap(tt.a, tt.b); got != tt.want {
			t.Errorf("FiltersOverlap(%q, %q) = %v; want %v", tt.a, tt.b, got, tt.want)
		}
		if got := FiltersOverlap(tt.b, tt.a); got != tt.want {
			t.Errorf("FiltersOverlap(%q, %q) = %v; want %v", tt.b, tt.a, got, tt.want)
		}
	}
}

// TestFilterRelationsExhaustive checks FilterCovers and FiltersOverlap
// against their definitions on every filter of up to 3 levels drawn from a
// small alphabet, over every topic of up to 4 levels drawn from an alphabet
// that has a level no filter names ("c"), so that each answer has a witness
// in this universe.
func TestFilterRelationsExhaustive(t *testing.T) {
	var filters []string
	for _, f := range combine([]string{"a", "b", "+", "#", "$a", ""}, 3) {
		if ValidTopicFilter(f) {
			filters = append(filters, f)
		}
	}
	topics := combine([]string{"a", "b", "c", "$a", ""}, 4)

	// matches[i] is the set of topics that filters[i] matches.
	matches := make([][]bool, len(filters))
	for i, f := range filters {
		matches[i] = make([]bool, len(topics))
		for j, topic := range topics {
			matches[i][j] = MatchFilter(f, topic)
		}
	}
	for i, outer := range filters {
		for j, inner := range filters {
			wantCovers, wantOverlap := true, false
			for k := range topics {
				if matches[j][k] && !matches[i][k] {
					wantCovers = false
				}
				if matches[j][k] && matches[i][k] {
					wantOverlap = true
				}
			}
			if got := FilterCovers(outer, inner); got != wantCovers {
				t.Errorf("FilterCovers(%q, %q) = %v; want %v", outer, inner, got, wantCovers)
			}
			if got := FiltersOverlap(outer, inner); got != wantOverlap {
				t.Errorf("FiltersOverlap(%q, %q) = %v; want %v", outer, inner, got, wantOverlap)
			}
		}
	}
}

// combine returns every string of 1 to n levels drawn from levels, joined
// by '/', except the empty string.
func combine(levels []string, n int) []string {
	var out []string
	last := []string{}
	for _, l := range levels {
		if l != "" {
			out = append(out, l)
		}
		last = append(last, l)
	}
	for range n - 1 {
		var next []string
		for _, prefix := range last {
			for _, l := range levels {
				next = append(next, prefix+"/"+l)
			}
		}
		out = append(out, next...)
		last = next
	}
	return out
}

// refMatch is a straightforward reference implementation of MatchFilter.
func refMatch(filter, topic string) bool {
	if !refValidFilter(filter) || !refValidName(topic) {
		return false
	}
	f := strings.Split(filter, "/")
	t := strings.Split(topic, "/")
	if (f[0] == "+" || f[0] == "#") && strings.HasPrefix(topic, "$") {
		return false
	}
	for i, level := range f {
		if level == "#" {
			return true // the rest of the topic, possibly nothing
		}
		if i >= len(t) || level != "+" && level != t[i] {
			return false
		}
	}
	return len(f) == len(t)
}

func refValidName(t string) bool {
	return t != "" && len(t) <= 65535 && utf8.ValidString(t) && !strings.ContainsAny(t, "\x00+#")
}

func refValidFilter(f string) bool {
	if f == "" || len(f) > 65535 || !utf8.ValidString(f) || strings.ContainsRune(f, 0) {
		return false
	}
	if strings.HasPrefix(f, "$share/") {
		parts := strings.SplitN(f, "/", 3)
		if len(parts) < 3 || parts[1] == "" || strings.ContainsAny(parts[1], "+#") || parts[2] == "" {
			return false
		}
		f = parts[2]
	}
	levels := strings.Split(f, "/")
	for i, l := range levels {
		if strings.Contains(l, "#") && (l != "#" || i != len(levels)-1) {
			return false
		}
		if strings.Contains(l, "+") && l != "+" {
			return false
		}
	}
	return true
}

// short abbreviates long strings in test messages.
func short(s string) string {
	if len(s) > 40 {
		return s[:20] + "..." + s[len(s)-10:]
	}
	return s
}

func FuzzMatchFilter(f *testing.F) {
	// More seeds are in testdata/fuzz.
	f.Add("things/+/x", "things/#", "things/t1/x")
	f.Add("#", "$SYS/#", "$SYS/x")
	f.Add("a/#", "a", "a")
	f.Fuzz(func(t *testing.T, a, b, topic string) {
		for _, filter := range []string{a, b} {
			if got, want := MatchFilter(filter, topic), refMatch(filter, topic); got != want {
				t.Fatalf("MatchFilter(%q, %q) = %v; want %v", filter, topic, got, want)
			}
			if got, want := ValidTopicFilter(filter), refValidFilter(filter); got != want {
				t.Fatalf("ValidTopicFilter(%q) = %v; want %v", filter, got, want)
			}
		}
		if got, want := ValidTopicName(topic), refValidName(topic); got != want {
			t.Fatalf("ValidTopicName(%q) = %v; want %v", topic, got, want)
		}
		if FilterCovers(a, b) && MatchFilter(b, topic) && !MatchFilter(a, topic) {
			t.Fatalf("FilterCovers(%q, %q) = true, but %q matches only the inner filter", a, b, topic)
		}
		if MatchFilter(a, topic) && MatchFilter(b, topic) && !FiltersOverlap(a, b) {
			t.Fatalf("FiltersOverlap(%q, %q) = false, but both match %q", a, b, topic)
		}
		if FiltersOverlap(a, b) != FiltersOverlap(b, a) {
			t.Fatalf("FiltersOverlap(%q, %q) is not symmetric", a, b)
		}
		if ValidTopicFilter(a) && !FilterCovers(a, a) {
			t.Fatalf("FilterCovers(%q, %q) = false; want true", a, a)
		}
		if FilterCovers(a, b) && !FiltersOverlap(a, b) {
			t.Fatalf("FilterCovers(%q, %q) = true but FiltersOverlap = false", a, b)
		}
	})
}
