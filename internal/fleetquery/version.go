package fleetquery

import (
	"strings"
)

// CompareVersions compares two version strings the way firmware versions
// are ordered: an optional leading v is ignored, the rest is split on '.',
// '-' and '+'; numeric parts compare as numbers, others as text, a number
// sorts after text ("1.0-rc1" < "1.0.1"), and a version that is a prefix of
// another sorts first ("1.5" < "1.5.0" < "1.5.1", "1.5" < "1.10"). It
// returns -1, 0 or 1.
func CompareVersions(a, b string) int {
	pa, pb := versionParts(a), versionParts(b)
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

func versionParts(s string) []string {
	s = strings.TrimSpace(s)
	if len(s) > 1 && (s[0] == 'v' || s[0] == 'V') && isDigit(s[1]) {
		s = s[1:]
	}
	return strings.FieldsFunc(s, func(r rune) bool { return r == '.' || r == '-' || r == '+' })
}

func comparePart(a, b string) int {
	na, nb := numeric(a), numeric(b)
	switch {
	case na && nb:
		a, b = strings.TrimLeft(a, "0"), strings.TrimLeft(b, "0")
		if len(a) != len(b) {
			if len(a) < len(b) {
				return -1
			}
			return 1
		}
		return strings.Compare(a, b)
	case na:
		return 1
	case nb:
		return -1
	}
	return strings.Compare(a, b)
}

func numeric(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return s != ""
}
