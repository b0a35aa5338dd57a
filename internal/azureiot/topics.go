package azureiot

import (
	"errors"
	"net/url"
	"strconv"
	"strings"
)

// Property is one entry of a property bag: system properties have keys
// starting with "$." ($.mid, $.cid, $.ct, $.ce, $.to, ...), application
// properties any other key.
type Property struct {
	Key, Value string
}

// Limits of a property bag.
const (
	MaxProperties     = 64
	MaxPropertyLength = 1024 // key or value, decoded
)

// ErrBadPropertyBag is returned for a property bag that does not parse.
var ErrBadPropertyBag = errors.New("azureiot: malformed property bag")

// ParsePropertyBag decodes "k1=v1&k2=v2" (URL-encoded keys and values, '+'
// taken literally as the Azure SDKs encode with encodeURIComponent). An
// empty bag has no properties. A key without '=' has an empty value.
func ParsePropertyBag(s string) ([]Property, error) {
	if s == "" {
		return nil, nil
	}
	if len(s) > MaxProperties*(2*MaxPropertyLength+2)*3 {
		return nil, ErrBadPropertyBag
	}
	var out []Property
	for _, f := range strings.Split(s, "&") {
		if f == "" {
			continue // "a=1&&b=2", a trailing '&'
		}
		if len(out) == MaxProperties {
			return nil, ErrBadPropertyBag
		}
		k, v, _ := strings.Cut(f, "=")
		dk, err := url.PathUnescape(k)
		if err != nil || dk == "" || len(dk) > MaxPropertyLength {
			return nil, ErrBadPropertyBag
		}
		dv, err := url.PathUnescape(v)
		if err != nil || len(dv) > MaxPropertyLength {
			return nil, ErrBadPropertyBag
		}
		out = append(out, Property{Key: dk, Value: dv})
	}
	return out, nil
}

// EncodePropertyBag encodes properties as ParsePropertyBag reads them.
func EncodePropertyBag(ps []Property) string {
	var b strings.Builder
	for i, p := range ps {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(escape(p.Key))
		b.WriteByte('=')
		b.WriteString(escape(p.Value))
	}
	return b.String()
}

// escape is JavaScript's encodeURIComponent, except that '$' stays as is
// (the SDKs send "$.mid", and so does IoT Hub).
func escape(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9',
			strings.IndexByte("-_.!~*'()$", c) >= 0:
			b.WriteByte(c)
		default:
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
		}
	}
	return b.String()
}

// EventsTopic splits a device-to-cloud topic,
// "devices/{id}/messages/events/{property bag}", into the device id and
// the raw property bag; ok is false for any other topic.
func EventsTopic(topic string) (deviceID, bag string, ok bool) {
	rest, ok := strings.CutPrefix(topic, "devices/")
	if !ok {
		return "", "", false
	}
	deviceID, rest, ok = strings.Cut(rest, "/")
	if !ok || deviceID == "" {
		return "", "", false
	}
	if rest == "messages/events" {
		return deviceID, "", true
	}
	bag, ok = strings.CutPrefix(rest, "messages/events/")
	if !ok {
		return "", "", false
	}
	return deviceID, bag, true
}

// DeviceBoundTopic is the cloud-to-device topic a message with the given
// properties is delivered on.
func DeviceBoundTopic(deviceID string, ps []Property) string {
	return "devices/" + deviceID + "/messages/devicebound/" + EncodePropertyBag(ps)
}

// DeviceBoundFilter is the filter the SDKs subscribe to for C2D messages.
func DeviceBoundFilter(deviceID string) string {
	return "devices/" + deviceID + "/messages/devicebound/#"
}

// TelemetryTopic is the Mote topic a device's Azure telemetry goes to.
func TelemetryTopic(thing string) string { return "things/" + thing + "/telemetry" }

// IsIoTHub reports whether a topic or filter is one of the per-connection
// "$iothub/..." topics.
func IsIoTHub(topic string) bool { return strings.HasPrefix(topic, "$iothub/") }

// Request kinds of "$iothub/..." publishes from a device.
const (
	TwinGet      = "twin-get"
	TwinReported = "twin-reported"
	MethodResult = "method-result"
)

// Request is a parsed "$iothub/..." publish from a device.
type Request struct {
	Kind   string
	RID    string // $rid
	Status int    // MethodResult: the status the device answered
}

// ErrBadIoTHubTopic is returned for a "$iothub/..." topic a device may not
// publish on or that does not parse.
var ErrBadIoTHubTopic = errors.New("azureiot: unsupported or malformed $iothub topic")

// ParseRequest parses the "$iothub/..." topics a device publishes on:
//
//	$iothub/twin/GET/?$rid={rid}
//	$iothub/twin/PATCH/properties/reported/?$rid={rid}[&...]
//	$iothub/methods/res/{status}/?$rid={rid}
func ParseRequest(topic string) (Request, error) {
	path, query, ok := strings.Cut(topic, "/?")
	if !ok {
		return Request{}, ErrBadIoTHubTopic
	}
	q, err := parseQuery(query)
	if err != nil {
		return Request{}, ErrBadIoTHubTopic
	}
	rid := q.Get("$rid")
	if rid == "" || len(rid) > 128 {
		return Request{}, ErrBadIoTHubTopic
	}
	switch path {
	case "$iothub/twin/GET":
		return Request{Kind: TwinGet, RID: rid}, nil
	case "$iothub/twin/PATCH/properties/reported":
		return Request{Kind: TwinReported, RID: rid}, nil
	}
	if s, ok := strings.CutPrefix(path, "$iothub/methods/res/"); ok {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 || n > 999 {
			return Request{}, ErrBadIoTHubTopic
		}
		return Request{Kind: MethodResult, RID: rid, Status: n}, nil
	}
	return Request{}, ErrBadIoTHubTopic
}

// TwinResponseTopic is "$iothub/twin/res/{status}/?$rid={rid}[&$version={v}]".
func TwinResponseTopic(status int, rid string, version int64) string {
	t := "$iothub/twin/res/" + strconv.Itoa(status) + "/?$rid=" + url.QueryEscape(rid)
	if version > 0 {
		t += "&$version=" + strconv.FormatInt(version, 10)
	}
	return t
}

// DesiredPatchTopic is "$iothub/twin/PATCH/properties/desired/?$version={v}".
func DesiredPatchTopic(version int64) string {
	return "$iothub/twin/PATCH/properties/desired/?$version=" + strconv.FormatInt(version, 10)
}

// MethodTopic is "$iothub/methods/POST/{name}/?$rid={rid}".
func MethodTopic(name, rid string) string {
	return "$iothub/methods/POST/" + name + "/?$rid=" + url.QueryEscape(rid)
}
