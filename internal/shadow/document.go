// Package shadow is Mote's device shadow service, compatible with AWS IoT
// Device Shadow: a JSON document per shadow with desired and reported
// state, a computed delta, per-leaf metadata timestamps and a version,
// reachable over MQTT ($mote/things/{thing}/shadow/... and the same under
// $aws/things/...) and over the REST API. See docs/shadows.md.
//
// document.go holds the pure semantics (no I/O): parsing requests,
// applying an update to a document, and the response bodies.
// service.go runs shadows: cache, per-shadow serialization, group commit
// to the store, and the MQTT side.
package shadow

import (
	"encoding/json"
	"strconv"
	"time"
	"unicode/utf8"
)

// Limits of shadow documents.
const (
	// DefaultMaxSize is the default limit of a shadow's state: the JSON
	// of desired plus reported, metadata excluded (AWS: 8 KB).
	DefaultMaxSize = 8 * 1024
	// MaxDepth is how deeply values may nest inside desired or reported.
	MaxDepth = 6
	// MaxTokenLen bounds a clientToken, in bytes.
	MaxTokenLen = 64
)

// maxRequest is the largest request payload accepted for a state limit of
// maxSize: a request may carry nulls that delete as much as it sets.
func maxRequest(maxSize int) int { return 4*maxSize + 1024 }

// Document is one shadow: its desired and reported state (nil when the
// section is absent), the metadata trees that mirror them with a
// timestamp per leaf, its version and the time of its last change
// (epoch seconds).
type Document struct {
	Desired      map[string]any
	Reported     map[string]any
	MetaDesired  map[string]any
	MetaReported map[string]any
	Version      int64
	Timestamp    int64
}

// Request is a parsed shadow request payload: an update's state, and for
// every operation the optional clientToken and (updates) version.
type Request struct {
	// Desired and Reported are the request's sections: nil when absent,
	// and DesiredNull/ReportedNull when the section is JSON null (delete
	// the whole section).
	Desired, Reported         map[string]any
	DesiredNull, ReportedNull bool
	hasDesired, hasReported   bool

	ClientToken string
	HasToken    bool
	Version     int64
	HasVersion  bool
}

// ParseUpdate parses and validates an update request; maxSize is the
// state limit (0: DefaultMaxSize), which also bounds the payload. The returned
// Request carries the clientToken even when err is not nil, if it could
// be read, so that the rejection can echo it.
func ParseUpdate(payload []byte, maxSize int) (*Request, *Error) {
	if maxSize <= 0 {
		maxSize = DefaultMaxSize
	}
	r, obj, err := parseCommon(payload, maxSize)
	if err != nil {
		return r, err
	}
	if v, ok := obj["version"]; ok {
		n, isNum := v.(json.Number)
		ver, perr := strconv.ParseInt(string(n), 10, 64)
		if !isNum || perr != nil || ver < 0 {
			return r, ErrInvalidVersion
		}
		r.Version, r.HasVersion = ver, true
	}
	st, ok := obj["state"]
	if !ok {
		return r, ErrMissingState
	}
	state, ok := st.(map[string]any)
	if !ok {
		return r, ErrStateNotObject
	}
	for k, v := range state {
		switch k {
		case "desired":
			r.hasDesired = true
			if v == nil {
				r.DesiredNull = true
				continue
			}
			m, ok := v.(map[string]any)
			if !ok {
				return r, ErrDesiredNotObj
			}
			if !depthOK(m, 1) {
				return r, ErrTooDeep
			}
			r.Desired = m
		case "reported":
			r.hasReported = true
			if v == nil {
				r.ReportedNull = true
				continue
			}
			m, ok := v.(map[string]any)
			if !ok {
				return r, ErrReportedNotObj
			}
			if !depthOK(m, 1) {
				return r, ErrTooDeep
			}
			r.Reported = m
		default:
			return r, ErrInvalidNode
		}
	}
	return r, nil
}

// ParseRequest parses the payload of a get or delete request: empty, or
// an object with an optional clientToken (other fields are ignored).
func ParseRequest(payload []byte) (*Request, *Error) {
	if len(payload) == 0 {
		return &Request{}, nil
	}
	r, _, err := parseCommon(payload, 4*1024)
	return r, err
}

func parseCommon(payload []byte, maxSize int) (*Request, map[string]any, *Error) {
	r := &Request{}
	if len(payload) > maxRequest(maxSize) {
		return r, nil, ErrTooLarge
	}
	if !utf8.Valid(payload) {
		return r, nil, ErrEncoding
	}
	v, err := decode(payload)
	if err != nil {
		return r, nil, ErrInvalidJSON
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return r, nil, ErrInvalidJSON
	}
	if t, ok := obj["clientToken"]; ok {
		s, isStr := t.(string)
		if !isStr || len(s) > MaxTokenLen {
			return r, nil, ErrInvalidToken
		}
		r.ClientToken, r.HasToken = s, true
	}
	return r, obj, nil
}

// depthOK reports whether the containers in m nest at most MaxDepth deep,
// m's own members being at depth level.
func depthOK(m map[string]any, level int) bool {
	for _, v := range m {
		if !valueDepthOK(v, level) {
			return false
		}
	}
	return true
}

func valueDepthOK(v any, level int) bool {
	switch v := v.(type) {
	case map[string]any:
		if level+1 > MaxDepth && len(v) > 0 {
			return false
		}
		return depthOK(v, level+1)
	case []any:
		if level+1 > MaxDepth && len(v) > 0 {
			return false
		}
		for _, e := range v {
			if !valueDepthOK(e, level+1) {
				return false
			}
		}
	}
	return true
}

// Applied is the outcome of an accepted update.
type Applied struct {
	Doc       *Document // the new document
	Stored    []byte    // the new document as it is stored
	Accepted  []byte    // body of .../update/accepted
	Delta     []byte    // body of .../update/delta; nil when the delta is empty
	Documents []byte    // body of .../update/documents
}

// Apply applies an update to a shadow. cur is the current document, nil
// when the shadow does not exist; then baseVersion is the version of the
// deleted shadow it continues from (0 for a new one). The result never
// shares mutable state with cur, which stays valid. maxSize bounds the
// state (0: DefaultMaxSize).
func Apply(cur *Document, baseVersion int64, u *Request, now time.Time, maxSize int) (*Applied, *Error) {
	if maxSize <= 0 {
		maxSize = DefaultMaxSize
	}
	version := baseVersion
	if cur != nil {
		version = cur.Version
	}
	if u.HasVersion && u.Version != version {
		return nil, ErrVersionConflict
	}
	ts := now.Unix()
	next := &Document{Version: version + 1, Timestamp: ts}
	if cur != nil {
		next.Desired, next.MetaDesired = cur.Desired, cur.MetaDesired
		next.Reported, next.MetaReported = cur.Reported, cur.MetaReported
	}
	switch {
	case u.DesiredNull:
		next.Desired, next.MetaDesired = nil, nil
	case u.Desired != nil:
		next.Desired, next.MetaDesired = merge(next.Desired, next.MetaDesired, u.Desired, ts)
	}
	switch {
	case u.ReportedNull:
		next.Reported, next.MetaReported = nil, nil
	case u.Reported != nil:
		next.Reported, next.MetaReported = merge(next.Reported, next.MetaReported, u.Reported, ts)
	}
	// A section left empty disappears, as in AWS.
	if len(next.Desired) == 0 {
		next.Desired, next.MetaDesired = nil, nil
	}
	if len(next.Reported) == 0 {
		next.Reported, next.MetaReported = nil, nil
	}

	stored, stateSize := next.encode()
	if stateSize > maxSize {
		return nil, ErrTooLarge
	}
	a := &Applied{Doc: next, Stored: stored}
	a.Accepted = acceptedBody(u, next.Version, ts)
	delta := deltaOf(next.Desired, next.Reported)
	if len(delta) > 0 {
		a.Delta = deltaBody(delta, deltaMeta(delta, next.MetaDesired), next.Version, ts, u)
	}
	a.Documents = documentsBody(cur, next, ts, u)
	return a, nil
}

// merge applies the update section src to state (and its metadata meta),
// returning new maps; state and meta are not modified. A null deletes a
// key; an object merges into an object; anything else (arrays included)
// replaces the value whole and gets fresh metadata.
func merge(state, meta, src map[string]any, ts int64) (map[string]any, map[string]any) {
	ns := make(map[string]any, len(state)+len(src))
	for k, v := range state {
		ns[k] = v
	}
	nm := make(map[string]any, len(state)+len(src))
	for k, v := range meta {
		nm[k] = v
	}
	for k, v := range src {
		switch v := v.(type) {
		case nil:
			delete(ns, k)
			delete(nm, k)
		case map[string]any:
			old, _ := ns[k].(map[string]any) // nil unless an object: replaced
			var oldMeta map[string]any
			if old != nil {
				oldMeta, _ = nm[k].(map[string]any)
			}
			ns[k], nm[k] = merge(old, oldMeta, v, ts)
		default:
			ns[k] = v
			nm[k] = metaOf(v, ts)
		}
	}
	return ns, nm
}

// metaOf returns the metadata of a value set at ts: objects and arrays
// mirrored, a timestamp per leaf. Nulls (in a request) get a timestamp
// too.
func metaOf(v any, ts int64) any {
	switch v := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(v))
		for k, e := range v {
			m[k] = metaOf(e, ts)
		}
		return m
	case []any:
		l := make([]any, len(v))
		for i, e := range v {
			l[i] = metaOf(e, ts)
		}
		return l
	}
	return metaLeaf(ts)
}

// deltaOf returns the keys of desired whose value differs from reported:
// objects compared recursively, anything else whole. Keys only in
// reported are not part of it.
func deltaOf(desired, reported map[string]any) map[string]any {
	var d map[string]any
	for k, dv := range desired {
		rv, ok := reported[k]
		var diff any
		switch {
		case !ok:
			diff = dv
		default:
			dm, dIsObj := dv.(map[string]any)
			rm, rIsObj := rv.(map[string]any)
			if dIsObj && rIsObj {
				if sub := deltaOf(dm, rm); len(sub) > 0 {
					diff = sub
				} else {
					continue
				}
			} else if equal(dv, rv) {
				continue
			} else {
				diff = dv
			}
		}
		if d == nil {
			d = make(map[string]any)
		}
		d[k] = diff
	}
	return d
}

// deltaMeta returns the desired metadata of the delta's leaves.
func deltaMeta(delta, metaDesired map[string]any) map[string]any {
	m := make(map[string]any, len(delta))
	for k, v := range delta {
		mv, ok := metaDesired[k]
		if sub, isObj := v.(map[string]any); isObj {
			if mm, ok := mv.(map[string]any); ok {
				m[k] = deltaMeta(sub, mm)
				continue
			}
		}
		if ok {
			m[k] = mv
		}
	}
	return m
}

// --- encoding ---

// encode returns the stored form of d and the size of its state (desired
// plus reported JSON).
func (d *Document) encode() ([]byte, int) {
	b := make([]byte, 0, 256)
	b = append(b, `{"state":{`...)
	start := len(b)
	b = d.appendSections(b, d.Desired, d.Reported)
	size := len(b) - start
	b = append(b, `},"metadata":{`...)
	b = d.appendSections(b, d.MetaDesired, d.MetaReported)
	b = append(b, `},"version":`...)
	b = strconv.AppendInt(b, d.Version, 10)
	b = append(b, `,"timestamp":`...)
	b = strconv.AppendInt(b, d.Timestamp, 10)
	return append(b, '}'), size
}

// Encode returns the document as it is stored.
func (d *Document) Encode() []byte {
	b, _ := d.encode()
	return b
}

// appendSections appends "desired":...,"reported":... for the sections
// that are present.
func (d *Document) appendSections(b []byte, desired, reported map[string]any) []byte {
	if desired != nil {
		b = append(b, `"desired":`...)
		b = appendObject(b, desired)
	}
	if reported != nil {
		if desired != nil {
			b = append(b, ',')
		}
		b = append(b, `"reported":`...)
		b = appendObject(b, reported)
	}
	return b
}

// appendStateAndMeta appends "state":{...},"metadata":{...},"version":n.
func (d *Document) appendStateAndMeta(b []byte, withDelta bool) []byte {
	b = append(b, `"state":{`...)
	b = d.appendSections(b, d.Desired, d.Reported)
	if withDelta {
		if delta := deltaOf(d.Desired, d.Reported); len(delta) > 0 {
			b = append(b, `,"delta":`...)
			b = appendObject(b, delta)
		}
	}
	b = append(b, `},"metadata":{`...)
	b = d.appendSections(b, d.MetaDesired, d.MetaReported)
	b = append(b, `},"version":`...)
	return strconv.AppendInt(b, d.Version, 10)
}

// GetBody returns the body of .../get/accepted: the whole document with
// its delta, the time of the response and the clientToken.
func (d *Document) GetBody(token string, hasToken bool, now time.Time) []byte {
	b := make([]byte, 0, 512)
	b = append(b, '{')
	b = d.appendStateAndMeta(b, true)
	b = append(b, `,"timestamp":`...)
	b = strconv.AppendInt(b, now.Unix(), 10)
	b = appendToken(b, token, hasToken)
	return append(b, '}')
}

// DeleteBody returns the body of .../delete/accepted.
func DeleteBody(version int64, token string, hasToken bool, now time.Time) []byte {
	b := make([]byte, 0, 64+len(token))
	b = append(b, `{"version":`...)
	b = strconv.AppendInt(b, version, 10)
	b = append(b, `,"timestamp":`...)
	b = strconv.AppendInt(b, now.Unix(), 10)
	b = appendToken(b, token, hasToken)
	return append(b, '}')
}

// acceptedBody is .../update/accepted: only the request's sections (nulls
// included), with their metadata.
func acceptedBody(u *Request, version, ts int64) []byte {
	b := make([]byte, 0, 256)
	b = append(b, `{"state":{`...)
	b = appendRequestSections(b, u, false, ts)
	b = append(b, `},"metadata":{`...)
	b = appendRequestSections(b, u, true, ts)
	b = append(b, `},"version":`...)
	b = strconv.AppendInt(b, version, 10)
	b = append(b, `,"timestamp":`...)
	b = strconv.AppendInt(b, ts, 10)
	b = appendToken(b, u.ClientToken, u.HasToken)
	return append(b, '}')
}

func appendRequestSections(b []byte, u *Request, meta bool, ts int64) []byte {
	section := func(b []byte, name string, m map[string]any, null bool) []byte {
		b = append(b, '"')
		b = append(b, name...)
		b = append(b, `":`...)
		switch {
		case meta && null:
			return appendValue(b, metaLeaf(ts))
		case meta:
			return appendValue(b, metaOf(m, ts))
		case null:
			return append(b, "null"...)
		}
		return appendObject(b, m)
	}
	if u.hasDesired {
		b = section(b, "desired", u.Desired, u.DesiredNull)
	}
	if u.hasReported {
		if u.hasDesired {
			b = append(b, ',')
		}
		b = section(b, "reported", u.Reported, u.ReportedNull)
	}
	return b
}

func deltaBody(delta, meta map[string]any, version, ts int64, u *Request) []byte {
	b := make([]byte, 0, 256)
	b = append(b, `{"state":`...)
	b = appendObject(b, delta)
	b = append(b, `,"metadata":`...)
	b = appendObject(b, meta)
	b = append(b, `,"version":`...)
	b = strconv.AppendInt(b, version, 10)
	b = append(b, `,"timestamp":`...)
	b = strconv.AppendInt(b, ts, 10)
	b = appendToken(b, u.ClientToken, u.HasToken)
	return append(b, '}')
}

// documentsBody is .../update/documents: the whole document before
// (null when the update created the shadow) and after.
func documentsBody(prev, cur *Document, ts int64, u *Request) []byte {
	b := make([]byte, 0, 512)
	b = append(b, `{"previous":`...)
	if prev == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '{')
		b = prev.appendStateAndMeta(b, false)
		b = append(b, '}')
	}
	b = append(b, `,"current":{`...)
	b = cur.appendStateAndMeta(b, false)
	b = append(b, `},"timestamp":`...)
	b = strconv.AppendInt(b, ts, 10)
	b = appendToken(b, u.ClientToken, u.HasToken)
	return append(b, '}')
}

// ParseDocument reads a document in its stored form.
func ParseDocument(b []byte) (*Document, error) {
	v, err := decode(b)
	if err != nil {
		return nil, err
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, errStored("not an object")
	}
	d := &Document{}
	state, _ := obj["state"].(map[string]any)
	meta, _ := obj["metadata"].(map[string]any)
	d.Desired, _ = state["desired"].(map[string]any)
	d.Reported, _ = state["reported"].(map[string]any)
	d.MetaDesired, _ = meta["desired"].(map[string]any)
	d.MetaReported, _ = meta["reported"].(map[string]any)
	if d.Desired != nil && d.MetaDesired == nil {
		d.MetaDesired = map[string]any{}
	}
	if d.Reported != nil && d.MetaReported == nil {
		d.MetaReported = map[string]any{}
	}
	n, _ := obj["version"].(json.Number)
	if d.Version, err = strconv.ParseInt(string(n), 10, 64); err != nil {
		return nil, errStored("bad version")
	}
	n, _ = obj["timestamp"].(json.Number)
	d.Timestamp, _ = strconv.ParseInt(string(n), 10, 64)
	return d, nil
}

type errStored string

func (e errStored) Error() string { return "shadow: stored document: " + string(e) }
