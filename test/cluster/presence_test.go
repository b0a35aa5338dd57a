package cluster_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/cluster"
	"github.com/moteiot/mote/internal/daemontest"
	"github.com/moteiot/mote/internal/policy"
)

// TestLostNodePresence: node B stops being heard (its NATS connection
// closed, no cleanup: its devices are still connected to it, as if its
// network or process died). Within the lease the survivors mark B's
// things disconnected, once, with one disconnected event each (reason
// node_lost), and leave the other nodes' things connected.
func TestLostNodePresence(t *testing.T) {
	c := startCluster(t, quickLeases)
	a, b, cc := c.nodes[0], c.nodes[1], c.nodes[2]
	ctx := context.Background()
	allowPolicy(t, a, "presence-watch", []string{"$mote/events/presence/#"}, policy.Subscribe, policy.Receive)
	watch := cc.V5(t, "lease-watch", a.Device(t, "lease-watch", "presence-watch"))
	if rc := watch.Sub(t, "$mote/events/presence/disconnected/+"); rc != 1 {
		t.Fatalf("subscribe = %#x; want 1", rc)
	}
	onB := []string{"lease-b1", "lease-b2"}
	for _, name := range onB {
		b.V5(t, name, a.Device(t, name))
	}
	a.V5(t, "lease-a1", a.Device(t, "lease-a1"))
	want := map[string]string{"lease-b1": "node-1", "lease-b2": "node-1", "lease-a1": "node-0", "lease-watch": "node-2"}
	daemontest.WaitFor(t, 10*time.Second, func() error {
		for name, node := range want {
			th, err := a.Registry().GetThing(ctx, name)
			if err != nil {
				return err
			}
			if !th.Connected || th.Node != node {
				return fmt.Errorf("%s: connected %v on %q; want connected on %s", name, th.Connected, th.Node, node)
			}
		}
		return nil
	})

	if err := b.Bus().(*cluster.Node).Close(); err != nil {
		t.Fatal(err)
	}
	daemontest.WaitFor(t, 10*time.Second, func() error {
		for _, name := range onB {
			th, err := a.Registry().GetThing(ctx, name)
			if err != nil {
				return err
			}
			if th.Connected || th.Node != "" {
				return fmt.Errorf("%s: connected %v on %q; want disconnected", name, th.Connected, th.Node)
			}
		}
		return nil
	})
	// Both survivors found B lost; the things were reset by one of them.
	daemontest.WaitFor(t, 10*time.Second, func() error {
		for _, s := range []*daemontest.Server{a, cc} {
			if n := metricValue(t, s, "mote_cluster_nodes_lost_total"); n != 1 {
				return fmt.Errorf("%s: mote_cluster_nodes_lost_total = %v; want 1", s.Config.NodeID, n)
			}
		}
		return nil
	})
	if n := metricValue(t, a, "mote_cluster_lost_things_total") + metricValue(t, cc, "mote_cluster_lost_things_total"); n != 2 {
		t.Errorf("things reset by the survivors = %v; want 2 (each once)", n)
	}
	daemontest.WaitFor(t, 10*time.Second, func() error {
		if n := len(watch.Inbox.All()); n < 2 {
			return fmt.Errorf("%d disconnected events; want 2", n)
		}
		return nil
	})
	got := map[string]int{}
	for _, m := range watch.Inbox.All() {
		var e struct{ Thing, Reason string }
		if err := json.Unmarshal([]byte(m.Payload), &e); err != nil {
			t.Fatalf("event %s: %v", m.Payload, err)
		}
		if e.Reason != "node_lost" {
			t.Errorf("event %s: reason %q; want node_lost", m.Payload, e.Reason)
		}
		got[e.Thing]++
	}
	for _, name := range onB {
		if got[name] != 1 {
			t.Errorf("disconnected events of %s = %d; want 1 (all: %v)", name, got[name], got)
		}
	}
	for name, node := range map[string]string{"lease-a1": "node-0", "lease-watch": "node-2"} {
		th, err := a.Registry().GetThing(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if !th.Connected || th.Node != node {
			t.Errorf("%s on a surviving node: connected %v on %q; want connected on %s", name, th.Connected, th.Node, node)
		}
	}
}
