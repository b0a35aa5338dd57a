package devicemodel

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/core"
)

func sensor(t testing.TB) *Compiled {
	t.Helper()
	raw, err := os.ReadFile("testdata/sensor.json")
	if err != nil {
		t.Fatal(err)
	}
	c, err := Parse(raw, 0)
	if err != nil {
		t.Fatalf("Parse(sensor.json) = %v", err)
	}
	return c
}

func TestParseSensor(t *testing.T) {
	c := sensor(t)
	if got := c.Interval(""); got != 30*time.Second {
		t.Errorf("Interval(\"\") = %s; want 30s (the largest)", got)
	}
	if got := c.Interval("temperature"); got != 10*time.Second {
		t.Errorf("Interval(temperature) = %s; want 10s", got)
	}
	if got := c.Model.Telemetry["temperature"].Unit; got != "°C" {
		t.Errorf("unit = %q; want °C", got)
	}
	if !c.HasCommands() {
		t.Error("HasCommands = false")
	}
}

func TestParseRefused(t *testing.T) {
	big := `{"telemetry": {"k": {"label": "` + strings.Repeat("x", 70_000) + `"}}}`
	for _, tc := range []struct {
		name, model, field, msg string
		kind                    core.Kind
	}{
		{"not json", `{`, "model", "", core.KindInvalid},
		{"unknown member", `{"telemetry": {}, "alarms": {}}`, "model", "alarms", core.KindInvalid},
		{"trailing", `{} {}`, "model", "after", core.KindInvalid},
		{"bad type", `{"telemetry": {"t": {"type": "float"}}}`, "model.telemetry.t.type", "", core.KindInvalid},
		{"min > max", `{"telemetry": {"t": {"min": 5, "max": 1}}}`, "model.telemetry.t.min", "", core.KindInvalid},
		{"range on string", `{"telemetry": {"t": {"type": "string", "max": 1}}}`, "model.telemetry.t.min", "", core.KindInvalid},
		{"bad interval", `{"telemetry": {"t": {"interval": "soon"}}}`, "model.telemetry.t.interval", "", core.KindInvalid},
		{"tiny interval", `{"telemetry": {"t": {"interval": "1ns"}}}`, "model.telemetry.t.interval", "", core.KindInvalid},
		{"invalid schema", `{"properties": {"desired": {"type": "object", "properties": {"x": {"type": 12}}}}}`, "model.properties.desired", "/properties/x/type", core.KindInvalid},
		{"schema not object", `{"properties": {"reported": "yes"}}`, "model.properties.reported", "", core.KindInvalid},
		{"remote ref", `{"properties": {"desired": {"$ref": "https://example.com/schema.json"}}}`, "model.properties.desired", "remote references are not allowed", core.KindInvalid},
		{"file ref", `{"commands": {"x": {"payload": {"$ref": "file:///etc/passwd"}}}}`, "model.commands.x.payload", "remote references are not allowed", core.KindInvalid},
		{"remote metaschema", `{"properties": {"desired": {"$schema": "http://example.com/meta", "type": "object"}}}`, "model.properties.desired", "", core.KindInvalid},
		{"bad command name", `{"commands": {"re boot": {}}}`, "model.commands", "", core.KindInvalid},
		{"huge", big, "", "larger than", core.KindTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.model), 0)
			if core.KindOf(err) != tc.kind {
				t.Fatalf("Parse = %v (kind %v); want kind %v", err, core.KindOf(err), tc.kind)
			}
			var ce *core.Error
			if tc.field != "" && (!asCore(err, &ce) || ce.Field != tc.field) {
				t.Errorf("Parse = %#v; want field %q", err, tc.field)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("Parse = %q; want it to contain %q", err, tc.msg)
			}
		})
	}
}

func asCore(err error, ce **core.Error) bool {
	e, ok := err.(*core.Error)
	*ce = e
	return ok
}

func TestValidateDesired(t *testing.T) {
	c := sensor(t)
	for _, tc := range []struct{ desired, want string }{
		{`{"reportingInterval": 10}`, ""},
		{`{"reportingInterval": 10, "led": null}`, ""}, // null deletes
		{`{"reportingInterval": 0}`, "/reportingInterval: "},
		{`{"reportingInterval": 1.5}`, "/reportingInterval: "},
		{`{"led": "blue"}`, "/led: "},
		{`{"color": "red"}`, "/: "},
		{`[1]`, "/: "},
	} {
		err := c.ValidateShadowUpdate([]byte(`{"state": {"desired": ` + tc.desired + `}}`))
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("ValidateDesired(%s) = %v; want nil", tc.desired, err)
		case tc.want != "" && (core.KindOf(err) != core.KindInvalid || !strings.HasPrefix(err.(*core.Error).Msg, tc.want)):
			t.Errorf("ValidateDesired(%s) = %v; want invalid starting %q", tc.desired, err, tc.want)
		}
	}
	err := c.ValidateDesired(json.RawMessage(`{"reportingInterval": 0}`))
	if got := err.(*core.Error).Msg; got != "/reportingInterval: must be >= 1" {
		t.Errorf("message = %q", got)
	}
}

func TestValidateCommand(t *testing.T) {
	c := sensor(t)
	for _, tc := range []struct {
		name, payload, field string
	}{
		{"reboot", ``, ""},
		{"reboot", `{"anything": 1}`, ""},
		{"setLed", `{"state": "on"}`, ""},
		{"setLed", `{"state": "on", "seconds": 0}`, "payload"},
		{"setLed", `{}`, "payload"},
		{"setLed", `"on"`, "payload"},
		{"setLed", ``, "payload"},
		{"selfDestruct", `{}`, "name"},
	} {
		err := c.ValidateCommand(tc.name, json.RawMessage(tc.payload))
		if tc.field == "" {
			if err != nil {
				t.Errorf("ValidateCommand(%s, %s) = %v; want nil", tc.name, tc.payload, err)
			}
			continue
		}
		if ce, ok := err.(*core.Error); !ok || ce.Field != tc.field {
			t.Errorf("ValidateCommand(%s, %s) = %v; want invalid %s", tc.name, tc.payload, err, tc.field)
		}
	}
	none, _ := Parse([]byte(`{}`), 0)
	if err := none.ValidateCommand("anything", nil); err != nil {
		t.Errorf("a model without commands refused a command: %v", err)
	}
}

func TestCheckTelemetry(t *testing.T) {
	c := sensor(t)
	got := c.CheckTelemetry(map[string]any{"temperature": json.Number("130"), "humidity": 50.0, "door": "open", "other": 1e9})
	if len(got) != 2 || got[0].Key != "door" || got[1].Key != "temperature" || !strings.Contains(got[1].Reason, "maximum") {
		t.Fatalf("CheckTelemetry = %+v; want door (type) and temperature (above max)", got)
	}
	if got := c.CheckTelemetry(map[string]any{"temperature": json.Number("-40"), "door": true}); len(got) != 0 {
		t.Errorf("CheckTelemetry(in range) = %+v; want none", got)
	}
}

func TestCheckReported(t *testing.T) {
	c := sensor(t)
	got := c.CheckReported(json.RawMessage(`{"firmware": "1.0", "battery": 120}`))
	if len(got) != 1 || got[0].Key != "/battery" || got[0].Value != json.Number("120") {
		t.Fatalf("CheckReported = %+v; want /battery 120", got)
	}
	if got := c.CheckReported(json.RawMessage(`{"battery": 20, "firmware": null}`)); got != nil {
		t.Errorf("CheckReported(valid) = %+v", got)
	}
}

func FuzzParse(f *testing.F) {
	raw, _ := os.ReadFile("testdata/sensor.json")
	f.Add(raw)
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"properties": {"desired": {"$ref": "#/$defs/a", "$defs": {"a": {"$ref": "#/$defs/a"}}}}}`))
	f.Add([]byte(`{"properties": {"desired": {"$ref": "http://x/y"}}}`))
	f.Add([]byte(`{"commands": {"a": {"payload": {"pattern": "(a+)+$"}}}}`))
	f.Add([]byte(`{"telemetry": {"t": {"min": 1e308, "max": -1e308, "interval": "1h"}}}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		c, err := Parse(raw, 4096)
		if err != nil {
			if k := core.KindOf(err); k != core.KindInvalid && k != core.KindTooLarge {
				t.Fatalf("Parse = %v: kind %v", err, k)
			}
			return
		}
		// A model that parses checks anything without panicking.
		_ = c.ValidateDesired(json.RawMessage(`{"a": 1, "b": [null, {"c": "d"}]}`))
		_ = c.ValidateCommand("a", json.RawMessage(`{"x": 1}`))
		_ = c.CheckReported(json.RawMessage(`{"a": 1}`))
		_ = c.CheckTelemetry(map[string]any{"t": 1.0})
		_ = c.Interval("")
	})
}

func BenchmarkCheckTelemetry(b *testing.B) {
	c := sensor(b)
	obj := map[string]any{"temperature": json.Number("21.5"), "humidity": json.Number("40"), "door": false, "rssi": json.Number("-70")}
	for b.Loop() {
		if len(c.CheckTelemetry(obj)) != 0 {
			b.Fatal("violation")
		}
	}
}

func BenchmarkValidateDesired(b *testing.B) {
	c := sensor(b)
	doc := json.RawMessage(`{"reportingInterval": 10, "led": "on"}`)
	for b.Loop() {
		if err := c.ValidateDesired(doc); err != nil {
			b.Fatal(err)
		}
	}
}
