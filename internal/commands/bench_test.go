package commands_test

import (
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
	for i := 0; b.Loop(); i++ {
		req, _ := http.NewRequest("POST", s.API+"/api/v1/things/dev/commands", strings.NewReader(`{"name":"locate"}`))
		req.Header.Set("Authorization", "Bearer "+s.Token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil || resp.StatusCode != http.StatusCreated {
			b.Fatalf("POST: %v %v", err, resp)
		}
		resp.Body.Close()
		for deadline := time.Now().Add(10 * time.Second); len(d.Inbox.All()) <= i; {
			if time.Now().After(deadline) {
				b.Fatalf("command %d did not arrive", i)
			}
			time.Sleep(50 * time.Microsecond)
		}
	}
}
