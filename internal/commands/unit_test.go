package commands_test

import (
	"testing"

	"github.com/moteiot/mote/internal/commands"
	"github.com/moteiot/mote/internal/core"
)

func TestValidatePayload(t *testing.T) {
	for _, tc := range []struct {
		name, payload, field string // field "" means accepted
	}{
		{"reboot", ``, ""},
		{"reboot", `null`, ""},
		{"reboot", `{}`, ""},
		{"reboot", `{"delaySeconds":86400}`, ""},
		{"reboot", `{"delaySeconds":86401}`, "payload.delaySeconds"},
		{"reboot", `{"delaySeconds":1.5}`, "payload.delaySeconds"},
		{"reboot", `{"delaySeconds":"5"}`, "payload.delaySeconds"},
		{"reboot", `5`, "payload"},
		{"lock", `{"pin":"0000","message":"Please return"}`, ""},
		{"lock", `{"pin":""}`, "payload.pin"},
		{"wipe", `{"confirm":true}`, ""},
		{"wipe", `{}`, "payload.confirm"},
		{"wipe", `null`, "payload"},
		{"locate", `{}`, ""},
		{"locate", `{"accuracy":1}`, "payload.accuracy"},
		{"configure", `{"settings":{}}`, ""},
		{"configure", `{"settings":null}`, "payload.settings"},
		{"configure", `{"settings":{},"reboot":true}`, "payload.reboot"},
		{"my.command", `"anything"`, ""},
		{"my.command", `{"a":`, "payload"},
		{"my.command", `{} {}`, "payload"},
	} {
		err := commands.ValidatePayload(tc.name, []byte(tc.payload), commands.MaxPayload)
		switch {
		case tc.field == "" && err != nil:
			t.Errorf("ValidatePayload(%s, %s) = %v; want accepted", tc.name, tc.payload, err)
		case tc.field != "" && (core.KindOf(err) != core.KindInvalid || core.FieldOf(err) != tc.field):
			t.Errorf("ValidatePayload(%s, %s) = %v (field %q); want invalid on %s", tc.name, tc.payload, err, core.FieldOf(err), tc.field)
		}
	}
	big := make([]byte, commands.MaxPayload+1)
	for i := range big {
		big[i] = ' '
	}
	big[0], big[len(big)-1] = '"', '"'
	if err := commands.ValidatePayload("x", big, commands.MaxPayload); core.FieldOf(err) != "payload" {
		t.Errorf("payload over the limit: %v", err)
	}
}

func TestParseResult(t *testing.T) {
	for _, tc := range []struct {
		body, status, output string
		ok                   bool
	}{
		{`{"status":"succeeded"}`, "succeeded", "", true},
		{`{"status":"failed","output":{"e":1}}`, "failed", `{"e":1}`, true},
		{`{"status":"rejected","output":null}`, "rejected", "", true},
		{`{"status":"delivered"}`, "", "", false},
		{`{"status":"succeeded","x":1}`, "", "", false},
		{`{"status":"succeeded"} x`, "", "", false},
		{`not json`, "", "", false},
	} {
		r, err := commands.ParseResult([]byte(tc.body))
		if (err == nil) != tc.ok || (tc.ok && (r.Status != tc.status || string(r.Output) != tc.output)) {
			t.Errorf("ParseResult(%s) = %+v, %v; want %q %q ok=%v", tc.body, r, err, tc.status, tc.output, tc.ok)
		}
	}
}
