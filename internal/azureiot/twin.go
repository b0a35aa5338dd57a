package azureiot

import (
	"bytes"
	"encoding/json"
	"errors"
	"sort"
)

// A device twin is backed by the thing's classic shadow: desired is the
// shadow's state.desired, reported its state.reported, and both carry
// the shadow's version as "$version" (IoT Hub versions them separately;
// one counter is enough for the SDKs, which only compare versions).

// ErrBadTwinPatch is returned for a reported patch that is not a JSON
// object.
var ErrBadTwinPatch = errors.New("azureiot: a twin patch must be a JSON object")

type shadowState struct {
	State struct {
		Desired  map[string]json.RawMessage `json:"desired"`
		Reported map[string]json.RawMessage `json:"reported"`
	} `json:"state"`
	Version int64 `json:"version"`
}

// TwinFromShadow turns a shadow's get/accepted body into a twin document:
// {"desired": {..., "$version": v}, "reported": {..., "$version": v}}.
// A nil body (no shadow yet) is the empty twin.
func TwinFromShadow(get []byte) ([]byte, error) {
	var s shadowState
	if get != nil {
		if err := json.Unmarshal(get, &s); err != nil {
			return nil, err
		}
	}
	var b bytes.Buffer
	b.WriteString(`{"desired":`)
	writeVersioned(&b, s.State.Desired, s.Version)
	b.WriteString(`,"reported":`)
	writeVersioned(&b, s.State.Reported, s.Version)
	b.WriteByte('}')
	return b.Bytes(), nil
}

func writeVersioned(b *bytes.Buffer, m map[string]json.RawMessage, version int64) {
	out := make(map[string]json.RawMessage, len(m)+1)
	for k, v := range m {
		out[k] = v
	}
	out["$version"], _ = json.Marshal(version)
	enc, _ := json.Marshal(out) // keys sorted: stable output
	b.Write(enc)
}

// ShadowReportedUpdate turns a reported-properties patch into a shadow
// update document, {"state": {"reported": patch}} ("$version" dropped;
// null deletes a property, as in both models).
func ShadowReportedUpdate(patch []byte) ([]byte, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(patch, &m); err != nil || m == nil {
		return nil, ErrBadTwinPatch
	}
	delete(m, "$version")
	doc, err := json.Marshal(map[string]any{"state": map[string]any{"reported": m}})
	if err != nil {
		return nil, ErrBadTwinPatch
	}
	return doc, nil
}

// DesiredPatch turns a shadow's update/documents body into the desired
// patch a device is sent: the top-level desired properties that changed
// (with their new value) or went away (null), and "$version". ok is false
// when desired did not change.
func DesiredPatch(documents []byte) (patch []byte, version int64, ok bool) {
	var d struct {
		Previous *shadowState `json:"previous"`
		Current  *shadowState `json:"current"`
	}
	if err := json.Unmarshal(documents, &d); err != nil || d.Current == nil {
		return nil, 0, false
	}
	var prev map[string]json.RawMessage
	if d.Previous != nil {
		prev = d.Previous.State.Desired
	}
	cur := d.Current.State.Desired
	out := map[string]json.RawMessage{}
	keys := make([]string, 0, len(cur))
	for k := range cur {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if p, had := prev[k]; !had || !jsonEqual(p, cur[k]) {
			out[k] = cur[k]
		}
	}
	for k := range prev {
		if _, still := cur[k]; !still {
			out[k] = json.RawMessage("null")
		}
	}
	if len(out) == 0 {
		return nil, 0, false
	}
	out["$version"], _ = json.Marshal(d.Current.Version)
	enc, err := json.Marshal(out)
	if err != nil {
		return nil, 0, false
	}
	return enc, d.Current.Version, true
}

func jsonEqual(a, b json.RawMessage) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return bytes.Equal(a, b)
	}
	ea, _ := json.Marshal(x)
	eb, _ := json.Marshal(y)
	return bytes.Equal(ea, eb)
}
