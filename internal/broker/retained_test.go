package broker_test

import (
	"context"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/moteiot/mote/internal/daemontest"
)

// Retained messages survive a restart, with their MQTT 5 properties; a
// cleared one stays cleared; one that expired while the server was down is
// not delivered.
func TestRetainedMessagesSurviveRestart(t *testing.T) {
	s := daemontest.Start(t)
	sec := s.Device(t, "dev")
	pub := s.V5(t, "dev", sec)
	if rc := pub.Pub(t, "things/dev/status", 1, true, "online"); rc != 0 {
		t.Fatalf("PUBACK %#x", rc)
	}
	pub.Pub(t, "things/dev/gone", 1, true, "soon cleared")
	pub.Pub(t, "things/dev/gone", 1, true, "") // clears it
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	expiry := uint32(1)
	if _, err := pub.Publish(ctx, &paho.Publish{Topic: "things/dev/short", QoS: 1, Retain: true, Payload: []byte("brief"),
		Properties: &paho.PublishProperties{MessageExpiry: &expiry}}); err != nil {
		t.Fatal(err)
	}
	if _, err := pub.Publish(ctx, &paho.Publish{Topic: "things/dev/typed", QoS: 1, Retain: true, Payload: []byte(`{"a":1}`),
		Properties: &paho.PublishProperties{ContentType: "application/json"}}); err != nil {
		t.Fatal(err)
	}
	// things/dev/short expires after 1 s: wait until it is gone (its 5
	// payload bytes no longer counted; "online" and {"a":1} remain).
	daemontest.WaitFor(t, 10*time.Second, func() error {
		if got := metricValue(t, s, "mote_mqtt_retained_bytes"); got != 13 {
			return errorf("retained bytes = %v; want 13 once things/dev/short expired", got)
		}
		return nil
	})

	s.Restart(t)
	sub := s.V5(t, "dev", sec)
	sub.Sub(t, "things/dev/#")
	got := sub.Inbox.Wait(t, "things/dev/status", 5*time.Second)
	if got.Payload != "online" || !got.Retain {
		t.Fatalf("after restart: %+v; want the retained \"online\"", got)
	}
	sub.Inbox.Wait(t, "things/dev/typed", 5*time.Second)
	sub.Inbox.None(t, "things/dev/gone", 300*time.Millisecond)
	sub.Inbox.None(t, "things/dev/short", 100*time.Millisecond)
	if !containsLine(getMetrics(t, s), "mote_mqtt_retained_messages") {
		t.Fatal("mote_mqtt_retained_messages is zero after the restart")
	}
}
