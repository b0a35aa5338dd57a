package cluster_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/daemontest"
	"github.com/moteiot/mote/internal/policy"
)

// testSharedAcrossNodes: a shared group with members on two nodes gets
// each QoS 1 message once in the cluster (published on a member's node
// and on a third), spread over both nodes; an ordinary subscriber of the
// same topic still gets every message once. It runs on the cluster of
// TestSessionsAcrossNodes.
func testSharedAcrossNodes(t *testing.T, c *testCluster) {
	a, b, cc := c.nodes[0], c.nodes[1], c.nodes[2]
	allowPolicy(t, a, "shared-topics", []string{"sh/#"}, policy.Publish, policy.Subscribe, policy.Receive)
	const wait = 10 * time.Second
	members := map[string]*daemontest.V5{
		"sh-m-a":  a.V5(t, "sh-m-a", a.Device(t, "sh-m-a", "shared-topics")),
		"sh-m-b1": b.V5(t, "sh-m-b1", a.Device(t, "sh-m-b1", "shared-topics")),
		"sh-m-b2": b.V5(t, "sh-m-b2", a.Device(t, "sh-m-b2", "shared-topics")),
	}
	for name, m := range members {
		if rc := m.Sub(t, "$share/workers/sh/jobs/#"); rc != 1 {
			t.Fatalf("%s: subscribe = %#x; want 1", name, rc)
		}
	}
	plain := b.V5(t, "sh-plain", a.Device(t, "sh-plain", "shared-topics"))
	if rc := plain.Sub(t, "sh/jobs/#"); rc != 1 {
		t.Fatalf("subscribe = %#x; want 1", rc)
	}
	// Every node has seen the queue subscriptions once a message sent now
	// reaches the group: probe until one arrives.
	pubC := cc.V5(t, "sh-pub-c", a.Device(t, "sh-pub-c", "shared-topics"))
	pubA := a.V5(t, "sh-pub-a", a.Device(t, "sh-pub-a", "shared-topics"))
	total := func() int {
		n := 0
		for _, m := range members {
			n += m.Inbox.Len()
		}
		return n
	}
	if rc := pubC.Pub(t, "sh/jobs/probe", 1, false, "probe"); rc != 0 {
		t.Fatalf("PUBACK %#x", rc)
	}
	daemontest.WaitFor(t, wait, func() error {
		if total() < 1 {
			return fmt.Errorf("the probe has not reached the group")
		}
		return nil
	})

	const perPublisher = 100
	for k := range perPublisher {
		for _, p := range []struct {
			c    *daemontest.V5
			name string
		}{{pubA, "a"}, {pubC, "c"}} {
			if rc := p.c.Pub(t, fmt.Sprintf("sh/jobs/%d", k), 1, false, fmt.Sprintf("%s-%d", p.name, k)); rc != 0 {
				t.Fatalf("PUBACK %#x", rc)
			}
		}
	}
	want := 2*perPublisher + 1
	daemontest.WaitFor(t, wait, func() error {
		if n := total(); n < want {
			return fmt.Errorf("the group got %d of %d messages", n, want)
		}
		if n := plain.Inbox.Len(); n < want {
			return fmt.Errorf("the ordinary subscriber got %d of %d messages", n, want)
		}
		return nil
	})
	// A duplicate would arrive right behind the original: one more
	// message through the same paths, then count.
	if rc := pubC.Pub(t, "sh/jobs/last", 1, false, "last"); rc != 0 {
		t.Fatalf("PUBACK %#x", rc)
	}
	want++
	plain.Inbox.Wait(t, "sh/jobs/last", wait)
	daemontest.WaitFor(t, wait, func() error {
		if n := total(); n < want {
			return fmt.Errorf("the group got %d of %d messages", n, want)
		}
		return nil
	})
	seen := map[string]int{}
	perNode := map[string]int{}
	for name, m := range members {
		for _, msg := range m.Inbox.All() {
			seen[msg.Payload]++
			if msg.QoS != 1 {
				t.Errorf("%s got %s at QoS %d; want 1", name, msg.Payload, msg.QoS)
			}
		}
		perNode[name[:len("sh-m-a")]] += m.Inbox.Len()
	}
	if len(seen) != want {
		t.Errorf("the group got %d distinct messages; want %d", len(seen), want)
	}
	for p, n := range seen {
		if n != 1 {
			t.Errorf("the group got %s %d times; want once", p, n)
		}
	}
	if perNode["sh-m-a"] == 0 || perNode["sh-m-b"] == 0 {
		t.Errorf("messages per node = %v; want both nodes to take a share", perNode)
	}
	plainSeen := map[string]int{}
	for _, msg := range plain.Inbox.All() {
		plainSeen[msg.Payload]++
	}
	if len(plainSeen) != want || len(plain.Inbox.All()) != want {
		t.Errorf("the ordinary subscriber got %d messages, %d distinct; want %d once each", len(plain.Inbox.All()), len(plainSeen), want)
	}
	for _, s := range []*daemontest.Server{a, b} {
		if v := metricValue(t, s, "mote_cluster_shared_groups"); v != 1 {
			t.Errorf("%s: mote_cluster_shared_groups = %v; want 1", s.Config.NodeID, v)
		}
	}
	if v := metricValue(t, cc, "mote_cluster_shared_groups"); v != 0 {
		t.Errorf("node C (no member): mote_cluster_shared_groups = %v; want 0", v)
	}
	// The members leave: the nodes leave the queue group.
	for _, m := range members {
		if _, err := m.Unsubscribe(ctxT(t), unsub("$share/workers/sh/jobs/#")); err != nil {
			t.Fatal(err)
		}
	}
	daemontest.WaitFor(t, wait, func() error {
		for _, s := range []*daemontest.Server{a, b} {
			if v := metricValue(t, s, "mote_cluster_shared_groups"); v != 0 {
				return fmt.Errorf("%s: mote_cluster_shared_groups = %v; want 0", s.Config.NodeID, v)
			}
		}
		return nil
	})
}
