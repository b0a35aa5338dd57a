package fleetindex

import (
	"encoding/json"
	"testing"
	"time"
)

// presenceOf reads what encoding/json reads from the broker's presence
// events, including a client id made to look like the members it reads.
func TestPresenceOf(t *testing.T) {
	at := time.Date(2026, 12, 5, 18, 0, 0, 123456789, time.UTC)
	for _, ev := range []map[string]any{
		{"event": "connected", "clientId": "c1", "thing": "dev-1", "time": at},
		{"event": "disconnected", "clientId": `x","thing":"evil","event":"connected","time":"2000-01-01T00:00:00Z`, "thing": "dev-2", "time": at, "reason": "kicked"},
		{"event": "connected", "clientId": "c3", "thing": "dev-3", "time": at.Truncate(time.Second)},
	} {
		b, _ := json.Marshal(ev)
		thing, conn, when, ok := presenceOf(b)
		if !ok || thing != ev["thing"] || conn != (ev["event"] == "connected") || !when.Equal(ev["time"].(time.Time)) {
			t.Errorf("presenceOf(%s) = %q %v %v %v", b, thing, conn, when, ok)
		}
	}
	for _, bad := range []string{`{}`, `{"event":"connected","thing":"","time":"2026-12-05T18:00:00Z"}`, `not json`} {
		if _, _, _, ok := presenceOf([]byte(bad)); ok {
			t.Errorf("presenceOf(%s) ok; want not", bad)
		}
	}
}
