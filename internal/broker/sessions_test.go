package broker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/moteiot/mote/internal/daemontest"
)

// waitPayloads waits until the distinct payloads received on topic are
// exactly want.
func waitPayloads(t *testing.T, in *daemontest.Inbox, topic string, want []string) {
	t.Helper()
	want = append([]string(nil), want...)
	sort.Strings(want)
	daemontest.WaitFor(t, 5*time.Second, func() error {
		var got []string
		for p := range in.Distinct(topic) {
			got = append(got, p)
		}
		sort.Strings(got)
		if fmt.Sprint(got) != fmt.Sprint(want) {
			return fmt.Errorf("on %s got %q; want %q", topic, got, want)
		}
		return nil
	})
}

// Persistent sessions survive a restart: their subscriptions, and the QoS 1
// messages queued while they were away, over MQTT 5 and 3.1.1. Sessions
// that were not persistent, or expired while the server was down, do not
// come back; what a client acknowledged is not sent again.
func TestPersistentSessionsSurviveRestart(t *testing.T) {
	s := daemontest.Start(t)
	sec := s.Device(t, "dev")
	v5 := func(id string, expiry uint32, clean bool) *daemontest.V5 {
		t.Helper()
		c, err := s.DialV5(t, daemontest.V5Options{ClientID: id, Username: "dev", Password: sec, SessionExpiry: expiry, CleanStart: clean})
		if err != nil {
			t.Fatalf("connect %s: %v", id, err)
		}
		return c
	}
	notClean := false
	v3 := func() *daemontest.V3 {
		t.Helper()
		c, _, err := s.DialV3(t, daemontest.V3Options{ClientID: "keep3", Username: "dev", Password: sec, Clean: &notClean})
		if err != nil {
			t.Fatalf("connect keep3: %v", err)
		}
		return c
	}
	gone := func(id string) {
		t.Helper()
		daemontest.WaitFor(t, 2*time.Second, func() error {
			if s.Broker().ClientConnected(id) {
				return fmt.Errorf("%s still connected", id)
			}
			return nil
		})
	}

	keep := v5("keep5", 3600, true)
	keep.Sub(t, "things/dev/q")
	_ = keep.Disconnect(&paho.Disconnect{})
	short := v5("short", 1, true)
	short.Sub(t, "things/dev/q")
	_ = short.Disconnect(&paho.Disconnect{})
	clean := v5("clean", 0, true)
	clean.Sub(t, "things/dev/q")
	_ = clean.Disconnect(&paho.Disconnect{})
	old := v3()
	old.Sub(t, "things/dev/v3", 1)
	old.Disconnect(100)
	for _, id := range []string{"keep5", "short", "clean", "keep3"} {
		gone(id)
	}

	pub := v5("pub", 0, true)
	var want5, want3 []string
	for i := range 10 {
		p := fmt.Sprintf("m%d", i)
		if rc := pub.Pub(t, "things/dev/q", 1, false, p); rc != 0 {
			t.Fatalf("PUBACK %#x", rc)
		}
		want5 = append(want5, p)
	}
	for i := range 5 {
		p := fmt.Sprintf("v%d", i)
		pub.Pub(t, "things/dev/v3", 1, false, p)
		want3 = append(want3, p)
	}
	// mochi acknowledges a publish before it queues it for subscribers.
	daemontest.WaitFor(t, 2*time.Second, func() error {
		if n := s.Broker().Inflight(); n < 10+10+5 {
			return fmt.Errorf("%d messages queued; want 25", n)
		}
		return nil
	})
	// "short" expires while the server is down: wait until its stored
	// record says it went away more than its 1 s expiry ago.
	daemontest.WaitFor(t, 5*time.Second, func() error {
		list, err := s.Registry().Store().Sessions().List(context.Background())
		if err != nil {
			return err
		}
		for _, st := range list {
			var r struct {
				Disconnected int64 `json:"disconnectedMs"`
			}
			if st.ID != "short" || json.Unmarshal(st.Data, &r) != nil || r.Disconnected == 0 {
				continue
			}
			if left := time.UnixMilli(r.Disconnected + 1000).Sub(time.Now()); left >= 0 {
				return fmt.Errorf("short's stored session expires in %v", left)
			}
			return nil
		}
		return fmt.Errorf("short's session not stored as disconnected yet")
	})

	s.Restart(t)

	back := v5("keep5", 3600, false)
	if !back.Connack.SessionPresent {
		t.Fatal("keep5: session not present after the restart")
	}
	waitPayloads(t, back.Inbox, "things/dev/q", want5)
	// The subscription came back too: a new message arrives without
	// subscribing again.
	pub = v5("pub", 0, true)
	pub.Pub(t, "things/dev/q", 1, false, "after")
	waitPayloads(t, back.Inbox, "things/dev/q", append(want5, "after"))

	old = v3()
	waitPayloads(t, old.Inbox, "things/dev/v3", want3)

	for _, id := range []string{"short", "clean"} {
		c := v5(id, 3600, false)
		if c.Connack.SessionPresent {
			t.Errorf("%s: session present after the restart; it had expired or was not persistent", id)
		}
		c.Inbox.None(t, "things/dev/q", 200*time.Millisecond)
	}

	// Acknowledged messages are gone from the stored session: after one
	// more restart nothing is sent again.
	_ = back.Disconnect(&paho.Disconnect{})
	old.Disconnect(100)
	gone("keep5")
	gone("keep3")
	s.Restart(t)
	again := v5("keep5", 3600, false)
	if !again.Connack.SessionPresent {
		t.Fatal("keep5: session not present after the second restart")
	}
	again.Inbox.None(t, "things/dev/q", 300*time.Millisecond)
	v3again := v3()
	v3again.Inbox.None(t, "things/dev/v3", 100*time.Millisecond)
}
