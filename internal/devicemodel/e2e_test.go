package devicemodel_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/daemontest"
)

func api(t *testing.T, s *daemontest.Server, method, path, body string) (int, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, s.API+"/api/v1"+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+s.Token)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func mustAPI(t *testing.T, s *daemontest.Server, method, path, body string, want int) string {
	t.Helper()
	code, out := api(t, s, method, path, body)
	if code != want {
		t.Fatalf("%s %s = %d %s; want %d", method, path, code, out, want)
	}
	return out
}

// TestModelOverAPI runs one daemon through the model's API: a type with a
// model; refused models (invalid schema, remote $ref, huge); desired
// updates and commands checked against it (refused ones store nothing);
// a real MQTT device whose telemetry and reported state leave the model is
// flagged on the thing, never refused.
func TestModelOverAPI(t *testing.T) {
	s := daemontest.Start(t)
	model, err := os.ReadFile("testdata/sensor.json")
	if err != nil {
		t.Fatal(err)
	}
	mustAPI(t, s, "POST", "/types", `{"name": "sensor", "model": `+string(model)+`}`, 201)
	out := mustAPI(t, s, "GET", "/types/sensor", "", 200)
	var typ struct {
		Model struct {
			Telemetry map[string]struct{ Unit string } `json:"telemetry"`
		} `json:"model"`
	}
	if json.Unmarshal([]byte(out), &typ) != nil || typ.Model.Telemetry["temperature"].Unit != "°C" {
		t.Fatalf("GET /types/sensor = %s; want the model with its unit", out)
	}

	// Hostile models.
	for _, tc := range []struct {
		name, body string
		code       int
		want       string
	}{
		{"invalid schema", `{"name": "bad", "model": {"properties": {"desired": {"type": "object", "properties": {"x": {"minimum": "one"}}}}}}`, 400, "/properties/x/minimum"},
		{"remote ref", `{"name": "bad", "model": {"commands": {"x": {"payload": {"$ref": "http://169.254.169.254/latest"}}}}}`, 400, "remote references are not allowed"},
		{"huge", `{"name": "bad", "model": {"telemetry": {"k": {"label": "` + strings.Repeat("x", 70_000) + `"}}}}`, 413, "larger than 65536"},
		{"unknown member", `{"name": "bad", "model": {"widgets": {}}}`, 400, "widgets"},
	} {
		code, out := api(t, s, "POST", "/types", tc.body)
		if code != tc.code || !strings.Contains(out, tc.want) || !strings.Contains(out, "problem") && code != 413 {
			t.Errorf("%s: POST /types = %d %s; want %d naming %q", tc.name, code, out, tc.code, tc.want)
		}
	}
	mustAPI(t, s, "GET", "/types/bad", "", 404)

	mustAPI(t, s, "POST", "/things", `{"name": "s1", "type": "sensor"}`, 201)

	// Desired updates.
	mustAPI(t, s, "POST", "/things/s1/shadows/classic", `{"state": {"desired": {"reportingInterval": 10}}}`, 200)
	code, out := api(t, s, "POST", "/things/s1/shadows/classic", `{"state": {"desired": {"reportingInterval": 0, "led": "on"}}}`)
	if code != 400 || !strings.Contains(out, "/reportingInterval: must be >= 1") || !strings.Contains(out, "application/problem+json") && !strings.Contains(out, `"status":400`) {
		t.Errorf("invalid desired = %d %s; want 400 naming /reportingInterval", code, out)
	}
	out = mustAPI(t, s, "GET", "/things/s1/shadows/classic", "", 200)
	if !strings.Contains(out, `"reportingInterval":10`) || strings.Contains(out, `"led"`) {
		t.Errorf("shadow after a refused update = %s; want reportingInterval 10 and no led", out)
	}

	// Commands.
	mustAPI(t, s, "POST", "/things/s1/commands", `{"name": "setLed", "payload": {"state": "on"}}`, 201)
	for _, body := range []string{
		`{"name": "setLed", "payload": {"state": "purple"}}`,
		`{"name": "setLed", "payload": {"seconds": 5}}`,
		`{"name": "selfDestruct"}`,
	} {
		if code, out := api(t, s, "POST", "/things/s1/commands", body); code != 400 {
			t.Errorf("POST command %s = %d %s; want 400", body, code, out)
		}
	}
	out = mustAPI(t, s, "GET", "/things/s1/commands", "", 200)
	var cmds struct{ Items []struct{ Name string } }
	if json.Unmarshal([]byte(out), &cmds) != nil || len(cmds.Items) != 1 || cmds.Items[0].Name != "setLed" {
		t.Errorf("commands = %s; want only the valid setLed", out)
	}

	// A real device: out-of-range telemetry and reported values are
	// delivered and flagged.
	dev := s.Device(t, "s2")
	mustAPI(t, s, "PATCH", "/things/s2", `{"type": "sensor"}`, 200)
	c := s.V5(t, "s2", dev)
	if rc := c.Pub(t, "things/s2/telemetry", 1, false, `{"temperature": 130, "humidity": 40}`); rc != 0 {
		t.Fatalf("out-of-range telemetry refused: reason code %#x", rc)
	}
	if rc := c.Pub(t, "$aws/things/s2/shadow/update", 1, false, `{"state": {"reported": {"battery": 150}}}`); rc != 0 {
		t.Fatalf("out-of-model reported state refused: reason code %#x", rc)
	}
	var th struct {
		Stats struct {
			ModelViolations    int             `json:"modelViolations"`
			LastModelViolation json.RawMessage `json:"lastModelViolation"`
		} `json:"stats"`
	}
	daemontest.WaitFor(t, 10*time.Second, func() error {
		out := mustAPI(t, s, "GET", "/things/s2", "", 200)
		if err := json.Unmarshal([]byte(out), &th); err != nil {
			return err
		}
		if th.Stats.ModelViolations != 2 {
			return fmt.Errorf("thing s2 = %s; want 2 model violations", out)
		}
		return nil
	})
	if !strings.Contains(string(th.Stats.LastModelViolation), "/battery") {
		t.Errorf("lastModelViolation = %s; want /battery", th.Stats.LastModelViolation)
	}
	// The message itself was delivered and stored as usual.
	daemontest.WaitFor(t, 10*time.Second, func() error {
		if out := mustAPI(t, s, "GET", "/things/s2/telemetry/latest", "", 200); !strings.Contains(out, "130") {
			return fmt.Errorf("latest telemetry = %s; want the out-of-range 130 stored", out)
		}
		return nil
	})

	// PATCH with a null model removes it: the command is then free.
	mustAPI(t, s, "PATCH", "/types/sensor", `{"model": null}`, 200)
	mustAPI(t, s, "POST", "/things/s1/commands", `{"name": "selfDestruct"}`, 201)
}
