package ruleengine

import (
	"os"
	"strings"
	"testing"
)

// TestDocActionExamples parses every action example of docs/rules.md
// (a json block that starts with {"type") as a rule's action would be.
func TestDocActionExamples(t *testing.T) {
	doc, err := os.ReadFile("../../docs/rules.md")
	if err != nil {
		t.Fatal(err)
	}
	types := map[string]bool{}
	for _, block := range strings.Split(string(doc), "```json\n")[1:] {
		block, _, _ = strings.Cut(block, "```")
		if !strings.HasPrefix(block, `{"type"`) {
			continue
		}
		a, err := parseAction("doc", []byte(block))
		if err != nil {
			t.Errorf("docs/rules.md action %s: %v", block, err)
			continue
		}
		types[a.Type] = true
	}
	for _, want := range []string{ActionKafka, ActionNATS, ActionPostgres, ActionMQTT} {
		if !types[want] {
			t.Errorf("docs/rules.md has no %s action example", want)
		}
	}
}
