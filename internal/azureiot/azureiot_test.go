package azureiot

import (
	"errors"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseUsername(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Username
		err  error
	}{
		{in: "hub.example.com/dev1/?api-version=2021-04-12", want: Username{Host: "hub.example.com", DeviceID: "dev1", APIVersion: "2021-04-12"}},
		{in: "h/dev-1.x/?api-version=2020-09-30&DeviceClientType=azure-iot-device%2F1.18&model-id=dtmi:x;1", want: Username{Host: "h", DeviceID: "dev-1.x", APIVersion: "2020-09-30"}},
		{in: "sensor-1", err: ErrNotAzure},
		{in: "h/dev1/?x=1", err: ErrBadUsername},                 // no api-version
		{in: "h/dev1/mod1/?api-version=1", err: ErrBadUsername},  // module identity
		{in: "h/dev+1/?api-version=1", err: ErrBadUsername},      // not a device id
		{in: "/dev1/?api-version=1", err: ErrBadUsername},        // no host
		{in: "h/dev1/?api-version=1&%zz=1", err: ErrBadUsername}, // bad escape
		{in: "h/" + strings.Repeat("d", 200) + "/?api-version=1", err: ErrBadUsername},
	} {
		got, err := ParseUsername(tc.in)
		if !errors.Is(err, tc.err) {
			t.Errorf("ParseUsername(%q) error = %v; want %v", tc.in, err, tc.err)
			continue
		}
		if err == nil && (got.Host != tc.want.Host || got.DeviceID != tc.want.DeviceID || got.APIVersion != tc.want.APIVersion) {
			t.Errorf("ParseUsername(%q) = %+v; want %+v", tc.in, got, tc.want)
		}
	}
}

func TestSAS(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	other := []byte("another key, another device.....")
	now := time.Unix(1_800_000_000, 0)
	tok := NewSAS(key, "hub.example.com", "dev1", now.Add(time.Hour))
	s, err := ParseSAS(tok)
	if err != nil {
		t.Fatalf("ParseSAS(%q): %v", tok, err)
	}
	if s.Resource != "hub.example.com/devices/dev1" {
		t.Errorf("Resource = %q", s.Resource)
	}
	for _, tc := range []struct {
		name         string
		host, device string
		keys         [][]byte
		at           time.Time
		want         error
	}{
		{"good", "hub.example.com", "dev1", [][]byte{key}, now, nil},
		{"secondary key", "HUB.example.com", "dev1", [][]byte{other, key}, now, nil},
		{"other device", "hub.example.com", "dev2", [][]byte{key}, now, ErrWrongDevice},
		{"other host", "evil.example.com", "dev1", [][]byte{key}, now, ErrWrongDevice},
		{"wrong key", "hub.example.com", "dev1", [][]byte{other}, now, ErrBadSignature},
		{"no key", "hub.example.com", "dev1", nil, now, ErrBadSignature},
		{"expired", "hub.example.com", "dev1", [][]byte{key}, now.Add(time.Hour), ErrExpired},
	} {
		if err := s.Check(tc.host, tc.device, tc.keys, tc.at); !errors.Is(err, tc.want) {
			t.Errorf("%s: Check = %v; want %v", tc.name, err, tc.want)
		}
	}
	// A token whose expiry was changed no longer verifies.
	forged := strings.Replace(tok, "se="+s.ExpiryRaw, "se=9"+s.ExpiryRaw, 1)
	f, err := ParseSAS(forged)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Check("hub.example.com", "dev1", [][]byte{key}, now); !errors.Is(err, ErrBadSignature) {
		t.Errorf("forged expiry: Check = %v; want ErrBadSignature", err)
	}
}

func TestParseSASMalformed(t *testing.T) {
	for _, in := range []string{
		"",
		"sr=a&sig=b&se=1",
		"SharedAccessSignature sr=a&se=1",
		"SharedAccessSignature sr=a&sig=AAAA&se=1",                 // short signature
		"SharedAccessSignature sr=a&sr=b&sig=" + sig32() + "&se=1", // duplicate
		"SharedAccessSignature sr=a&sig=" + sig32() + "&se=x",
		"SharedAccessSignature sr=%zz&sig=" + sig32() + "&se=1",
		"SharedAccessSignature sr=a&sig=" + sig32() + "&se=1&foo=bar",
		"SharedAccessSignature " + strings.Repeat("x", MaxTokenLength),
	} {
		if _, err := ParseSAS(in); !errors.Is(err, ErrBadToken) {
			t.Errorf("ParseSAS(%q) = %v; want ErrBadToken", in, err)
		}
	}
}

func sig32() string { return url.QueryEscape("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=") }

func TestPropertyBag(t *testing.T) {
	ps, err := ParsePropertyBag("%24.ct=application%2Fjson&%24.ce=utf-8&temp%20alert=high+1&&flag")
	if err != nil {
		t.Fatal(err)
	}
	want := []Property{{"$.ct", "application/json"}, {"$.ce", "utf-8"}, {"temp alert", "high+1"}, {"flag", ""}}
	if !reflect.DeepEqual(ps, want) {
		t.Errorf("ParsePropertyBag = %q; want %q", ps, want)
	}
	enc := EncodePropertyBag(want)
	back, err := ParsePropertyBag(enc)
	if err != nil || !reflect.DeepEqual(back, want) {
		t.Errorf("round trip of %q = %q, %v", enc, back, err)
	}
	for _, bad := range []string{"a=%zz", "%g1=x", "=v", "a=%", strings.Repeat("k=v&", MaxProperties+1)} {
		if _, err := ParsePropertyBag(bad); !errors.Is(err, ErrBadPropertyBag) {
			t.Errorf("ParsePropertyBag(%q) = %v; want ErrBadPropertyBag", bad, err)
		}
	}
}

func TestTopics(t *testing.T) {
	for _, tc := range []struct {
		in       string
		dev, bag string
		ok       bool
	}{
		{"devices/d1/messages/events/", "d1", "", true},
		{"devices/d1/messages/events", "d1", "", true},
		{"devices/d1/messages/events/a=1&%24.ct=x", "d1", "a=1&%24.ct=x", true},
		{"devices/d1/messages/devicebound/", "", "", false},
		{"things/d1/telemetry", "", "", false},
		{"devices//messages/events/", "", "", false},
	} {
		dev, bag, ok := EventsTopic(tc.in)
		if dev != tc.dev || bag != tc.bag || ok != tc.ok {
			t.Errorf("EventsTopic(%q) = %q, %q, %v; want %q, %q, %v", tc.in, dev, bag, ok, tc.dev, tc.bag, tc.ok)
		}
	}
	for _, tc := range []struct {
		in   string
		want Request
		ok   bool
	}{
		{"$iothub/twin/GET/?$rid=1", Request{Kind: TwinGet, RID: "1"}, true},
		{"$iothub/twin/PATCH/properties/reported/?$rid=abc&$version=3", Request{Kind: TwinReported, RID: "abc"}, true},
		{"$iothub/methods/res/200/?$rid=7", Request{Kind: MethodResult, RID: "7", Status: 200}, true},
		{"$iothub/methods/res/x/?$rid=7", Request{}, false},
		{"$iothub/twin/GET/", Request{}, false},
		{"$iothub/twin/GET/?$rid=", Request{}, false},
		{"$iothub/twin/PATCH/properties/desired/?$rid=1", Request{}, false}, // the cloud's, not a device's
		{"$iothub/twin/res/200/?$rid=1", Request{}, false},
	} {
		got, err := ParseRequest(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseRequest(%q) = %+v, %v; want %+v (ok %v)", tc.in, got, err, tc.want, tc.ok)
		}
	}
	if got, want := TwinResponseTopic(200, "a b", 4), "$iothub/twin/res/200/?$rid=a+b&$version=4"; got != want {
		t.Errorf("TwinResponseTopic = %q; want %q", got, want)
	}
}
