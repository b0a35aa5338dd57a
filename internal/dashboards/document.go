package dashboards

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/moteiot/mote/internal/core"
)

// Widget types.
const (
	TypeTimeseries = "timeseries"
	TypeLatest     = "latest"
	TypeGauge      = "gauge"
	TypeMap        = "map"
	TypeAlarms     = "alarms"
	TypeCommand    = "command"
)

// Types are the widget types, in the order the docs list them.
var Types = []string{TypeTimeseries, TypeLatest, TypeGauge, TypeMap, TypeAlarms, TypeCommand}

// Bounds of one widget that are part of the document format rather than
// settings (docs/dashboards.md).
const (
	GridColumns    = 12     // the grid is 12 columns wide
	MaxGridRow     = 1000   // y + h at most
	MaxGridHeight  = 24     // rows one widget spans at most
	MaxThings      = 100    // things one widget names
	MaxKeys        = 20     // telemetry keys one widget shows
	MaxKeyLen      = 128    // bytes of a telemetry key
	MaxTitleLen    = 200    // bytes of a dashboard or widget title
	MaxPayloadSize = 16_384 // bytes of a command button's payload
	MinWindow      = time.Minute
	MaxWindow      = 31 * 24 * time.Hour
)

// Grid is where a widget sits: column X (0..11) and row Y, W columns wide
// and H rows high.
type Grid struct {
	X int `json:"x"`
	Y int `json:"y"`
	W int `json:"w"`
	H int `json:"h"`
}

// Widget is one tile of a dashboard. Which of the type-specific fields a
// type takes is in fieldsOf.
type Widget struct {
	ID      string          `json:"id"`
	Type    string          `json:"type"`
	Title   string          `json:"title,omitempty"`
	Grid    Grid            `json:"grid"`
	Things  []string        `json:"things,omitempty"`
	Group   string          `json:"group,omitempty"`
	Keys    []string        `json:"keys,omitempty"`
	Window  string          `json:"window,omitempty"`
	Min     *float64        `json:"min,omitempty"`
	Max     *float64        `json:"max,omitempty"`
	Command string          `json:"command,omitempty"`
	Payload json.RawMessage `json:"payload,omitempty"`
}

// Document is a dashboard as a client writes it: POST and PUT bodies.
// Version (optional) is the version an update applies to, like If-Match.
type Document struct {
	Name    string
	Title   string
	Widgets []Widget
	Version int64
}

// Limits bound a document.
type Limits struct {
	MaxWidgets int // widgets in one dashboard (default 50)
	MaxSize    int // bytes of the document (default 64 KiB)
}

func (l Limits) withDefaults() Limits {
	if l.MaxWidgets <= 0 {
		l.MaxWidgets = 50
	}
	if l.MaxSize <= 0 {
		l.MaxSize = 64 * 1024
	}
	return l
}

// common are the fields of every widget; fieldsOf the fields each type
// adds.
var (
	common   = []string{"id", "type", "title", "grid"}
	fieldsOf = map[string][]string{
		TypeTimeseries: {"things", "group", "keys", "window"},
		TypeLatest:     {"things", "group", "keys"},
		TypeGauge:      {"things", "keys", "window", "min", "max"},
		TypeMap:        {"things", "group", "keys"},
		TypeAlarms:     {"things", "group"},
		TypeCommand:    {"things", "command", "payload"},
	}
)

// Parse reads and checks a dashboard document. Every error is
// core.Invalid with the JSON path of the offending value as its field
// ("widgets[2].grid.w"), or core.KindTooLarge for a document beyond
// MaxSize.
func Parse(doc []byte, lim Limits) (Document, error) { return parse(doc, lim, "") }

// ParseNamed is Parse for the document of the dashboard name (a PUT): the
// document may leave its name out, and must not give another.
func ParseNamed(doc []byte, lim Limits, name string) (Document, error) {
	return parse(doc, lim, name)
}

func parse(doc []byte, lim Limits, name string) (Document, error) {
	lim = lim.withDefaults()
	if len(doc) > lim.MaxSize {
		return Document{}, core.Errorf(core.KindTooLarge, "the dashboard document is %d bytes, more than %d (--dashboard-max-size)", len(doc), lim.MaxSize)
	}
	var top map[string]json.RawMessage
	if err := strictObject(doc, "", &top); err != nil {
		return Document{}, err
	}
	if err := onlyFields("", top, []string{"name", "title", "widgets", "version"}); err != nil {
		return Document{}, err
	}
	var d Document
	if err := field(top, "", "name", &d.Name); err != nil {
		return Document{}, err
	}
	if name != "" {
		if d.Name != "" && d.Name != name {
			return Document{}, core.Invalid("name", "name %q in the body differs from %q in the path (dashboards cannot be renamed)", d.Name, name)
		}
		d.Name = name
	}
	if err := core.ValidateName("name", d.Name); err != nil {
		return Document{}, err
	}
	if err := field(top, "", "title", &d.Title); err != nil {
		return Document{}, err
	}
	if err := checkText("title", d.Title, MaxTitleLen); err != nil {
		return Document{}, err
	}
	if err := field(top, "", "version", &d.Version); err != nil {
		return Document{}, err
	}
	if d.Version < 0 {
		return Document{}, core.Invalid("version", "version must be 1 or more")
	}
	raw, ok := top["widgets"]
	if !ok || isNull(raw) {
		return Document{}, core.Invalid("widgets", "widgets is required (an array, [] for none)")
	}
	var ws []json.RawMessage
	if err := json.Unmarshal(raw, &ws); err != nil {
		return Document{}, core.Invalid("widgets", "widgets must be an array of widget objects")
	}
	if len(ws) > lim.MaxWidgets {
		return Document{}, core.Invalid("widgets", "%d widgets are more than %d (--dashboard-max-widgets)", len(ws), lim.MaxWidgets)
	}
	ids := map[string]bool{}
	d.Widgets = make([]Widget, 0, len(ws))
	for i, w := range ws {
		path := fmt.Sprintf("widgets[%d]", i)
		wd, err := parseWidget(w, path)
		if err != nil {
			return Document{}, err
		}
		if ids[wd.ID] {
			return Document{}, core.Invalid(path+".id", "widget id %q is used twice", wd.ID)
		}
		ids[wd.ID] = true
		d.Widgets = append(d.Widgets, wd)
	}
	return d, nil
}

func parseWidget(raw json.RawMessage, path string) (Widget, error) {
	var m map[string]json.RawMessage
	if err := strictObject(raw, path, &m); err != nil {
		return Widget{}, err
	}
	var w Widget
	if err := field(m, path, "type", &w.Type); err != nil {
		return Widget{}, err
	}
	extra, ok := fieldsOf[w.Type]
	if !ok {
		if w.Type == "" {
			return Widget{}, core.Invalid(join(path, "type"), "type is required: one of %s", strings.Join(Types, ", "))
		}
		return Widget{}, core.Invalid(join(path, "type"), "unknown widget type %q: want one of %s", w.Type, strings.Join(Types, ", "))
	}
	if err := onlyFields(path, m, append(slices.Clone(common), extra...)); err != nil {
		return Widget{}, err
	}
	if err := field(m, path, "id", &w.ID); err != nil {
		return Widget{}, err
	}
	if err := core.ValidateName(join(path, "id"), w.ID); err != nil {
		return Widget{}, err
	}
	if err := field(m, path, "title", &w.Title); err != nil {
		return Widget{}, err
	}
	if err := checkText(join(path, "title"), w.Title, MaxTitleLen); err != nil {
		return Widget{}, err
	}
	if err := parseGrid(m, path, &w.Grid); err != nil {
		return Widget{}, err
	}
	for _, f := range []struct {
		name string
		v    any
	}{{"things", &w.Things}, {"group", &w.Group}, {"keys", &w.Keys}, {"window", &w.Window}, {"min", &w.Min}, {"max", &w.Max}, {"command", &w.Command}} {
		if err := field(m, path, f.name, f.v); err != nil {
			return Widget{}, err
		}
	}
	if p, ok := m["payload"]; ok && !isNull(p) {
		if len(p) > MaxPayloadSize {
			return Widget{}, core.Invalid(join(path, "payload"), "payload is %d bytes, more than %d", len(p), MaxPayloadSize)
		}
		var buf bytes.Buffer
		if err := json.Compact(&buf, p); err != nil {
			return Widget{}, core.Invalid(join(path, "payload"), "payload is not JSON")
		}
		w.Payload = buf.Bytes()
	}
	return w, checkWidget(&w, path)
}

// checkWidget checks the type-specific fields of a decoded widget.
func checkWidget(w *Widget, path string) error {
	if len(w.Things) > MaxThings {
		return core.Invalid(join(path, "things"), "%d things are more than %d", len(w.Things), MaxThings)
	}
	seen := map[string]bool{}
	for i, t := range w.Things {
		p := fmt.Sprintf("%s[%d]", join(path, "things"), i)
		if err := core.ValidateName(p, t); err != nil {
			return err
		}
		if seen[t] {
			return core.Invalid(p, "thing %q is named twice", t)
		}
		seen[t] = true
	}
	if w.Group != "" {
		if err := core.ValidateName(join(path, "group"), w.Group); err != nil {
			return err
		}
		if len(w.Things) > 0 {
			return core.Invalid(join(path, "group"), "give things or group, not both")
		}
	}
	if len(w.Keys) > MaxKeys {
		return core.Invalid(join(path, "keys"), "%d keys are more than %d", len(w.Keys), MaxKeys)
	}
	for i, k := range w.Keys {
		p := fmt.Sprintf("%s[%d]", join(path, "keys"), i)
		if k == "" {
			return core.Invalid(p, "a key must not be empty")
		}
		if err := checkText(p, k, MaxKeyLen); err != nil {
			return err
		}
	}
	if w.Window != "" {
		d, err := time.ParseDuration(w.Window)
		if err != nil || d < MinWindow || d > MaxWindow {
			return core.Invalid(join(path, "window"), "window %q must be a duration from %s to %s, such as \"1h\"", w.Window, "1m", "744h")
		}
	}
	targets := len(w.Things) > 0 || w.Group != ""
	switch w.Type {
	case TypeTimeseries, TypeLatest:
		if !targets {
			return core.Invalid(join(path, "things"), "a %s widget needs things or a group", w.Type)
		}
		if len(w.Keys) == 0 {
			return core.Invalid(join(path, "keys"), "a %s widget needs at least one key", w.Type)
		}
	case TypeGauge:
		if len(w.Things) != 1 {
			return core.Invalid(join(path, "things"), "a gauge shows one thing: things must name exactly one")
		}
		if len(w.Keys) != 1 {
			return core.Invalid(join(path, "keys"), "a gauge shows one key: keys must name exactly one")
		}
		if w.Min == nil || w.Max == nil {
			return core.Invalid(join(path, "min"), "a gauge needs min and max")
		}
		if !finite(*w.Min) || !finite(*w.Max) || *w.Min >= *w.Max {
			return core.Invalid(join(path, "max"), "max must be a number greater than min")
		}
	case TypeMap:
		if !targets {
			return core.Invalid(join(path, "things"), "a map widget needs things or a group")
		}
		if len(w.Keys) != 0 && len(w.Keys) != 2 {
			return core.Invalid(join(path, "keys"), "a map's keys are [latitude, longitude] (default [\"lat\", \"lon\"])")
		}
	case TypeCommand:
		if len(w.Things) == 0 {
			return core.Invalid(join(path, "things"), "a command button needs the things it sends to")
		}
		if err := core.ValidateName(join(path, "command"), w.Command); err != nil {
			return err
		}
	}
	return nil
}

func parseGrid(m map[string]json.RawMessage, path string, g *Grid) error {
	gp := join(path, "grid")
	raw, ok := m["grid"]
	if !ok || isNull(raw) {
		return core.Invalid(gp, "grid is required: {\"x\", \"y\", \"w\", \"h\"}")
	}
	var gm map[string]json.RawMessage
	if err := strictObject(raw, gp, &gm); err != nil {
		return err
	}
	if err := onlyFields(gp, gm, []string{"x", "y", "w", "h"}); err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		v    *int
	}{{"x", &g.X}, {"y", &g.Y}, {"w", &g.W}, {"h", &g.H}} {
		raw, ok := gm[f.name]
		if !ok {
			return core.Invalid(join(gp, f.name), "%s is required", f.name)
		}
		if err := json.Unmarshal(raw, f.v); err != nil {
			return core.Invalid(join(gp, f.name), "%s must be a whole number", f.name)
		}
	}
	switch {
	case g.X < 0 || g.X >= GridColumns:
		return core.Invalid(join(gp, "x"), "x must be 0 to %d", GridColumns-1)
	case g.W < 1 || g.X+g.W > GridColumns:
		return core.Invalid(join(gp, "w"), "w must be 1 or more, with x + w at most %d columns", GridColumns)
	case g.H < 1 || g.H > MaxGridHeight:
		return core.Invalid(join(gp, "h"), "h must be 1 to %d", MaxGridHeight)
	case g.Y < 0 || g.Y+g.H > MaxGridRow:
		return core.Invalid(join(gp, "y"), "y must be 0 or more, with y + h at most %d", MaxGridRow)
	}
	return nil
}

// strictObject decodes a JSON object into m, refusing anything else and
// duplicate keys.
func strictObject(raw []byte, path string, m *map[string]json.RawMessage) error {
	what := path
	if what == "" {
		what = "the document"
	}
	if err := json.Unmarshal(raw, m); err != nil || *m == nil {
		return core.Invalid(path, "%s must be a JSON object", what)
	}
	if k := duplicateKey(raw); k != "" {
		return core.Invalid(join(path, k), "%q is given twice", k)
	}
	return nil
}

// duplicateKey returns a key the object raw (valid JSON) has twice, or "".
func duplicateKey(raw []byte) string {
	dec := json.NewDecoder(bytes.NewReader(raw))
	if _, err := dec.Token(); err != nil {
		return ""
	}
	seen := map[string]bool{}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return ""
		}
		k, _ := t.(string)
		if seen[k] {
			return k
		}
		seen[k] = true
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return ""
		}
	}
	return ""
}

// onlyFields refuses a field not in allowed, naming the first in sorted
// order (so the error does not depend on map order).
func onlyFields(path string, m map[string]json.RawMessage, allowed []string) error {
	var unknown []string
	for k := range m {
		if !slices.Contains(allowed, k) {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	slices.Sort(unknown)
	return core.Invalid(join(path, unknown[0]), "unknown field %q (allowed here: %s)", unknown[0], strings.Join(allowed, ", "))
}

// field decodes m[name] into v when present and not null.
func field(m map[string]json.RawMessage, path, name string, v any) error {
	raw, ok := m[name]
	if !ok || isNull(raw) {
		return nil
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return core.Invalid(join(path, name), "%s must be %s", name, describe(v))
	}
	return nil
}

func describe(v any) string {
	switch v.(type) {
	case *string:
		return "a string"
	case *[]string:
		return "an array of strings"
	case **float64:
		return "a number"
	case *int64, *int:
		return "a whole number"
	}
	return "valid"
}

func checkText(path, s string, max int) error {
	if len(s) > max {
		return core.Invalid(path, "longer than %d bytes", max)
	}
	if !utf8.ValidString(s) {
		return core.Invalid(path, "not valid UTF-8")
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return core.Invalid(path, "contains a control character")
		}
	}
	return nil
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

func isNull(raw json.RawMessage) bool { return string(bytes.TrimSpace(raw)) == "null" }

func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }
