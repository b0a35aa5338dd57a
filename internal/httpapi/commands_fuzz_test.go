package httpapi

import (
	"testing"

	"github.com/moteiot/mote/internal/commands"
	"github.com/moteiot/mote/internal/core"
)

// FuzzParseWait: the wait of a command long poll is 0 to commands.MaxWait
// or a 400 on "wait".
func FuzzParseWait(f *testing.F) {
	for _, s := range []string{"", "30s", "1m", "60", "61s", "-1s", "1h", "0.5s", "9223372036854775807", "1e3s", "18446744073709551616", "9223372036854"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		d, err := parseWait(v)
		if err != nil {
			if core.KindOf(err) != core.KindInvalid || core.FieldOf(err) != "wait" {
				t.Fatalf("parseWait(%q): %v; want invalid on wait", v, err)
			}
			return
		}
		if d < 0 || d > commands.MaxWait {
			t.Fatalf("parseWait(%q) = %v; want 0 to %v", v, d, commands.MaxWait)
		}
		if v == "" && d != 0 {
			t.Fatalf("parseWait(\"\") = %v", d)
		}
	})
}
