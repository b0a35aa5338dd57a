package commands_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/daemontest"
)

// BenchmarkCommandToDevice measures one command from POST to the device:
// the REST call (stored durably), delivery over MQTT to a subscribed
// device, and its arrival.
func BenchmarkCommandToDevice(b *testing.B) {
	s := daemontest.Start(b)
	secret := s.Device(b, "dev")
	d := s.V5(b, "dev", secret)
	d.Sub(b, "$mote/things/dev/commands/+")
	client := &http.Client{}
	b.ResetTimer()
	for b.Loop() {
		req, _ := http.NewRequest("POST", s.API+"/api/v1/things/dev/commands", strings.NewReader(`{"name":"locate"}`))
		req.Header.Set("Authorization", "Bearer "+s.Token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil || resp.StatusCode != http.StatusCreated {
			b.Fatalf("POST: %v %v", err, resp)
		}
		var cmd struct{ ID string }
		err = json.NewDecoder(resp.Body).Decode(&cmd)
		resp.Body.Close()
		if err != nil || cmd.ID == "" {
			b.Fatalf("POST answer: %v, id %q", err, cmd.ID)
		}
		// Woken by the device's inbox, not polled.
		d.Inbox.Wait(b, "$mote/things/dev/commands/"+cmd.ID, 10*time.Second)
	}
}
