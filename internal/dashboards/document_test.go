package dashboards

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/moteiot/mote/internal/core"
)

const validDoc = `{"name": "plant", "title": "Plant floor", "widgets": [
 {"id": "temps", "type": "timeseries", "title": "Temperature", "grid": {"x": 0, "y": 0, "w": 8, "h": 4}, "things": ["dev1", "dev2"], "keys": ["temp"], "window": "1h"},
 {"id": "now", "type": "latest", "grid": {"x": 8, "y": 0, "w": 4, "h": 4}, "group": "floor1", "keys": ["temp", "hum"]},
 {"id": "g", "type": "gauge", "grid": {"x": 0, "y": 4, "w": 3, "h": 3}, "things": ["dev1"], "keys": ["temp"], "min": -20, "max": 60},
 {"id": "m", "type": "map", "grid": {"x": 3, "y": 4, "w": 5, "h": 3}, "group": "trucks"},
 {"id": "al", "type": "alarms", "grid": {"x": 8, "y": 4, "w": 4, "h": 3}},
 {"id": "reboot", "type": "command", "grid": {"x": 0, "y": 7, "w": 2, "h": 1}, "things": ["dev1"], "command": "reboot", "payload": {"delay": 5}}
]}`

func TestParseValid(t *testing.T) {
	d, err := Parse([]byte(validDoc), Limits{})
	if err != nil {
		t.Fatalf("Parse(valid) = %v", err)
	}
	if d.Name != "plant" || d.Title != "Plant floor" || len(d.Widgets) != 6 {
		t.Fatalf("Parse(valid) = %+v", d)
	}
	if w := d.Widgets[2]; *w.Min != -20 || *w.Max != 60 || w.Things[0] != "dev1" {
		t.Errorf("gauge = %+v", w)
	}
	if got := string(d.Widgets[5].Payload); got != `{"delay":5}` {
		t.Errorf("payload = %s; want it compacted", got)
	}
	// What Parse returns encodes back to a document Parse accepts.
	b, _ := json.Marshal(map[string]any{"name": d.Name, "title": d.Title, "widgets": d.Widgets})
	if _, err := Parse(b, Limits{}); err != nil {
		t.Errorf("Parse(re-encoded) = %v", err)
	}
}

func TestParseErrors(t *testing.T) {
	w := func(s string) string { return `{"name": "d", "widgets": [` + s + `]}` }
	grid := `"grid": {"x": 0, "y": 0, "w": 4, "h": 2}`
	for _, c := range []struct{ doc, field string }{
		{`[]`, ""},
		{`{"widgets": []}`, "name"},
		{`{"name": "a b", "widgets": []}`, "name"},
		{`{"name": "d"}`, "widgets"},
		{`{"name": "d", "widgets": {}}`, "widgets"},
		{`{"name": "d", "widgets": [], "color": "red"}`, "color"},
		{`{"name": "d", "name": "e", "widgets": []}`, "name"},
		{`{"name": "d", "title": 5, "widgets": []}`, "title"},
		{`{"name": "d", "title": "a\u0000b", "widgets": []}`, "title"},
		{`{"name": "d", "version": -1, "widgets": []}`, "version"},
		{w(`7`), "widgets[0]"},
		{w(`{"id": "a", "type": "pie", ` + grid + `}`), "widgets[0].type"},
		{w(`{"id": "a", ` + grid + `}`), "widgets[0].type"},
		{w(`{"id": "a", "type": "alarms", ` + grid + `, "keys": ["x"]}`), "widgets[0].keys"},
		{w(`{"id": "a", "type": "alarms", ` + grid + `, "colour": 1}`), "widgets[0].colour"},
		{w(`{"type": "alarms", ` + grid + `}`), "widgets[0].id"},
		{w(`{"id": "a", "type": "alarms"}`), "widgets[0].grid"},
		{w(`{"id": "a", "type": "alarms", "grid": {"x": 0, "y": 0, "w": 4}}`), "widgets[0].grid.h"},
		{w(`{"id": "a", "type": "alarms", "grid": {"x": 0, "y": 0, "w": 4, "h": 1, "z": 1}}`), "widgets[0].grid.z"},
		{w(`{"id": "a", "type": "alarms", "grid": {"x": 10, "y": 0, "w": 4, "h": 1}}`), "widgets[0].grid.w"},
		{w(`{"id": "a", "type": "alarms", "grid": {"x": 12, "y": 0, "w": 1, "h": 1}}`), "widgets[0].grid.x"},
		{w(`{"id": "a", "type": "alarms", "grid": {"x": 0, "y": -1, "w": 1, "h": 1}}`), "widgets[0].grid.y"},
		{w(`{"id": "a", "type": "alarms", "grid": {"x": 0, "y": 0, "w": 1, "h": 0}}`), "widgets[0].grid.h"},
		{w(`{"id": "a", "type": "alarms", "grid": {"x": 0.5, "y": 0, "w": 1, "h": 1}}`), "widgets[0].grid.x"},
		{w(`{"id": "a", "type": "alarms", ` + grid + `}, {"id": "a", "type": "alarms", ` + grid + `}`), "widgets[1].id"},
		{w(`{"id": "a", "type": "timeseries", ` + grid + `, "keys": ["t"]}`), "widgets[0].things"},
		{w(`{"id": "a", "type": "timeseries", ` + grid + `, "things": ["x"]}`), "widgets[0].keys"},
		{w(`{"id": "a", "type": "timeseries", ` + grid + `, "things": ["x"], "group": "g", "keys": ["t"]}`), "widgets[0].group"},
		{w(`{"id": "a", "type": "timeseries", ` + grid + `, "things": ["x", "bad thing"], "keys": ["t"]}`), "widgets[0].things[1]"},
		{w(`{"id": "a", "type": "timeseries", ` + grid + `, "things": ["x", "x"], "keys": ["t"]}`), "widgets[0].things[1]"},
		{w(`{"id": "a", "type": "timeseries", ` + grid + `, "things": "x", "keys": ["t"]}`), "widgets[0].things"},
		{w(`{"id": "a", "type": "timeseries", ` + grid + `, "things": ["x"], "keys": [""]}`), "widgets[0].keys[0]"},
		{w(`{"id": "a", "type": "timeseries", ` + grid + `, "things": ["x"], "keys": ["t"], "window": "5s"}`), "widgets[0].window"},
		{w(`{"id": "a", "type": "timeseries", ` + grid + `, "things": ["x"], "keys": ["t"], "window": "soon"}`), "widgets[0].window"},
		{w(`{"id": "a", "type": "gauge", ` + grid + `, "things": ["x", "y"], "keys": ["t"], "min": 0, "max": 1}`), "widgets[0].things"},
		{w(`{"id": "a", "type": "gauge", ` + grid + `, "things": ["x"], "keys": ["t"], "min": 0}`), "widgets[0].min"},
		{w(`{"id": "a", "type": "gauge", ` + grid + `, "things": ["x"], "keys": ["t"], "min": 5, "max": 5}`), "widgets[0].max"},
		{w(`{"id": "a", "type": "gauge", ` + grid + `, "things": ["x"], "keys": ["t"], "min": "0", "max": 5}`), "widgets[0].min"},
		{w(`{"id": "a", "type": "map", ` + grid + `, "group": "g", "keys": ["lat"]}`), "widgets[0].keys"},
		{w(`{"id": "a", "type": "command", ` + grid + `, "things": ["x"]}`), "widgets[0].command"},
		{w(`{"id": "a", "type": "command", ` + grid + `, "command": "reboot"}`), "widgets[0].things"},
		{w(`{"id": "a", "type": "command", ` + grid + `, "things": ["x"], "command": "reboot", "payload": "` + strings.Repeat("x", MaxPayloadSize) + `"}`), "widgets[0].payload"},
	} {
		_, err := Parse([]byte(c.doc), Limits{})
		if core.KindOf(err) != core.KindInvalid || core.FieldOf(err) != c.field {
			t.Errorf("Parse(%.120s) = %v (field %q); want invalid %q", c.doc, err, core.FieldOf(err), c.field)
		}
	}
}

func TestParseLimits(t *testing.T) {
	var ws []string
	for i := range 4 {
		ws = append(ws, fmt.Sprintf(`{"id": "w%d", "type": "alarms", "grid": {"x": 0, "y": %d, "w": 1, "h": 1}}`, i, i))
	}
	doc := []byte(`{"name": "d", "widgets": [` + strings.Join(ws, ",") + `]}`)
	if _, err := Parse(doc, Limits{MaxWidgets: 4}); err != nil {
		t.Errorf("4 widgets at a limit of 4: %v", err)
	}
	if _, err := Parse(doc, Limits{MaxWidgets: 3}); core.FieldOf(err) != "widgets" || !strings.Contains(err.Error(), "dashboard-max-widgets") {
		t.Errorf("4 widgets at a limit of 3: %v; want invalid widgets naming the setting", err)
	}
	if _, err := Parse(doc, Limits{MaxSize: len(doc) - 1}); core.KindOf(err) != core.KindTooLarge {
		t.Errorf("a document one byte over the size: %v; want too large", err)
	}
	if _, err := Parse(doc, Limits{MaxSize: len(doc)}); err != nil {
		t.Errorf("a document of exactly the size: %v", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(validDoc))
	f.Add([]byte(`{"name": "d", "widgets": []}`))
	f.Add([]byte(`{"name": "d", "widgets": [{"id": "a", "type": "gauge", "grid": {"x": 11, "y": 999, "w": 1, "h": 1}, "things": ["x"], "keys": ["k"], "min": 1e308, "max": -1e308}]}`))
	f.Add([]byte(`{"name": "d", "widgets": [{"id": "a", "type": "command", "grid": {"x": 0, "y": 0, "w": 1, "h": 1}, "things": ["x"], "command": "c", "payload": [1, {"a": null}]}]}`))
	f.Add([]byte(`{"name":"d","widgets":[null]}`))
	f.Fuzz(func(t *testing.T, doc []byte) {
		d, err := Parse(doc, Limits{MaxWidgets: 20, MaxSize: 8192})
		if err != nil {
			if k := core.KindOf(err); k != core.KindInvalid && k != core.KindTooLarge {
				t.Fatalf("Parse error of kind %s: %v", k, err)
			}
			return
		}
		// An accepted document holds its bounds and encodes to one that
		// is accepted again, unchanged.
		for _, w := range d.Widgets {
			if w.Grid.X < 0 || w.Grid.W < 1 || w.Grid.X+w.Grid.W > GridColumns || w.Grid.H < 1 {
				t.Fatalf("accepted widget %q outside the grid: %+v", w.ID, w.Grid)
			}
		}
		b, err := json.Marshal(map[string]any{"name": d.Name, "title": d.Title, "widgets": d.Widgets})
		if err != nil {
			t.Fatalf("encode: %v", err)
		}
		d2, err := Parse(b, Limits{MaxWidgets: 20, MaxSize: 1 << 20})
		if err != nil {
			t.Fatalf("re-encoded %s refused: %v", b, err)
		}
		b2, _ := json.Marshal(map[string]any{"name": d2.Name, "title": d2.Title, "widgets": d2.Widgets})
		if string(b) != string(b2) {
			t.Fatalf("round trip changed the document:\n %s\n %s", b, b2)
		}
	})
}
