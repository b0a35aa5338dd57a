package sqlitedb

import "testing"

func TestDSN(t *testing.T) {
	for abs, want := range map[string]string{
		"/data/mote.db": "file:/data/mote.db?a=1&b=2",
		"/d/50%?#x.db":  "file:/d/50%25%3f%23x.db?a=1&b=2",
	} {
		if got := DSN(abs, "a=1", "b=2"); got != want {
			t.Errorf("DSN(%q) = %q; want %q", abs, got, want)
		}
	}
}
