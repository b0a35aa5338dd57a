// Package rolemap parses --oidc-role-map, which maps the values of an
// OpenID Connect claim (a group, say) to a Mote role:
//
//	mote-admins=admin,ops=operator,*=viewer
//
// Entries are separated by commas; in each, the value is what comes before
// the last "=" and the role (admin, operator or viewer) what follows it.
// "*" matches every user, whatever the claim holds. A user whose claim
// matches several entries gets the highest of their roles. The package
// imports nothing of Mote's, so that the configuration can check the
// setting with the very parser the sign-in uses.
package rolemap

import (
	"fmt"
	"strings"
	"unicode"
)

// MaxEntries bounds the entries of a map.
const MaxEntries = 1000

// Wildcard matches every user.
const Wildcard = "*"

// rank orders the roles; higher is more.
var rank = map[string]int{"viewer": 1, "operator": 2, "admin": 3}

// Map is a parsed role map: claim value → role.
type Map struct {
	roles map[string]string
}

// Parse parses a role map ("" is the empty map, which matches nobody).
func Parse(s string) (Map, error) {
	m := Map{roles: map[string]string{}}
	if strings.TrimSpace(s) == "" {
		return m, nil
	}
	parts := strings.Split(s, ",")
	if len(parts) > MaxEntries {
		return Map{}, fmt.Errorf("%d entries; at most %d", len(parts), MaxEntries)
	}
	for i, p := range parts {
		p = strings.TrimSpace(p)
		at := strings.LastIndex(p, "=")
		if at < 0 {
			return Map{}, fmt.Errorf("entry %d (%q) is not value=role", i+1, clip(p))
		}
		value, role := strings.TrimSpace(p[:at]), strings.TrimSpace(p[at+1:])
		if value == "" {
			return Map{}, fmt.Errorf("entry %d (%q) has no claim value before =", i+1, clip(p))
		}
		for _, r := range value {
			if unicode.IsControl(r) {
				return Map{}, fmt.Errorf("entry %d has a control character in its claim value", i+1)
			}
		}
		if _, ok := rank[role]; !ok {
			return Map{}, fmt.Errorf("entry %d (%q): role %q is not admin, operator or viewer", i+1, clip(p), clip(role))
		}
		if _, dup := m.roles[value]; dup {
			return Map{}, fmt.Errorf("entry %d: claim value %q is mapped twice", i+1, clip(value))
		}
		m.roles[value] = role
	}
	return m, nil
}

// Len is the number of entries.
func (m Map) Len() int { return len(m.roles) }

// Role returns the highest role the claim values map to ("*" included);
// ok is false when no entry matches.
func (m Map) Role(values []string) (role string, ok bool) {
	best := ""
	consider := func(r string) {
		if rank[r] > rank[best] {
			best = r
		}
	}
	if r, ok := m.roles[Wildcard]; ok {
		consider(r)
	}
	for _, v := range values {
		if r, ok := m.roles[v]; ok {
			consider(r)
		}
	}
	return best, best != ""
}

func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
