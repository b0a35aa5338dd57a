package commands

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/moteiot/mote/internal/core"
)

// The standard device-management commands (docs/commands.md). Other names
// are free: their payload is any JSON value.
const (
	Reboot    = "reboot"
	Lock      = "lock"
	Wipe      = "wipe"
	Locate    = "locate"
	Configure = "configure"
)

// Standard lists the standard command names.
var Standard = []string{Reboot, Lock, Wipe, Locate, Configure}

// Payloads of the standard commands. Absent optional fields are nil.
type (
	// RebootPayload: restart, after DelaySeconds (0 to 86,400; default 0).
	RebootPayload struct {
		DelaySeconds *int `json:"delaySeconds,omitempty"`
	}
	// LockPayload: lock the device; Message (at most 256 bytes) is shown
	// on its screen, PIN (1 to 64 characters) unlocks it.
	LockPayload struct {
		Message *string `json:"message,omitempty"`
		PIN     *string `json:"pin,omitempty"`
	}
	// WipePayload: erase user data. Confirm must be true.
	WipePayload struct {
		Confirm *bool `json:"confirm"`
	}
	// LocatePayload: report the position; takes no field.
	LocatePayload struct{}
	// ConfigurePayload: apply Settings (a JSON object) to the device's
	// configuration.
	ConfigurePayload struct {
		Settings json.RawMessage `json:"settings"`
	}
)

// ValidatePayload checks the payload of a command: a JSON value of at most
// max bytes (nil or empty for none) and, for a standard command, the shape
// docs/commands.md gives it. Errors are core.Invalid with the field at
// fault, e.g. "payload.delaySeconds".
func ValidatePayload(name string, payload []byte, max int) error {
	payload = bytes.TrimSpace(payload)
	if len(payload) > max {
		return core.Invalid("payload", "payload is larger than %d bytes", max)
	}
	if len(payload) > 0 && !json.Valid(payload) {
		return core.Invalid("payload", "payload is not valid JSON")
	}
	none := len(payload) == 0 || string(payload) == "null"
	switch name {
	case Reboot:
		var p RebootPayload
		if none {
			return nil
		}
		if err := decodeStrict(payload, &p); err != nil {
			return err
		}
		if p.DelaySeconds != nil && (*p.DelaySeconds < 0 || *p.DelaySeconds > 86400) {
			return core.Invalid("payload.delaySeconds", "payload.delaySeconds must be from 0 to 86400")
		}
	case Lock:
		var p LockPayload
		if none {
			return nil
		}
		if err := decodeStrict(payload, &p); err != nil {
			return err
		}
		if p.Message != nil && len(*p.Message) > 256 {
			return core.Invalid("payload.message", "payload.message is longer than 256 bytes")
		}
		if p.PIN != nil && (*p.PIN == "" || utf8.RuneCountInString(*p.PIN) > 64) {
			return core.Invalid("payload.pin", "payload.pin must be 1 to 64 characters")
		}
	case Wipe:
		var p WipePayload
		if none {
			return core.Invalid("payload", `wipe needs the payload {"confirm": true}`)
		}
		if err := decodeStrict(payload, &p); err != nil {
			return err
		}
		if p.Confirm == nil || !*p.Confirm {
			return core.Invalid("payload.confirm", `wipe needs "confirm": true`)
		}
	case Locate:
		var p LocatePayload
		if none {
			return nil
		}
		return decodeStrict(payload, &p)
	case Configure:
		var p ConfigurePayload
		if none {
			return core.Invalid("payload", `configure needs the payload {"settings": {...}}`)
		}
		if err := decodeStrict(payload, &p); err != nil {
			return err
		}
		if s := bytes.TrimSpace(p.Settings); len(s) == 0 || s[0] != '{' {
			return core.Invalid("payload.settings", "payload.settings must be a JSON object")
		}
	}
	return nil
}

// decodeStrict decodes one JSON object into v, refusing unknown fields and
// wrong types with the field named.
func decodeStrict(payload []byte, v any) error {
	if payload[0] != '{' {
		return core.Invalid("payload", "payload must be a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &te):
			f := "payload." + te.Field
			return core.Invalid(f, "%s must be %s", f, jsonType(te.Type.Kind().String()))
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			field := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
			return core.Invalid("payload."+field, "payload has an unknown field %q", field)
		default:
			return core.Invalid("payload", "payload: %v", err)
		}
	}
	if _, err := dec.Token(); err != io.EOF {
		return core.Invalid("payload", "payload has data after the JSON object")
	}
	return nil
}

func jsonType(kind string) string {
	switch kind {
	case "int", "int64":
		return "an integer"
	case "float64":
		return "a number"
	case "bool":
		return "true or false"
	case "string":
		return "a string"
	case "ptr":
		return "of another type"
	}
	return fmt.Sprintf("a %s", kind)
}
