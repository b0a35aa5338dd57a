package cluster_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/daemontest"
	"github.com/moteiot/mote/internal/policy"
)

// TestClientIDAcrossNodes: a client id used by a live clean connection of
// one thing on node A belongs to that thing on every node. Another thing
// using it on node B is refused (MQTT 5: 0x85; 3.1.1: return code 2),
// counted, and the owner stays connected and keeps receiving; the owner
// itself connecting with it on B takes the connection over (0x8E on A).
func TestClientIDAcrossNodes(t *testing.T) {
	c := startCluster(t)
	a, b, cc := c.nodes[0], c.nodes[1], c.nodes[2]
	allowPolicy(t, a, "cid-topics", []string{"cid/#"}, policy.Publish, policy.Subscribe, policy.Receive)
	const wait = 10 * time.Second
	const id = "cid-shared-id" // not the thing's name: any client id

	ownerSecret := a.Device(t, "cid-owner", "cid-topics")
	owner, err := a.DialV5(t, daemontest.V5Options{ClientID: id, Username: "cid-owner", Password: ownerSecret, CleanStart: true})
	if err != nil {
		t.Fatal(err)
	}
	if rc := owner.Sub(t, "cid/owner/in"); rc != 1 {
		t.Fatalf("subscribe = %#x; want 1", rc)
	}
	// Once a message the owner publishes on A has reached a subscriber on
	// B, so has what A told NATS before it: that it holds the id.
	watcher := b.V5(t, "cid-watcher", a.Device(t, "cid-watcher", "cid-topics"))
	if rc := watcher.Sub(t, "cid/owner/out"); rc != 1 {
		t.Fatalf("subscribe = %#x; want 1", rc)
	}
	daemontest.WaitFor(t, wait, func() error {
		if rc := owner.Pub(t, "cid/owner/out", 0, false, "hello"); rc != 0 {
			return fmt.Errorf("publish %#x", rc)
		}
		if len(watcher.Inbox.All()) == 0 {
			return fmt.Errorf("nothing relayed to node B yet")
		}
		return nil
	})

	thief := a.Device(t, "cid-thief", "cid-topics")
	refusedBefore := metricValue(t, b, `mote_mqtt_auth_failures_total{reason="client_id_owned"}`)
	for _, clean := range []bool{true, false} {
		got, err := b.DialV5(t, daemontest.V5Options{ClientID: id, Username: "cid-thief", Password: thief, CleanStart: clean, SessionExpiry: 600})
		if err == nil {
			t.Fatalf("another thing connected on node B with a client id live on node A (clean start %v)", clean)
		}
		if got.Connack == nil || got.Connack.ReasonCode != 0x85 {
			t.Errorf("CONNACK (MQTT 5, clean start %v) = %+v; want 0x85", clean, got.Connack)
		}
	}
	for _, n := range []*daemontest.Server{b, cc} {
		if _, code, err := n.DialV3(t, daemontest.V3Options{ClientID: id, Username: "cid-thief", Password: thief}); err == nil || code != 2 {
			t.Errorf("MQTT 3.1.1 CONNACK on %s = %d (%v); want return code 2", n.Config.NodeID, code, err)
		}
	}
	if got := metricValue(t, b, `mote_mqtt_auth_failures_total{reason="client_id_owned"}`) - refusedBefore; got != 3 {
		t.Errorf("node B counted %v refusals (client_id_owned); want 3", got)
	}
	if got := metricValue(t, b, `mote_cluster_client_id_lookups_total{result="other_thing"}`); got != 3 {
		t.Errorf("node B counted %v lookups answered by another thing; want 3", got)
	}

	// The owner is still connected on A and still receives.
	select {
	case d := <-owner.Disconnected:
		t.Fatalf("owner disconnected on node A: %#x", d.ReasonCode)
	default:
	}
	pub := cc.V5(t, "cid-pub", a.Device(t, "cid-pub", "cid-topics"))
	if rc := pub.Pub(t, "cid/owner/in", 1, false, "still-yours"); rc != 0 {
		t.Fatalf("PUBACK %#x", rc)
	}
	if m := owner.Inbox.Wait(t, "cid/owner/in", wait); m.Payload != "still-yours" {
		t.Errorf("owner got %q; want still-yours", m.Payload)
	}

	// The owner itself moving to node B takes its connection over.
	moved, err := b.DialV5(t, daemontest.V5Options{ClientID: id, Username: "cid-owner", Password: ownerSecret, CleanStart: true})
	if err != nil {
		t.Fatalf("the owner connecting on node B: %v", err)
	}
	select {
	case d := <-owner.Disconnected:
		if d.ReasonCode != 0x8E {
			t.Errorf("old connection on A: DISCONNECT %#x; want 0x8E", d.ReasonCode)
		}
	case <-time.After(wait):
		t.Fatal("old connection on A not closed")
	}
	if got := metricValue(t, b, `mote_cluster_client_id_lookups_total{result="same_thing"}`); got != 1 {
		t.Errorf("node B counted %v lookups answered by the same thing; want 1", got)
	}
	if rc := moved.Sub(t, "cid/owner/in"); rc != 1 {
		t.Fatalf("subscribe = %#x; want 1", rc)
	}
	if rc := pub.Pub(t, "cid/owner/in", 1, false, "on-b"); rc != 0 {
		t.Fatalf("PUBACK %#x", rc)
	}
	if m := moved.Inbox.Wait(t, "cid/owner/in", wait); m.Payload != "on-b" {
		t.Errorf("owner on B got %q; want on-b", m.Payload)
	}
}
