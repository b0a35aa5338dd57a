package rolemap

import (
	"strings"
	"testing"
)

func TestParseAndRole(t *testing.T) {
	m, err := Parse(" mote-admins=admin, ops=operator ,*=viewer,a=b=operator")
	if err != nil {
		t.Fatalf("Parse = %v", err)
	}
	for _, tc := range []struct {
		values []string
		want   string
	}{
		{nil, "viewer"},
		{[]string{"ops"}, "operator"},
		{[]string{"ops", "mote-admins"}, "admin"},
		{[]string{"a=b"}, "operator"},
		{[]string{"MOTE-ADMINS"}, "viewer"}, // exact match only
	} {
		if got, _ := m.Role(tc.values); got != tc.want {
			t.Errorf("Role(%q) = %q; want %q", tc.values, got, tc.want)
		}
	}
	m, _ = Parse("ops=operator")
	if r, ok := m.Role([]string{"dev"}); ok {
		t.Errorf("Role(dev) without a wildcard = %q, true; want no match", r)
	}
}

func TestParseRefuses(t *testing.T) {
	for _, in := range []string{
		"ops", "=admin", "ops=root", "ops=admin,ops=viewer", "ops=admin,,", "a\x00=admin",
		strings.Repeat("a=admin,", MaxEntries+1),
	} {
		if _, err := Parse(in); err == nil {
			t.Errorf("Parse(%q) = nil error; want one", clip(in))
		}
	}
	if m, err := Parse("  "); err != nil || m.Len() != 0 {
		t.Errorf("Parse(blank) = %d entries, %v; want 0, nil", m.Len(), err)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"mote-admins=admin,ops=operator,*=viewer", "a=b=c", "=", ",", "*=admin", "x=viewer,x=admin"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := Parse(s)
		if err != nil {
			return
		}
		if m.Len() > MaxEntries {
			t.Fatalf("Parse(%q) kept %d entries", s, m.Len())
		}
		for v, r := range m.roles {
			if got, ok := m.Role([]string{v}); !ok || rank[got] < rank[r] {
				t.Fatalf("Role(%q) = %q, %v; want at least %q", v, got, ok, r)
			}
		}
	})
}
