package policy

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/moteiot/mote/internal/core"
)

// allow and deny build one-statement documents.
func allow(actions []Action, topics ...string) Document {
	return Document{Statements: []Statement{{Effect: Allow, Actions: actions, Topics: topics}}}
}

func deny(actions []Action, topics ...string) Document {
	return Document{Statements: []Statement{{Effect: Deny, Actions: actions, Topics: topics}}}
}

var (
	all     = []Action{Publish, Subscribe, Receive}
	pubOnly = []Action{Publish}
	subOnly = []Action{Subscribe}
	rcvOnly = []Action{Receive}
)

// repeat returns n copies of s.
func repeat[T any](s T, n int) []T {
	out := make([]T, n)
	for i := range out {
		out[i] = s
	}
	return out
}

func TestDefaultDocument(t *testing.T) {
	d := DefaultDocument()
	if err := d.Validate(); err != nil {
		t.Fatalf("DefaultDocument().Validate() = %v; want nil", err)
	}
	want := []string{"things/${thing}/#", "$mote/things/${thing}/#", "$aws/things/${thing}/#"}
	if len(d.Statements) != 1 || strings.Join(d.Statements[0].Topics, " ") != strings.Join(want, " ") {
		t.Errorf("DefaultDocument() = %+v; want one statement on %q", d, want)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		doc  Document
	}{
		{"empty", Document{}},
		{"default", DefaultDocument()},
		{"wildcards", allow(all, "#", "+", "+/+/#", "a//b", "/")},
		{"variables", allow(all, "things/${thing}/#", "clients/${clientid}", "dev-${clientid}-${thing}/+", "${thing}")},
		{"deny", deny(subOnly, "things/${thing}/secret/#")},
		{"$ topics", allow(pubOnly, "$aws/things/${thing}/shadow/update", "$SYS/#")},
		{"lone dollar and braces", allow(all, "a/$/{x}/$x/{}")},
		{"duplicate actions", allow([]Action{Publish, Publish}, "a")},
		{"limits", Document{Statements: repeat(Statement{
			Effect:  Allow,
			Actions: all,
			Topics:  repeat(strings.Repeat("a", MaxTopicLen), MaxTopics),
		}, MaxStatements)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.doc.Validate(); err != nil {
				t.Errorf("Validate() = %v; want nil", err)
			}
		})
	}
}

func TestValidateErrors(t *testing.T) {
	one := func(s Statement) Document { return Document{Statements: []Statement{s}} }
	topic := func(topics ...string) Document { return allow(all, topics...) }
	tests := []struct {
		name      string
		doc       Document
		wantField string
		wantMsg   string
	}{
		{"too many statements", Document{Statements: repeat(allow(all, "a").Statements[0], MaxStatements+1)},
			"statements", "at most 100 statements"},
		{"no effect", one(Statement{Actions: all, Topics: []string{"a"}}),
			"statements[0].effect", "effect is required"},
		{"bad effect", one(Statement{Effect: "Allow", Actions: all, Topics: []string{"a"}}),
			"statements[0].effect", `not "Allow"`},
		{"no actions", one(Statement{Effect: Allow, Topics: []string{"a"}}),
			"statements[0].actions", "at least one action"},
		{"unknown action", one(Statement{Effect: Deny, Actions: []Action{Publish, "write"}, Topics: []string{"a"}}),
			"statements[0].actions[1]", `unknown action "write"`},
		{"no topics", one(Statement{Effect: Allow, Actions: all}),
			"statements[0].topics", "at least one topic"},
		{"too many topics", topic(repeat("a", MaxTopics+1)...),
			"statements[0].topics", "at most 100 topics"},
		{"topic too long", topic("a", strings.Repeat("a", MaxTopicLen+1)),
			"statements[0].topics[1]", "longer than 1024 bytes"},
		{"empty topic", topic(""),
			"statements[0].topics[0]", "is empty"},
		{"# not last", topic("things/#/x"),
			"statements[0].topics[0]", "'#' before the last level"},
		{"# in a level", topic("things/a#"),
			"statements[0].topics[0]", "'#' in a level"},
		{"+ in a level", topic("things/a+/x"),
			"statements[0].topics[0]", "'+' in a level"},
		{"variable next to #", topic("things/${thing}#"),
			"statements[0].topics[0]", "'#' in a level"},
		{"NUL", topic("a\x00"),
			"statements[0].topics[0]", "NUL"},
		{"invalid UTF-8", topic("a/\xff"),
			"statements[0].topics[0]", "UTF-8"},
		{"unterminated variable", topic("things/${thing/#"),
			"statements[0].topics[0]", `"${" without a closing "}"`},
		{"unknown variable", topic("things/${user}/#"),
			"statements[0].topics[0]", `unknown variable "${user}"`},
		{"variable names are case-sensitive", topic("things/${Thing}/#"),
			"statements[0].topics[0]", `unknown variable "${Thing}"`},
		{"empty variable", topic("things/${}/#"),
			"statements[0].topics[0]", `unknown variable "${}"`},
		{"shared subscription", topic("$share/g/things/#"),
			"statements[0].topics[0]", "shared subscription"},
		{"error in a later statement", Document{Statements: []Statement{
			DefaultDocument().Statements[0],
			{Effect: Deny, Actions: pubOnly, Topics: []string{"ok", "ok/#", "bad/#/x"}},
		}}, "statements[1].topics[2]", `topic "bad/#/x"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.doc.Validate()
			if err == nil {
				t.Fatalf("Validate() = nil; want an error about %s", tt.wantField)
			}
			if got := core.KindOf(err); got != core.KindInvalid {
				t.Errorf("KindOf(Validate()) = %v; want %v", got, core.KindInvalid)
			}
			if got := core.FieldOf(err); got != tt.wantField {
				t.Errorf("FieldOf(Validate()) = %q; want %q (error %q)", got, tt.wantField, err)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("Validate() = %q; want a message containing %q", err, tt.wantMsg)
			}
		})
	}
}

func TestDocumentJSON(t *testing.T) {
	const in = `{"statements": [
		{"effect": "allow", "actions": ["publish", "subscribe"], "topics": ["things/${thing}/#"]},
		{"effect": "deny", "actions": ["receive"], "topics": ["things/${thing}/private/+"]}
	]}`
	var d Document
	if err := json.Unmarshal([]byte(in), &d); err != nil {
		t.Fatal(err)
	}
	if err := d.Validate(); err != nil {
		t.Fatalf("Validate() = %v; want nil", err)
	}
	want := Document{Statements: []Statement{
		{Effect: Allow, Actions: []Action{Publish, Subscribe}, Topics: []string{"things/${thing}/#"}},
		{Effect: Deny, Actions: []Action{Receive}, Topics: []string{"things/${thing}/private/+"}},
	}}
	got, _ := json.Marshal(d)
	wantJSON, _ := json.Marshal(want)
	if string(got) != string(wantJSON) {
		t.Errorf("json.Unmarshal(%s) = %s; want %s", in, got, wantJSON)
	}
	e := Compile([]Document{d}, Vars{Thing: "t1", ClientID: "c1"})
	if !e.CanPublish("things/t1/a") || e.CanReceive("things/t1/private/a") {
		t.Errorf("compiled JSON document does not behave as written")
	}
}

func FuzzValidate(f *testing.F) {
	// More seeds are in testdata/fuzz.
	f.Add([]byte(`{"statements":[{"effect":"allow","actions":["publish"],"topics":["things/${thing}/#"]}]}`))
	f.Add([]byte(`{"statements":[{"effect":"deny","actions":["subscribe"],"topics":["${clientid}/+/#"]}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var d Document
		if json.Unmarshal(data, &d) != nil {
			return
		}
		if err := d.Validate(); err != nil {
			if core.KindOf(err) != core.KindInvalid || !strings.HasPrefix(core.FieldOf(err), "statements") {
				t.Fatalf("Validate() = %v (kind %v, field %q); want a KindInvalid error about statements",
					err, core.KindOf(err), core.FieldOf(err))
			}
			return
		}
		// A valid document compiles, and its evaluator answers for the
		// document's own topics, whatever the variables.
		for _, v := range []Vars{{Thing: "t1", ClientID: "c1"}, {ClientID: "a/+/#\x00"}} {
			e := Compile([]Document{d}, v)
			for _, s := range d.Statements {
				for _, topic := range s.Topics {
					e.CanPublish(topic)
					e.CanSubscribe(topic)
					e.CanReceive(topic)
				}
			}
		}
	})
}
