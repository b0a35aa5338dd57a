package profiles

import (
	"encoding/json"
	"testing"

	"github.com/moteiot/mote/internal/core"
)

// FuzzParseDocument: any input is either refused with a kind or parsed
// into leaves that are non-empty paths with canonical scalar or array
// values, which Merge keeps free of conflicts.
func FuzzParseDocument(f *testing.F) {
	for _, s := range []string{
		`{"reportingInterval":60,"wifi":{"ssid":"plant"}}`,
		`{}`, `[]`, `null`, `{"a":null}`, `{"a":{}}`, `{"":1}`, `{"a":[1,{"b":2}]}`,
		`{"a":{"b":{"c":{"d":{"e":{"f":{"g":{"h":{"i":1}}}}}}}}}`,
		`{"a":1} x`, `{"a":1e400}`, `{"a":"\u00e9"}`,
	} {
		f.Add([]byte(s), "group", "")
	}
	f.Add([]byte(`{"a":1}`), "", "")
	f.Add([]byte(`{"a":1}`), "g/x", "")
	f.Add([]byte(`{"a":1}`), "g", "connected = true")
	f.Fuzz(func(t *testing.T, doc []byte, group, query string) {
		leaves, err := ParseDocument(doc, 4096)
		if err != nil {
			if k := core.KindOf(err); k != core.KindInvalid && k != core.KindTooLarge {
				t.Fatalf("ParseDocument error kind %v: %v", k, err)
			}
		} else {
			for _, l := range leaves {
				if len(l.Path) == 0 || len(l.Path) > MaxDepth {
					t.Fatalf("leaf path %q", l.Path)
				}
				var v any
				if err := json.Unmarshal(l.Value, &v); err != nil {
					t.Fatalf("leaf value %s: %v", l.Value, err)
				}
				if _, isObj := v.(map[string]any); isObj || v == nil {
					t.Fatalf("leaf value %s is an object or null", l.Value)
				}
			}
			merged := Merge([]Applying{{Name: "a", Leaves: leaves}, {Name: "b", Priority: 1, Leaves: leaves}})
			if len(merged) != len(leaves) {
				t.Fatalf("Merge of a document with itself has %d leaves; want %d", len(merged), len(leaves))
			}
			for _, l := range merged {
				if l.Profile != "b" {
					t.Fatalf("the higher priority lost %q", l.Path)
				}
			}
		}
		if err := checkTarget(group, query); err != nil && core.KindOf(err) != core.KindInvalid {
			t.Fatalf("checkTarget error kind %v", core.KindOf(err))
		}
	})
}
