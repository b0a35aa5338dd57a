package cluster_test

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"

	"github.com/moteiot/mote/internal/cluster"
	"github.com/moteiot/mote/internal/config"
	"github.com/moteiot/mote/internal/daemontest"
	"github.com/moteiot/mote/internal/policy"
)

// willDevice connects an MQTT 5 client with a will and returns its TCP
// connection: closing it drops the connection abruptly (no DISCONNECT).
func willDevice(t *testing.T, addr, clientID, thing, secret string, will *paho.WillMessage) (net.Conn, error) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { _ = conn.Close() })
	c := paho.NewClient(paho.ClientConfig{Conn: packets.NewThreadSafeConn(conn), OnClientError: func(error) {}})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ca, err := c.Connect(ctx, &paho.Connect{ClientID: clientID, KeepAlive: 30, CleanStart: true,
		Username: thing, UsernameFlag: true, Password: []byte(secret), PasswordFlag: true, WillMessage: will})
	if err != nil {
		if ca != nil {
			return nil, fmt.Errorf("connack %#x: %w", ca.ReasonCode, err)
		}
		return nil, err
	}
	return conn, nil
}

// TestWillsAcrossNodes: the last will of a device on one node reaches the
// subscribers of every node, once per shared group, retained where asked;
// a will under another thing's topic is refused at CONNECT; and the wills
// of a node that died (its NATS connection cut, its devices left
// connected to it, no will sent by it) are published by a survivor —
// except the one of a device that reconnected to another node first, and
// the one whose thing was deleted meanwhile.
func TestWillsAcrossNodes(t *testing.T) {
	c := startCluster(t, func(cfg *config.Config) {
		cfg.ClusterLeaseInterval = 100 * time.Millisecond
		cfg.ClusterLeaseTimeout = 2 * time.Second // the reconnect below comes first
	})
	a, b, cc := c.nodes[0], c.nodes[1], c.nodes[2]
	ctx := context.Background()
	_, err := a.Registry().CreatePolicy(ctx, "will-own", "", policy.Document{Statements: []policy.Statement{
		{Effect: policy.Allow, Actions: []policy.Action{policy.Publish}, Topics: []string{"wl/${thing}/#"}},
		{Effect: policy.Allow, Actions: []policy.Action{policy.Subscribe, policy.Receive}, Topics: []string{"wl/#"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	const wait = 30 * time.Second
	watchB := b.V5(t, "wl-watch-b", a.Device(t, "wl-watch-b", "will-own"))
	if rc := watchB.Sub(t, "wl/#"); rc != 1 {
		t.Fatalf("subscribe = %#x; want 1", rc)
	}
	members := []*daemontest.V5{
		b.V5(t, "wl-member-b", a.Device(t, "wl-member-b", "will-own")),
		cc.V5(t, "wl-member-c", a.Device(t, "wl-member-c", "will-own")),
	}
	for _, m := range members {
		if rc := m.Sub(t, "$share/g/wl/#"); rc != 1 {
			t.Fatalf("subscribe = %#x; want 1", rc)
		}
	}
	groupGot := func(topic string) int {
		n := 0
		for _, m := range members {
			for _, msg := range m.Inbox.All() {
				if msg.Topic == topic {
					n++
				}
			}
		}
		return n
	}
	// NATS knows the group's queue subscriptions once a message reaches it.
	probe := a.V5(t, "wl-probe", a.Device(t, "wl-probe", "will-own"))
	daemontest.WaitFor(t, wait, func() error {
		if rc := probe.Pub(t, "wl/wl-probe/x", 1, false, "probe"); rc != 0 {
			return fmt.Errorf("PUBACK %#x", rc)
		}
		if groupGot("wl/wl-probe/x") == 0 {
			return fmt.Errorf("the probe has not reached the group")
		}
		return nil
	})

	t.Run("relayed", func(t *testing.T) {
		secret := a.Device(t, "wl-dev", "will-own")
		conn, err := willDevice(t, a.MQTT, "wl-dev", "wl-dev", secret,
			&paho.WillMessage{Topic: "wl/wl-dev/status", Payload: []byte("gone"), QoS: 1, Retain: true})
		if err != nil {
			t.Fatal(err)
		}
		_ = conn.Close() // lost: no DISCONNECT
		m := watchB.Inbox.Wait(t, "wl/wl-dev/status", wait)
		if m.Payload != "gone" || m.QoS != 1 {
			t.Errorf("will on node B = %+v; want gone at QoS 1", m)
		}
		daemontest.WaitFor(t, wait, func() error {
			if groupGot("wl/wl-dev/status") == 0 {
				return fmt.Errorf("the shared group has not got the will")
			}
			return nil
		})
		// A QoS 0 will crosses on core NATS, at QoS 0.
		secret0 := a.Device(t, "wl-dev0", "will-own")
		conn0, err := willDevice(t, a.MQTT, "wl-dev0", "wl-dev0", secret0,
			&paho.WillMessage{Topic: "wl/wl-dev0/status", Payload: []byte("gone0")})
		if err != nil {
			t.Fatal(err)
		}
		_ = conn0.Close()
		if m := watchB.Inbox.Wait(t, "wl/wl-dev0/status", wait); m.Payload != "gone0" || m.QoS != 0 {
			t.Errorf("QoS 0 will on node B = %+v; want gone0 at QoS 0", m)
		}
		// A duplicate would come right behind: one more message through
		// the same paths, then count.
		if rc := probe.Pub(t, "wl/wl-probe/last", 1, false, "last"); rc != 0 {
			t.Fatalf("PUBACK %#x", rc)
		}
		watchB.Inbox.Wait(t, "wl/wl-probe/last", wait)
		daemontest.WaitFor(t, wait, func() error {
			if groupGot("wl/wl-probe/last") == 0 {
				return fmt.Errorf("the shared group has not got the last message")
			}
			return nil
		})
		if n := groupGot("wl/wl-dev/status"); n != 1 {
			t.Errorf("the shared group got the will %d times; want once", n)
		}
		n := 0
		for _, msg := range watchB.Inbox.All() {
			if msg.Topic == "wl/wl-dev/status" {
				n++
			}
		}
		if n != 1 {
			t.Errorf("node B's subscriber got the will %d times; want once", n)
		}
		// Retained: a new subscriber on node C reads it.
		late := cc.V5(t, "wl-late-c", a.Device(t, "wl-late-c", "will-own"))
		if rc := late.Sub(t, "wl/wl-dev/status"); rc != 1 {
			t.Fatalf("subscribe = %#x; want 1", rc)
		}
		if m := late.Inbox.Wait(t, "wl/wl-dev/status", wait); m.Payload != "gone" || !m.Retain {
			t.Errorf("retained will on node C = %+v; want gone, retained", m)
		}
		if v := metricValue(t, a, `mote_cluster_wills_total{result="relayed"}`); v < 1 {
			t.Errorf(`node A: mote_cluster_wills_total{result="relayed"} = %v; want ≥ 1`, v)
		}
	})

	t.Run("another thing's topic", func(t *testing.T) {
		secret := a.Device(t, "wl-evil", "will-own")
		_, err := willDevice(t, a.MQTT, "wl-evil", "wl-evil", secret,
			&paho.WillMessage{Topic: "wl/wl-victim/status", Payload: []byte("forged"), QoS: 1})
		if err == nil {
			t.Fatal("a will under another thing's topic was accepted")
		}
		// Nothing on that topic anywhere: a message behind it arrives alone.
		if rc := probe.Pub(t, "wl/wl-probe/after-evil", 1, false, "x"); rc != 0 {
			t.Fatalf("PUBACK %#x", rc)
		}
		watchB.Inbox.Wait(t, "wl/wl-probe/after-evil", wait)
		for _, msg := range watchB.Inbox.All() {
			if msg.Topic == "wl/wl-victim/status" {
				t.Errorf("the forged will was delivered: %+v", msg)
			}
		}
	})

	t.Run("node lost", func(t *testing.T) {
		watchA := a.V5(t, "wl-watch-a", a.Device(t, "wl-watch-a", "will-own"))
		if rc := watchA.Sub(t, "wl/#"); rc != 1 {
			t.Fatalf("subscribe = %#x; want 1", rc)
		}
		before := metricValue(t, b, `mote_cluster_wills_total{result="recorded"}`)
		for _, name := range []string{"wl-lost", "wl-moved", "wl-deleted"} {
			secret := a.Device(t, name, "will-own")
			if _, err := willDevice(t, b.MQTT, name, name, secret,
				&paho.WillMessage{Topic: "wl/" + name + "/status", Payload: []byte("lost " + name), QoS: 1}); err != nil {
				t.Fatal(err)
			}
		}
		_, movedSecret := a.Secret(t, "wl-moved") // a second secret for the reconnect
		daemontest.WaitFor(t, wait, func() error {
			if v := metricValue(t, b, `mote_cluster_wills_total{result="recorded"}`) - before; v < 3 {
				return fmt.Errorf("node B recorded %v wills; want 3", v)
			}
			return nil
		})
		lostBefore := func(result string) float64 {
			return metricValue(t, a, `mote_cluster_wills_total{result="`+result+`"}`) +
				metricValue(t, cc, `mote_cluster_wills_total{result="`+result+`"}`)
		}
		sent0, moved0, denied0 := lostBefore("lost_sent"), lostBefore("lost_reconnected"), lostBefore("lost_denied")

		// Node B dies for the cluster: its NATS connection is cut, its
		// devices stay connected to it and it sends no will.
		if err := b.Bus().(*cluster.Node).Close(); err != nil {
			t.Fatal(err)
		}
		// Within the lease: wl-moved reconnects to node A (no will);
		// wl-deleted's thing is deleted.
		if _, err := willDevice(t, a.MQTT, "wl-moved", "wl-moved", movedSecret, nil); err != nil {
			t.Fatal(err)
		}
		if err := a.Registry().DeleteThing(ctx, "wl-deleted"); err != nil {
			t.Fatal(err)
		}
		m := watchA.Inbox.Wait(t, "wl/wl-lost/status", wait)
		if m.Payload != "lost wl-lost" || m.QoS != 1 {
			t.Errorf("lost node's will = %+v; want lost wl-lost at QoS 1", m)
		}
		daemontest.WaitFor(t, wait, func() error {
			sent, moved, denied := lostBefore("lost_sent")-sent0, lostBefore("lost_reconnected")-moved0, lostBefore("lost_denied")-denied0
			if sent+moved+denied < 3 {
				return fmt.Errorf("survivors: sent %v, reconnected %v, denied %v; want 1 each", sent, moved, denied)
			}
			if sent != 1 || moved != 1 || denied != 1 {
				t.Errorf("survivors: sent %v, reconnected %v, denied %v; want 1 each", sent, moved, denied)
			}
			return nil
		})
		// One more message behind the wills, then count.
		if rc := probe.Pub(t, "wl/wl-probe/after-loss", 1, false, "x"); rc != 0 {
			t.Fatalf("PUBACK %#x", rc)
		}
		watchA.Inbox.Wait(t, "wl/wl-probe/after-loss", wait)
		got := map[string]int{}
		for _, msg := range watchA.Inbox.All() {
			got[msg.Topic]++
		}
		if got["wl/wl-lost/status"] != 1 || got["wl/wl-moved/status"] != 0 || got["wl/wl-deleted/status"] != 0 {
			t.Errorf("wills on the survivor: %v; want wl-lost's once, none of wl-moved, wl-deleted", got)
		}
	})
}
