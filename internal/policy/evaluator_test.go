package policy

import (
	"sync"
	"testing"
)

// evalCase is one question to an Evaluator: may the client do action on
// topic (a topic filter for subscribe)?
type evalCase struct {
	action Action
	topic  string
	want   bool
}

// checkEval asks e each question in cases.
func checkEval(t *testing.T, e *Evaluator, cases []evalCase) {
	t.Helper()
	for _, c := range cases {
		var got bool
		var method string
		switch c.action {
		case Publish:
			got, method = e.CanPublish(c.topic), "CanPublish"
		case Subscribe:
			got, method = e.CanSubscribe(c.topic), "CanSubscribe"
		case Receive:
			got, method = e.CanReceive(c.topic), "CanReceive"
		default:
			t.Fatalf("bad action %q in test case", c.action)
		}
		if got != c.want {
			t.Errorf("%s(%q) = %v; want %v", method, c.topic, got, c.want)
		}
	}
}

func TestDefaultPolicy(t *testing.T) {
	e := Compile([]Document{DefaultDocument()}, Vars{Thing: "t1", ClientID: "client-1"})
	checkEval(t, e, []evalCase{
		{Publish, "things/t1/x", true},
		{Publish, "things/t1/telemetry/temp", true},
		{Publish, "things/t1", true},
		{Publish, "$mote/things/t1/shadow/update", true},
		{Publish, "$aws/things/t1/shadow/get", true},
		{Publish, "things/t2/x", false},
		{Publish, "things/t1x/y", false},
		{Publish, "things", false},
		{Publish, "$aws/things/t2/shadow/get", false},
		{Publish, "$SYS/broker", false},
		{Publish, "other/t1", false},
		{Publish, "things/client-1/x", false},
		{Publish, "things/t1/+", false}, // not a topic name
		{Publish, "things/t1/#", false},
		{Publish, "", false},

		{Subscribe, "things/t1/#", true},
		{Subscribe, "things/t1/+/x", true},
		{Subscribe, "things/t1", true},
		{Subscribe, "things/t1/cmd", true},
		{Subscribe, "$mote/things/t1/#", true},
		{Subscribe, "$aws/things/t1/shadow/+/accepted", true},
		{Subscribe, "things/#", false},
		{Subscribe, "things/+/x", false},
		{Subscribe, "things/+", false},
		{Subscribe, "#", false},
		{Subscribe, "+/t1/#", false},
		{Subscribe, "+/things/t1/#", false},
		{Subscribe, "$mote/#", false},
		{Subscribe, "things/t2/#", false},
		{Subscribe, "things/t1/#/x", false}, // not a filter
		{Subscribe, "", false},

		{Receive, "things/t1/x", true},
		{Receive, "$aws/things/t1/shadow/update/delta", true},
		{Receive, "things/t2/x", false},
		{Receive, "$SYS/x", false},
		{Receive, "things/t1/+", false},
	})
}

func TestSharedSubscription(t *testing.T) {
	e := Compile([]Document{DefaultDocument()}, Vars{Thing: "t1", ClientID: "c1"})
	checkEval(t, e, []evalCase{
		{Subscribe, "$share/workers/things/t1/#", true},
		{Subscribe, "$share/workers/things/t1/+/x", true},
		{Subscribe, "$share/workers/things/#", false},
		{Subscribe, "$share/workers/#", false},
		{Subscribe, "$share/things/t1/#", false},    // group "things", filter "t1/#"
		{Subscribe, "$share//things/t1/#", false},   // empty group
		{Subscribe, "$share/g+/things/t1/#", false}, // wildcard in group
		{Subscribe, "$share/g", false},              // no filter
	})
}

func TestDenyOverridesAllow(t *testing.T) {
	docs := []Document{
		allow(all, "things/#"),
		deny(pubOnly, "things/locked/#"),
		deny(subOnly, "things/secret/#"),
		deny(rcvOnly, "things/private/+"),
	}
	e := Compile(docs, Vars{Thing: "t1", ClientID: "c1"})
	checkEval(t, e, []evalCase{
		{Publish, "things/a/x", true},
		{Publish, "things/locked/x", false},
		{Publish, "things/locked", false}, // "things/locked/#" matches its parent
		{Publish, "things/lockedx", true},
		{Publish, "things/secret/x", true},
		{Publish, "things/private/x", true},

		{Subscribe, "things/a/#", true},
		{Subscribe, "things/locked/#", true},
		{Subscribe, "things/private/#", true}, // only receiving there is denied
		{Subscribe, "things/secret/#", false},
		{Subscribe, "things/secret/x", false},
		{Subscribe, "things/secret/+", false},
		{Subscribe, "things/secret", false}, // "things/secret/#" matches its parent
		{Subscribe, "things/#", true},       // the filter as written: receive decides what it gets
		{Subscribe, "things/+/x", true},
		{Subscribe, "things/+", true},
		{Subscribe, "things/a/+", true},
		{Subscribe, "#", false}, // not covered by things/#

		{Receive, "things/a/x", true},
		{Receive, "things/secret/x", true}, // a deny on subscribe refuses SUBSCRIBE only
		{Receive, "things/private/x", false},
		{Receive, "things/private/x/y", true}, // "+" is one level
		{Receive, "things/locked/x", true},
	})

	// The order of documents does not matter.
	reversed := Compile([]Document{docs[3], docs[2], docs[1], docs[0]}, Vars{Thing: "t1"})
	checkEval(t, reversed, []evalCase{
		{Publish, "things/locked/x", false},
		{Subscribe, "things/secret/#", false},
		{Subscribe, "things/#", true},
		{Receive, "things/private/x", false},
	})

	// A deny in the same statement list wins too.
	same := Compile([]Document{{Statements: []Statement{
		{Effect: Deny, Actions: all, Topics: []string{"a/b"}},
		{Effect: Allow, Actions: all, Topics: []string{"a/+"}},
	}}}, Vars{})
	checkEval(t, same, []evalCase{
		{Publish, "a/b", false},
		{Publish, "a/c", true},
		{Subscribe, "a/b", false},
		{Subscribe, "a/+", true}, // does not name a/b; receive keeps a/b from it
		{Subscribe, "a/c", true},
		{Receive, "a/b", false},
	})
}

// The "everything except X": a deny on subscribe matches the
// filter as written, so it no longer refuses every overlapping wildcard;
// a deny on receive decides per topic what a wildcard subscriber gets.
func TestEverythingExcept(t *testing.T) {
	e := Compile([]Document{
		allow(all, "#"),
		deny(subOnly, "test/nosubscribe"),
		deny(rcvOnly, "test/secret"),
		deny(subOnly, "things/+/cmd"),
	}, Vars{Thing: "t1"})
	checkEval(t, e, []evalCase{
		{Subscribe, "#", true},
		{Subscribe, "test/#", true},
		{Subscribe, "test/+", true},
		{Subscribe, "test/nosubscribe", false},
		{Subscribe, "test/secret", true}, // allowed, but nothing is delivered (below)
		{Subscribe, "things/+/cmd", false},
		{Subscribe, "things/a/cmd", false}, // a '+' in the statement is a wildcard
		{Subscribe, "things/#", true},

		{Receive, "test/nosubscribe", true},
		{Receive, "test/secret", false},
		{Receive, "test/other", true},
	})
	for _, tc := range []struct {
		topic string
		want  bool
	}{
		{"test/nosubscribe", true}, // a "#" subscriber gets it: only subscribing to it by name is refused
		{"test/secret", false},
		{"test/other", true},
	} {
		if got := e.CanDeliver(tc.topic); got != tc.want {
			t.Errorf("CanDeliver(%q) = %v; want %v", tc.topic, got, tc.want)
		}
	}
}

// A delivery needs receive and an allow-subscribe pattern that still
// matches the topic: taking subscribe away ends the deliveries of a
// subscription made before.
func TestCanDeliver(t *testing.T) {
	e := Compile([]Document{allow(subOnly, "a/#"), allow(rcvOnly, "b/#")}, Vars{})
	for _, tc := range []struct {
		topic string
		want  bool
	}{
		{"a/x", true},  // subscribe implies receive
		{"b/x", false}, // receive, but no subscription can be allowed there
		{"c/x", false},
		{"a/+", false}, // not a topic name
	} {
		if got := e.CanDeliver(tc.topic); got != tc.want {
			t.Errorf("CanDeliver(%q) = %v; want %v", tc.topic, got, tc.want)
		}
	}
	var nilEv *Evaluator
	if nilEv.CanDeliver("a/x") {
		t.Error("nil Evaluator CanDeliver = true")
	}
}

func TestActions(t *testing.T) {
	e := Compile([]Document{
		allow(pubOnly, "pub/#"),
		allow(subOnly, "sub/#"),
		allow(rcvOnly, "rcv/#"),
	}, Vars{})
	checkEval(t, e, []evalCase{
		{Publish, "pub/x", true},
		{Subscribe, "pub/x", false},
		{Receive, "pub/x", false},

		{Publish, "sub/x", false},
		{Subscribe, "sub/x", true},
		{Receive, "sub/x", true}, // subscribe implies receive

		{Publish, "rcv/x", false},
		{Subscribe, "rcv/x", false}, // receive does not imply subscribe
		{Receive, "rcv/x", true},
	})
}

func TestVariableInjection(t *testing.T) {
	doc := allow(all, "clients/${clientid}/#", "things/${thing}/#")
	tests := []struct {
		name  string
		vars  Vars
		cases []evalCase
	}{
		{"plain values", Vars{Thing: "t1", ClientID: "c1"}, []evalCase{
			{Publish, "clients/c1/x", true},
			{Publish, "things/t1/x", true},
			{Subscribe, "clients/c1/#", true},
		}},
		{"client id with + and /", Vars{Thing: "t1", ClientID: "a/+"}, []evalCase{
			{Publish, "clients/a/b/x", false},
			{Subscribe, "clients/a/+/#", false},
			{Subscribe, "clients/a/#", false},
			{Receive, "clients/a/b/x", false},
			{Publish, "things/t1/x", true}, // other patterns are unaffected
		}},
		{"client id #", Vars{Thing: "t1", ClientID: "#"}, []evalCase{
			{Publish, "clients/x", false},
			{Publish, "clients/x/y", false},
			{Subscribe, "clients/#", false},
			{Receive, "clients/x", false},
		}},
		{"client id with /", Vars{ClientID: "a/b"}, []evalCase{
			{Publish, "clients/a/b/x", false},
			{Subscribe, "clients/a/b/#", false},
		}},
		{"client id with NUL", Vars{ClientID: "a\x00"}, []evalCase{
			{Publish, "clients/a/x", false},
			{Subscribe, "clients/+/#", false},
		}},
		{"empty client id and thing", Vars{}, []evalCase{
			{Publish, "clients//x", false},
			{Publish, "things//x", false},
			{Subscribe, "things//#", false},
			{Subscribe, "things/+/#", false},
			{Receive, "clients//x", false},
		}},
		{"thing with + is dropped from the default policy", Vars{Thing: "+"}, []evalCase{
			{Publish, "things/t2/x", false},
			{Subscribe, "things/+/#", false},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkEval(t, Compile([]Document{doc, DefaultDocument()}, tt.vars), tt.cases)
		})
	}
}

func TestDenyVariablesWiden(t *testing.T) {
	docs := []Document{
		allow(all, "things/#"),
		deny(pubOnly, "things/${clientid}/cmd"),
		deny(subOnly, "things/${clientid}/secret/#"),
		deny(rcvOnly, "things/${clientid}/secret/#"),
	}
	tests := []struct {
		clientID string
		cases    []evalCase
	}{
		{"c1", []evalCase{
			{Publish, "things/c1/cmd", false},
			{Publish, "things/c2/cmd", true},
			{Subscribe, "things/c1/secret/#", false},
			{Subscribe, "things/c2/secret/#", true},
			{Subscribe, "things/#", true}, // receive decides what it gets
			{Receive, "things/c1/secret/x", false},
			{Receive, "things/c2/secret/x", true},
		}},
		{"+", []evalCase{
			{Publish, "things/a/cmd", false},
			{Publish, "things/a/data", true},
			{Subscribe, "things/x/secret/a", false},
			{Subscribe, "things/+/secret/#", false},
			{Subscribe, "things/x/public/#", true},
			{Receive, "things/x/secret/a", false},
		}},
		{"x+y", []evalCase{ // a level holding '+' becomes "+"
			{Publish, "things/q/cmd", false},
			{Publish, "things/q/data", true},
		}},
		{"#", []evalCase{ // things/#/cmd becomes things/#
			{Publish, "things/a/cmd", false},
			{Publish, "things/a/data", false},
			{Subscribe, "things/a/public", false}, // things/#/secret/# becomes things/# too
			{Subscribe, "things/#", false},
			{Receive, "things/a/public", false},
		}},
		{"a#b", []evalCase{
			{Publish, "things/q/data", false},
		}},
		{"a/b", []evalCase{ // '/' stays a separator
			{Publish, "things/a/b/cmd", false},
			{Publish, "things/a/cmd", true},
		}},
		{"", []evalCase{
			{Publish, "things//cmd", false},
			{Publish, "things/a/cmd", true},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.clientID, func(t *testing.T) {
			checkEval(t, Compile(docs, Vars{ClientID: tt.clientID}), tt.cases)
		})
	}
}

func TestWiden(t *testing.T) {
	tests := []struct{ in, want string }{
		{"things/a/cmd", "things/a/cmd"},
		{"things/+/cmd", "things/+/cmd"},
		{"things/#", "things/#"},
		{"things/x+y/cmd", "things/+/cmd"},
		{"things/#/cmd", "things/#"},
		{"things/a#b/cmd", "things/#"},
		{"things/+#/cmd", "things/#"},
		{"+x/#", "+/#"},
	}
	for _, tt := range tests {
		if got := widen(tt.in); got != tt.want {
			t.Errorf("widen(%q) = %q; want %q", tt.in, got, tt.want)
		}
	}
}

func TestAllowsNothing(t *testing.T) {
	invalid := allow(all, "things/#/x")
	tests := []struct {
		name string
		e    *Evaluator
	}{
		{"nil evaluator", nil},
		{"no documents", Compile(nil, Vars{Thing: "t1"})},
		{"an invalid document", Compile([]Document{DefaultDocument(), invalid}, Vars{Thing: "t1"})},
		{"deny only", Compile([]Document{deny(all, "#")}, Vars{Thing: "t1"})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkEval(t, tt.e, []evalCase{
				{Publish, "things/t1/x", false},
				{Subscribe, "things/t1/#", false},
				{Receive, "things/t1/x", false},
			})
		})
	}
}

func TestEvaluatorConcurrent(t *testing.T) {
	e := Compile([]Document{DefaultDocument(), deny(all, "things/${thing}/secret")}, Vars{Thing: "t1"})
	cases := []evalCase{
		{Publish, "things/t1/x", true},
		{Publish, "things/t1/secret", false},
		{Subscribe, "things/t1/data/+", true},
		{Subscribe, "things/t1/secret", false},
		{Subscribe, "things/t1/+", true},
		{Receive, "things/t1/x", true},
		{Receive, "things/t1/secret", false},
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 200 {
				checkEval(t, e, cases)
			}
		})
	}
	wg.Wait()
}

func TestEvaluatorDoesNotAllocate(t *testing.T) {
	e := Compile([]Document{DefaultDocument(), deny(all, "things/${thing}/secret/#")}, Vars{Thing: "t1", ClientID: "c1"})
	tests := []struct {
		name string
		f    func()
	}{
		{"CanPublish", func() { e.CanPublish("things/t1/telemetry/temp") }},
		{"CanPublish denied", func() { e.CanPublish("things/t2/telemetry/temp") }},
		{"CanSubscribe", func() { e.CanSubscribe("$share/g/things/t1/+/x") }},
		{"CanReceive", func() { e.CanReceive("$aws/things/t1/shadow/update/delta") }},
	}
	for _, tt := range tests {
		if got := testing.AllocsPerRun(100, tt.f); got != 0 {
			t.Errorf("%s allocates %v times per call; want 0", tt.name, got)
		}
	}
}

func BenchmarkCanPublish(b *testing.B) {
	e := Compile([]Document{DefaultDocument()}, Vars{Thing: "t1", ClientID: "client-1"})
	b.ReportAllocs()
	for b.Loop() {
		if !e.CanPublish("$aws/things/t1/shadow/update") {
			b.Fatal("CanPublish = false; want true")
		}
	}
}

func BenchmarkCanSubscribe(b *testing.B) {
	e := Compile([]Document{DefaultDocument()}, Vars{Thing: "t1", ClientID: "client-1"})
	b.ReportAllocs()
	for b.Loop() {
		if !e.CanSubscribe("$share/g/things/t1/+/telemetry") {
			b.Fatal("CanSubscribe = false; want true")
		}
	}
}

func BenchmarkCanReceive(b *testing.B) {
	e := Compile([]Document{DefaultDocument()}, Vars{Thing: "t1", ClientID: "client-1"})
	b.ReportAllocs()
	for b.Loop() {
		if e.CanReceive("things/t2/telemetry") {
			b.Fatal("CanReceive = true; want false")
		}
	}
}

func TestUsesClientID(t *testing.T) {
	t.Parallel()
	doc := func(topics ...string) Document {
		return Document{Statements: []Statement{{Effect: Allow, Actions: []Action{Publish}, Topics: topics}}}
	}
	tests := []struct {
		name string
		docs []Document
		want bool
	}{
		{"none", nil, false},
		{"thing only", []Document{doc("things/${thing}/#")}, false},
		{"client id", []Document{doc("things/${thing}/#"), doc("a", "c/${clientid}/x")}, true},
		{"literal", []Document{doc("clientid/+")}, false},
	}
	for _, tt := range tests {
		if got := UsesClientID(tt.docs); got != tt.want {
			t.Errorf("UsesClientID(%s) = %v; want %v", tt.name, got, tt.want)
		}
	}
}
