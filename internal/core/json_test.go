package core

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestAppendJSONString(t *testing.T) {
	for in, want := range map[string]string{
		``:                  `""`,
		`plain`:             `"plain"`,
		"q\"b\\n\n\r\t\b\f": `"q\"b\\n\n\r\t\b\f"`,
		"\x00\x1f":          `"\u0000\u001f"`,
		"<&>":               `"<&>"`, // no HTML escaping
		"\u2028\u2029":      `"\u2028\u2029"`,
		"bad\xffutf8":       `"bad\ufffdutf8"`,
		"héllo 世界":          `"héllo 世界"`,
	} {
		if got := string(AppendJSONString(nil, in)); got != want {
			t.Errorf("AppendJSONString(%q) = %s; want %s", in, got, want)
		}
	}
}

// Whatever the string, the output is JSON that decodes to it (invalid
// UTF-8 replaced by U+FFFD, as encoding/json does).
func FuzzAppendJSONString(f *testing.F) {
	for _, s := range []string{"", "a\"b", "\x00", "\xff\xfe", "\u2028", "日本"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := AppendJSONString([]byte("x"), s)[1:]
		var back string
		if err := json.Unmarshal(out, &back); err != nil {
			t.Fatalf("%q encoded as %s: not JSON: %v", s, out, err)
		}
		if want := strings.ToValidUTF8(s, "\uFFFD"); back != want && utf8.ValidString(s) {
			t.Fatalf("%q came back as %q", s, back)
		}
	})
}
