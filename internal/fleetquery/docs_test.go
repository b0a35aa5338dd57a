package fleetquery

import (
	"os"
	"strings"
	"testing"
)

// TestDocExamples parses every query in the fleetquery code blocks of
// docs/fleet-query.md, and checks that the errors in its table are the
// ones Parse gives.
func TestDocExamples(t *testing.T) {
	doc, err := os.ReadFile("../../docs/fleet-query.md")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, block := range strings.Split(string(doc), "```fleetquery\n")[1:] {
		block, _, _ = strings.Cut(block, "```")
		n++
		q, err := Parse(strings.TrimSpace(block), Limits{})
		if err != nil {
			t.Errorf("docs/fleet-query.md: Parse(%q) = %v", block, err)
			continue
		}
		if q2, err := Parse(q.String(), Limits{}); err != nil || q2.String() != q.String() {
			t.Errorf("docs/fleet-query.md: %q does not print back: %q, %v", block, q.String(), err)
		}
	}
	if n < 8 {
		t.Errorf("found %d queries in docs/fleet-query.md; want more", n)
	}
	// The error table: | `query` | `error` |.
	_, table, _ := strings.Cut(string(doc), "## Errors")
	rows := 0
	for _, line := range strings.Split(table, "\n") {
		cells := strings.Split(line, "` | `")
		if !strings.HasPrefix(line, "| `") || len(cells) != 2 {
			continue
		}
		rows++
		q := strings.TrimPrefix(cells[0], "| `")
		want := strings.TrimSuffix(strings.TrimSuffix(cells[1], "` |"), "...")
		want = strings.TrimSuffix(want, ", ")
		_, err := Parse(q, Limits{})
		if err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("docs/fleet-query.md: Parse(%q) = %v; the docs say %q", q, err, want)
		}
	}
	if rows < 5 {
		t.Errorf("found %d error rows; want 5", rows)
	}
}
