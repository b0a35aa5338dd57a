package shadow

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
)

var t0 = time.Unix(1_700_000_000, 0)

// jsonEq compares JSON texts by value.
func jsonEq(t *testing.T, what, got, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal([]byte(got), &g); err != nil {
		t.Fatalf("%s: not JSON: %v\n%s", what, err, got)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("%s: bad want: %v", what, err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("%s:\n got %s\nwant %s", what, got, want)
	}
}

// apply runs updates in order (update i at t0+i seconds) and fails on a
// rejection.
func apply(t *testing.T, updates ...string) (*Document, *Applied) {
	t.Helper()
	var doc *Document
	var a *Applied
	for i, u := range updates {
		req, err := ParseUpdate([]byte(u), 0)
		if err != nil {
			t.Fatalf("update %d %.80s: parse: %v", i, u, err)
		}
		a, err = Apply(doc, 0, req, t0.Add(time.Duration(i)*time.Second), 0)
		if err != nil {
			t.Fatalf("update %d %.80s: %v", i, u, err)
		}
		doc = a.Doc
	}
	return doc, a
}

func stateJSON(d *Document) string {
	return string(appendSections(d.Desired, d.Reported))
}

func metaJSON(d *Document) string {
	return string(appendSections(d.MetaDesired, d.MetaReported))
}

func appendSections(desired, reported map[string]any) []byte {
	b := []byte{'{'}
	b = (&Document{}).appendSections(b, desired, reported)
	return append(b, '}')
}

const (
	s0 = 1_700_000_000
	s1 = s0 + 1
	s2 = s0 + 2
)

func TestMerge(t *testing.T) {
	tests := []struct {
		name    string
		updates []string
		state   string
		meta    string
	}{
		{
			name:    "first update creates",
			updates: []string{`{"state":{"desired":{"color":"red","on":true}}}`},
			state:   `{"desired":{"color":"red","on":true}}`,
			meta:    `{"desired":{"color":{"timestamp":1700000000},"on":{"timestamp":1700000000}}}`,
		},
		{
			name: "only named fields change",
			updates: []string{
				`{"state":{"reported":{"a":1,"b":2}}}`,
				`{"state":{"reported":{"b":3}}}`,
			},
			state: `{"reported":{"a":1,"b":3}}`,
			meta:  `{"reported":{"a":{"timestamp":1700000000},"b":{"timestamp":1700000001}}}`,
		},
		{
			name: "objects merge recursively",
			updates: []string{
				`{"state":{"desired":{"light":{"color":"red","level":5}}}}`,
				`{"state":{"desired":{"light":{"level":7,"mode":{"x":1}}}}}`,
			},
			state: `{"desired":{"light":{"color":"red","level":7,"mode":{"x":1}}}}`,
			meta: `{"desired":{"light":{"color":{"timestamp":1700000000},"level":{"timestamp":1700000001},
				"mode":{"x":{"timestamp":1700000001}}}}}`,
		},
		{
			name: "arrays replace whole",
			updates: []string{
				`{"state":{"reported":{"list":[1,2,3]}}}`,
				`{"state":{"reported":{"list":[4]}}}`,
			},
			state: `{"reported":{"list":[4]}}`,
			meta:  `{"reported":{"list":[{"timestamp":1700000001}]}}`,
		},
		{
			name: "a scalar replaces an object and back",
			updates: []string{
				`{"state":{"desired":{"x":{"a":1}}}}`,
				`{"state":{"desired":{"x":5}}}`,
				`{"state":{"desired":{"x":{"b":2}}}}`,
			},
			state: `{"desired":{"x":{"b":2}}}`,
			meta:  `{"desired":{"x":{"b":{"timestamp":1700000002}}}}`,
		},
		{
			name:    "array metadata mirrors objects in arrays",
			updates: []string{`{"state":{"reported":{"l":[{"a":1},2]}}}`},
			state:   `{"reported":{"l":[{"a":1},2]}}`,
			meta:    `{"reported":{"l":[{"a":{"timestamp":1700000000}},{"timestamp":1700000000}]}}`,
		},
		{
			name:    "both sections in one request",
			updates: []string{`{"state":{"desired":{"a":1},"reported":{"a":2}}}`},
			state:   `{"desired":{"a":1},"reported":{"a":2}}`,
			meta:    `{"desired":{"a":{"timestamp":1700000000}},"reported":{"a":{"timestamp":1700000000}}}`,
		},
		{
			name:    "empty state is a no-op change",
			updates: []string{`{"state":{"reported":{"a":1}}}`, `{"state":{}}`},
			state:   `{"reported":{"a":1}}`,
			meta:    `{"reported":{"a":{"timestamp":1700000000}}}`,
		},
		{
			name:    "unicode and escapes survive",
			updates: []string{`{"state":{"reported":{"s":"é\"\\\n\u0001"}}}`},
			state:   `{"reported":{"s":"é\"\\\n\u0001"}}`,
			meta:    `{"reported":{"s":{"timestamp":1700000000}}}`,
		},
		{
			name:    "big numbers are kept exactly",
			updates: []string{`{"state":{"reported":{"n":12345678901234567890123,"f":1.50}}}`},
			state:   `{"reported":{"n":12345678901234567890123,"f":1.50}}`,
			meta:    `{"reported":{"f":{"timestamp":1700000000},"n":{"timestamp":1700000000}}}`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, _ := apply(t, tc.updates...)
			jsonEq(t, "state", stateJSON(d), tc.state)
			jsonEq(t, "metadata", metaJSON(d), tc.meta)
			if tc.name == "big numbers are kept exactly" && !strings.Contains(stateJSON(d), "12345678901234567890123") {
				t.Errorf("number not kept verbatim: %s", stateJSON(d))
			}
		})
	}
}

func TestDeleteByNull(t *testing.T) {
	tests := []struct {
		name    string
		updates []string
		state   string
		meta    string
	}{
		{
			name:    "null deletes a key",
			updates: []string{`{"state":{"desired":{"a":1,"b":2}}}`, `{"state":{"desired":{"a":null}}}`},
			state:   `{"desired":{"b":2}}`,
			meta:    `{"desired":{"b":{"timestamp":1700000000}}}`,
		},
		{
			name:    "null deletes a nested key",
			updates: []string{`{"state":{"desired":{"o":{"a":1,"b":2}}}}`, `{"state":{"desired":{"o":{"a":null}}}}`},
			state:   `{"desired":{"o":{"b":2}}}`,
			meta:    `{"desired":{"o":{"b":{"timestamp":1700000000}}}}`,
		},
		{
			name:    "null of a missing key is harmless",
			updates: []string{`{"state":{"desired":{"a":1}}}`, `{"state":{"desired":{"zz":null}}}`},
			state:   `{"desired":{"a":1}}`,
			meta:    `{"desired":{"a":{"timestamp":1700000000}}}`,
		},
		{
			name:    "nulls inside a new object are not stored",
			updates: []string{`{"state":{"reported":{"o":{"a":null,"b":1}}}}`},
			state:   `{"reported":{"o":{"b":1}}}`,
			meta:    `{"reported":{"o":{"b":{"timestamp":1700000000}}}}`,
		},
		{
			name:    "nulls inside arrays are values",
			updates: []string{`{"state":{"reported":{"l":[null,1]}}}`},
			state:   `{"reported":{"l":[null,1]}}`,
			meta:    `{"reported":{"l":[{"timestamp":1700000000},{"timestamp":1700000000}]}}`,
		},
		{
			name: "null section deletes desired",
			updates: []string{
				`{"state":{"desired":{"a":1},"reported":{"a":2}}}`,
				`{"state":{"desired":null}}`,
			},
			state: `{"reported":{"a":2}}`,
			meta:  `{"reported":{"a":{"timestamp":1700000000}}}`,
		},
		{
			name: "null section deletes reported",
			updates: []string{
				`{"state":{"desired":{"a":1},"reported":{"a":2}}}`,
				`{"state":{"reported":null}}`,
			},
			state: `{"desired":{"a":1}}`,
			meta:  `{"desired":{"a":{"timestamp":1700000000}}}`,
		},
		{
			name:    "deleting the last key removes the section",
			updates: []string{`{"state":{"desired":{"a":1}}}`, `{"state":{"desired":{"a":null}}}`},
			state:   `{}`,
			meta:    `{}`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, _ := apply(t, tc.updates...)
			jsonEq(t, "state", stateJSON(d), tc.state)
			jsonEq(t, "metadata", metaJSON(d), tc.meta)
		})
	}
}

func TestDelta(t *testing.T) {
	tests := []struct {
		name    string
		updates []string
		delta   string // "" = no delta
		meta    string
	}{
		{
			name:    "desired only",
			updates: []string{`{"state":{"desired":{"color":"red"}}}`},
			delta:   `{"color":"red"}`,
			meta:    `{"color":{"timestamp":1700000000}}`,
		},
		{
			name:    "equal values are not in the delta",
			updates: []string{`{"state":{"desired":{"a":1,"b":2},"reported":{"a":1,"b":3}}}`},
			delta:   `{"b":2}`,
			meta:    `{"b":{"timestamp":1700000000}}`,
		},
		{
			name:    "reported-only keys are not in the delta",
			updates: []string{`{"state":{"desired":{"a":1},"reported":{"a":1,"extra":true}}}`},
		},
		{
			name: "objects recursively",
			updates: []string{
				`{"state":{"reported":{"light":{"color":"red","level":5}}}}`,
				`{"state":{"desired":{"light":{"color":"red","level":7}}}}`,
			},
			delta: `{"light":{"level":7}}`,
			meta:  `{"light":{"level":{"timestamp":1700000001}}}`,
		},
		{
			name: "arrays whole",
			updates: []string{
				`{"state":{"reported":{"l":[1,2,3]}}}`,
				`{"state":{"desired":{"l":[1,2,4]}}}`,
			},
			delta: `{"l":[1,2,4]}`,
			meta:  `{"l":[{"timestamp":1700000001},{"timestamp":1700000001},{"timestamp":1700000001}]}`,
		},
		{
			name:    "equal arrays",
			updates: []string{`{"state":{"desired":{"l":[1,{"a":2}]},"reported":{"l":[1,{"a":2}]}}}`},
		},
		{
			name:    "numbers compare by value",
			updates: []string{`{"state":{"desired":{"n":1.0,"m":1e2},"reported":{"n":1,"m":100}}}`},
		},
		{
			name:    "types differ",
			updates: []string{`{"state":{"desired":{"n":"1","o":{"a":1}},"reported":{"n":1,"o":5}}}`},
			delta:   `{"n":"1","o":{"a":1}}`,
			meta:    `{"n":{"timestamp":1700000000},"o":{"a":{"timestamp":1700000000}}}`,
		},
		{
			name: "device catches up",
			updates: []string{
				`{"state":{"desired":{"a":1}}}`,
				`{"state":{"reported":{"a":1}}}`,
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, a := apply(t, tc.updates...)
			got := deltaOf(d.Desired, d.Reported)
			if tc.delta == "" {
				if len(got) != 0 {
					t.Errorf("delta: got %s; want none", appendObject(nil, got))
				}
				if a.Delta != nil {
					t.Errorf("delta message %s; want none", a.Delta)
				}
				if strings.Contains(string(d.GetBody("", false, t0)), `"delta"`) {
					t.Errorf("get body has a delta: %s", d.GetBody("", false, t0))
				}
				return
			}
			jsonEq(t, "delta", string(appendObject(nil, got)), tc.delta)
			if a.Delta == nil {
				t.Fatal("no delta message")
			}
			var msg struct {
				State    json.RawMessage `json:"state"`
				Metadata json.RawMessage `json:"metadata"`
				Version  int64           `json:"version"`
			}
			if err := json.Unmarshal(a.Delta, &msg); err != nil {
				t.Fatal(err)
			}
			jsonEq(t, "delta message state", string(msg.State), tc.delta)
			jsonEq(t, "delta message metadata", string(msg.Metadata), tc.meta)
			if msg.Version != d.Version {
				t.Errorf("delta message version %d; want %d", msg.Version, d.Version)
			}
		})
	}
}

func TestVersioning(t *testing.T) {
	d, _ := apply(t, `{"state":{"reported":{"a":1}}}`, `{"state":{"reported":{"a":1}}}`, `{"state":{}}`)
	if d.Version != 3 {
		t.Errorf("version after 3 updates: %d; want 3", d.Version)
	}
	if d.Timestamp != s2 {
		t.Errorf("timestamp %d; want %d", d.Timestamp, s2)
	}
	// A matching version is accepted; another is a 409.
	req, _ := ParseUpdate([]byte(`{"state":{"reported":{"a":2}},"version":3}`), 0)
	a, err := Apply(d, 0, req, t0, 0)
	if err != nil || a.Doc.Version != 4 {
		t.Fatalf("update with the current version: %v", err)
	}
	for _, v := range []string{"2", "5", "0"} {
		req, _ := ParseUpdate([]byte(`{"state":{"reported":{"a":3}},"version":`+v+`,"clientToken":"t"}`), 0)
		if _, err := Apply(a.Doc, 0, req, t0, 0); err != ErrVersionConflict {
			t.Errorf("version %s against 4: got %v; want 409", v, err)
		}
	}
	// The document that was replaced is not changed.
	if d.Version != 3 || d.Reported["a"] != json.Number("1") {
		t.Errorf("the previous document changed: %+v", d)
	}
	// A shadow re-created after a delete continues from the deleted one.
	req, _ = ParseUpdate([]byte(`{"state":{"desired":{"x":1}}}`), 0)
	a, err = Apply(nil, 9, req, t0, 0)
	if err != nil || a.Doc.Version != 10 {
		t.Fatalf("re-created: version %v, %v; want 10", a, err)
	}
	req, _ = ParseUpdate([]byte(`{"state":{"desired":{"x":1}},"version":9}`), 0)
	if _, err := Apply(nil, 9, req, t0, 0); err != nil {
		t.Errorf("re-create naming the deleted version: %v", err)
	}
}

func TestResponses(t *testing.T) {
	d, _ := apply(t, `{"state":{"desired":{"a":1,"b":{"c":2}},"reported":{"a":0}}}`)
	req, perr := ParseUpdate([]byte(`{"state":{"desired":{"a":null,"b":{"c":3}},"reported":null},"clientToken":"tok-1"}`), 0)
	if perr != nil {
		t.Fatal(perr)
	}
	a, err := Apply(d, 0, req, t0.Add(time.Second), 0)
	if err != nil {
		t.Fatal(err)
	}
	jsonEq(t, "accepted", string(a.Accepted), `{
		"state":{"desired":{"a":null,"b":{"c":3}},"reported":null},
		"metadata":{"desired":{"a":{"timestamp":1700000001},"b":{"c":{"timestamp":1700000001}}},"reported":{"timestamp":1700000001}},
		"version":2,"timestamp":1700000001,"clientToken":"tok-1"}`)
	jsonEq(t, "delta", string(a.Delta), `{"state":{"b":{"c":3}},"metadata":{"b":{"c":{"timestamp":1700000001}}},
		"version":2,"timestamp":1700000001,"clientToken":"tok-1"}`)
	jsonEq(t, "documents", string(a.Documents), `{
		"previous":{"state":{"desired":{"a":1,"b":{"c":2}},"reported":{"a":0}},
			"metadata":{"desired":{"a":{"timestamp":1700000000},"b":{"c":{"timestamp":1700000000}}},"reported":{"a":{"timestamp":1700000000}}},
			"version":1},
		"current":{"state":{"desired":{"b":{"c":3}}},
			"metadata":{"desired":{"b":{"c":{"timestamp":1700000001}}}},"version":2},
		"timestamp":1700000001,"clientToken":"tok-1"}`)
	jsonEq(t, "get", string(a.Doc.GetBody("g", true, t0.Add(5*time.Second))), `{
		"state":{"desired":{"b":{"c":3}},"delta":{"b":{"c":3}}},
		"metadata":{"desired":{"b":{"c":{"timestamp":1700000001}}}},
		"version":2,"timestamp":1700000005,"clientToken":"g"}`)
	jsonEq(t, "delete", string(DeleteBody(2, "", false, t0)), `{"version":2,"timestamp":1700000000}`)
	jsonEq(t, "error", string(ErrorBody(ErrVersionConflict, "x", true, t0)),
		`{"code":409,"message":"Version conflict","timestamp":1700000000,"clientToken":"x"}`)

	// Creation: documents.previous is null; no token, no clientToken.
	_, a = apply(t, `{"state":{"reported":{"a":1}}}`)
	jsonEq(t, "documents on create", string(a.Documents), `{"previous":null,
		"current":{"state":{"reported":{"a":1}},"metadata":{"reported":{"a":{"timestamp":1700000000}}},"version":1},
		"timestamp":1700000000}`)
	if strings.Contains(string(a.Accepted), "clientToken") {
		t.Errorf("accepted has a clientToken the request did not carry: %s", a.Accepted)
	}
}

func TestStoredRoundTrip(t *testing.T) {
	d, _ := apply(t,
		`{"state":{"desired":{"a":[1,{"b":null}],"o":{"x":"y"}},"reported":{"n":1.5e3}}}`,
		`{"state":{"desired":{"o":{"z":true}}}}`)
	back, err := ParseDocument(d.Encode())
	if err != nil {
		t.Fatal(err)
	}
	if string(back.Encode()) != string(d.Encode()) {
		t.Errorf("round trip:\n got %s\nwant %s", back.Encode(), d.Encode())
	}
	// Updating the reloaded document works as on the original.
	req, _ := ParseUpdate([]byte(`{"state":{"desired":{"o":{"x":null}}}}`), 0)
	a1, err1 := Apply(d, 0, req, t0, 0)
	a2, err2 := Apply(back, 0, req, t0, 0)
	if err1 != nil || err2 != nil || string(a1.Stored) != string(a2.Stored) {
		t.Errorf("update of a reloaded document differs:\n%s\n%s", a1.Stored, a2.Stored)
	}
	for _, bad := range []string{``, `[]`, `{"version":"x"}`, `{"state":{}}`} {
		if _, err := ParseDocument([]byte(bad)); err == nil {
			t.Errorf("ParseDocument(%q): no error", bad)
		}
	}
}

func TestRejections(t *testing.T) {
	deep := `{"state":{"desired":{"a":{"b":{"c":{"d":{"e":{"f":{"g":1}}}}}}}}}`
	okDeep := `{"state":{"desired":{"a":{"b":{"c":{"d":{"e":{"f":1}}}}}}}}`
	tests := []struct {
		payload string
		want    *Error
		token   string
	}{
		{`{`, ErrInvalidJSON, ""},
		{`[1]`, ErrInvalidJSON, ""},
		{`"x"`, ErrInvalidJSON, ""},
		{`{} {}`, ErrInvalidJSON, ""},
		{"{\"state\":{\"desired\":{\"a\":\"\xff\"}}}", ErrEncoding, ""},
		{`{"clientToken":"t"}`, ErrMissingState, "t"},
		{`{"state":null,"clientToken":"t"}`, ErrStateNotObject, "t"},
		{`{"state":[1]}`, ErrStateNotObject, ""},
		{`{"state":{"desired":5}}`, ErrDesiredNotObj, ""},
		{`{"state":{"reported":[]}}`, ErrReportedNotObj, ""},
		{`{"state":{"delta":{}}}`, ErrInvalidNode, ""},
		{`{"state":{"desired":{}},"version":"3"}`, ErrInvalidVersion, ""},
		{`{"state":{"desired":{}},"version":-1}`, ErrInvalidVersion, ""},
		{`{"state":{"desired":{}},"version":1.5}`, ErrInvalidVersion, ""},
		{`{"state":{"desired":{}},"clientToken":5}`, ErrInvalidToken, ""},
		{`{"state":{"desired":{}},"clientToken":"` + strings.Repeat("x", 65) + `"}`, ErrInvalidToken, ""},
		{deep, ErrTooDeep, ""},
		{`{"state":{"desired":{"l":[[[[[[1]]]]]]}}}`, ErrTooDeep, ""},
		{`{"state":{"desired":{"big":"` + strings.Repeat("x", maxRequest(DefaultMaxSize)) + `"}}}`, ErrTooLarge, ""},
	}
	for _, tc := range tests {
		req, err := ParseUpdate([]byte(tc.payload), 0)
		if err != tc.want {
			t.Errorf("ParseUpdate(%.60s): got %v; want %v", tc.payload, err, tc.want)
			continue
		}
		if req.ClientToken != tc.token {
			t.Errorf("ParseUpdate(%.60s): token %q; want %q", tc.payload, req.ClientToken, tc.token)
		}
	}
	if _, err := ParseUpdate([]byte(okDeep), 0); err != nil {
		t.Errorf("6 levels: %v", err)
	}

	// The state limit applies to the resulting document.
	big := `{"state":{"reported":{"s":"` + strings.Repeat("x", 5000) + `"}}}`
	d, _ := apply(t, big)
	req, _ := ParseUpdate([]byte(`{"state":{"desired":{"s":"`+strings.Repeat("y", 5000)+`"}}}`), 0)
	if _, err := Apply(d, 0, req, t0, 0); err != ErrTooLarge {
		t.Errorf("state over 8 KiB: got %v; want 413", err)
	}
	if _, err := Apply(d, 0, req, t0, 16*1024); err != nil {
		t.Errorf("state under a 16 KiB limit: %v", err)
	}

	// Get and delete payloads.
	for _, p := range []string{``, `{}`, `{"clientToken":"a"}`, `{"other":1}`} {
		if _, err := ParseRequest([]byte(p)); err != nil {
			t.Errorf("ParseRequest(%q): %v", p, err)
		}
	}
	for p, want := range map[string]*Error{`{`: ErrInvalidJSON, `{"clientToken":1}`: ErrInvalidToken, "\xff": ErrEncoding} {
		if _, err := ParseRequest([]byte(p)); err != want {
			t.Errorf("ParseRequest(%q): %v; want %v", p, err, want)
		}
	}
}

func TestErrorKinds(t *testing.T) {
	for _, e := range []*Error{ErrInvalidJSON, ErrVersionConflict, ErrTooLarge, ErrTooManyRequests, ErrNoShadow("t", ""), ErrInternal} {
		if e.Kind().String() == "" {
			t.Errorf("%v has no kind", e)
		}
	}
	if got := ErrNoShadow("t", "").Message; got != "No shadow exists with name: 't'" {
		t.Errorf("classic 404 message %q", got)
	}
}

func TestNumbersEqual(t *testing.T) {
	eq := [][2]string{{"1", "1.0"}, {"100", "1e2"}, {"0", "-0.0"}, {"1.5", "15e-1"}, {"0.001", "1E-3"}, {"-2", "-2.00"}}
	ne := [][2]string{{"1", "2"}, {"1", "-1"}, {"10", "1"}, {"9007199254740993", "9007199254740992"}, {"1e99999999999999999", "1e99999999999999998"}}
	for _, p := range eq {
		if !numbersEqual(p[0], p[1]) {
			t.Errorf("%s == %s: false", p[0], p[1])
		}
	}
	for _, p := range ne {
		if numbersEqual(p[0], p[1]) {
			t.Errorf("%s != %s: true", p[0], p[1])
		}
	}
}
