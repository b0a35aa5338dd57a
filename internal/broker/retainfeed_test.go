package broker_test

import (
	"fmt"
	"testing"
	"time"

	paho3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/moteiot/mote/internal/config"
	"github.com/moteiot/mote/internal/daemontest"
)

// A new subscriber to a tree of many retained messages gets every one of
// them, paced by its queue, though they are far more than its outbound
// queue and its unacknowledged-message limit hold.
func TestNewSubscriberGetsEveryRetainedMessage(t *testing.T) {
	const n = 5000
	s := daemontest.Start(t, func(c *config.Config) {
		c.MaxRetainedPerThing = n
		c.OutboundQueue = 128
		c.MaxOfflineQueue = 1000
	})
	sec := s.Device(t, "dev")
	pub := s.V3(t, "dev", sec)
	toks := make([]paho3.Token, n)
	for i := range n {
		toks[i] = pub.Publish(fmt.Sprintf("things/dev/r/%d/%d", i%50, i), 1, true, fmt.Sprint(i))
	}
	for i, tok := range toks {
		if !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
			t.Fatalf("retained publish %d: %v", i, tok.Error())
		}
	}

	for _, v := range []string{"v5", "v3"} {
		t.Run(v, func(t *testing.T) {
			var inbox *daemontest.Inbox
			if v == "v5" {
				sub, err := s.DialV5(t, daemontest.V5Options{ClientID: "sub-" + v, Username: "dev", Password: sec, CleanStart: true})
				if err != nil {
					t.Fatal(err)
				}
				if rc := sub.Sub(t, "things/dev/r/#"); rc != 1 {
					t.Fatalf("SUBACK %#x", rc)
				}
				inbox = sub.Inbox
			} else {
				sub, _, err := s.DialV3(t, daemontest.V3Options{ClientID: "sub-" + v, Username: "dev", Password: sec})
				if err != nil {
					t.Fatal(err)
				}
				if tok := sub.Subscribe("things/dev/r/#", 1, nil); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
					t.Fatalf("subscribe: %v", tok.Error())
				}
				inbox = sub.Inbox
			}
			daemontest.WaitFor(t, 60*time.Second, func() error {
				if got := len(inbox.Distinct("")); got < n {
					return fmt.Errorf("received %d of %d retained messages", got, n)
				}
				return nil
			})
			for _, m := range inbox.All() {
				if !m.Retain {
					t.Fatalf("%s arrived without the retain flag", m.Topic)
				}
			}
		})
	}
	body := getMetrics(t, s)
	if containsLine(body, `mote_mqtt_messages_dropped_total{reason="slow_subscriber"}`) ||
		containsLine(body, `mote_mqtt_messages_dropped_total{reason="retained_unsent"}`) ||
		containsLine(body, "mote_mqtt_queue_full_dropped_total") {
		t.Fatalf("messages were dropped:\n%s", grep(body, "drop"))
	}
}
