package files

import (
	"fmt"
	"testing"
)

func TestParseContentRange(t *testing.T) {
	good := map[string]ContentRange{
		"bytes 0-99/100":                {0, 99, 100},
		"bytes 100-199/*":               {100, 199, -1},
		"BYTES 5-5/6":                   {5, 5, 6},
		" bytes  0-0/1 ":                {0, 0, 1},
		"bytes 0-1152921504606846975/*": {0, 1<<60 - 1, -1},
	}
	for in, want := range good {
		got, err := ParseContentRange(in)
		if err != nil || got != want {
			t.Errorf("ParseContentRange(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "bytes", "bytes */100", "bytes 5-4/10", "bytes 0-10/10", "bytes -1-5/10", "bytes +1-5/10",
		"bits 0-1/2", "bytes 0-1", "bytes a-b/c", "bytes 0-99999999999999999999/*", "bytes 0-1/2/3", "bytes 0--1/2"} {
		if c, err := ParseContentRange(in); err == nil {
			t.Errorf("ParseContentRange(%q) = %+v; want an error", in, c)
		}
	}
}

// FuzzContentRange: never panics; what parses is a sane range that
// prints back to itself.
func FuzzContentRange(f *testing.F) {
	for _, s := range []string{"bytes 0-99/100", "bytes 100-199/*", "bytes */100", "bytes 0-0/1", "", "bytes 9223372036854775807-9223372036854775807/*"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseContentRange(s)
		if err != nil {
			return
		}
		if c.Start < 0 || c.End < c.Start || c.Len() <= 0 || (c.Total >= 0 && c.End >= c.Total) || c.Total < -1 {
			t.Fatalf("ParseContentRange(%q) = %+v: not a sane range", s, c)
		}
		total := "*"
		if c.Total >= 0 {
			total = fmt.Sprint(c.Total)
		}
		again, err := ParseContentRange(fmt.Sprintf("bytes %d-%d/%s", c.Start, c.End, total))
		if err != nil || again != c {
			t.Fatalf("round trip of %+v: %+v, %v", c, again, err)
		}
	})
}
