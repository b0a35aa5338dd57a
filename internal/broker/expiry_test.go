package broker_test

import (
	"context"
	"io"
	"net"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/daemontest"
)

// A connection is closed when the secret it authenticated with expires:
// MQTT 5 with DISCONNECT 0xA0 (maximum connect time), MQTT 3.1.1 by
// closing it without a DISCONNECT (a 3.1.1 client never gets one). A
// connection with another, unexpiring secret stays; the expired secret is
// then refused at CONNECT with 0x87.
func TestConnectionClosedAtCredentialExpiry(t *testing.T) {
	s := daemontest.Start(t)
	s.Thing(t, "dev")
	exp := time.Now().Add(1500 * time.Millisecond)
	c, err := s.Registry().CreateSecret(context.Background(), "dev", &exp)
	if err != nil {
		t.Fatal(err)
	}
	_, lasting := s.Secret(t, "dev")
	const closed = `mote_mqtt_server_disconnects_total{reason="credential_expired"}`

	v5, err := s.DialV5(t, daemontest.V5Options{ClientID: "dev-5", Username: "dev", Password: c.Secret})
	if err != nil {
		t.Fatal(err)
	}
	v3, err := net.Dial("tcp", s.MQTT)
	if err != nil {
		t.Fatal(err)
	}
	defer v3.Close()
	if _, err := v3.Write(rawConnect(4, "dev-3", "dev", c.Secret, "", "")); err != nil {
		t.Fatal(err)
	}
	connack := make([]byte, 4)
	_ = v3.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(v3, connack); err != nil || connack[3] != 0 {
		t.Fatalf("3.1.1 CONNACK = %x, %v; want accepted", connack, err)
	}
	other, err := s.DialV5(t, daemontest.V5Options{ClientID: "dev-other", Username: "dev", Password: lasting})
	if err != nil {
		t.Fatal(err)
	}

	select {
	case d := <-v5.Disconnected:
		if now := time.Now(); now.Before(exp.Truncate(time.Millisecond)) { // the store keeps milliseconds
			t.Errorf("disconnected at %v, before the secret expired at %v", now, exp)
		}
		if d.ReasonCode != 0xA0 {
			t.Errorf("DISCONNECT reason = %#x; want 0xA0 (maximum connect time)", d.ReasonCode)
		}
	case <-time.After(time.Until(exp) + 5*time.Second):
		t.Fatal("MQTT 5 connection still open 5 s after its secret expired")
	}
	// 3.1.1: the server closes the connection and sends nothing first.
	_ = v3.SetReadDeadline(time.Now().Add(5 * time.Second))
	rest, err := io.ReadAll(v3)
	if err != nil {
		t.Fatalf("3.1.1 connection not closed 5 s after its secret expired: %v", err)
	}
	if len(rest) != 0 {
		t.Errorf("3.1.1 client was sent %x before the close; want nothing (no DISCONNECT in 3.1.1)", rest)
	}
	daemontest.WaitFor(t, 2*time.Second, func() error {
		if !containsLine(getMetrics(t, s), closed) || metricValue(t, s, closed) != 2 {
			return errorf("%s = %v; want 2", closed, metricValue(t, s, closed))
		}
		return nil
	})

	if rc := other.Pub(t, "things/dev/t", 1, false, "x"); rc != 0 {
		t.Fatalf("connection with the unexpiring secret: publish = %#x; want 0 (still connected)", rc)
	}
	again, err := s.DialV5(t, daemontest.V5Options{ClientID: "dev-5", Username: "dev", Password: c.Secret})
	if err == nil || again.Connack == nil || again.Connack.ReasonCode != 0x87 {
		t.Fatalf("reconnect with the expired secret = %+v, %v; want 0x87", again, err)
	}
}
