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
