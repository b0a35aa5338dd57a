package broker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"

	"github.com/moteiot/mote/internal/broker"
	"github.com/moteiot/mote/internal/daemontest"
	"github.com/moteiot/mote/internal/policy"
	"github.com/moteiot/mote/internal/store"
)

// monitor connects a client allowed to watch presence events.
func monitor(t *testing.T, s *daemontest.Server) *daemontest.V5 {
	t.Helper()
	_, err := s.Registry().CreatePolicy(context.Background(), "monitor", "", policy.Document{Statements: []policy.Statement{
		{Effect: policy.Allow, Actions: []policy.Action{policy.Subscribe}, Topics: []string{"$mote/events/presence/#", "things/#"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	m := s.V5(t, "monitor", s.Device(t, "monitor", "monitor"))
	if rc := m.Sub(t, "$mote/events/presence/#"); rc != 1 {
		t.Fatalf("monitor subscribe = %#x", rc)
	}
	return m
}

func event(t *testing.T, m *daemontest.V5, kind, client string) broker.Event {
	t.Helper()
	msg := m.Inbox.Wait(t, "$mote/events/presence/"+kind+"/"+client, 3*time.Second)
	var e broker.Event
	if err := json.Unmarshal([]byte(msg.Payload), &e); err != nil {
		t.Fatalf("presence payload %q: %v", msg.Payload, err)
	}
	return e
}

func TestPresenceEvents(t *testing.T) {
	s := daemontest.Start(t)
	mon := monitor(t, s)
	sec := s.Device(t, "dev")

	t.Run("connect and clean disconnect", func(t *testing.T) {
		c, err := s.DialV5(t, daemontest.V5Options{ClientID: "c1", Username: "dev", Password: sec})
		if err != nil {
			t.Fatal(err)
		}
		e := event(t, mon, "connected", "c1")
		if e.Thing != "dev" || e.ClientID != "c1" || e.ProtocolVersion != 5 || e.Listener != "tcp" || e.RemoteAddr == "" || e.Time.IsZero() {
			t.Fatalf("connected event = %+v", e)
		}
		daemontest.WaitFor(t, 2*time.Second, func() error {
			th, _ := s.Registry().GetThing(context.Background(), "dev")
			if !th.Connected || th.LastSeen == nil {
				return errorf("thing after connect: connected=%v lastSeen=%v", th.Connected, th.LastSeen)
			}
			return nil
		})
		_ = c.Disconnect(&paho.Disconnect{})
		if e := event(t, mon, "disconnected", "c1"); e.Reason != "client_disconnect" {
			t.Fatalf("disconnect reason = %q; want client_disconnect", e.Reason)
		}
		daemontest.WaitFor(t, 2*time.Second, func() error {
			th, _ := s.Registry().GetThing(context.Background(), "dev")
			if th.Connected {
				return errorf("thing still connected after disconnect")
			}
			return nil
		})
	})

	t.Run("connection lost, will sent", func(t *testing.T) {
		conn, err := net.Dial("tcp", s.MQTT)
		if err != nil {
			t.Fatal(err)
		}
		c := paho.NewClient(paho.ClientConfig{Conn: packets.NewThreadSafeConn(conn)})
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := c.Connect(ctx, &paho.Connect{ClientID: "c2", KeepAlive: 30, Username: "dev", UsernameFlag: true,
			Password: []byte(sec), PasswordFlag: true, CleanStart: true,
			WillMessage: &paho.WillMessage{Topic: "things/dev/status", Payload: []byte("gone"), QoS: 1}}); err != nil {
			t.Fatal(err)
		}
		if rc := mon.Sub(t, "things/dev/status"); rc != 1 {
			t.Fatalf("subscribe = %#x", rc)
		}
		event(t, mon, "connected", "c2")
		_ = conn.Close() // no DISCONNECT
		e := event(t, mon, "disconnected", "c2")
		if e.Reason != "connection_lost" || !e.WillSent {
			t.Fatalf("disconnected event = %+v; want reason connection_lost with willSent", e)
		}
		if m := mon.Inbox.Wait(t, "things/dev/status", 2*time.Second); m.Payload != "gone" {
			t.Fatalf("will payload = %q", m.Payload)
		}
	})

	t.Run("keepalive timeout", func(t *testing.T) {
		conn, err := net.Dial("tcp", s.MQTT)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		// A raw CONNECT with keepalive 1s, then silence: the server closes
		// it after 1.5 × keepalive.
		if _, err := conn.Write(connectPacket("c3", "dev", sec, 1)); err != nil {
			t.Fatal(err)
		}
		event(t, mon, "connected", "c3")
		if e := event(t, mon, "disconnected", "c3"); e.Reason != "keepalive_timeout" {
			t.Fatalf("reason = %q; want keepalive_timeout", e.Reason)
		}
	})

	t.Run("kicked", func(t *testing.T) {
		sec2 := s.Device(t, "dev2")
		s.V5(t, "dev2", sec2)
		event(t, mon, "connected", "dev2")
		off := false
		if _, err := s.Registry().UpdateThing(context.Background(), "dev2", store.ThingPatch{Enabled: &off}); err != nil {
			t.Fatal(err)
		}
		if e := event(t, mon, "disconnected", "dev2"); e.Reason != "kicked" {
			t.Fatalf("reason = %q; want kicked", e.Reason)
		}
	})

	t.Run("taken over", func(t *testing.T) {
		s.V5(t, "dev", sec) // client id "dev"
		event(t, mon, "connected", "dev")
		s.V3(t, "dev", sec) // same client id
		if e := event(t, mon, "disconnected", "dev"); e.Reason != "taken_over" {
			t.Fatalf("reason = %q; want taken_over", e.Reason)
		}
	})
}

// connectPacket encodes an MQTT 3.1.1 CONNECT with user name and password.
func connectPacket(clientID, user, pass string, keepalive uint16) []byte {
	str := func(s string) []byte { return append([]byte{byte(len(s) >> 8), byte(len(s))}, s...) }
	var body []byte
	body = append(body, str("MQTT")...)
	body = append(body, 4, 0xC2, byte(keepalive>>8), byte(keepalive)) // user+password+clean
	body = append(body, str(clientID)...)
	body = append(body, str(user)...)
	body = append(body, str(pass)...)
	return append([]byte{0x10, byte(len(body))}, body...)
}

func TestRetainedAndWill(t *testing.T) {
	s := daemontest.Start(t)
	sec := s.Device(t, "dev")
	// mochi sends the PUBACK before its fan-out, so a subscriber that joins
	// right after a PUBACK may still see the message live. watch is
	// subscribed first: once it has a message, its fan-out is done.
	watch, err := s.DialV5(t, daemontest.V5Options{ClientID: "dev-watch", Username: "dev", Password: sec})
	if err != nil {
		t.Fatal(err)
	}
	watch.Sub(t, "things/dev/state")
	c := s.V3(t, "dev", sec)
	c.Pub(t, "things/dev/state", 1, true, "on")
	watch.Inbox.Wait(t, "things/dev/state", 2*time.Second)
	sub, err := s.DialV5(t, daemontest.V5Options{ClientID: "dev-sub", Username: "dev", Password: sec})
	if err != nil {
		t.Fatal(err)
	}
	if rc := sub.Sub(t, "things/dev/state"); rc != 1 {
		t.Fatalf("subscribe = %#x", rc)
	}
	if m := sub.Inbox.Wait(t, "things/dev/state", 2*time.Second); m.Payload != "on" || !m.Retain {
		t.Fatalf("retained message = %+v; want payload on with retain", m)
	}
	// An empty retained message clears it.
	pub, _ := s.DialV5(t, daemontest.V5Options{ClientID: "dev-pub", Username: "dev", Password: sec})
	pub.Pub(t, "things/dev/state", 1, true, "")
	daemontest.WaitFor(t, 2*time.Second, func() error {
		if n := len(watch.Inbox.All()); n < 2 {
			return fmt.Errorf("watcher has %d messages; want the clearing one too", n)
		}
		return nil
	})
	sub2, _ := s.DialV5(t, daemontest.V5Options{ClientID: "dev-sub2", Username: "dev", Password: sec})
	sub2.Sub(t, "things/dev/state")
	sub2.Inbox.None(t, "things/dev/state", 200*time.Millisecond)

	// A will on a topic the thing may not publish to is refused at CONNECT.
	v, err := s.DialV5(t, daemontest.V5Options{ClientID: "w", Username: "dev", Password: sec,
		Will: &paho.WillMessage{Topic: "things/other/status", Payload: []byte("x")}})
	if err == nil || v.Connack.ReasonCode != 0x87 {
		t.Fatalf("connect with foreign will topic = %+v, %v; want 0x87", v.Connack, err)
	}
}
