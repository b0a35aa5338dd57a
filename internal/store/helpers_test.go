package store

import "testing"

func TestPrefixEnd(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"a", "b", true},
		{"ab", "ac", true},
		{"a\xff", "b", true},
		{"\xff\xff", "", false},
		{"sensor_", "sensor`", true},
	} {
		got, ok := PrefixEnd(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("PrefixEnd(%q): got %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestUniq(t *testing.T) {
	if got := Uniq([]string{"b", "a", "b", "c", "a"}); len(got) != 3 || got[0] != "b" || got[1] != "a" || got[2] != "c" {
		t.Errorf("Uniq(b a b c a) = %q; want [b a c]", got)
	}
	if got := Uniq(nil); got == nil || len(got) != 0 {
		t.Errorf("Uniq(nil) = %#v; want an empty, non-nil slice", got)
	}
}
