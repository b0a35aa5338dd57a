package azureiot

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

func FuzzParseUsername(f *testing.F) {
	for _, s := range []string{"hub/dev1/?api-version=2021-04-12", "h/d/?api-version=1&a=%zz", "thing", "h/d/m/?api-version=1", "/?"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := ParseUsername(s)
		if err != nil {
			return
		}
		if !validDeviceID(u.DeviceID) || u.Host == "" || u.APIVersion == "" {
			t.Fatalf("ParseUsername(%q) accepted %+v", s, u)
		}
	})
}

func FuzzParseSAS(f *testing.F) {
	key := []byte("0123456789abcdef0123456789abcdef")
	f.Add(NewSAS(key, "hub", "dev1", time.Unix(1_900_000_000, 0)))
	f.Add("SharedAccessSignature sr=a&sig=b&se=1")
	f.Add("SharedAccessSignature sr=%zz&sig=&se=-1&skn=x")
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := ParseSAS(s)
		if err != nil {
			return
		}
		if len(tok.Signature) != 32 || tok.Expiry.Unix() <= 0 || tok.ResourceRaw == "" {
			t.Fatalf("ParseSAS(%q) accepted %+v", s, tok)
		}
		// Only the right key signs it.
		if tok.Verify(key) && !tok.Verify(key) {
			t.Fatal("Verify not deterministic")
		}
	})
}

func FuzzPropertyBag(f *testing.F) {
	for _, s := range []string{"", "a=1&b=2", "%24.ct=application%2Fjson", "a=%zz", "&&=&", "k"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ps, err := ParsePropertyBag(s)
		if err != nil {
			return
		}
		back, err := ParsePropertyBag(EncodePropertyBag(ps))
		if err != nil || !reflect.DeepEqual(back, ps) {
			t.Fatalf("round trip of %q: %q != %q (%v)", s, back, ps, err)
		}
	})
}

func FuzzParseRequest(f *testing.F) {
	for _, s := range []string{"$iothub/twin/GET/?$rid=1", "$iothub/methods/res/200/?$rid=2", "$iothub/x/?"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRequest(s)
		if err == nil && r.RID == "" {
			t.Fatalf("ParseRequest(%q) accepted an empty $rid", s)
		}
	})
}

func FuzzTwinDocuments(f *testing.F) {
	f.Add([]byte(`{"previous":{"state":{"desired":{"a":1}},"version":1},"current":{"state":{"desired":{"a":2,"b":null}},"version":2}}`))
	f.Add([]byte(`{"temp":21,"$version":3}`))
	f.Add([]byte(`{"state":{"desired":{"fw":"2"},"reported":{}},"version":7}`))
	f.Add([]byte(`[1,2`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if patch, v, ok := DesiredPatch(b); ok {
			var m map[string]any
			if err := json.Unmarshal(patch, &m); err != nil || m["$version"] != float64(v) {
				t.Fatalf("DesiredPatch(%q) = %s, %d: not an object with $version", b, patch, v)
			}
		}
		if doc, err := ShadowReportedUpdate(b); err == nil && !json.Valid(doc) {
			t.Fatalf("ShadowReportedUpdate(%q) = %s: not JSON", b, doc)
		}
		if doc, err := TwinFromShadow(b); err == nil && !json.Valid(doc) {
			t.Fatalf("TwinFromShadow(%q) = %s: not JSON", b, doc)
		}
	})
}
