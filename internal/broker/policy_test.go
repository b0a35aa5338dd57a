package broker_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/daemontest"
	"github.com/moteiot/mote/internal/policy"
	"github.com/moteiot/mote/internal/store"
)

func TestDefaultPolicy(t *testing.T) {
	s := daemontest.Start(t)
	secA := s.Device(t, "a")
	secB := s.Device(t, "b")
	a5 := s.V5(t, "a", secA)
	b5 := s.V5(t, "b", secB)

	if rc := b5.Sub(t, "things/b/#"); rc != 1 {
		t.Fatalf("b subscribe to own things/b/# = %#x; want granted QoS 1", rc)
	}
	if rc := b5.Sub(t, "things/a/#"); rc != 0x87 {
		t.Fatalf("b subscribe to things/a/# = %#x; want 0x87", rc)
	}
	if rc := b5.Sub(t, "things/#"); rc != 0x87 {
		t.Fatalf("b subscribe to things/# = %#x; want 0x87", rc)
	}
	if rc := b5.Sub(t, "$mote/things/b/commands/#"); rc != 1 {
		t.Fatalf("b subscribe to its platform topics = %#x; want 1", rc)
	}

	// a may not publish into b's namespace: PUBACK 0x87 on MQTT 5, and the
	// message is not delivered; a stays connected.
	if rc := a5.Pub(t, "things/b/telemetry", 1, false, "spoof"); rc != 0x87 {
		t.Fatalf("a publish to things/b/telemetry = %#x; want 0x87", rc)
	}
	b5.Inbox.None(t, "things/b/telemetry", 200*time.Millisecond)
	if rc := a5.Pub(t, "things/a/telemetry", 1, false, "ok"); rc != 0 {
		t.Fatalf("a publish to own topic after a denial = %#x; want 0 (still connected)", rc)
	}

	// MQTT 3.1.1: a denied QoS 1 publish is acknowledged and dropped; the
	// client is not disconnected.
	a3, _, err := s.DialV3(t, daemontest.V3Options{ClientID: "a-v3", Username: "a", Password: secA})
	if err != nil {
		t.Fatal(err)
	}
	a3.Pub(t, "things/b/telemetry", 1, false, "spoof3")
	a3.Pub(t, "things/a/telemetry", 1, false, "fine")
	if !a3.IsConnectionOpen() {
		t.Fatal("v3 client disconnected after a denied publish")
	}
	b5.Inbox.None(t, "things/b/telemetry", 200*time.Millisecond)
	if got := a3.Sub(t, "things/b/#", 1); got != 0x80 {
		t.Fatalf("v3 subscribe to another thing's topics = %#x; want 0x80", got)
	}
	if !a3.IsConnectionOpen() {
		t.Fatal("v3 client disconnected after a denied subscribe")
	}
}

// The scenario from the issue: a thing whose attached policy allows
// subscribing to things/# receives another thing's telemetry, a thing with
// the default policy cannot.
func TestAttachedPolicy(t *testing.T) {
	s := daemontest.Start(t)
	ctx := context.Background()
	_, err := s.Registry().CreatePolicy(ctx, "observer", "", policy.Document{Statements: []policy.Statement{
		{Effect: policy.Allow, Actions: []policy.Action{policy.Subscribe}, Topics: []string{"things/#"}},
		{Effect: policy.Deny, Actions: []policy.Action{policy.Receive}, Topics: []string{"things/+/secret"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	pub := s.V3(t, "sensor", s.Device(t, "sensor"))
	obs := s.V3(t, "dash", s.Device(t, "dash", "observer"))
	other := s.V3(t, "plain", s.Device(t, "plain"))

	if rc := obs.Sub(t, "things/#", 1); rc != 1 {
		t.Fatalf("observer subscribe things/# = %#x; want 1", rc)
	}
	if rc := other.Sub(t, "things/#", 1); rc != 0x80 {
		t.Fatalf("default-policy thing subscribe things/# = %#x; want 0x80", rc)
	}
	pub.Pub(t, "things/sensor/telemetry", 1, false, `{"temp":21}`)
	if m := obs.Inbox.Wait(t, "things/sensor/telemetry", 2*time.Second); m.Payload != `{"temp":21}` {
		t.Fatalf("observer got %q", m.Payload)
	}
	pub.Pub(t, "things/sensor/secret", 1, false, "pw")
	obs.Inbox.None(t, "things/sensor/secret", 200*time.Millisecond)
	other.Inbox.None(t, "", 100*time.Millisecond)
}

func TestPolicyVariablesAndLiveUpdate(t *testing.T) {
	s := daemontest.Start(t)
	ctx := context.Background()
	_, err := s.Registry().CreatePolicy(ctx, "inbox", "", policy.Document{Statements: []policy.Statement{
		{Effect: policy.Allow, Actions: []policy.Action{policy.Publish, policy.Subscribe}, Topics: []string{"inbox/${clientid}"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	sec := s.Device(t, "d", "inbox")
	c, err := s.DialV5(t, daemontest.V5Options{ClientID: "box1", Username: "d", Password: sec})
	if err != nil {
		t.Fatal(err)
	}
	if rc := c.Sub(t, "inbox/box1"); rc != 1 {
		t.Fatalf("subscribe inbox/${clientid} = %#x; want 1", rc)
	}
	if rc := c.Sub(t, "inbox/box2"); rc != 0x87 {
		t.Fatalf("subscribe another client's inbox = %#x; want 0x87", rc)
	}
	if rc := c.Pub(t, "inbox/box1", 1, false, "hello"); rc != 0 {
		t.Fatalf("publish inbox/box1 = %#x", rc)
	}
	c.Inbox.Wait(t, "inbox/box1", 2*time.Second)

	// Tighten the policy while connected: the next publish is refused.
	_, err = s.Registry().UpdatePolicy(ctx, "inbox", "", policy.Document{Statements: []policy.Statement{
		{Effect: policy.Allow, Actions: []policy.Action{policy.Subscribe}, Topics: []string{"inbox/${clientid}"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	daemontest.WaitFor(t, 2*time.Second, func() error {
		if rc := c.Pub(t, "inbox/box1", 1, false, "again"); rc != 0x87 {
			return errorf("publish after policy update = %#x; want 0x87", rc)
		}
		return nil
	})

	// Detaching the policy from the thing also applies at once.
	if _, err := s.Registry().UpdateThing(ctx, "d", store.ThingPatch{Policies: []string{}}); err != nil {
		t.Fatal(err)
	}
	daemontest.WaitFor(t, 2*time.Second, func() error {
		if rc := c.Sub(t, "inbox/box1"); rc != 0x87 {
			return errorf("subscribe after detach = %#x; want 0x87", rc)
		}
		return nil
	})
}

// "Everything except X" (issue 11): a deny on subscribe matches the filter
// as written — it refuses subscribing to test/nosubscribe, not to "#" —
// and a deny on receive keeps a topic's messages from a "#" subscriber.
func TestEverythingExceptX(t *testing.T) {
	s := daemontest.Start(t)
	ctx := context.Background()
	_, err := s.Registry().CreatePolicy(ctx, "all-but", "", policy.Document{Statements: []policy.Statement{
		{Effect: policy.Allow, Actions: []policy.Action{policy.Publish, policy.Subscribe, policy.Receive}, Topics: []string{"#"}},
		{Effect: policy.Deny, Actions: []policy.Action{policy.Subscribe}, Topics: []string{"test/nosubscribe"}},
		{Effect: policy.Deny, Actions: []policy.Action{policy.Receive}, Topics: []string{"test/secret"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	sub := s.V5(t, "watcher", s.Device(t, "watcher", "all-but"))
	if rc := sub.Sub(t, "#"); rc != 1 {
		t.Fatalf("subscribe # = %#x; want 1 (granted)", rc)
	}
	if rc := sub.Sub(t, "test/nosubscribe"); rc != 0x87 {
		t.Fatalf("subscribe test/nosubscribe = %#x; want 0x87", rc)
	}
	if rc := sub.Sub(t, "test/+"); rc != 1 {
		t.Fatalf("subscribe test/+ = %#x; want 1", rc)
	}
	v3 := s.V3(t, "watcher3", s.Device(t, "watcher3", "all-but"))
	if rc := v3.Sub(t, "test/nosubscribe", 1); rc != 0x80 {
		t.Fatalf("MQTT 3.1.1 subscribe test/nosubscribe = %#x; want 0x80", rc)
	}
	before := deniedReceives(t, s)

	pub := s.V5(t, "pub", s.Device(t, "pub", "all-but"))
	// In order on one connection at QoS 1: once the last has arrived, the
	// secret one would have too.
	for _, topic := range []string{"test/secret", "test/nosubscribe", "test/other"} {
		if rc := pub.Pub(t, topic, 1, false, topic); rc != 0 {
			t.Fatalf("publish %s = %#x", topic, rc)
		}
	}
	sub.Inbox.Wait(t, "test/other", 5*time.Second)
	sub.Inbox.Wait(t, "test/nosubscribe", time.Second) // a deny on subscribe does not hide it from "#"
	for _, m := range sub.Inbox.All() {
		if m.Topic == "test/secret" {
			t.Fatalf("the # subscriber got test/secret, which it may not receive")
		}
	}
	if after := deniedReceives(t, s); after <= before {
		t.Fatalf("mote_mqtt_policy_denied_total{action=\"receive\"} = %v, was %v; want it to move", after, before)
	}
}

// deniedReceives reads mote_mqtt_policy_denied_total{action="receive"}.
func deniedReceives(t *testing.T, s *daemontest.Server) float64 {
	t.Helper()
	const name = `mote_mqtt_policy_denied_total{action="receive"} `
	for _, l := range strings.Split(getMetrics(t, s), "\n") {
		if v, ok := strings.CutPrefix(l, name); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	return 0
}
