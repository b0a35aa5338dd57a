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
	a, b = trimVersion(a), trimVersion(b)
	for {
		pa, ra, oka := nextPart(a)
		pb, rb, okb := nextPart(b)
		switch {
		case !oka && !okb:
			return 0
		case !oka:
			return -1
		case !okb:
			return 1
		}
		if c := comparePart(pa, pb); c != 0 {
			return c
		}
		a, b = ra, rb
	}
}

// trimVersion drops surrounding space and a leading v before a digit.
func trimVersion(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 1 && (s[0] == 'v' || s[0] == 'V') && isDigit(s[1]) {
		s = s[1:]
	}
	return s
}

func isVersionSep(c byte) bool { return c == '.' || c == '-' || c == '+' }

// nextPart returns the first part of s (separators skipped, so empty
// parts do not count) and what follows it; ok is false when there is
// none. Comparing part by part allocates nothing: a version comparison
// runs once per thing a query looks at.
func nextPart(s string) (part, rest string, ok bool) {
	i := 0
	for i < len(s) && isVersionSep(s[i]) {
		i++
	}
	if i == len(s) {
		return "", "", false
	}
	j := i
	for j < len(s) && !isVersionSep(s[j]) {
		j++
	}
	return s[i:j], s[j:], true
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
