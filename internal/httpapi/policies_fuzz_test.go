package httpapi

import (
	"encoding/json"
	"testing"
)

// FuzzParsePolicyDocument: the validator behind POST /policies:validate
// never panics, and what it accepts survives a round trip.
func FuzzParsePolicyDocument(f *testing.F) {
	for _, s := range []string{
		`{"statements": [{"effect": "allow", "actions": ["publish"], "topics": ["things/${thing}/#"]}]}`,
		"{\n  \"statements\": [\n    {\"effect\": \"allow\",, }\n  ]\n}",
		`{"statements": []} {}`,
		`{"statements": [`,
		`{"statements": [{"effect": "deny", "actions": ["receive"], "topics": ["a/+/b", "#"]}], "statements": []}`,
		"\"\xff\"",
		``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		doc, err := parsePolicyDocument(body)
		if err != nil {
			return
		}
		again, err := json.Marshal(doc)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := parsePolicyDocument(again); err != nil {
			t.Fatalf("accepted %q, but not its round trip %s: %v", body, again, err)
		}
	})
}

func TestLineColumn(t *testing.T) {
	for _, c := range []struct {
		text      string
		off       int64
		line, col int
	}{
		{"abc", 0, 1, 1},
		{"abc", 2, 1, 3},
		{"a\nbc", 3, 2, 2},
		{"ä\nöx", 5, 2, 2},
		{"ab", 99, 1, 3},
		{"ab", -1, 1, 1},
	} {
		if l, col := lineColumn([]byte(c.text), c.off); l != c.line || col != c.col {
			t.Errorf("lineColumn(%q, %d) = %d, %d; want %d, %d", c.text, c.off, l, col, c.line, c.col)
		}
	}
}
