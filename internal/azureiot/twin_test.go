package azureiot

import (
	"encoding/json"
	"reflect"
	"testing"
)

func TestTwinFromShadow(t *testing.T) {
	got, err := TwinFromShadow([]byte(`{"state":{"desired":{"fw":"2.0"},"reported":{"fw":"1.0"},"delta":{"fw":"2.0"}},"metadata":{},"version":7,"timestamp":1}`))
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"desired":{"$version":7,"fw":"2.0"},"reported":{"$version":7,"fw":"1.0"}}`; string(got) != want {
		t.Errorf("TwinFromShadow = %s; want %s", got, want)
	}
	empty, err := TwinFromShadow(nil)
	if err != nil || string(empty) != `{"desired":{"$version":0},"reported":{"$version":0}}` {
		t.Errorf("TwinFromShadow(nil) = %s, %v", empty, err)
	}
}

func TestShadowReportedUpdate(t *testing.T) {
	got, err := ShadowReportedUpdate([]byte(`{"temp":21,"gone":null,"$version":3}`))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]map[string]map[string]any
	if err := json.Unmarshal(got, &m); err != nil {
		t.Fatal(err)
	}
	if want := map[string]any{"temp": 21.0, "gone": nil}; !reflect.DeepEqual(m["state"]["reported"], want) {
		t.Errorf("ShadowReportedUpdate = %s", got)
	}
	for _, bad := range []string{`[]`, `null`, `"x"`, `{`} {
		if _, err := ShadowReportedUpdate([]byte(bad)); err == nil {
			t.Errorf("ShadowReportedUpdate(%s) accepted", bad)
		}
	}
}

func TestDesiredPatch(t *testing.T) {
	docs := `{"previous":{"state":{"desired":{"a":1,"b":{"x":1},"c":3}},"version":4},
		"current":{"state":{"desired":{"a":1,"b":{"x":2},"d":"new"}},"version":5},"timestamp":1}`
	patch, v, ok := DesiredPatch([]byte(docs))
	if !ok || v != 5 {
		t.Fatalf("DesiredPatch = %s, %d, %v", patch, v, ok)
	}
	if want := `{"$version":5,"b":{"x":2},"c":null,"d":"new"}`; string(patch) != want {
		t.Errorf("DesiredPatch = %s; want %s", patch, want)
	}
	// A reported-only update changes nothing desired.
	same := `{"previous":{"state":{"desired":{"a":1},"reported":{"r":1}},"version":4},"current":{"state":{"desired":{"a":1},"reported":{"r":2}},"version":5}}`
	if p, _, ok := DesiredPatch([]byte(same)); ok {
		t.Errorf("DesiredPatch of a reported-only change = %s; want none", p)
	}
	if _, _, ok := DesiredPatch([]byte(`not json`)); ok {
		t.Error("DesiredPatch accepted junk")
	}
}
