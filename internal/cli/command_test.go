package cli_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/daemontest"
)

func TestCommandCommands(t *testing.T) {
	t.Parallel()
	s := daemontest.Start(t)
	secret := s.Device(t, "lamp")
	mote := func(args ...string) (string, string, int) {
		t.Helper()
		return run(t, append([]string{"--server", s.API, "--token", s.Token}, args...)...)
	}

	out, errOut, code := mote("-o", "json", "command", "send", "lamp", "reboot", "--payload", `{"delaySeconds": 3}`, "--ttl", "10m")
	if code != 0 {
		t.Fatalf("send: exit %d %s %s", code, out, errOut)
	}
	c := decode[map[string]any](t, out)
	id, _ := c["id"].(string)
	if c["status"] != "queued" || !strings.HasPrefix(id, "cmd_") {
		t.Fatalf("send: %s", out)
	}
	out, _, code = mote("command", "get", "lamp", id)
	if code != 0 || !strings.Contains(out, "queued") || !strings.Contains(out, `{"delaySeconds":3}`) {
		t.Errorf("get: exit %d %s", code, out)
	}
	out, _, code = mote("command", "list", "lamp")
	if code != 0 || !strings.Contains(out, id) || !strings.Contains(out, "STATUS") {
		t.Errorf("list: exit %d %s", code, out)
	}
	out, _, code = mote("command", "cancel", "lamp", id)
	if code != 0 || !strings.Contains(out, "cancelled") {
		t.Errorf("cancel: exit %d %s", code, out)
	}
	_, errOut, code = mote("command", "cancel", "lamp", id)
	if code != 4 || !strings.Contains(errOut, "cancelled") {
		t.Errorf("cancel twice: exit %d %s; want 4", code, errOut)
	}
	_, errOut, code = mote("command", "send", "lamp", "wipe")
	if code != 2 || !strings.Contains(errOut, "confirm") {
		t.Errorf("wipe without confirm: exit %d %s; want 2", code, errOut)
	}
	_, _, code = mote("command", "get", "lamp", "cmd_nope")
	if code != 3 {
		t.Errorf("unknown command: exit %d; want 3", code)
	}
	_, _, code = mote("command", "send", "lamp", "reboot", "--payload", "{")
	if code != 2 {
		t.Errorf("payload not JSON: exit %d; want 2", code)
	}

	// --wait: a device that answers. The CLI waits in the background while
	// the test answers the command once it has reached the device.
	d := s.V5(t, "lamp", secret)
	d.Sub(t, "$mote/things/lamp/commands/+")
	type result struct {
		out, errOut string
		code        int
	}
	sent := make(chan result, 1)
	go func() {
		out, errOut, code := mote("command", "send", "lamp", "locate", "--wait", "20s")
		sent <- result{out, errOut, code}
	}()
	var topic string
	daemontest.WaitFor(t, 20*time.Second, func() error {
		for _, m := range d.Inbox.All() {
			var msg struct{ ID, Name string }
			if json.Unmarshal([]byte(m.Payload), &msg) == nil && msg.Name == "locate" {
				topic = m.Topic
				return nil
			}
		}
		return errors.New("the locate command has not reached the device")
	})
	d.Pub(t, topic+"/result", 1, false, `{"status":"succeeded","output":{"lat":1,"lon":2,"accuracy":3}}`)
	var r result
	select {
	case r = <-sent:
	case <-time.After(30 * time.Second):
		t.Fatal("command send --wait did not return")
	}
	if r.code != 0 || !strings.Contains(r.out, "succeeded") || !strings.Contains(r.out, `"lat":1`) {
		t.Errorf("send --wait: exit %d %s %s", r.code, r.out, r.errOut)
	}
}
