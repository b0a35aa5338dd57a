package commands_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"

	"github.com/moteiot/mote/internal/daemontest"
)

// slowDevice is an MQTT 5 device that acknowledges only when told to.
type slowDevice struct {
	*paho.Client
	mu   sync.Mutex
	got  []*paho.Publish
	conn *paho.Connack
}

func (d *slowDevice) received() []*paho.Publish {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]*paho.Publish(nil), d.got...)
}

// waitFor returns the first PUBLISH on topic.
func (d *slowDevice) waitFor(t *testing.T, topic string) *paho.Publish {
	t.Helper()
	var p *paho.Publish
	daemontest.WaitFor(t, wait, func() error {
		for _, x := range d.received() {
			if x.Topic == topic {
				p = x
				return nil
			}
		}
		return fmt.Errorf("nothing on %s yet", topic)
	})
	return p
}

// dialSlow connects a persistent-session device with manual PUBACKs.
func dialSlow(t *testing.T, s *daemontest.Server, clientID, thing, secret string) *slowDevice {
	t.Helper()
	conn, err := net.Dial("tcp", s.MQTT)
	if err != nil {
		t.Fatal(err)
	}
	d := &slowDevice{}
	d.Client = paho.NewClient(paho.ClientConfig{
		Conn:                       packets.NewThreadSafeConn(conn),
		EnableManualAcknowledgment: true,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			d.mu.Lock()
			d.got = append(d.got, pr.Packet)
			d.mu.Unlock()
			return true, nil
		}},
		OnClientError: func(error) {},
	})
	expiry := uint32(600)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	d.conn, err = d.Connect(ctx, &paho.Connect{
		ClientID: clientID, KeepAlive: 30, CleanStart: false,
		Username: thing, UsernameFlag: true, Password: []byte(secret), PasswordFlag: true,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry},
	})
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { _ = d.Disconnect(&paho.Disconnect{}) })
	return d
}

// TestUnacknowledgedCommands: a command the device received but did not
// acknowledge stays queued; when the connection ends it is not resent by
// the resumed session after its TTL, but is sent again within it.
func TestUnacknowledgedCommands(t *testing.T) {
	t.Parallel()
	s := daemontest.Start(t)
	secret := s.Device(t, "dev")
	d := dialSlow(t, s, "dev-slow", "dev", secret)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := d.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "$mote/things/dev/commands/+", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}

	short := send(t, s, "dev", `{"name":"reboot","ttlSeconds":2}`)
	long := send(t, s, "dev", `{"name":"locate","ttlSeconds":600}`)
	p := d.waitFor(t, "$mote/things/dev/commands/"+short.ID)
	if e := p.Properties.MessageExpiry; e == nil || *e < 1 || *e > 3 {
		t.Errorf("message expiry interval of a 2s command: %v; want 1 to 3", e)
	}
	p = d.waitFor(t, "$mote/things/dev/commands/"+long.ID)
	if e := p.Properties.MessageExpiry; e == nil || *e < 590 || *e > 601 {
		t.Errorf("message expiry interval of a 600s command: %v; want about 600", e)
	}
	if c := get(t, s, "dev", long.ID); c.Status != "queued" {
		t.Fatalf("not acknowledged yet, the command is %s; want queued", c.Status)
	}

	// Gone without acknowledging; back after the short TTL.
	_ = d.Disconnect(&paho.Disconnect{})
	waitStatus(t, s, "dev", short.ID, "expired")
	d = dialSlow(t, s, "dev-slow", "dev", secret)
	if !d.conn.SessionPresent {
		t.Fatal("session not resumed")
	}
	p = d.waitFor(t, "$mote/things/dev/commands/"+long.ID)
	if err := d.Ack(p); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, s, "dev", long.ID, "delivered")
	for _, x := range d.received() {
		if strings.HasSuffix(x.Topic, short.ID) {
			t.Errorf("the expired command was delivered again: %v", x)
		}
	}
}
