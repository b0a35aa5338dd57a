// Package azure_test runs the unmodified Azure IoT device SDK for Node.js
// (npm azure-iot-device + azure-iot-device-mqtt, pinned in
// package-lock.json) against a real Mote server, as a device firmware
// written for IoT Hub would: a connection string with a symmetric key
// whose GatewayHostName is Mote's MQTTS address, trusting Mote's CA.
// It connects, sends telemetry with properties, reads its twin, reports
// properties and receives a desired patch set through Mote.
//
// It skips when node is not installed or the packages are not
// (npm --prefix test/azure ci).
package azure_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/moteiot/mote/internal/daemontest"
	"github.com/moteiot/mote/internal/policy"
)

type line struct {
	Step        string            `json:"step"`
	Where       string            `json:"where"`
	Error       string            `json:"error"`
	Patch       map[string]any    `json:"patch"`
	MessageID   string            `json:"messageId"`
	ContentType string            `json:"contentType"`
	Body        string            `json:"body"`
	Props       map[string]string `json:"props"`
	Payload     map[string]any    `json:"payload"`
}

// azureSDK returns the path of node, or skips the test when node or the
// SDK's packages are not installed.
func azureSDK(t *testing.T) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed; skipping the Azure IoT SDK test")
	}
	for _, p := range []string{"node_modules/azure-iot-device/package.json", "node_modules/azure-iot-device-mqtt/package.json"} {
		if _, err := os.Stat(p); err != nil {
			t.Skip("the Azure IoT device SDK is not installed (npm --prefix test/azure ci); skipping the Azure IoT SDK test")
		}
	}
	return node
}

func TestAzureSDK(t *testing.T) {
	node := azureSDK(t)
	s := daemontest.Start(t)
	ctx := context.Background()
	s.Thing(t, "azdev")
	nc, err := s.Registry().CreateSymmetricKey(ctx, "azdev", nil)
	if err != nil {
		t.Fatal(err)
	}
	// An application watching the device's telemetry over MQTT 5.
	if _, err := s.Registry().CreatePolicy(ctx, "watch", "", policy.Document{Statements: []policy.Statement{
		{Effect: policy.Allow, Actions: []policy.Action{policy.Subscribe, policy.Receive}, Topics: []string{"things/+/telemetry"}},
	}}); err != nil {
		t.Fatal(err)
	}
	app := s.V5(t, "app", s.Device(t, "app", "watch"))
	if rc := app.Sub(t, "things/azdev/telemetry"); rc >= 0x80 {
		t.Fatalf("subscribe = %#x", rc)
	}
	var props sync.Map
	app.AddOnPublishReceived(func(pr paho.PublishReceived) (bool, error) {
		if pr.Packet.Properties != nil {
			for _, u := range pr.Packet.Properties.User {
				props.Store(u.Key, u.Value)
			}
		}
		return false, nil
	})

	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, s.CACertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	conn := "HostName=localhost;DeviceId=azdev;SharedAccessKey=" + nc.Key + ";GatewayHostName=" + strings.Replace(s.MQTTS, "127.0.0.1", "localhost", 1)

	runCtx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(runCtx, node, "device.js")
	cmd.Env = append(os.Environ(), "MOTE_CONNECTION_STRING="+conn, "MOTE_CA_FILE="+ca)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	steps := map[string]line{}
	var commandID string
	methodResult := make(chan string, 1)
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		var l line
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Errorf("SDK script printed %q", sc.Text())
			continue
		}
		steps[l.Step] = l
		switch l.Step {
		case "error":
			t.Errorf("SDK step %s failed: %s", l.Where, l.Error)
		case "reported":
			// The reported properties are in the classic shadow.
			body, err := s.Shadows().Get(ctx, "azdev", "")
			if err != nil || !strings.Contains(string(body), `"reported":{"fw":"1.0","temp":21}`) {
				t.Errorf("shadow after the SDK reported = %s, %v", body, err)
			}
		case "listening":
			// The SDK subscribes to desired patches when the listener is
			// added, without waiting for the SUBACK: a patch set before
			// the subscription arrives is not pushed (as in IoT Hub).
			daemontest.WaitFor(t, 10*time.Second, func() error {
				if !s.Broker().ClientSubscribed("azdev", "$iothub/twin/PATCH/properties/desired/#") {
					return fmt.Errorf("the SDK has not subscribed to desired patches")
				}
				return nil
			})
			if _, err := s.Shadows().Update(ctx, "azdev", "", []byte(`{"state":{"desired":{"fw":"2.0"}}}`)); err != nil {
				t.Fatal(err)
			}
			var cmd struct{ ID, Detail string }
			if code := api(t, s, "POST", "/things/azdev/commands", `{"name":"reboot","payload":{"delaySeconds":5},"ttlSeconds":60}`, &cmd); code != http.StatusCreated {
				t.Fatalf("queue a command = %d %s", code, cmd.Detail)
			}
			commandID = cmd.ID
			go callMethod(t, s, methodResult)
		}
	}
	_, _ = io.Copy(io.Discard, out)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("SDK script: %v\nsteps: %v\nstderr: %s", err, steps, stderr.String())
	}
	for _, want := range []string{"connected", "sent", "twin", "reported", "listening", "desired", "message", "method", "closed"} {
		if _, ok := steps[want]; !ok {
			t.Errorf("SDK step %q missing; got %v", want, steps)
		}
	}
	if p := steps["desired"].Patch; p["fw"] != "2.0" {
		t.Errorf("desired patch = %v; want fw 2.0", p)
	}
	// The command came as a C2D message, and the SDK's completion (PUBACK)
	// completed it.
	if m := steps["message"]; m.MessageID != commandID || m.ContentType != "application/json" || !strings.Contains(m.Body, `"reboot"`) {
		t.Errorf("C2D message = %+v; want the command %s", m, commandID)
	}
	daemontest.WaitFor(t, 5*time.Second, func() error {
		var c struct{ Status string }
		api(t, s, "GET", "/things/azdev/commands/"+commandID, "", &c)
		if c.Status != "delivered" {
			return fmt.Errorf("command status = %q; want delivered", c.Status)
		}
		return nil
	})
	// The direct method was answered through the SDK.
	if p := steps["method"].Payload; p["delay"] != 5.0 {
		t.Errorf("method payload seen by the SDK = %v", p)
	}
	select {
	case r := <-methodResult:
		if !strings.Contains(r, `"status":200`) || !strings.Contains(r, `"rebooting":true`) {
			t.Errorf("method result = %s", r)
		}
	case <-time.After(10 * time.Second):
		t.Error("the method call did not return")
	}
	// The telemetry reached the application with its properties.
	m := app.Inbox.Wait(t, "things/azdev/telemetry", 5*time.Second)
	if m.Payload != `{"temp":21.5}` {
		t.Errorf("telemetry payload = %q", m.Payload)
	}
	daemontest.WaitFor(t, 5*time.Second, func() error {
		for k, v := range map[string]string{"alert": "high & dry", "$.ct": "application/json", "$.ce": "utf-8", "$.mid": "msg-1"} {
			got, ok := props.Load(k)
			if !ok || got != v {
				return fmt.Errorf("user property %q = %v; want %q", k, got, v)
			}
		}
		return nil
	})
}

// callMethod calls the direct method "reboot" until the SDK has
// subscribed to methods (until then the call times out) and sends the
// answer's body.
func callMethod(t *testing.T, s *daemontest.Server, out chan<- string) {
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		var raw json.RawMessage
		if code := api(t, s, "POST", "/things/azdev/methods/reboot", `{"payload":{"delay":5},"timeoutSeconds":2}`, &raw); code == http.StatusOK {
			out <- string(raw)
			return
		}
	}
	out <- "no answer"
}

// api calls the REST API as admin and decodes the JSON answer into out.
// It is safe on any goroutine (it never fails the test).
func api(_ *testing.T, s *daemontest.Server, method, path, body string, out any) int {
	req, err := http.NewRequest(method, s.API+"/api/v1"+path, strings.NewReader(body))
	if err != nil {
		return 0
	}
	req.Header.Set("Authorization", "Bearer "+s.Token)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && len(b) > 0 {
		_ = json.Unmarshal(b, out)
	}
	return resp.StatusCode
}
