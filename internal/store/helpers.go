package store

// Helpers both backends share: pure functions on the values they store.

// Uniq returns list without repeated elements, keeping the first
// occurrence of each, never nil.
func Uniq(list []string) []string {
	out := make([]string, 0, len(list))
	seen := make(map[string]bool, len(list))
	for _, s := range list {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// PrefixEnd returns the smallest string greater than every string with
// the given prefix, for a range scan name >= prefix AND name < end. ok is
// false when there is none (the prefix is all 0xff bytes).
func PrefixEnd(prefix string) (end string, ok bool) {
	b := []byte(prefix)
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] < 0xff {
			b[i]++
			return string(b[:i+1]), true
		}
	}
	return "", false
}
