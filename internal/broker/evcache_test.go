package broker

import (
	"testing"
)

// TestConnectSharesEvaluator: clients of one thing whose policies do not
// use ${clientid} share one compiled evaluator (no compilation per
// connect), and a policy change still takes effect on the next connect.
func TestConnectSharesEvaluator(t *testing.T) {
	t.Parallel()
	src := &heldPolicies{topic: "things/${thing}/a"}
	b := startRefreshBroker(t, src)
	for _, id := range []string{"one", "two"} {
		c, err := connect3(b, id)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Disconnect(0)
	}
	one, two := liveSession(t, b, "one").ev.Load(), liveSession(t, b, "two").ev.Load()
	if one != two {
		t.Errorf("clients one and two of thing dev have evaluators %p and %p; want one shared evaluator", one, two)
	}
	if !one.CanPublish("things/dev/a") {
		t.Errorf("CanPublish(things/dev/a) = false; want true")
	}

	src.set("things/${thing}/b")
	b.RefreshPolicies("dev")
	c, err := connect3(b, "three")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Disconnect(0)
	three := liveSession(t, b, "three").ev.Load()
	if three == one {
		t.Fatalf("after a policy change the next connect got the cached evaluator")
	}
	if three.CanPublish("things/dev/a") || !three.CanPublish("things/dev/b") {
		t.Errorf("after the change to things/${thing}/b: CanPublish(a) = %v, CanPublish(b) = %v; want false, true",
			three.CanPublish("things/dev/a"), three.CanPublish("things/dev/b"))
	}
	waitFor(t, "client one recompiled", func() bool { return liveSession(t, b, "one").ev.Load().CanPublish("things/dev/b") })
}

// TestConnectEvaluatorPerClientID: a thing whose policies use ${clientid}
// gets an evaluator of its own for each client id.
func TestConnectEvaluatorPerClientID(t *testing.T) {
	t.Parallel()
	src := &heldPolicies{topic: "things/${thing}/${clientid}"}
	b := startRefreshBroker(t, src)
	for _, id := range []string{"one", "two", "one-again"} {
		c, err := connect3(b, id)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Disconnect(0)
	}
	for _, tc := range []struct {
		client, topic string
		want          bool
	}{
		{"one", "things/dev/one", true},
		{"one", "things/dev/two", false},
		{"two", "things/dev/two", true},
		{"two", "things/dev/one", false},
		{"one-again", "things/dev/one-again", true},
		{"one-again", "things/dev/one", false},
	} {
		if got := liveSession(t, b, tc.client).ev.Load().CanPublish(tc.topic); got != tc.want {
			t.Errorf("client %s: CanPublish(%s) = %v; want %v", tc.client, tc.topic, got, tc.want)
		}
	}
}
