package blob

import (
	"strings"
	"testing"
)

func TestValidKey(t *testing.T) {
	for _, k := range []string{"a", "artifacts/fw/0a1b", "files/6361/x-000001", "a.b_c-d/E"} {
		if err := ValidKey(k); err != nil {
			t.Errorf("ValidKey(%q) = %v; want nil", k, err)
		}
	}
	for _, k := range []string{"", "/a", "a/", "a//b", "..", "a/../b", "./a", "a b", "a:b", "a\\b", "ä", strings.Repeat("a", MaxKeyLen+1)} {
		if ValidKey(k) == nil {
			t.Errorf("ValidKey(%q) = nil; want an error", k)
		}
	}
}

// FuzzValidKey: a key that passes never escapes its directory when
// joined to a path: no empty, "." or ".." segment, no byte outside the
// set, no leading or trailing slash.
func FuzzValidKey(f *testing.F) {
	for _, s := range []string{"a/b", "../x", "a//b", "files/x/y-000001", "."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, k string) {
		if ValidKey(k) != nil {
			return
		}
		if strings.HasPrefix(k, "/") || strings.HasSuffix(k, "/") || len(k) > MaxKeyLen {
			t.Fatalf("ValidKey accepted %q", k)
		}
		for _, seg := range strings.Split(k, "/") {
			if seg == "" || seg == "." || seg == ".." || strings.ContainsAny(seg, "\\\x00: ") {
				t.Fatalf("ValidKey accepted %q (segment %q)", k, seg)
			}
		}
	})
}
