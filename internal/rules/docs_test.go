package rules

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/core"
)

// TestDocExamples parses every statement in the sql code blocks of
// docs/rules.md, and checks the first example's output.
func TestDocExamples(t *testing.T) {
	doc, err := os.ReadFile("../../docs/rules.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := strings.Split(string(doc), "```sql\n")[1:]
	n := 0
	for _, block := range blocks {
		block, _, _ = strings.Cut(block, "```")
		// A block holds statements, each starting a line with SELECT,
		// possibly after comment lines; blocks of bare expressions are
		// skipped.
		var stmts []string
		for _, line := range strings.SplitAfter(block, "\n") {
			if strings.HasPrefix(line, "SELECT") || len(stmts) == 0 {
				stmts = append(stmts, "")
			}
			stmts[len(stmts)-1] += line
		}
		for _, sql := range stmts {
			if !strings.Contains(sql, "SELECT") {
				continue
			}
			n++
			if _, err := Parse(sql); err != nil {
				t.Errorf("docs/rules.md: Parse(%q) = %v", sql, err)
			}
		}
	}
	if n < 10 {
		t.Errorf("found %d statements in docs/rules.md; want more", n)
	}
	in := Input{Topic: "things/sensor-7/telemetry", Payload: []byte(`{"temp": 57.3, "hum": 41, "battery": 80}`), Received: testTime}
	sql := "SELECT temp, hum, topic(2) AS device, timestamp() AS ts\nFROM 'things/+/telemetry'\nWHERE temp > 50\n"
	if !strings.Contains(string(doc), sql) {
		t.Errorf("docs/rules.md lost its first example")
	}
	if got := evalStatement(sql, in); got != `{"temp":57.3,"hum":41,"device":"sensor-7","ts":1767225600123}` {
		t.Errorf("first example = %s", got)
	}
	in.Payload = []byte(`{"temp": 21, "hum": 41}`)
	if got := evalStatement(sql, in); got != "no match" {
		t.Errorf("first example with temp 21 = %s", got)
	}
	// The user-properties example.
	props := "SELECT temp, properties.alert AS alert FROM 'things/+/telemetry' WHERE properties.alert = 'high'\n"
	if !strings.Contains(string(doc), props) {
		t.Errorf("docs/rules.md lost its user-properties example")
	}
	in.Properties = []core.Property{{Key: "alert", Value: "high"}}
	if got := evalStatement(props, in); got != `{"temp":21,"alert":"high"}` {
		t.Errorf("user-properties example = %s", got)
	}
	// The first windowed example: 12 messages in a minute, averaging 31.5.
	win := "SELECT avg(temp) AS avgTemp, max(temp) AS maxTemp, count(*) AS n, topic(2) AS device\nFROM 'things/+/telemetry'\nWHERE temp IS NOT NULL\nGROUP BY thing, TUMBLING(1m)\nHAVING avg(temp) > 30\n"
	if !strings.Contains(string(doc), win) {
		t.Fatalf("docs/rules.md lost its first windowed example")
	}
	ws := MustParse(win).NewWindows(0)
	at := time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC)
	for i, temp := range []float64{28, 35, 30, 31, 32, 33, 29, 30, 31, 32, 33, 34} {
		m := NewMessage(Input{Topic: "things/sensor-7/telemetry", Thing: "sensor-7", Payload: []byte(fmt.Sprintf(`{"temp": %v}`, temp))})
		if _, _, err := ws.Add(m, at.Add(time.Duration(i)*5*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	m := NewMessage(Input{Topic: "things/sensor-8/telemetry", Thing: "sensor-8", Payload: []byte(`{"temp": 20}`)})
	if _, _, err := ws.Add(m, at); err != nil {
		t.Fatal(err)
	}
	rows := ws.Close(at.Add(time.Minute))
	if len(rows) != 1 || string(rows[0].Output.AppendJSON(nil)) != `{"avgTemp":31.5,"maxTemp":35,"n":12,"device":"sensor-7"}` {
		t.Errorf("windowed example = %v; want sensor-7's minute only", rowStrings(rows))
	}
}
