package broker_test

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"

	"github.com/moteiot/mote/internal/broker"
	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/daemontest"
	"github.com/moteiot/mote/internal/policy"
)

// TestWillReachesPlatform: on one node, a will mochi publishes (the
// device's connection lost) reaches the platform services' bus (rules,
// telemetry) as a message of its thing with Protocol "will"; a clean
// DISCONNECT sends none.
func TestWillReachesPlatform(t *testing.T) {
	s := daemontest.Start(t)
	var (
		mu  sync.Mutex
		got []core.Message
	)
	stop := s.Bus().Subscribe("things/+/status", func(m core.Message) {
		mu.Lock()
		got = append(got, m)
		mu.Unlock()
	})
	t.Cleanup(stop)
	secret := s.Device(t, "wdev")
	connect := func(client string) (net.Conn, *paho.Client) {
		conn, err := net.Dial("tcp", s.MQTT)
		if err != nil {
			t.Fatal(err)
		}
		c := paho.NewClient(paho.ClientConfig{Conn: packets.NewThreadSafeConn(conn), OnClientError: func(error) {}})
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := c.Connect(ctx, &paho.Connect{ClientID: client, KeepAlive: 30, CleanStart: true,
			Username: "wdev", UsernameFlag: true, Password: []byte(secret), PasswordFlag: true,
			WillMessage: &paho.WillMessage{Topic: "things/wdev/status", Payload: []byte(client), QoS: 1}}); err != nil {
			t.Fatal(err)
		}
		return conn, c
	}
	_, clean := connect("w-clean")
	if err := clean.Disconnect(&paho.Disconnect{ReasonCode: 0}); err != nil {
		t.Fatal(err)
	}
	conn, _ := connect("w-lost")
	_ = conn.Close()
	daemontest.WaitFor(t, 5*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(got) == 0 {
			return errorf("no will on the bus")
		}
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 {
		t.Fatalf("bus got %d wills (%+v); want 1 (w-lost's; w-clean disconnected cleanly)", len(got), got)
	}
	m := got[0]
	if string(m.Payload) != "w-lost" || m.Protocol != broker.ProtocolWill || m.Thing != "wdev" || m.ClientID != "w-lost" || m.QoS != 1 {
		t.Errorf("will on the bus = %+v; want w-lost's, protocol will, thing wdev, QoS 1", m)
	}
}

// TestWillDroppedWhenPolicyChanges: a will allowed at CONNECT whose topic
// the thing's policies stop allowing is dropped: the connection lost
// afterwards sends it nowhere (checked on the platform bus, which hears
// a will before the thing is recorded disconnected).
func TestWillDroppedWhenPolicyChanges(t *testing.T) {
	s := daemontest.Start(t)
	ctx := context.Background()
	allowDoc := policy.Document{Statements: []policy.Statement{
		{Effect: policy.Allow, Actions: []policy.Action{policy.Publish}, Topics: []string{"wp/#"}},
	}}
	if _, err := s.Registry().CreatePolicy(ctx, "wp", "", allowDoc); err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		wills = map[string]int{}
	)
	stop := s.Bus().Subscribe("#", func(m core.Message) {
		mu.Lock()
		defer mu.Unlock()
		if m.Protocol == broker.ProtocolWill {
			wills[m.ClientID]++
		}
	})
	t.Cleanup(stop)
	dial := func(thing, willTopic string) (net.Conn, *paho.Client) {
		secret := s.Device(t, thing, "wp")
		conn, err := net.Dial("tcp", s.MQTT)
		if err != nil {
			t.Fatal(err)
		}
		c := paho.NewClient(paho.ClientConfig{Conn: packets.NewThreadSafeConn(conn), OnClientError: func(error) {}})
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if _, err := c.Connect(cctx, &paho.Connect{ClientID: thing, KeepAlive: 30, CleanStart: true,
			Username: thing, UsernameFlag: true, Password: []byte(secret), PasswordFlag: true,
			WillMessage: &paho.WillMessage{Topic: willTopic, Payload: []byte("gone"), QoS: 1}}); err != nil {
			t.Fatal(err)
		}
		return conn, c
	}
	conn, c := dial("wp-dev", "wp/wp-dev/status")
	// The policy no longer allows wp/: once a publish there is refused,
	// the connection's permissions were compiled again.
	if _, err := s.Registry().UpdatePolicy(ctx, "wp", "", policy.Document{Statements: []policy.Statement{
		{Effect: policy.Allow, Actions: []policy.Action{policy.Publish}, Topics: []string{"other/#"}},
	}}); err != nil {
		t.Fatal(err)
	}
	daemontest.WaitFor(t, 5*time.Second, func() error {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		r, err := c.Publish(pctx, &paho.Publish{Topic: "wp/wp-dev/x", QoS: 1, Payload: []byte("x")})
		if r == nil {
			return err
		}
		if r.ReasonCode != 0x87 {
			return errorf("PUBACK %#x; want 0x87 once the policy change applies", r.ReasonCode)
		}
		return nil
	})
	// A marker behind it: a will still allowed, sent after wp-dev's
	// connection was lost (the bus hears wills in order).
	other, _ := dial("wp-other", "other/wp-other/status")
	_ = conn.Close()
	daemontest.WaitFor(t, 5*time.Second, func() error {
		th, err := s.Registry().GetThing(ctx, "wp-dev")
		if err != nil {
			return err
		}
		if th.Connected {
			return errorf("wp-dev still connected")
		}
		return nil
	})
	_ = other.Close()
	daemontest.WaitFor(t, 5*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if wills["wp-other"] == 0 {
			return errorf("the marker will has not arrived")
		}
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	if n := wills["wp-dev"]; n != 0 {
		t.Errorf("%d wills of wp-dev reached the platform; want none (its topic is denied now)", n)
	}
	if !containsLine(getMetrics(t, s), `mote_mqtt_policy_denied_total{action="will"}`) {
		t.Error(`mote_mqtt_policy_denied_total{action="will"} not counted`)
	}
}
