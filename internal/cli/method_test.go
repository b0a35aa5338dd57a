package cli_test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"

	"github.com/moteiot/mote/internal/daemontest"
)

func TestMethodInvoke(t *testing.T) {
	t.Parallel()
	d := daemontest.Start(t)
	secret := d.Device(t, "lamp")
	d.Thing(t, "away")

	// A device that answers every method with 200 and the request back.
	conn, err := net.Dial("tcp", d.MQTT)
	if err != nil {
		t.Fatal(err)
	}
	var c *paho.Client
	c = paho.NewClient(paho.ClientConfig{
		Conn: packets.NewThreadSafeConn(conn),
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			id := pr.Packet.Topic[strings.LastIndex(pr.Packet.Topic, "/")+1:]
			body := append([]byte(`{"got":`), append(pr.Packet.Payload, '}')...)
			go c.Publish(context.Background(), &paho.Publish{Topic: "$mote/things/lamp/methods/res/200/" + id, QoS: 0, Payload: body})
			return true, nil
		}},
		OnClientError: func(error) {},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Connect(ctx, &paho.Connect{ClientID: "lamp", CleanStart: true, KeepAlive: 30,
		Username: "lamp", UsernameFlag: true, Password: []byte(secret), PasswordFlag: true}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}) })
	if _, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "$mote/things/lamp/methods/+/+", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	daemontest.WaitFor(t, 10*time.Second, func() error {
		if !d.Broker().Connected("lamp") {
			return context.DeadlineExceeded
		}
		return nil
	})

	base := []string{"--server", d.API, "--token", d.Token}
	out, errOut, code := run(t, append(base, "method", "invoke", "lamp", "setLevel", "--payload", `{"level": 7}`, "--timeout", "10s")...)
	if code != 0 || !strings.Contains(out, "status: 200") || !strings.Contains(out, `"level": 7`) {
		t.Errorf("method invoke: exit %d\n%s%s", code, out, errOut)
	}
	out, _, code = run(t, append(base, "-o", "json", "method", "invoke", "lamp", "ping")...)
	if m := decode[map[string]any](t, out); code != 0 || m["status"] != 200.0 {
		t.Errorf("method invoke -o json: exit %d %s", code, out)
	}
	_, errOut, code = run(t, append(base, "method", "invoke", "away", "ping")...)
	if code != 3 || !strings.Contains(errOut, "not connected") {
		t.Errorf("method invoke (offline): exit %d %s; want 3", code, errOut)
	}
	_, errOut, code = run(t, append(base, "method", "invoke", "lamp", "ping", "--payload", "{oops")...)
	if code != 2 || !strings.Contains(errOut, "--payload") {
		t.Errorf("method invoke (bad payload): exit %d %s; want 2", code, errOut)
	}
}
