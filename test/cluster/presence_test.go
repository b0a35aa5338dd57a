package cluster_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/cluster"
	"github.com/moteiot/mote/internal/daemontest"
	"github.com/moteiot/mote/internal/policy"
)

// testLostNodePresence: node B stops being heard (its NATS connection
// closed, no cleanup: its devices are still connected to it, as if its
// network or process died). Within the lease node A marks B's things
// disconnected, once, with one disconnected event each (reason
// node_lost), and leaves its own things connected. It runs last on the
// cluster of TestSessionsAcrossNodes (quick leases; node C has left
// already).
func testLostNodePresence(t *testing.T, c *testCluster) {
	a, b := c.nodes[0], c.nodes[1]
	ctx := context.Background()
	allowPolicy(t, a, "presence-watch", []string{"$mote/events/presence/#"}, policy.Subscribe, policy.Receive)
	watch := a.V5(t, "lease-watch", a.Device(t, "lease-watch", "presence-watch"))
	if rc := watch.Sub(t, "$mote/events/presence/disconnected/+"); rc != 1 {
		t.Fatalf("subscribe = %#x; want 1", rc)
	}
	onB := []string{"lease-b1", "lease-b2"}
	for _, name := range onB {
		b.V5(t, name, a.Device(t, name))
	}
	a.V5(t, "lease-a1", a.Device(t, "lease-a1"))
	want := map[string]string{"lease-b1": "node-1", "lease-b2": "node-1", "lease-a1": "node-0", "lease-watch": "node-0"}
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
	// Node C, which left in an earlier subtest, is found lost first.
	daemontest.WaitFor(t, 10*time.Second, func() error {
		if n := metricValue(t, a, "mote_cluster_nodes_lost_total"); n != 1 {
			return fmt.Errorf("nodes found lost by A = %v; want 1 (C)", n)
		}
		return nil
	})
	lostBefore := metricValue(t, a, "mote_cluster_nodes_lost_total")
	thingsBefore := metricValue(t, a, "mote_cluster_lost_things_total")

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
	daemontest.WaitFor(t, 10*time.Second, func() error {
		if n := metricValue(t, a, "mote_cluster_nodes_lost_total") - lostBefore; n != 1 {
			return fmt.Errorf("nodes found lost = %v; want 1", n)
		}
		return nil
	})
	// B's own things and those its devices' sessions left there: every
	// thing connected on B, and nothing else.
	if n := metricValue(t, a, "mote_cluster_lost_things_total") - thingsBefore; n < 2 {
		t.Errorf("things reset = %v; want at least B's 2", n)
	}
	daemontest.WaitFor(t, 10*time.Second, func() error {
		got := 0
		for _, m := range watch.Inbox.All() {
			for _, name := range onB {
				if m.Topic == "$mote/events/presence/disconnected/"+name {
					got++
				}
			}
		}
		if got < 2 {
			return fmt.Errorf("%d disconnected events of B's things; want 2", got)
		}
		return nil
	})
	got := map[string]int{}
	for _, m := range watch.Inbox.All() {
		var e struct{ Thing, Reason string }
		if err := json.Unmarshal([]byte(m.Payload), &e); err != nil {
			t.Fatalf("event %s: %v", m.Payload, err)
		}
		if !strings.HasPrefix(e.Thing, "lease-") {
			continue // a thing of an earlier subtest, whose disconnection is seen late
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
	for name, node := range map[string]string{"lease-a1": "node-0", "lease-watch": "node-0"} {
		th, err := a.Registry().GetThing(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if !th.Connected || th.Node != node {
			t.Errorf("%s on the surviving node: connected %v on %q; want connected on %s", name, th.Connected, th.Node, node)
		}
	}
}
