package cli_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moteiot/mote/internal/httpapi/wire"
)

// TestTypeModel: mote type create --model FILE stores the model; a model
// the server refuses fails with its message; update --remove-model drops it.
func TestTypeModel(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	dir := t.TempDir()
	good := filepath.Join(dir, "model.json")
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(good, []byte(`{"telemetry": {"temperature": {"unit": "°C", "min": -40, "max": 125, "interval": "10s"}}, "commands": {"reboot": {}}}`), 0o600)
	os.WriteFile(bad, []byte(`{"properties": {"desired": {"$ref": "https://example.com/s.json"}}}`), 0o600)

	out := s.ok(t, "type", "create", "sensor", "--model", good)
	if !strings.Contains(out, "1 telemetry keys, 0 property schemas, 1 commands") {
		t.Errorf("create output:\n%s", out)
	}
	y := decode[wire.ThingType](t, s.ok(t, "type", "get", "sensor", "-o", "json"))
	if !strings.Contains(string(y.Model), `"°C"`) {
		t.Errorf("model = %s", y.Model)
	}
	_, errOut, code := s.run(t, "type", "create", "other", "--model", bad)
	if code == 0 || !strings.Contains(errOut, "remote references are not allowed") {
		t.Errorf("create with a remote $ref: exit %d, stderr %s", code, errOut)
	}
	if _, _, code := s.run(t, "type", "create", "third", "--model", filepath.Join(dir, "missing.json")); code == 0 {
		t.Error("create with a missing model file succeeded")
	}
	s.ok(t, "type", "update", "sensor", "--remove-model")
	y = decode[wire.ThingType](t, s.ok(t, "type", "get", "sensor", "-o", "json"))
	if len(y.Model) != 0 {
		t.Errorf("model after --remove-model = %s", y.Model)
	}
	s.ok(t, "type", "update", "sensor", "--model", good)
	y = decode[wire.ThingType](t, s.ok(t, "type", "get", "sensor", "-o", "json"))
	if len(y.Model) == 0 {
		t.Error("update --model did not set the model")
	}
}
