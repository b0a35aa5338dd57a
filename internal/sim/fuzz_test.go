package sim

import (
	"encoding/json"
	"math"
	"testing"
)

// FuzzDeviceMessages feeds what the platform may send — a command message
// and a shadow delta — to a device's parsers and state machine: it must
// never panic, every command gets one of the three result statuses, and
// the state stays valid.
func FuzzDeviceMessages(f *testing.F) {
	for _, seed := range []struct{ id, cmd, delta string }{
		{"c1", `{"id":"c1","name":"locate","expiresAt":"2099-01-01T00:00:00Z"}`, `{"state":{"rate":2}}`},
		{"c2", `{"name":"reboot","payload":{"delaySeconds":5}}`, `{"state":{"locked":true,"color":"red"}}`},
		{"c3", `{"name":"lock","payload":{"message":"stolen","pin":"1234"}}`, `{"state":{"rate":"fast"}}`},
		{"c4", `{"name":"unlock","payload":{"pin":"1234"}}`, `{"state":{"firmware":""}}`},
		{"c5", `{"name":"wipe","payload":{"confirm":true}}`, `{"state":null}`},
		{"c6", `{"name":"configure","payload":{"settings":{"rate":1e308,"firmware":"2.0"}}}`, `{"state":{"rate":-1}}`},
		{"c7", `{"name":"configure","payload":[]}`, `[]`},
		{"c8", `{"name":"nope"}`, `{"state":{"model":"x","bootCount":1}}`},
		{"", `not json`, `{"state":{"a":{"b":[1,2]}}}`},
	} {
		f.Add(seed.id, []byte(seed.cmd), []byte(seed.delta))
	}
	fl, err := NewFleet(nil, Options{MQTTAddr: "127.0.0.1:1", Rate: 1})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, id string, cmdPayload, deltaPayload []byte) {
		d := newDevice(fl, Identity{Thing: "sim-0001", Site: Sites[0], Model: "MS-100", Firmware: DefaultFirmware}, 0)
		if state, err := parseDelta(deltaPayload); err == nil {
			rep, _ := d.apply(state)
			if _, err := json.Marshal(rep); err != nil {
				t.Fatalf("reported state of delta %q does not marshal: %v", deltaPayload, err)
			}
		}
		cmd, err := parseCommand(id, cmdPayload)
		if err == nil {
			res, reboot := d.execute(cmd)
			if !reboot {
				switch res.Status {
				case "succeeded", "failed", "rejected":
				default:
					t.Fatalf("command %q: result status %q", cmdPayload, res.Status)
				}
				if _, err := json.Marshal(res); err != nil {
					t.Fatalf("result of %q does not marshal: %v", cmdPayload, err)
				}
			}
		} else if cmd.ID != id {
			t.Fatalf("a bad command lost its id: %q != %q", cmd.ID, id)
		}
		if d.rate < MinRate || d.rate > MaxRate || math.IsNaN(d.rate) {
			t.Fatalf("rate %v out of range after %q / %q", d.rate, cmdPayload, deltaPayload)
		}
		if _, err := json.Marshal(d.reported()); err != nil {
			t.Fatalf("reported state does not marshal: %v", err)
		}
	})
}
