package cli_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/telemetry"
)

func TestRuleCommands(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	out := s.ok(t, "rule", "create", "hot", "--sql", "SELECT temp FROM 'things/+/telemetry' WHERE temp > 50",
		"--action", `{"type":"republish","topic":"alerts/${topic(2)}"}`, "--error-action", `{"type":"log"}`)
	if !strings.Contains(out, "hot") || !strings.Contains(out, "republish") {
		t.Errorf("create: %s", out)
	}
	out = s.ok(t, "rule", "list")
	if !strings.Contains(out, "hot") || !strings.Contains(out, "telemetry") {
		t.Errorf("list: %s", out)
	}
	out = s.ok(t, "-o", "json", "rule", "disable", "hot")
	if r := decode[map[string]any](t, out); r["enabled"] != false {
		t.Errorf("disable: %s", out)
	}
	out = s.ok(t, "-o", "json", "rule", "enable", "hot")
	if r := decode[map[string]any](t, out); r["enabled"] != true {
		t.Errorf("enable: %s", out)
	}
	out = s.ok(t, "-o", "json", "rule", "update", "hot", "--description", "too hot")
	if r := decode[map[string]any](t, out); r["description"] != "too hot" || r["errorAction"] == nil {
		t.Errorf("update: %s", out)
	}
	out = s.ok(t, "rule", "get", "hot")
	if !strings.Contains(out, "too hot") {
		t.Errorf("get: %s", out)
	}
	out = s.ok(t, "rule", "test", "--sql", "SELECT temp * 2 AS t FROM 'things/+/telemetry'", "--topic", "things/a/telemetry", "--payload", `{"temp": 21}`)
	if strings.TrimSpace(out) != `{"t":42}` {
		t.Errorf("test: %s", out)
	}
	// A windowed statement on timed messages from a file.
	msgs := filepath.Join(t.TempDir(), "msgs.json")
	if err := os.WriteFile(msgs, []byte(`[{"topic":"things/a/telemetry","payload":{"temp":1},"at":"2026-01-01T10:00:05Z"},
		{"topic":"things/a/telemetry","payload":{"temp":3},"at":"2026-01-01T10:00:55Z"}]`), 0o600); err != nil {
		t.Fatal(err)
	}
	out = s.ok(t, "rule", "test", "--sql", "SELECT avg(temp) AS a FROM 'things/+/telemetry' GROUP BY thing, TUMBLING(1m)", "--messages", msgs)
	if strings.TrimSpace(out) != `2026-01-01T10:01:00Z  a  {"a":2}` {
		t.Errorf("test --messages: %s", out)
	}
	_, errOut, code := s.run(t, "rule", "create", "bad", "--sql", "SELECT FROM 'x'")
	if code == 0 || !strings.Contains(errOut, "sql") {
		t.Errorf("bad sql: exit %d %s", code, errOut)
	}
	s.ok(t, "rule", "delete", "hot")
	_, _, code = s.run(t, "rule", "get", "hot")
	if code != 3 {
		t.Errorf("get deleted: exit %d", code)
	}
}

func TestTelemetryCommands(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	s.ok(t, "thing", "create", "s1")
	base := time.Now().Add(-10 * time.Minute).Truncate(time.Minute).UnixMilli()
	var pts []telemetry.Point
	for i, v := range []float64{1, 3, 5} {
		pts = append(pts, telemetry.Point{Thing: "s1", Key: "temp", TS: base + int64(i)*1000, Value: telemetry.Number(v)})
	}
	if err := s.ts.Append(t.Context(), pts, 0); err != nil {
		t.Fatal(err)
	}
	out := s.ok(t, "-o", "json", "telemetry", "get", "s1", "--keys", "temp")
	if got := decode[[]map[string]any](t, out); len(got) != 3 {
		t.Errorf("get: %s", out)
	}
	out = s.ok(t, "telemetry", "get", "s1", "--agg", "avg", "--interval", "1m", "--from", fmt.Sprint(base))
	if !strings.Contains(out, "3") {
		t.Errorf("agg: %s", out)
	}
	out = s.ok(t, "telemetry", "latest", "s1")
	if !strings.Contains(out, "temp") || !strings.Contains(out, "5") {
		t.Errorf("latest: %s", out)
	}
}
