package commands_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/moteiot/mote/internal/commands"
	"github.com/moteiot/mote/internal/core"
)

// FuzzValidatePayload: any input gets an answer, never a panic; an
// accepted payload is JSON within the size limit, and a refusal is a
// core.Invalid naming the payload or one of its fields.
func FuzzValidatePayload(f *testing.F) {
	for _, s := range []struct{ name, payload string }{
		{"reboot", `{"delaySeconds":5}`},
		{"reboot", `{"delaySeconds":1.5}`},
		{"lock", `{"pin":"1234","message":"call 555"}`},
		{"wipe", `{"confirm":true}`},
		{"locate", `{}`},
		{"configure", `{"settings":{"a":[1,{"b":null}]}}`},
		{"custom", `[1,"two",{"3":4}]`},
		{"wipe", `{"confirm":true} {}`},
	} {
		f.Add(s.name, []byte(s.payload))
	}
	f.Fuzz(func(t *testing.T, name string, payload []byte) {
		err := commands.ValidatePayload(name, payload, 1024)
		if err == nil {
			if p := strings.TrimSpace(string(payload)); p != "" && !json.Valid([]byte(p)) {
				t.Fatalf("accepted invalid JSON %q for %q", payload, name)
			}
			if len(strings.TrimSpace(string(payload))) > 1024 {
				t.Fatalf("accepted %d bytes over the limit", len(payload))
			}
			return
		}
		if core.KindOf(err) != core.KindInvalid || !strings.HasPrefix(core.FieldOf(err), "payload") {
			t.Fatalf("ValidatePayload(%q, %q) = %v (kind %v, field %q); want invalid on payload", name, payload, err, core.KindOf(err), core.FieldOf(err))
		}
	})
}

// FuzzParseResult: a result is accepted only with a known status and
// JSON output.
func FuzzParseResult(f *testing.F) {
	for _, s := range []string{
		`{"status":"succeeded"}`,
		`{"status":"failed","output":{"error":"busy"}}`,
		`{"status":"rejected","output":null}`,
		`{"status":"done"}`,
		`{"status":"succeeded","extra":1}`,
		`{"status":"succeeded"}garbage`,
		`[]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := commands.ParseResult(body)
		if err != nil {
			if core.KindOf(err) != core.KindInvalid {
				t.Fatalf("ParseResult(%q): %v is not invalid", body, err)
			}
			return
		}
		switch r.Status {
		case "succeeded", "failed", "rejected":
		default:
			t.Fatalf("ParseResult(%q) accepted status %q", body, r.Status)
		}
		if r.Output != nil && !json.Valid(r.Output) {
			t.Fatalf("ParseResult(%q) accepted output %q", body, r.Output)
		}
	})
}

// FuzzParseResultTopic: what parses names one thing and one id and makes
// the same topic again.
func FuzzParseResultTopic(f *testing.F) {
	for _, s := range []string{
		"$mote/things/t1/commands/cmd_abc/result",
		"$mote/things/t1/commands//result",
		"$mote/things/t1/commands/a/b/result",
		"$mote/things//commands/x/result",
		"$mote/things/t1/commands/x/result/extra",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, topic string) {
		thing, id, ok := commands.ParseResultTopic(topic)
		if !ok {
			return
		}
		if thing == "" || id == "" || strings.Contains(thing, "/") || strings.Contains(id, "/") {
			t.Fatalf("ParseResultTopic(%q) accepted %q %q", topic, thing, id)
		}
		if again := commands.ResultTopic(thing, id); again != topic {
			t.Fatalf("round trip of %q: %q", topic, again)
		}
	})
}
