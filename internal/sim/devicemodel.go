package sim

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"time"

	"github.com/moteiot/mote/internal/apiclient"
)

// SensorModel is the device model (docs/device-models.md) of the
// simulated sensor type for devices publishing rate messages per second:
// its telemetry keys with units and ranges (the expected interval is
// 1/rate, rounded up to a second), its shadow properties and the
// commands it executes.
func SensorModel(rate float64) json.RawMessage {
	if rate <= 0 {
		rate = DefaultRate
	}
	iv := (time.Duration(math.Ceil(1/rate)) * time.Second).String()
	num := func(label, unit string, lo, hi float64) map[string]any {
		return map[string]any{"label": label, "unit": unit, "type": "number", "min": lo, "max": hi, "interval": iv}
	}
	pin := map[string]any{"type": "string", "pattern": "^[0-9]{4,8}$"}
	m := map[string]any{
		"telemetry": map[string]any{
			"temperature": num("Temperature", "°C", MinTemperature, MaxTemperature),
			"humidity":    num("Humidity", "%", 0, 100),
			"battery":     num("Battery", "%", 0, 100),
			"lat":         num("Latitude", "°", -90, 90),
			"lon":         num("Longitude", "°", -180, 180),
			"speed":       num("Speed", "m/s", 0, 100),
			"rssi":        map[string]any{"label": "Signal", "unit": "dBm", "type": "integer", "min": MinRSSI, "max": MaxRSSI, "interval": iv},
		},
		"properties": map[string]any{
			"reported": map[string]any{"type": "object", "properties": map[string]any{
				"model":     map[string]any{"type": "string", "title": "Hardware model"},
				"firmware":  map[string]any{"type": "string", "title": "Firmware"},
				"site":      map[string]any{"type": "string", "title": "Site"},
				"locked":    map[string]any{"type": "boolean", "title": "Locked"},
				"rate":      map[string]any{"type": "number", "title": "Messages per second", "minimum": MinRate, "maximum": MaxRate},
				"battery":   map[string]any{"type": "integer", "title": "Battery (%)", "minimum": 0, "maximum": 100},
				"bootCount": map[string]any{"type": "integer", "title": "Boots", "minimum": 0},
			}},
			"desired": map[string]any{"type": "object", "properties": map[string]any{
				"rate":     map[string]any{"type": "number", "title": "Messages per second", "minimum": MinRate, "maximum": MaxRate},
				"locked":   map[string]any{"type": "boolean", "title": "Locked"},
				"firmware": map[string]any{"type": "string", "title": "Firmware", "maxLength": 64},
			}},
		},
		"commands": map[string]any{
			"reboot": map[string]any{"description": "Restart (offline for a moment)", "payload": map[string]any{
				"type": []string{"object", "null"}, "additionalProperties": false,
				"properties": map[string]any{"delaySeconds": map[string]any{"type": "integer", "minimum": 0, "maximum": 3600, "title": "Delay (s)"}}}},
			"lock": map[string]any{"description": "Lock the device with a message and a PIN", "payload": map[string]any{
				"type": []string{"object", "null"}, "additionalProperties": false,
				"properties": map[string]any{"message": map[string]any{"type": "string", "maxLength": 200, "title": "Message"}, "pin": pin}}},
			"unlock": map[string]any{"description": "Unlock with the PIN", "payload": map[string]any{
				"type": []string{"object", "null"}, "additionalProperties": false,
				"properties": map[string]any{"pin": pin}}},
			"wipe": map[string]any{"description": "Erase the device", "payload": map[string]any{
				"type": "object", "required": []string{"confirm"}, "additionalProperties": false,
				"properties": map[string]any{"confirm": map[string]any{"type": "boolean", "title": "Confirm"}}}},
			"locate": map[string]any{"description": "Report the position"},
			"configure": map[string]any{"description": "Change settings", "payload": map[string]any{
				"type": "object", "required": []string{"settings"},
				"properties": map[string]any{"settings": map[string]any{"type": "object"}}}},
		},
	}
	b, _ := json.Marshal(m)
	return b
}

// ensureModel gives the type the sensor model unless it has a model
// already (an operator's own is kept).
func ensureModel(ctx context.Context, c *apiclient.Client, name string, rate float64) error {
	t, err := c.GetType(ctx, name)
	if err != nil {
		return fmt.Errorf("get type %s: %w", name, err)
	}
	if len(t.Model) > 0 {
		return nil
	}
	if _, err := c.UpdateType(ctx, name, apiclient.TypePatch{Model: SensorModel(rate)}); err != nil {
		return fmt.Errorf("set the model of type %s: %w", name, err)
	}
	return nil
}
