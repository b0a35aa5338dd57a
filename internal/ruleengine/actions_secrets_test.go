package ruleengine

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/seal"
	"github.com/moteiot/mote/internal/store"
)

// TestSecretsOfNewActionsSealed: a kafka SASL password and the password
// in a nats URL are sealed in the store, opened to run (both deliver),
// redacted for the API, and kept when an update sends the placeholder.
func TestSecretsOfNewActionsSealed(t *testing.T) {
	k := newKafka(t, kfake.EnableSASL(), kfake.Superuser("PLAIN", "mote", "k-s3cret"))
	ns := startNATS(t)
	v := newSealEnv(t)
	e, b, _, reg := v.start(t, true)
	defer e.Close()
	brokers, _ := json.Marshal(k.ListenAddrs())
	r := store.Rule{Name: "hook", Enabled: true, SQL: "SELECT * FROM 'things/+/data'",
		Actions: json.RawMessage(`[{"type":"kafka","brokers":` + string(brokers) + `,"topic":"readings","sasl":{"mechanism":"PLAIN","user":"mote","password":"k-s3cret"}},
			{"type":"nats","url":"` + natsURL(ns) + `","subject":"s"}]`)}
	if _, err := e.Create(t.Context(), r); err != nil {
		t.Fatal(err)
	}
	row := v.stored(t)
	if strings.Contains(row, "s3cret") || strings.Count(row, seal.Prefix) != 2 {
		t.Fatalf("stored actions %s; want both secrets sealed", row)
	}
	publishData(b)
	waitMetric(t, reg, 1, "mote_rule_action_total", "hook", "kafka", "success")
	waitMetric(t, reg, 1, "mote_rule_action_total", "hook", "nats", "success")

	got, err := e.Get(t.Context(), "hook")
	if err != nil {
		t.Fatal(err)
	}
	red := Redact(got)
	if s := string(red.Actions); strings.Contains(s, "s3cret") || strings.Count(s, Redacted) != 2 {
		t.Fatalf("redacted actions %s; want both secrets as %s", s, Redacted)
	}
	if _, err := e.Update(t.Context(), red); err != nil {
		t.Fatalf("Update with the placeholders: %v", err)
	}
	if row := v.stored(t); strings.Contains(row, "s3cret") || strings.Count(row, seal.Prefix) != 2 {
		t.Fatalf("stored after update %s; want both secrets still sealed", row)
	}
	publishData(b)
	waitMetric(t, reg, 2, "mote_rule_action_total", "hook", "kafka", "success")
	waitMetric(t, reg, 2, "mote_rule_action_total", "hook", "nats", "success")

	// A placeholder without a stored counterpart is refused, naming it.
	red.Name = "other"
	if _, err := e.Create(t.Context(), red); err == nil || !strings.Contains(err.Error(), "sasl.password") {
		t.Errorf("Create with a placeholder = %v; want an error on sasl.password", err)
	}
}

// TestValidationOfNewActions: each action's bad settings are refused at
// creation with the field.
func TestValidationOfNewActions(t *testing.T) {
	cases := []struct {
		action, field string
	}{
		{`{"type":"kafka","topic":"t"}`, "actions[0].brokers"},
		{`{"type":"kafka","brokers":["nohost"],"topic":"t"}`, "actions[0].brokers"},
		{`{"type":"kafka","brokers":["h:9092"]}`, "actions[0].topic"},
		{`{"type":"kafka","brokers":["h:9092"],"topic":"a b"}`, "actions[0].topic"},
		{`{"type":"kafka","brokers":["h:9092"],"topic":"t","partition":-1}`, "actions[0].partition"},
		{`{"type":"kafka","brokers":["h:9092"],"topic":"t","sasl":{"mechanism":"GSSAPI","user":"u","password":"p"}}`, "actions[0].sasl.mechanism"},
		{`{"type":"kafka","brokers":["h:9092"],"topic":"t","tls":{"ca":"nope"}}`, "actions[0].tls.ca"},
		{`{"type":"kafka","brokers":["h:9092"],"topic":"t","url":"http://x"}`, "actions[0].url"},
		{`{"type":"kafka","brokers":["h:9092"],"topic":"t","bogus":1}`, "actions[0]"},
		{`{"type":"nats","url":"http://x","subject":"s"}`, "actions[0].url"},
		{`{"type":"nats","url":"nats://x:4222"}`, "actions[0].subject"},
		{`{"type":"nats","url":"nats://x:4222","subject":"a.*"}`, "actions[0].subject"},
		{`{"type":"nats","url":"nats://x:4222","subject":"s","creds":"garbage"}`, "actions[0].creds"},
		{`{"type":"nats","url":"nats://x:4222","subject":"s","topic":"t"}`, "actions[0].topic"},
		{`{"type":"postgres","url":"mysql://x/db","table":"t","columns":{"a":"a"}}`, "actions[0].url"},
		{`{"type":"postgres","url":"postgres://x/db","table":"t; DROP TABLE x","columns":{"a":"a"}}`, "actions[0].table"},
		{`{"type":"postgres","url":"postgres://x/db","table":"t"}`, "actions[0].columns"},
		{`{"type":"postgres","url":"postgres://x/db","table":"t","columns":{"a\"":"a"}}`, "actions[0].columns"},
		{`{"type":"postgres","url":"postgres://x/db","table":"t","columns":{"a":"a"},"tls":{}}`, "actions[0].tls"},
		{`{"type":"mqtt","url":"http://x","topic":"t"}`, "actions[0].url"},
		{`{"type":"mqtt","url":"mqtt://x:99999","topic":"t"}`, "actions[0].url"},
		{`{"type":"mqtt","url":"mqtt://x:1883"}`, "actions[0].topic"},
		{`{"type":"mqtt","url":"mqtt://x:1883","topic":"a/#"}`, "actions[0].topic"},
		{`{"type":"mqtt","url":"mqtt://x:1883","topic":"t","qos":2}`, "actions[0].qos"},
		{`{"type":"mqtt","url":"mqtt://x:1883","topic":"t","timeoutMs":600000}`, "actions[0].timeoutMs"},
		{`{"type":"mqtt","url":"mqtt://x:1883","topic":"t","retries":11}`, "actions[0].retries"},
	}
	for _, c := range cases {
		err := Validate(store.Rule{Name: "r", SQL: "SELECT * FROM 'x'", Actions: json.RawMessage("[" + c.action + "]")})
		var ce *core.Error
		if err == nil || !asCore(err, &ce) || ce.Kind != core.KindInvalid || ce.Field != c.field {
			t.Errorf("Validate(%s) = %v; want invalid on %s", c.action, err, c.field)
		}
	}
	for _, ok := range []string{
		`{"type":"kafka","brokers":["h:9092"],"topic":"t-${thing()}","key":"${device}","partition":0}`,
		`{"type":"nats","url":"tls://u:p@x:4222","subject":"mote.${thing()}","jetstream":true}`,
		`{"type":"postgres","url":"postgres://u:p@x/db","table":"s.t","columns":{"a":"a","b_2":"b"}}`,
		`{"type":"mqtt","url":"mqtts://u:p@x","topic":"site/${topic()}","qos":1,"retain":true,"tls":{"insecureSkipVerify":true}}`,
	} {
		if err := Validate(store.Rule{Name: "r", SQL: "SELECT * FROM 'x'", Actions: json.RawMessage("[" + ok + "]")}); err != nil {
			t.Errorf("Validate(%s) = %v; want nil", ok, err)
		}
	}
}

// FuzzParseAction: no action JSON makes parseAction panic, and one it
// accepts encodes and parses again to the same action.
func FuzzParseAction(f *testing.F) {
	for _, s := range []string{
		`{"type":"kafka","brokers":["h:9092"],"topic":"t-${thing()}","key":"${device}","partition":0,"sasl":{"mechanism":"PLAIN","user":"u","password":"p"}}`,
		`{"type":"nats","url":"nats://x:4222","subject":"mote.${topic(2)}","jetstream":true}`,
		`{"type":"postgres","url":"postgres://u:p@x/db","table":"s.t","columns":{"a":"a"}}`,
		`{"type":"mqtt","url":"mqtt://x:1883","topic":"site/${topic()}","qos":1,"tls":{"serverName":"x"}}`,
		`{"type":"webhook","url":"http://x/y","headers":{"A":"b"}}`,
		`{"type":"republish","topic":"a/${x}"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		a, err := parseAction("a", data)
		if err != nil {
			return
		}
		again, _ := json.Marshal(a.Action)
		b, err := parseAction("a", again)
		if err != nil {
			t.Fatalf("parseAction(%s) ok, its encoding %s = %v", data, again, err)
		}
		if enc, _ := json.Marshal(b.Action); string(enc) != string(again) {
			t.Fatalf("re-encoded %s; want %s", enc, again)
		}
	})
}
