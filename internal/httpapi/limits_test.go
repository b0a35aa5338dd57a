package httpapi

import (
	"errors"
	"testing"

	"github.com/moteiot/mote/internal/core"
)

func TestCheckDuplicateKeys(t *testing.T) {
	tests := []struct {
		body  string
		field string // "" = accepted
	}{
		{`{"role":"viewer","role":"admin"}`, "role"},
		{`{"a":1,"b":2}`, ""},
		{`{"a":{"x":1,"x":2}}`, "a.x"},
		{`{"a":[{"x":1},{"y":1,"y":2}]}`, "a[1].y"},
		{`[{"k":1,"k":1}]`, "[0].k"},
		{`{"a":{"x":1},"b":{"x":1}}`, ""}, // the same key in sibling objects
		{`{"a":"a","A":"b"}`, ""},         // keys are case-sensitive here
		{`{"\u0061":1,"a":2}`, "a"},       // the same key, escaped
		{`{"a":[1,2,{"a":3}]}`, ""},
		{`{"a":1,"a"`, "a"}, // the duplicate comes before the syntax error
		{`{"a":1,}`, ""},    // malformed: left to the decoder
		{`"x"`, ""},
		{`{}`, ""},
	}
	for _, tt := range tests {
		err := checkDuplicateKeys([]byte(tt.body))
		if tt.field == "" {
			if err != nil {
				t.Errorf("checkDuplicateKeys(%s) = %v; want nil", tt.body, err)
			}
			continue
		}
		var ce *core.Error
		if !errors.As(err, &ce) || core.KindOf(err) != core.KindInvalid || ce.Field != tt.field {
			t.Errorf("checkDuplicateKeys(%s) = %v; want an invalid error naming %q", tt.body, err, tt.field)
		}
	}
}

// TestDuplicateKeysRefused: a token created with the role given twice is
// refused with 400 naming the key, not created as the last one says.
func TestDuplicateKeysRefused(t *testing.T) {
	e := newEnv(t)
	r := e.req(t, "POST", "/tokens", e.admin, `{"name":"sneaky","role":"viewer","role":"admin"}`)
	p := wantProblem(t, r, 400, "invalid", "role")
	if p.Detail == "" {
		t.Fatal("no detail")
	}
	toks, _ := e.items(t, "/tokens")
	for _, tk := range toks {
		if tk["name"] == "sneaky" {
			t.Fatalf("the token was created: %v", tk)
		}
	}
	r = e.req(t, "POST", "/things", e.admin, `{"name":"t1","attributes":{"k":"a","k":"b"}}`)
	wantProblem(t, r, 400, "invalid", "attributes.k")
}

// FuzzCheckDuplicateKeys: the walk never panics, and refuses only with a
// KindInvalid error (a 400).
func FuzzCheckDuplicateKeys(f *testing.F) {
	for _, s := range []string{
		`{"role":"viewer","role":"admin"}`,
		`{"a":{"x":1,"x":2}}`,
		`[{"k":1},{"k":1}]`,
		`{"a":[[[[{"b":{"c":null}}]]]]}`,
		`{"\u0061":1,"a":2}`,
		`{"a":1,"a"`,
		`[`, `}`, `{"":1,"":2}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if err := checkDuplicateKeys(body); err != nil && core.KindOf(err) != core.KindInvalid {
			t.Fatalf("checkDuplicateKeys(%q) = %v; want nil or an invalid error", body, err)
		}
	})
}
