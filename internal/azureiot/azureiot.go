// Package azureiot is the pure logic of the Azure IoT Hub device protocol
// as Mote speaks it on its MQTTS port: the MQTT user name
// ("{hostname}/{deviceId}/?api-version=..."), the SAS token in the password
// ("SharedAccessSignature sr=...&sig=...&se=..."), the property bags at the
// end of device-to-cloud and cloud-to-device topics, and the mapping of
// Azure topics to Mote's. It imports nothing of mochi or of the store: the
// broker (internal/broker/azure.go) hooks it in. Every parser here has a
// fuzz target.
package azureiot

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Limits on what the parsers accept; anything longer is refused, so a
// hostile device cannot make the broker allocate much per packet.
const (
	MaxUsernameLength = 1024
	MaxTokenLength    = 2048
	MaxDeviceIDLength = 128 // Azure's own limit
)

// Errors of the parsers. The broker maps them to CONNACK reason codes and
// metric labels.
var (
	ErrNotAzure     = errors.New("azureiot: not an Azure IoT Hub user name")
	ErrBadUsername  = errors.New("azureiot: malformed user name")
	ErrBadToken     = errors.New("azureiot: malformed SAS token")
	ErrBadSignature = errors.New("azureiot: SAS signature does not verify")
	ErrWrongDevice  = errors.New("azureiot: SAS token is for another device or host")
	ErrExpired      = errors.New("azureiot: SAS token expired")
)

// Username is a parsed Azure IoT Hub MQTT user name.
type Username struct {
	Host       string
	DeviceID   string
	APIVersion string
	Query      url.Values // every query parameter, api-version included
}

// ParseUsername parses "{hostname}/{deviceId}/?api-version=...&...". It
// returns ErrNotAzure for a user name that does not have that shape at
// all (a Mote thing name), ErrBadUsername for one that has it but is
// malformed. Module identities ("{hostname}/{deviceId}/{moduleId}/?...")
// are not supported and refused as malformed.
func ParseUsername(s string) (Username, error) {
	i := strings.Index(s, "/?")
	if i < 0 || !strings.Contains(s[:i], "/") {
		return Username{}, ErrNotAzure
	}
	if len(s) > MaxUsernameLength {
		return Username{}, ErrBadUsername
	}
	host, dev, ok := strings.Cut(s[:i], "/")
	if !ok || host == "" || dev == "" || strings.Contains(dev, "/") {
		return Username{}, ErrBadUsername
	}
	if !validDeviceID(dev) || !validHost(host) {
		return Username{}, ErrBadUsername
	}
	q, err := parseQuery(s[i+2:])
	if err != nil {
		return Username{}, ErrBadUsername
	}
	v := q.Get("api-version")
	if v == "" {
		return Username{}, ErrBadUsername
	}
	return Username{Host: host, DeviceID: dev, APIVersion: v, Query: q}, nil
}

// validDeviceID accepts the characters Azure allows in a device id that
// are also safe in a Mote thing name and an MQTT topic level.
func validDeviceID(s string) bool {
	if s == "" || len(s) > MaxDeviceIDLength {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("-.:_", c) >= 0:
		default:
			return false
		}
	}
	return true
}

func validHost(s string) bool {
	if len(s) > 255 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte("/?#&=+", c) >= 0 {
			return false
		}
	}
	return true
}

// SAS is a parsed shared access signature.
type SAS struct {
	// ResourceRaw is the sr field as sent (URL-encoded): the string
	// signed. Resource is it decoded: "{host}/devices/{deviceId}".
	ResourceRaw string
	Resource    string
	Signature   []byte
	ExpiryRaw   string
	Expiry      time.Time
	KeyName     string // skn; device tokens have none
}

const sasPrefix = "SharedAccessSignature "

// IsSAS reports whether a password looks like a SAS token.
func IsSAS(s string) bool { return strings.HasPrefix(s, sasPrefix) }

// ParseSAS parses "SharedAccessSignature sr=...&sig=...&se=...[&skn=...]"
// (fields in any order, each once).
func ParseSAS(s string) (SAS, error) {
	if len(s) > MaxTokenLength || !IsSAS(s) {
		return SAS{}, ErrBadToken
	}
	var t SAS
	seen := map[string]bool{}
	for _, f := range strings.Split(s[len(sasPrefix):], "&") {
		k, v, ok := strings.Cut(f, "=")
		if !ok || seen[k] {
			return SAS{}, ErrBadToken
		}
		seen[k] = true
		switch k {
		case "sr":
			d, err := url.QueryUnescape(v)
			if err != nil || d == "" {
				return SAS{}, ErrBadToken
			}
			t.ResourceRaw, t.Resource = v, d
		case "sig":
			d, err := url.QueryUnescape(v)
			if err != nil {
				return SAS{}, ErrBadToken
			}
			sig, err := base64.StdEncoding.DecodeString(d)
			if err != nil || len(sig) != sha256.Size {
				return SAS{}, ErrBadToken
			}
			t.Signature = sig
		case "se":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n <= 0 || n > 1<<40 {
				return SAS{}, ErrBadToken
			}
			t.ExpiryRaw, t.Expiry = v, time.Unix(n, 0)
		case "skn":
			t.KeyName = v
		default:
			return SAS{}, ErrBadToken
		}
	}
	if t.ResourceRaw == "" || t.Signature == nil || t.ExpiryRaw == "" {
		return SAS{}, ErrBadToken
	}
	return t, nil
}

// ForDevice reports whether the token's resource is the device's:
// "{host}/devices/{deviceId}" (host compared without case, an optional
// trailing slash or scheme ignored).
func (t SAS) ForDevice(host, deviceID string) bool {
	r := t.Resource
	if i := strings.Index(r, "://"); i >= 0 {
		r = r[i+3:]
	}
	r = strings.TrimSuffix(r, "/")
	h, rest, ok := strings.Cut(r, "/")
	return ok && strings.EqualFold(h, host) && rest == "devices/"+deviceID
}

// Verify checks the signature with a device's symmetric key:
// HMAC-SHA256(key, sr + "\n" + se), sr as sent.
func (t SAS) Verify(key []byte) bool {
	return hmac.Equal(t.Signature, Sign(key, t.ResourceRaw, t.ExpiryRaw))
}

// Sign computes a SAS signature.
func Sign(key []byte, resourceRaw, expiry string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(resourceRaw))
	m.Write([]byte{'\n'})
	m.Write([]byte(expiry))
	return m.Sum(nil)
}

// NewSAS builds a device SAS token as the Azure SDKs do (tests, docs).
func NewSAS(key []byte, host, deviceID string, expiry time.Time) string {
	sr := url.QueryEscape(host + "/devices/" + deviceID)
	se := strconv.FormatInt(expiry.Unix(), 10)
	sig := base64.StdEncoding.EncodeToString(Sign(key, sr, se))
	return fmt.Sprintf("%ssr=%s&sig=%s&se=%s", sasPrefix, sr, url.QueryEscape(sig), se)
}

// Check verifies a parsed token for a device at now with each of its keys
// in turn (primary, secondary, ...): the resource, then the signature,
// then the expiry, so an attacker learns nothing about the expiry of a
// token he cannot sign.
func (t SAS) Check(host, deviceID string, keys [][]byte, now time.Time) error {
	if !t.ForDevice(host, deviceID) {
		return ErrWrongDevice
	}
	ok := false
	for _, k := range keys {
		if t.Verify(k) {
			ok = true
			break
		}
	}
	if !ok {
		return ErrBadSignature
	}
	if !t.Expiry.After(now) {
		return ErrExpired
	}
	return nil
}

// parseQuery is url.ParseQuery without its refusal of ';' (model ids such
// as "dtmi:com:example:Thermostat;1" contain one).
func parseQuery(s string) (url.Values, error) {
	q := url.Values{}
	for _, f := range strings.Split(s, "&") {
		if f == "" {
			continue
		}
		k, v, _ := strings.Cut(f, "=")
		dk, err := url.QueryUnescape(k)
		if err != nil {
			return nil, err
		}
		dv, err := url.QueryUnescape(v)
		if err != nil {
			return nil, err
		}
		q.Add(dk, dv)
	}
	return q, nil
}
