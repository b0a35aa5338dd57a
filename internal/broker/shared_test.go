package broker

import (
	"strings"
	"testing"
)

func TestSplitShare(t *testing.T) {
	for _, tc := range []struct {
		in, group, filter string
		ok                bool
	}{
		{"$share/g/a/b", "g", "a/b", true},
		{"$share/workers/#", "workers", "#", true},
		{"$share/g/+/x", "g", "+/x", true},
		{"a/b", "", "", false},
		{"$share/g", "", "", false},
		{"$share//a", "", "", false},
		{"$share/g/", "", "", false},
		{"$SHARE/g/a", "", "", false},
	} {
		g, f, ok := splitShare(tc.in)
		if ok != tc.ok || (ok && (g != tc.group || f != tc.filter)) {
			t.Errorf("splitShare(%q) = %q, %q, %v; want %q, %q, %v", tc.in, g, f, ok, tc.group, tc.filter, tc.ok)
		}
	}
}

// FuzzSplitShare: what splits joins back to the input.
func FuzzSplitShare(f *testing.F) {
	f.Add("$share/g/a/b")
	f.Add("$share//")
	f.Add("a")
	f.Fuzz(func(t *testing.T, in string) {
		g, filter, ok := splitShare(in)
		if !ok {
			return
		}
		if g == "" || filter == "" || strings.Contains(g, "/") || "$share/"+g+"/"+filter != in {
			t.Fatalf("splitShare(%q) = %q, %q", in, g, filter)
		}
	})
}
