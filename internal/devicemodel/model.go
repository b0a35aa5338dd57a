// Package devicemodel is what a thing type says about its devices: the
// telemetry keys they send (unit, type, range, expected interval), the
// JSON Schemas of their shadow properties (reported, and the writable
// desired ones) and the commands they take with a JSON Schema for each
// payload. See docs/device-models.md.
//
// Parse checks a model and compiles its schemas once; Models caches the
// compiled model of each type (recompiling only when the stored model
// changes). The API refuses desired updates and commands that do not
// match (ValidateDesired, ValidateCommand: core.KindInvalid naming the
// JSON path of the first error); reported values and telemetry out of
// the model are only flagged (CheckTelemetry, CheckReported), by the
// Monitor, off the publish path.
//
// Schemas are JSON Schema (draft 2020-12 unless they say otherwise),
// compiled by github.com/santhosh-tekuri/jsonschema/v6 with a loader that
// refuses every URL: a schema can only refer inside itself, never to the
// network or the file system.
package devicemodel

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/big"
	"slices"
	"strings"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"golang.org/x/text/language"
	"golang.org/x/text/message"

	"github.com/moteiot/mote/internal/core"
)

// DefaultMaxSize is the default bound of a model's JSON (--type-model-max-size).
const DefaultMaxSize = 64 * 1024

// Bounds of the parts of a model.
const (
	maxKeyLen   = 128
	maxUnitLen  = 32
	maxLabelLen = 128
	minInterval = 100 * time.Millisecond
	maxInterval = 30 * 24 * time.Hour
)

// Telemetry types.
const (
	TypeNumber  = "number"
	TypeInteger = "integer"
	TypeBoolean = "boolean"
	TypeString  = "string"
)

var telemetryTypes = []string{TypeNumber, TypeInteger, TypeBoolean, TypeString}

// Model is a device model as JSON holds it.
type Model struct {
	Telemetry  map[string]Telemetry `json:"telemetry,omitempty"`
	Properties *Properties          `json:"properties,omitempty"`
	Commands   map[string]Command   `json:"commands,omitempty"`
}

// Telemetry describes one key of the things/{thing}/telemetry object.
type Telemetry struct {
	Label string `json:"label,omitempty"`
	Unit  string `json:"unit,omitempty"`
	// Type is number (the default), integer, boolean or string.
	Type string   `json:"type,omitempty"`
	Min  *float64 `json:"min,omitempty"`
	Max  *float64 `json:"max,omitempty"`
	// Interval is how often a device sends the key, a Go duration ("10s");
	// the silence detector's default expected interval.
	Interval string `json:"interval,omitempty"`
}

// Properties are the JSON Schemas of the classic shadow's state.
type Properties struct {
	Reported json.RawMessage `json:"reported,omitempty"`
	Desired  json.RawMessage `json:"desired,omitempty"`
}

// Command describes one command a device takes.
type Command struct {
	Description string          `json:"description,omitempty"`
	Payload     json.RawMessage `json:"payload,omitempty"` // JSON Schema; absent: any payload
}

// Compiled is a checked model with its schemas compiled. It is immutable
// and safe for concurrent use.
type Compiled struct {
	Model     Model
	raw       []byte
	intervals map[string]time.Duration
	reported  *jsonschema.Schema
	desired   *jsonschema.Schema
	commands  map[string]*jsonschema.Schema // nil value: any payload
}

// Raw is the model's JSON as it was parsed.
func (c *Compiled) Raw() []byte { return c.raw }

// Parse checks a model and compiles its schemas. maxSize bounds the JSON
// (0: DefaultMaxSize). Errors: core.KindTooLarge past maxSize, otherwise
// core.KindInvalid with the field (model.telemetry.temperature.max,
// model.properties.desired, ...).
func Parse(raw []byte, maxSize int) (*Compiled, error) {
	if maxSize <= 0 {
		maxSize = DefaultMaxSize
	}
	if len(raw) > maxSize {
		return nil, core.Errorf(core.KindTooLarge, "model is larger than %d bytes (--type-model-max-size)", maxSize)
	}
	var m Model
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return nil, core.Invalid("model", "model is not a valid model object: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, core.Invalid("model", "model has data after its object")
	}
	c := &Compiled{Model: m, raw: slices.Clone(raw), intervals: map[string]time.Duration{}, commands: map[string]*jsonschema.Schema{}}
	for _, k := range sortedKeys(m.Telemetry) {
		t := m.Telemetry[k]
		f := "model.telemetry." + k
		if k == "" || len(k) > maxKeyLen {
			return nil, core.Invalid("model.telemetry", "telemetry keys must be 1 to %d bytes", maxKeyLen)
		}
		if len(t.Unit) > maxUnitLen {
			return nil, core.Invalid(f+".unit", "unit is longer than %d bytes", maxUnitLen)
		}
		if len(t.Label) > maxLabelLen {
			return nil, core.Invalid(f+".label", "label is longer than %d bytes", maxLabelLen)
		}
		if t.Type == "" {
			t.Type = TypeNumber
		}
		if !slices.Contains(telemetryTypes, t.Type) {
			return nil, core.Invalid(f+".type", "type must be one of %s", strings.Join(telemetryTypes, ", "))
		}
		if (t.Min != nil || t.Max != nil) && t.Type != TypeNumber && t.Type != TypeInteger {
			return nil, core.Invalid(f+".min", "min and max apply to number and integer keys only")
		}
		if t.Min != nil && t.Max != nil && *t.Min > *t.Max {
			return nil, core.Invalid(f+".min", "min %v is greater than max %v", *t.Min, *t.Max)
		}
		if t.Interval != "" {
			d, err := time.ParseDuration(t.Interval)
			if err != nil || d < minInterval || d > maxInterval {
				return nil, core.Invalid(f+".interval", "interval must be a duration from %s to %s (like \"10s\")", minInterval, maxInterval)
			}
			c.intervals[k] = d
		}
		m.Telemetry[k] = t
	}
	var err error
	if m.Properties != nil {
		if c.reported, err = compileSchema("model.properties.reported", m.Properties.Reported); err != nil {
			return nil, err
		}
		if c.desired, err = compileSchema("model.properties.desired", m.Properties.Desired); err != nil {
			return nil, err
		}
	}
	for _, name := range sortedKeys(m.Commands) {
		if err := core.ValidateName("model.commands", name); err != nil {
			return nil, core.Invalid("model.commands", "command name %q: %v", name, err)
		}
		if len(m.Commands[name].Description) > 1024 {
			return nil, core.Invalid("model.commands."+name+".description", "description is longer than 1024 bytes")
		}
		if c.commands[name], err = compileSchema("model.commands."+name+".payload", m.Commands[name].Payload); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// refuseLoader is the schema loader: no URL is ever fetched.
type refuseLoader struct{}

func (refuseLoader) Load(url string) (any, error) {
	return nil, fmt.Errorf("%s: remote references are not allowed (a model's schemas may only refer inside themselves)", url)
}

// compileSchema compiles one schema; empty or null is none (nil).
func compileSchema(field string, raw json.RawMessage) (*jsonschema.Schema, error) {
	if len(bytes.TrimSpace(raw)) == 0 || string(bytes.TrimSpace(raw)) == "null" {
		return nil, nil
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return nil, core.Invalid(field, "schema is not JSON: %v", err)
	}
	const loc = "mote:///model.json"
	comp := jsonschema.NewCompiler()
	comp.DefaultDraft(jsonschema.Draft2020)
	comp.UseLoader(refuseLoader{})
	if err := comp.AddResource(loc, doc); err != nil {
		return nil, core.Invalid(field, "schema: %s", oneLine(err.Error()))
	}
	sch, err := comp.Compile(loc)
	if err != nil {
		return nil, core.Invalid(field, "schema: %s", oneLine(strings.ReplaceAll(err.Error(), loc, "")))
	}
	return sch, nil
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 400 {
		s = s[:400] + "…"
	}
	return s
}

// Intervals returns the expected interval of each telemetry key that has
// one.
func (c *Compiled) Intervals() map[string]time.Duration { return c.intervals }

// Interval is the expected interval of one key, or with key "" the
// largest of all keys (0: none).
func (c *Compiled) Interval(key string) time.Duration {
	if key != "" {
		return c.intervals[key]
	}
	var d time.Duration
	for _, v := range c.intervals {
		d = max(d, v)
	}
	return d
}

// HasCommands reports whether the model lists commands (then only those
// names are accepted).
func (c *Compiled) HasCommands() bool { return len(c.Model.Commands) > 0 }

var printer = message.NewPrinter(language.English)

// schemaError turns a validation failure into "/path: message" of its
// first leaf error.
func schemaError(err error) string {
	ve, ok := err.(*jsonschema.ValidationError)
	if !ok {
		return oneLine(err.Error())
	}
	for len(ve.Causes) > 0 {
		ve = ve.Causes[0]
	}
	return pointer(ve.InstanceLocation) + ": " + describe(ve.ErrorKind)
}

// describe words the common errors plainly ("must be >= 1"); the others
// as the library does.
func describe(k jsonschema.ErrorKind) string {
	num := func(r *big.Rat) string { return strings.TrimSuffix(r.FloatString(6), ".000000") }
	switch e := k.(type) {
	case *kind.Minimum:
		return "must be >= " + num(e.Want)
	case *kind.Maximum:
		return "must be <= " + num(e.Want)
	case *kind.ExclusiveMinimum:
		return "must be > " + num(e.Want)
	case *kind.ExclusiveMaximum:
		return "must be < " + num(e.Want)
	case *kind.Type:
		return fmt.Sprintf("must be %s, not %s", strings.Join(e.Want, " or "), e.Got)
	case *kind.Required:
		return "missing " + strings.Join(e.Missing, ", ")
	case *kind.AdditionalProperties:
		return "not allowed: " + strings.Join(e.Properties, ", ")
	}
	return oneLine(k.LocalizedString(printer))
}

// pointer is a JSON Pointer ("/" for the whole document).
func pointer(path []string) string {
	if len(path) == 0 {
		return "/"
	}
	var b strings.Builder
	for _, p := range path {
		b.WriteByte('/')
		b.WriteString(strings.NewReplacer("~", "~0", "/", "~1").Replace(p))
	}
	return b.String()
}

// decode reads JSON as the schema library wants it (json.Number).
func decode(raw []byte) (any, error) {
	return jsonschema.UnmarshalJSON(bytes.NewReader(raw))
}

// withoutNulls drops the null members of objects, recursively: in a
// shadow update they delete a property and are not values to check.
func withoutNulls(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if e == nil {
				delete(x, k)
				continue
			}
			x[k] = withoutNulls(e)
		}
	case []any:
		for i := range x {
			x[i] = withoutNulls(x[i])
		}
	}
	return v
}

// ValidateDesired checks the desired section of a classic-shadow update
// (null members, which delete, are left out; the update is checked as a
// document of its own, so a schema's "required" applies to every update).
// A failure is core.KindInvalid on field "state.desired" whose message
// starts with the JSON path of the first error.
func (c *Compiled) ValidateDesired(desired json.RawMessage) error {
	if c.desired == nil || len(desired) == 0 || string(desired) == "null" {
		return nil
	}
	v, err := decode(desired)
	if err != nil {
		return core.Invalid("state.desired", "desired is not JSON: %v", err)
	}
	if err := c.desired.Validate(withoutNulls(v)); err != nil {
		return core.Invalid("state.desired", "%s", schemaError(err))
	}
	return nil
}

// ValidateShadowUpdate checks the desired section of a shadow update body
// ({"state": {"desired": ...}}); bodies it cannot read are left to the
// shadow service to refuse.
func (c *Compiled) ValidateShadowUpdate(body []byte) error {
	if c.desired == nil {
		return nil
	}
	var u struct {
		State struct {
			Desired json.RawMessage `json:"desired"`
		} `json:"state"`
	}
	if json.Unmarshal(body, &u) != nil {
		return nil
	}
	return c.ValidateDesired(u.State.Desired)
}

// ValidateCommand checks a command against the model: a model that lists
// commands accepts only those names, and a command with a payload schema
// only payloads that match it. Errors are core.KindInvalid on "name" or
// "payload" (the message starts with the JSON path).
func (c *Compiled) ValidateCommand(name string, payload json.RawMessage) error {
	if !c.HasCommands() {
		return nil
	}
	sch, ok := c.commands[name]
	if !ok {
		return core.Invalid("name", "command %q is not in the type's model (it lists %s)", name, strings.Join(sortedKeys(c.Model.Commands), ", "))
	}
	if sch == nil {
		return nil
	}
	if len(bytes.TrimSpace(payload)) == 0 {
		payload = []byte("null")
	}
	v, err := decode(payload)
	if err != nil {
		return core.Invalid("payload", "payload is not JSON: %v", err)
	}
	if err := sch.Validate(v); err != nil {
		return core.Invalid("payload", "%s", schemaError(err))
	}
	return nil
}

// Violation is a reported value or telemetry key outside the model.
type Violation struct {
	Kind   string `json:"kind"` // "telemetry" or "reported"
	Key    string `json:"key"`  // the telemetry key, or the JSON path in reported
	Value  any    `json:"value,omitempty"`
	Reason string `json:"reason"`
}

// CheckTelemetry returns the keys of a telemetry object (decoded with
// UseNumber or not) whose type or range the model does not allow. Keys
// the model does not list are not checked.
func (c *Compiled) CheckTelemetry(obj map[string]any) []Violation {
	var out []Violation
	for k, t := range c.Model.Telemetry {
		v, ok := obj[k]
		if !ok || v == nil {
			continue
		}
		if r := checkValue(t, v); r != "" {
			out = append(out, Violation{Kind: "telemetry", Key: k, Value: v, Reason: r})
		}
	}
	slices.SortFunc(out, func(a, b Violation) int { return strings.Compare(a.Key, b.Key) })
	return out
}

func checkValue(t Telemetry, v any) string {
	var f float64
	switch x := v.(type) {
	case json.Number:
		var err error
		if f, err = x.Float64(); err != nil {
			return "not a number"
		}
	case float64:
		f = x
	case bool:
		if t.Type != TypeBoolean {
			return "is a boolean, the model says " + t.Type
		}
		return ""
	case string:
		if t.Type != TypeString {
			return "is a string, the model says " + t.Type
		}
		return ""
	default:
		if t.Type == TypeNumber || t.Type == TypeInteger {
			return "is not a number"
		}
		return "is not a " + t.Type
	}
	switch t.Type {
	case TypeBoolean, TypeString:
		return "is a number, the model says " + t.Type
	case TypeInteger:
		if f != math.Trunc(f) {
			return "is not an integer"
		}
	}
	if t.Min != nil && f < *t.Min {
		return fmt.Sprintf("below the minimum %v", *t.Min)
	}
	if t.Max != nil && f > *t.Max {
		return fmt.Sprintf("above the maximum %v", *t.Max)
	}
	return ""
}

// CheckReported returns the first error of a reported state (the
// reported section of a shadow update, nulls left out) against the
// model's reported schema, if any.
func (c *Compiled) CheckReported(reported json.RawMessage) []Violation {
	if c.reported == nil || len(reported) == 0 || string(reported) == "null" {
		return nil
	}
	v, err := decode(reported)
	if err != nil {
		return nil
	}
	err = c.reported.Validate(withoutNulls(v))
	if err == nil {
		return nil
	}
	ve, ok := err.(*jsonschema.ValidationError)
	if !ok {
		return nil
	}
	for len(ve.Causes) > 0 {
		ve = ve.Causes[0]
	}
	return []Violation{{Kind: "reported", Key: pointer(ve.InstanceLocation), Value: valueAt(v, ve.InstanceLocation),
		Reason: describe(ve.ErrorKind)}}
}

func valueAt(v any, path []string) any {
	for _, p := range path {
		switch x := v.(type) {
		case map[string]any:
			v = x[p]
		default:
			return nil
		}
	}
	switch v.(type) {
	case map[string]any, []any:
		return nil // a value, not a document
	}
	return v
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}
