package ruleengine_test

import (
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/moteiot/mote/internal/config"
	"github.com/moteiot/mote/internal/daemontest"
	"github.com/moteiot/mote/internal/mosquittotest"
)

// TestMQTTBridgeEndToEnd: a whole server bridged to the real mosquitto
// both ways. Inbound (--bridge): what is published on mosquitto under
// sensors/ comes into Mote under bridged/, where a rule sees it and
// republishes it to a device. Outbound (an mqtt action): a device's
// telemetry reaches a subscriber on mosquitto. An mqtt action with a bad
// URL is refused with 400 naming the field.
func TestMQTTBridgeEndToEnd(t *testing.T) {
	mq := mosquittotest.Start(t, "")
	s := daemontest.Start(t, func(c *config.Config) {
		c.Bridges = []string{mq.URL() + "/?name=site&from=sensors/%23&to=bridged/&qos=1"}
	})
	dev := s.V5(t, "sensor-1", s.Device(t, "sensor-1"))
	watcher := s.V5(t, "watcher", s.Device(t, "watcher"))
	watcher.Sub(t, "things/watcher/#")
	mustAPI(t, s, "POST", "/rules", `{"name":"inbound","sql":"SELECT *, clientid() AS via FROM 'bridged/sensors/#'",
		"actions":[{"type":"republish","topic":"things/watcher/in/${topic(3)}"}]}`, 201)
	mustAPI(t, s, "POST", "/rules", `{"name":"outbound","sql":"SELECT temp FROM 'things/+/telemetry'",
		"actions":[{"type":"mqtt","url":"`+mq.URL()+`","topic":"site/${topic(2)}","qos":1}]}`, 201)
	code, out := api(t, s, "POST", "/rules", `{"name":"bad","sql":"SELECT * FROM 'x'","actions":[{"type":"mqtt","url":"ftp://h","topic":"t"}]}`)
	if code != 400 || !strings.Contains(out, `"field":"actions[0].url"`) {
		t.Fatalf("bad mqtt action: %d %s", code, out)
	}

	remote := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + mq.Addr()).SetClientID("e2e-remote"))
	if tok := remote.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("remote connect: %v", tok.Error())
	}
	defer remote.Disconnect(0)
	got := make(chan string, 10)
	if tok := remote.Subscribe("site/#", 1, func(_ paho.Client, m paho.Message) { got <- m.Topic() + " " + string(m.Payload()) }); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("remote subscribe: %v", tok.Error())
	}

	// Inbound: the bridge subscribes after it connects; publish until the
	// first message comes through.
	daemontest.WaitFor(t, 15*time.Second, func() error {
		remote.Publish("sensors/boiler", 1, false, `{"temp":90}`).WaitTimeout(time.Second)
		if watcher.Inbox.Len() == 0 {
			return errNothing
		}
		return nil
	})
	m := watcher.Inbox.Wait(t, "things/watcher/in/boiler", wait)
	if m.Payload != `{"temp":90,"via":"bridge:site"}` {
		t.Errorf("bridged message = %s", m.Payload)
	}

	// Outbound.
	dev.Pub(t, "things/sensor-1/telemetry", 1, false, `{"temp": 21.5}`)
	select {
	case g := <-got:
		if g != `site/sensor-1 {"temp":21.5}` {
			t.Errorf("remote got %s", g)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("nothing reached mosquitto")
	}
}

var errNothing = errorString("nothing yet")

type errorString string

func (e errorString) Error() string { return string(e) }
