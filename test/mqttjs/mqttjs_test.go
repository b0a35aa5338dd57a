// Package mqttjs_test runs a real MQTT.js v5 client (npm "mqtt", pinned in
// package-lock.json) against a real server: QoS 1 publishes with user
// properties on a topic alias, acknowledged and delivered back. MQTT.js
// dropped the connection on every such PUBACK while the server echoed the
// PUBLISH's properties in it.
//
// It skips when node is not installed or the package is not
// (npm --prefix test/mqttjs ci).
package mqttjs_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/daemontest"
)

type result struct {
	OK      bool `json:"ok"`
	Connack struct {
		ReasonCode int `json:"reasonCode"`
		Properties struct {
			TopicAliasMaximum int `json:"topicAliasMaximum"`
			MaximumPacketSize int `json:"maximumPacketSize"`
			ReceiveMaximum    int `json:"receiveMaximum"`
		} `json:"properties"`
	} `json:"connack"`
	Pubacks []struct {
		ReasonCode int `json:"reasonCode"`
	} `json:"pubacks"`
	Received []struct {
		Topic   string            `json:"topic"`
		Payload string            `json:"payload"`
		User    map[string]string `json:"user"`
	} `json:"received"`
	Errors []string `json:"errors"`
}

func TestMQTTjsV5(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed; skipping the MQTT.js test")
	}
	if _, err := os.Stat("node_modules/mqtt/package.json"); err != nil {
		t.Skip("MQTT.js is not installed (npm --prefix test/mqttjs ci); skipping the MQTT.js test")
	}
	s := daemontest.Start(t)
	secret := s.Device(t, "js")

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "client.mjs")
	cmd.Env = append(os.Environ(), "MQTT_URL=mqtt://"+s.MQTT, "MQTT_USER=js", "MQTT_PASS="+secret, "MQTT_CLIENT_ID=js-1")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()

	var r result
	if err := json.Unmarshal(bytes.TrimSpace(stdout.Bytes()), &r); err != nil {
		t.Fatalf("MQTT.js client: %v (exit: %v)\nstdout: %s\nstderr: %s", err, runErr, stdout.String(), stderr.String())
	}
	if !r.OK || runErr != nil {
		t.Fatalf("MQTT.js client failed (exit: %v): errors %q, %d PUBACKs, %d messages\nstderr: %s", runErr, r.Errors, len(r.Pubacks), len(r.Received), stderr.String())
	}
	for i, a := range r.Pubacks {
		if a.ReasonCode != 0 {
			t.Errorf("PUBACK %d reason code = %#x; want 0", i, a.ReasonCode)
		}
	}
	if p := r.Connack.Properties; p.TopicAliasMaximum != 1024 || p.MaximumPacketSize != s.Config.MaxPacketSize || p.ReceiveMaximum == 0 {
		t.Errorf("CONNACK properties = %+v; want Topic Alias Maximum 1024, Maximum Packet Size %d, a Receive Maximum", p, s.Config.MaxPacketSize)
	}
	if len(r.Received) != 3 {
		t.Fatalf("received %d messages; want 3", len(r.Received))
	}
	for _, m := range r.Received {
		if m.Topic != "things/js/data" || m.User["trace"] == "" {
			t.Errorf("received %+v; want topic things/js/data with the user property trace", m)
		}
	}
}
