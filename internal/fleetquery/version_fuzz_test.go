package fleetquery

import (
	"strings"
	"testing"
)

// compareVersionsSplit is the first CompareVersions, which split both
// versions with strings.FieldsFunc: the allocation-free one must order
// every pair the same way.
func compareVersionsSplit(a, b string) int {
	parts := func(s string) []string {
		return strings.FieldsFunc(trimVersion(s), func(r rune) bool { return r == '.' || r == '-' || r == '+' })
	}
	pa, pb := parts(a), parts(b)
	for i := 0; i < len(pa) && i < len(pb); i++ {
		if c := comparePart(pa[i], pb[i]); c != 0 {
			return c
		}
	}
	switch {
	case len(pa) < len(pb):
		return -1
	case len(pa) > len(pb):
		return 1
	}
	return 0
}

func FuzzCompareVersions(f *testing.F) {
	for _, s := range [][2]string{{"1.5", "1.10"}, {"v1.0-rc1", "1.0.1"}, {"1..5", "1.5"}, {" 2.0+b ", "2.0"}, {"", "."}, {"1.é.2", "1.e.2"}, {"007", "7"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		if got, want := CompareVersions(a, b), compareVersionsSplit(a, b); got != want {
			t.Fatalf("CompareVersions(%q, %q) = %d; the split comparison says %d", a, b, got, want)
		}
		if CompareVersions(a, b) != -CompareVersions(b, a) {
			t.Fatalf("CompareVersions(%q, %q) is not antisymmetric", a, b)
		}
	})
}

func BenchmarkCompareVersions(b *testing.B) {
	for b.Loop() {
		CompareVersions("1.4.9", "1.5")
	}
}
