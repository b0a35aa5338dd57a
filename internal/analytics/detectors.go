package analytics

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/moteiot/mote/internal/core"
)

// Detector kinds.
const (
	KindThreshold = "threshold"
	KindGeofence  = "geofence"
	KindSpeed     = "speed"
	KindSilence   = "silence"
	KindFlapping  = "flapping"
	KindAnomaly   = "anomaly"
)

// Kinds lists the detector kinds.
var Kinds = []string{KindThreshold, KindGeofence, KindSpeed, KindSilence, KindFlapping, KindAnomaly}

// MaxConfig bounds a detector configuration (its JSON text).
const MaxConfig = 512 * 1024

// Values are the numeric top-level fields of a telemetry message.
type Values map[string]float64

// Outcome is what a detector concluded from one input: raise or clear its
// alarm (or neither), with details for a raise.
type Outcome struct {
	Raise, Clear bool
	Details      map[string]any
}

// State is a detector's state for one thing: a pointer to a struct that
// encoding/json saves and restores.
type State any

// Detector is one configured detector, pure: all it knows of a thing is
// the State it is given, and time comes with the input.
type Detector interface {
	NewState() State
	// Telemetry observes a message of the thing received at.
	Telemetry(st State, at time.Time, v Values) Outcome
	// Presence observes a connect or disconnect of the thing.
	Presence(st State, connected bool, at time.Time) Outcome
	// Tick lets time pass (silence, flapping); now is the current time.
	Tick(st State, now time.Time) Outcome
}

// Config is what every rule configures besides its detector's own fields.
type Config struct {
	AlarmType string `json:"alarmType"`
	Severity  string `json:"severity"`
}

var severities = []string{"critical", "major", "minor", "warning"}

// Duration is a JSON duration: "5m", "30s".
type Duration time.Duration

// UnmarshalJSON reads a Go duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("a duration is a string such as \"5m\"")
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("a duration is a string such as \"5m\": %v", err)
	}
	*d = Duration(v)
	return nil
}

// MarshalJSON writes a Go duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

func invalid(field, format string, args ...any) error { return core.Invalid(field, format, args...) }

func decodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return fmt.Errorf("trailing data")
	}
	return nil
}

func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }

// Parse checks a rule's configuration for kind and returns its detector
// and common settings. Errors are core.KindInvalid naming the field
// (config.key, config.fence.coordinates[0][3], ...).
func Parse(kind string, config []byte) (Detector, Config, error) {
	if len(config) > MaxConfig {
		return nil, Config{}, core.Errorf(core.KindTooLarge, "config is larger than %d bytes", MaxConfig)
	}
	if len(bytes.TrimSpace(config)) == 0 {
		config = []byte("{}")
	}
	var (
		d   Detector
		err error
	)
	switch kind {
	case KindThreshold:
		d, err = parseThreshold(config)
	case KindGeofence:
		d, err = parseGeofence(config)
	case KindSpeed:
		d, err = parseSpeed(config)
	case KindSilence:
		d, err = parseSilence(config)
	case KindFlapping:
		d, err = parseFlapping(config)
	case KindAnomaly:
		d, err = parseAnomaly(config)
	default:
		return nil, Config{}, invalid("kind", "kind must be one of %s", strings.Join(Kinds, ", "))
	}
	if err != nil {
		return nil, Config{}, err
	}
	var c struct{ Config }
	_ = json.Unmarshal(config, &c.Config)
	if c.AlarmType == "" {
		c.AlarmType = defaultAlarmType[kind]
	}
	if err := core.ValidateName("config.alarmType", c.AlarmType); err != nil {
		return nil, Config{}, err
	}
	if c.Severity == "" {
		c.Severity = "major"
	}
	ok := false
	for _, s := range severities {
		ok = ok || s == c.Severity
	}
	if !ok {
		return nil, Config{}, invalid("config.severity", "severity must be one of %s", strings.Join(severities, ", "))
	}
	return d, c.Config, nil
}

var defaultAlarmType = map[string]string{
	KindThreshold: "threshold", KindGeofence: "geofence", KindSpeed: "speeding",
	KindSilence: "device-silent", KindFlapping: "flapping", KindAnomaly: "anomaly",
}

// common fields every config may carry; each parser embeds them so that
// strict decoding accepts them.
type common struct {
	AlarmType string `json:"alarmType"`
	Severity  string `json:"severity"`
}

func parseStrict(config []byte, v any) error {
	if err := decodeStrict(config, v); err != nil {
		return invalid("config", "config: %v", err)
	}
	return nil
}

// positionKeyed is a detector reading positions (geofence, speed).
type positionKeyed interface {
	// defaultPositionKeys sets the keys the configuration did not name.
	defaultPositionKeys(lat, lon string)
}

// keyDefaults remembers which position keys a configuration left out
// ("lat", "lon" until the engine gives its own, --position-keys).
type keyDefaults struct{ lat, lon bool }

func (k *keyDefaults) fill(lat, lon *string) {
	if *lat == "" {
		*lat, k.lat = "lat", true
	}
	if *lon == "" {
		*lon, k.lon = "lon", true
	}
}

func (k keyDefaults) set(latKey, lonKey *string, lat, lon string) {
	if k.lat {
		*latKey = lat
	}
	if k.lon {
		*lonKey = lon
	}
}

func (g *geofence) defaultPositionKeys(lat, lon string) { g.keys.set(&g.LatKey, &g.LonKey, lat, lon) }
func (s *speed) defaultPositionKeys(lat, lon string)    { s.keys.set(&s.LatKey, &s.LonKey, lat, lon) }

func checkKey(field, key string) error {
	if key == "" {
		return invalid(field, "%s is required", field)
	}
	if len(key) > 256 {
		return invalid(field, "%s is longer than 256 bytes", field)
	}
	return nil
}

// ---- threshold ----

// threshold: "temperature > 80 for 5 min, clear below 75" is
// {"key": "temperature", "above": 80, "for": "5m", "clearBelow": 75}; the
// mirror image uses below and clearAbove.
type threshold struct {
	common
	Key        string   `json:"key"`
	Above      *float64 `json:"above"`
	Below      *float64 `json:"below"`
	For        Duration `json:"for"`
	ClearBelow *float64 `json:"clearBelow"`
	ClearAbove *float64 `json:"clearAbove"`
}

type thresholdState struct {
	Since  *time.Time `json:"since,omitempty"` // the condition has held since
	Raised bool       `json:"raised"`
}

func parseThreshold(config []byte) (Detector, error) {
	var t threshold
	if err := parseStrict(config, &t); err != nil {
		return nil, err
	}
	if err := checkKey("config.key", t.Key); err != nil {
		return nil, err
	}
	switch {
	case (t.Above == nil) == (t.Below == nil):
		return nil, invalid("config.above", "give exactly one of above and below")
	case t.For < 0 || time.Duration(t.For) > 30*24*time.Hour:
		return nil, invalid("config.for", "for must be from 0s to 720h")
	}
	if t.Above != nil {
		if t.ClearAbove != nil {
			return nil, invalid("config.clearAbove", "clearAbove goes with below; above clears with clearBelow")
		}
		if t.ClearBelow == nil {
			t.ClearBelow = t.Above
		}
		if !finite(*t.Above) || !finite(*t.ClearBelow) || *t.ClearBelow > *t.Above {
			return nil, invalid("config.clearBelow", "clearBelow must be a number at most above")
		}
	} else {
		if t.ClearBelow != nil {
			return nil, invalid("config.clearBelow", "clearBelow goes with above; below clears with clearAbove")
		}
		if t.ClearAbove == nil {
			t.ClearAbove = t.Below
		}
		if !finite(*t.Below) || !finite(*t.ClearAbove) || *t.ClearAbove < *t.Below {
			return nil, invalid("config.clearAbove", "clearAbove must be a number at least below")
		}
	}
	return &t, nil
}

func (t *threshold) NewState() State { return &thresholdState{} }

func (t *threshold) Telemetry(s State, at time.Time, v Values) Outcome {
	st := s.(*thresholdState)
	x, ok := v[t.Key]
	if !ok {
		return Outcome{}
	}
	var bad, good bool
	if t.Above != nil {
		bad, good = x > *t.Above, x < *t.ClearBelow
	} else {
		bad, good = x < *t.Below, x > *t.ClearAbove
	}
	if !bad {
		st.Since = nil
		if st.Raised && good {
			st.Raised = false
			return Outcome{Clear: true}
		}
		return Outcome{}
	}
	if st.Since == nil || at.Before(*st.Since) {
		since := at
		st.Since = &since
	}
	if !st.Raised && at.Sub(*st.Since) >= time.Duration(t.For) {
		st.Raised = true
		return Outcome{Raise: true, Details: map[string]any{"key": t.Key, "value": x, "since": st.Since.UTC()}}
	}
	return Outcome{}
}

func (t *threshold) Presence(State, bool, time.Time) Outcome { return Outcome{} }
func (t *threshold) Tick(State, time.Time) Outcome           { return Outcome{} }

// ---- geofence ----

// geofence raises on leaving the fence (alarmOn "exit", the default), on
// entering it ("enter"), or after staying in it for dwell ("dwell"); it
// clears when the condition ends.
type geofence struct {
	common
	Fence   json.RawMessage `json:"fence"`
	AlarmOn string          `json:"alarmOn"`
	Dwell   Duration        `json:"dwell"`
	LatKey  string          `json:"latKey"`
	LonKey  string          `json:"lonKey"`
	fence   *Fence
	keys    keyDefaults
}

type geofenceState struct {
	Inside    *bool      `json:"inside,omitempty"`
	EnteredAt *time.Time `json:"enteredAt,omitempty"`
	Raised    bool       `json:"raised"`
}

func parseGeofence(config []byte) (Detector, error) {
	g := geofence{AlarmOn: "exit"}
	if err := parseStrict(config, &g); err != nil {
		return nil, err
	}
	g.keys.fill(&g.LatKey, &g.LonKey)
	if len(g.Fence) == 0 {
		return nil, invalid("config.fence", "config.fence is required")
	}
	f, err := ParseFence("config.fence", g.Fence)
	if err != nil {
		return nil, err
	}
	g.fence = f
	switch g.AlarmOn {
	case "exit", "enter":
	case "dwell":
		if g.Dwell <= 0 || time.Duration(g.Dwell) > 30*24*time.Hour {
			return nil, invalid("config.dwell", "dwell must be above 0s and at most 720h")
		}
	default:
		return nil, invalid("config.alarmOn", "alarmOn must be exit, enter or dwell")
	}
	if err := checkKey("config.latKey", g.LatKey); err != nil {
		return nil, err
	}
	if err := checkKey("config.lonKey", g.LonKey); err != nil {
		return nil, err
	}
	return &g, nil
}

func (g *geofence) NewState() State { return &geofenceState{} }

func position(v Values, latKey, lonKey string) (lat, lon float64, ok bool) {
	lat, ok1 := v[latKey]
	lon, ok2 := v[lonKey]
	if !ok1 || !ok2 || lat < -90 || lat > 90 || lon < -180 || lon > 180 {
		return 0, 0, false
	}
	return lat, lon, true
}

func (g *geofence) Telemetry(s State, at time.Time, v Values) Outcome {
	st := s.(*geofenceState)
	lat, lon, ok := position(v, g.LatKey, g.LonKey)
	if !ok {
		return Outcome{}
	}
	in := g.fence.Contains(lat, lon)
	if st.Inside == nil || *st.Inside != in {
		st.Inside = &in
		if in {
			t := at
			st.EnteredAt = &t
		} else {
			st.EnteredAt = nil
		}
	}
	var bad bool
	switch g.AlarmOn {
	case "exit":
		bad = !in
	case "enter":
		bad = in
	case "dwell":
		bad = in && st.EnteredAt != nil && at.Sub(*st.EnteredAt) >= time.Duration(g.Dwell)
	}
	switch {
	case bad && !st.Raised:
		st.Raised = true
		return Outcome{Raise: true, Details: map[string]any{"event": g.AlarmOn, "lat": lat, "lon": lon}}
	case !bad && st.Raised:
		st.Raised = false
		return Outcome{Clear: true}
	}
	return Outcome{}
}

func (g *geofence) Presence(State, bool, time.Time) Outcome { return Outcome{} }
func (g *geofence) Tick(State, time.Time) Outcome           { return Outcome{} }

// ---- speed ----

// speed raises above limitKmh, from a reported speed (speedKey, km/h) or
// from successive positions (haversine over the time between them); it
// clears below clearBelowKmh (default 90% of the limit).
type speed struct {
	common
	LimitKmh      float64  `json:"limitKmh"`
	ClearBelowKmh *float64 `json:"clearBelowKmh"`
	SpeedKey      string   `json:"speedKey"`
	LatKey        string   `json:"latKey"`
	LonKey        string   `json:"lonKey"`
	keys          keyDefaults
}

type speedState struct {
	Lat    float64    `json:"lat"`
	Lon    float64    `json:"lon"`
	At     *time.Time `json:"at,omitempty"`
	Raised bool       `json:"raised"`
}

func parseSpeed(config []byte) (Detector, error) {
	var s speed
	if err := parseStrict(config, &s); err != nil {
		return nil, err
	}
	s.keys.fill(&s.LatKey, &s.LonKey)
	if !(s.LimitKmh > 0 && s.LimitKmh < 1e6) {
		return nil, invalid("config.limitKmh", "limitKmh must be above 0")
	}
	if s.ClearBelowKmh == nil {
		c := 0.9 * s.LimitKmh
		s.ClearBelowKmh = &c
	}
	if !finite(*s.ClearBelowKmh) || *s.ClearBelowKmh > s.LimitKmh || *s.ClearBelowKmh < 0 {
		return nil, invalid("config.clearBelowKmh", "clearBelowKmh must be from 0 to limitKmh")
	}
	if s.SpeedKey == "" {
		if err := checkKey("config.latKey", s.LatKey); err != nil {
			return nil, err
		}
		if err := checkKey("config.lonKey", s.LonKey); err != nil {
			return nil, err
		}
	}
	return &s, nil
}

func (s *speed) NewState() State { return &speedState{} }

// minSpeedInterval: positions closer in time than this are not used to
// compute a speed (GPS jitter over milliseconds reads as huge speeds).
const minSpeedInterval = time.Second

func (s *speed) Telemetry(state State, at time.Time, v Values) Outcome {
	st := state.(*speedState)
	var kmh float64
	if s.SpeedKey != "" {
		x, ok := v[s.SpeedKey]
		if !ok {
			return Outcome{}
		}
		kmh = x
	} else {
		lat, lon, ok := position(v, s.LatKey, s.LonKey)
		if !ok {
			return Outcome{}
		}
		if st.At == nil || at.Sub(*st.At) < minSpeedInterval {
			if st.At == nil || at.Before(*st.At) {
				t := at
				st.Lat, st.Lon, st.At = lat, lon, &t
			}
			return Outcome{}
		}
		kmh = haversine(st.Lat, st.Lon, lat, lon) / at.Sub(*st.At).Seconds() * 3.6
		t := at
		st.Lat, st.Lon, st.At = lat, lon, &t
	}
	switch {
	case kmh > s.LimitKmh && !st.Raised:
		st.Raised = true
		return Outcome{Raise: true, Details: map[string]any{"speedKmh": math.Round(kmh*10) / 10, "limitKmh": s.LimitKmh}}
	case kmh < *s.ClearBelowKmh && st.Raised:
		st.Raised = false
		return Outcome{Clear: true}
	}
	return Outcome{}
}

func (s *speed) Presence(State, bool, time.Time) Outcome { return Outcome{} }
func (s *speed) Tick(State, time.Time) Outcome           { return Outcome{} }

// ---- silence ----

// silence raises "device silent" when a thing that sent telemetry sends
// none for factor × expectedInterval; its next message clears it. With no
// expectedInterval the interval comes from the device model of the
// thing's type (internal/devicemodel): the interval of key, or with no
// key the largest of its telemetry keys; a thing whose type gives none is
// never silent. With key, only messages that carry it count.
type silence struct {
	common
	ExpectedInterval Duration `json:"expectedInterval"`
	Factor           float64  `json:"factor"`
	Key              string   `json:"key"`
}

type silenceState struct {
	LastAt *time.Time `json:"lastAt,omitempty"`
	Raised bool       `json:"raised"`
	// Interval is the model's expected interval for this thing, set by
	// the engine when the rule has none of its own.
	Interval Duration `json:"interval,omitempty"`
}

func parseSilence(config []byte) (Detector, error) {
	s := silence{Factor: 3}
	if err := parseStrict(config, &s); err != nil {
		return nil, err
	}
	if s.ExpectedInterval != 0 && (s.ExpectedInterval < Duration(time.Second) || time.Duration(s.ExpectedInterval) > 30*24*time.Hour) {
		return nil, invalid("config.expectedInterval", "expectedInterval must be from 1s to 720h (or absent: from the type's device model)")
	}
	if !(s.Factor >= 1 && s.Factor <= 1000) {
		return nil, invalid("config.factor", "factor must be from 1 to 1000")
	}
	if len(s.Key) > 128 {
		return nil, invalid("config.key", "key is longer than 128 bytes")
	}
	return &s, nil
}

func (s *silence) NewState() State { return &silenceState{} }

// fromModel reports whether the interval comes from the device model, and
// of which key ("" the largest).
func (s *silence) fromModel() (string, bool) { return s.Key, s.ExpectedInterval == 0 }

func (s *silence) interval(st *silenceState) time.Duration {
	if s.ExpectedInterval != 0 {
		return time.Duration(s.ExpectedInterval)
	}
	return time.Duration(st.Interval)
}

func (s *silence) Telemetry(state State, at time.Time, v Values) Outcome {
	st := state.(*silenceState)
	if s.Key != "" {
		if _, ok := v[s.Key]; !ok {
			return Outcome{}
		}
	}
	if st.LastAt == nil || at.After(*st.LastAt) {
		t := at
		st.LastAt = &t
	}
	if st.Raised {
		st.Raised = false
		return Outcome{Clear: true}
	}
	return Outcome{}
}

func (s *silence) Presence(State, bool, time.Time) Outcome { return Outcome{} }

func (s *silence) Tick(state State, now time.Time) Outcome {
	st := state.(*silenceState)
	iv := s.interval(st)
	w := time.Duration(float64(iv) * s.Factor)
	if st.Raised || st.LastAt == nil || w <= 0 || now.Sub(*st.LastAt) <= w {
		return Outcome{}
	}
	st.Raised = true
	return Outcome{Raise: true, Details: map[string]any{"lastMessageAt": st.LastAt.UTC(), "silentFor": now.Sub(*st.LastAt).Round(time.Second).String(),
		"expectedInterval": iv.String()}}
}

// ---- flapping ----

// flapping raises when a thing connects at least connects times within
// the window (a reboot loop); it clears once the window holds fewer.
type flapping struct {
	common
	Connects int      `json:"connects"`
	Within   Duration `json:"within"`
}

type flappingState struct {
	Connects []time.Time `json:"connects"`
	Raised   bool        `json:"raised"`
}

func parseFlapping(config []byte) (Detector, error) {
	f := flapping{Connects: 5, Within: Duration(10 * time.Minute)}
	if err := parseStrict(config, &f); err != nil {
		return nil, err
	}
	if f.Connects < 2 || f.Connects > 1000 {
		return nil, invalid("config.connects", "connects must be from 2 to 1000")
	}
	if f.Within < Duration(time.Second) || time.Duration(f.Within) > 7*24*time.Hour {
		return nil, invalid("config.within", "within must be from 1s to 168h")
	}
	return &f, nil
}

func (f *flapping) NewState() State { return &flappingState{} }

func (f *flapping) Telemetry(State, time.Time, Values) Outcome { return Outcome{} }

func (f *flapping) trim(st *flappingState, now time.Time) {
	i := 0
	for i < len(st.Connects) && now.Sub(st.Connects[i]) > time.Duration(f.Within) {
		i++
	}
	st.Connects = st.Connects[i:]
	if len(st.Connects) > f.Connects { // bounded: the last N are enough
		st.Connects = st.Connects[len(st.Connects)-f.Connects:]
	}
}

func (f *flapping) Presence(state State, connected bool, at time.Time) Outcome {
	st := state.(*flappingState)
	if !connected {
		return Outcome{}
	}
	st.Connects = append(st.Connects, at)
	f.trim(st, at)
	if !st.Raised && len(st.Connects) >= f.Connects {
		st.Raised = true
		return Outcome{Raise: true, Details: map[string]any{"connects": len(st.Connects), "within": time.Duration(f.Within).String()}}
	}
	return Outcome{}
}

func (f *flapping) Tick(state State, now time.Time) Outcome {
	st := state.(*flappingState)
	f.trim(st, now)
	if st.Raised && len(st.Connects) < f.Connects {
		st.Raised = false
		return Outcome{Clear: true}
	}
	return Outcome{}
}
