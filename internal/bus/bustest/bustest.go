// Package bustest is the conformance suite every bus.Bus passes: the
// in-process bus.Local and natsbus on an embedded NATS server run it.
//
// Deliveries may be asynchronous (NATS), so every check waits for its
// condition with a deadline; none sleeps.
package bustest

import (
	"bytes"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/bus"
	"github.com/moteiot/mote/internal/core"
)

// Timeout bounds every wait of the suite.
var Timeout = 10 * time.Second

// Run runs the suite. open returns a new, empty bus; the suite closes it.
func Run(t *testing.T, open func(t *testing.T) bus.Bus) {
	t.Run("AllFields", func(t *testing.T) { testAllFields(t, open) })
	t.Run("Filters", func(t *testing.T) { testFilters(t, open) })
	t.Run("DollarTopics", func(t *testing.T) { testDollarTopics(t, open) })
	t.Run("Unsubscribe", func(t *testing.T) { testUnsubscribe(t, open) })
	t.Run("OrderPerPublisher", func(t *testing.T) { testOrder(t, open) })
	t.Run("ManySubscribers", func(t *testing.T) { testManySubscribers(t, open) })
	t.Run("Concurrency", func(t *testing.T) { testConcurrency(t, open) })
	t.Run("Close", func(t *testing.T) { testClose(t, open) })
}

// Collector records the messages a subscription receives.
type Collector struct {
	mu   sync.Mutex
	msgs []core.Message
}

// Handle is a bus.Handler.
func (c *Collector) Handle(m core.Message) {
	c.mu.Lock()
	c.msgs = append(c.msgs, m)
	c.mu.Unlock()
}

// Messages returns a copy of what was received so far.
func (c *Collector) Messages() []core.Message {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.msgs)
}

// Topics returns the topics received so far, in order.
func (c *Collector) Topics() []string {
	var ts []string
	for _, m := range c.Messages() {
		ts = append(ts, m.Topic)
	}
	return ts
}

// WaitN waits until at least n messages were received.
func (c *Collector) WaitN(tb testing.TB, n int) []core.Message {
	tb.Helper()
	WaitFor(tb, fmt.Sprintf("%d messages", n), func() bool { return len(c.Messages()) >= n })
	return c.Messages()
}

// WaitFor polls cond until it holds, failing tb after Timeout.
func WaitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(Timeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %s waiting for %s", Timeout, what)
		}
		time.Sleep(2 * time.Millisecond) // poll interval, not a wait for a condition
	}
}

func openBus(t *testing.T, open func(t *testing.T) bus.Bus) bus.Bus {
	t.Helper()
	b := open(t)
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return b
}

func testAllFields(t *testing.T, open func(t *testing.T) bus.Bus) {
	b := openBus(t, open)
	var c Collector
	defer b.Subscribe("things/+/telemetry", c.Handle)()
	want := core.Message{
		Topic:    "things/sensor-1/telemetry",
		Payload:  []byte{0, 1, 2, 0xff, '{', '}'},
		QoS:      1,
		Retain:   true,
		ClientID: "client-1",
		Thing:    "sensor-1",
		Received: time.Date(2026, 12, 5, 15, 4, 5, 123456789, time.UTC),
		Protocol: "mqtt",
		Seq:      1<<40 + 7,
		Node:     "node-x",
		Properties: []core.Property{{Key: "$.ct", Value: "application/json"}, {Key: "alert", Value: "high"},
			{Key: "alert", Value: ""}},
	}
	b.Publish(want)
	b.Publish(core.Message{Topic: "things/sensor-2/telemetry", QoS: 2, Protocol: "http"}) // zero fields
	got := c.WaitN(t, 2)
	if len(got) != 2 {
		t.Fatalf("received %d messages; want 2", len(got))
	}
	g := got[0]
	if g.Topic != want.Topic || !bytes.Equal(g.Payload, want.Payload) || g.QoS != want.QoS || g.Retain != want.Retain ||
		g.ClientID != want.ClientID || g.Thing != want.Thing || !g.Received.Equal(want.Received) ||
		g.Protocol != want.Protocol || g.Seq != want.Seq || g.Node != want.Node ||
		!reflect.DeepEqual(g.Properties, want.Properties) {
		t.Errorf("received %+v;\nwant %+v", g, want)
	}
	z := got[1]
	if z.Topic != "things/sensor-2/telemetry" || len(z.Payload) != 0 || z.QoS != 2 || z.Retain || z.ClientID != "" ||
		z.Thing != "" || !z.Received.IsZero() || z.Protocol != "http" || z.Seq != 0 ||
		len(z.Properties) != 0 {
		t.Errorf("received %+v; want only topic, QoS 2 and protocol http set", z)
	}
}

func testFilters(t *testing.T, open func(t *testing.T) bus.Bus) {
	topics := []string{
		"a", "a/b", "a/b/c", "a/c", "b/b", "a//c", "/a", "a/", "x.y/z", "sp ace/q", "st*r/>", "p%25/q",
	}
	cases := []struct {
		filter string
		want   []string
	}{
		{"a", []string{"a"}},
		{"a/b", []string{"a/b"}},
		{"a/+", []string{"a/b", "a/c", "a/"}},
		{"+/b", []string{"a/b", "b/b"}},
		{"a/#", []string{"a", "a/b", "a/b/c", "a/c", "a//c", "a/"}},
		{"a/+/c", []string{"a/b/c", "a//c"}},
		{"+", []string{"a"}},
		{"+/+", []string{"a/b", "a/c", "b/b", "/a", "a/", "x.y/z", "sp ace/q", "st*r/>", "p%25/q"}},
		{"#", topics},
		{"/a", []string{"/a"}},
		{"+/a", []string{"/a"}},
		{"x.y/z", []string{"x.y/z"}},
		{"x/y/z", nil},
		{"sp ace/+", []string{"sp ace/q"}},
		{"st*r/>", []string{"st*r/>"}},
		{"st*r/+", []string{"st*r/>"}},
		{"p%25/q", []string{"p%25/q"}},
		{"p/q", nil},
	}
	b := openBus(t, open)
	cs := make([]*Collector, len(cases))
	for i, tc := range cases {
		cs[i] = new(Collector)
		defer b.Subscribe(tc.filter, cs[i].Handle)()
	}
	for _, tp := range topics {
		b.Publish(core.Message{Topic: tp})
	}
	// Once "#" has the last message, every earlier one has been through
	// the bus; then each filter gets exactly what it matches.
	const end = "end"
	b.Publish(core.Message{Topic: end})
	for i, tc := range cases {
		if tc.filter == "#" {
			cs[i].WaitN(t, len(topics)+1)
		}
	}
	for i, tc := range cases {
		want := slices.Clone(tc.want)
		if tc.filter == "#" || tc.filter == "+" {
			want = append(want, end)
		}
		WaitFor(t, fmt.Sprintf("%d messages on %q", len(want), tc.filter), func() bool { return len(cs[i].Messages()) >= len(want) })
		got := cs[i].Topics()
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("filter %q received %q; want %q", tc.filter, got, want)
		}
	}
}

func testDollarTopics(t *testing.T, open func(t *testing.T) bus.Bus) {
	b := openBus(t, open)
	var all, plus, aws, awsThings Collector
	defer b.Subscribe("#", all.Handle)()
	defer b.Subscribe("+/things/x/shadow/update", plus.Handle)()
	defer b.Subscribe("$aws/#", aws.Handle)()
	defer b.Subscribe("$aws/things/+/shadow/update", awsThings.Handle)()
	b.Publish(core.Message{Topic: "$aws/things/x/shadow/update"})
	b.Publish(core.Message{Topic: "$SYS/x"})
	b.Publish(core.Message{Topic: "things/x/shadow/update"})
	b.Publish(core.Message{Topic: "other/things/x/shadow/update"})
	aws.WaitN(t, 1)
	awsThings.WaitN(t, 1)
	all.WaitN(t, 2)
	plus.WaitN(t, 1) // the last one published: every earlier message has been through
	if got, want := all.Topics(), []string{"things/x/shadow/update", "other/things/x/shadow/update"}; !slices.Equal(got, want) {
		t.Errorf("# received %q; want %q ($ topics not matched by a root wildcard)", got, want)
	}
	if got, want := plus.Topics(), []string{"other/things/x/shadow/update"}; !slices.Equal(got, want) {
		t.Errorf("+/things/x/shadow/update received %q; want %q", got, want)
	}
	if got, want := aws.Topics(), []string{"$aws/things/x/shadow/update"}; !slices.Equal(got, want) {
		t.Errorf("$aws/# received %q; want %q", got, want)
	}
	if got, want := awsThings.Topics(), []string{"$aws/things/x/shadow/update"}; !slices.Equal(got, want) {
		t.Errorf("$aws/things/+/shadow/update received %q; want %q", got, want)
	}
}

func testUnsubscribe(t *testing.T, open func(t *testing.T) bus.Bus) {
	b := openBus(t, open)
	var gone, kept Collector
	unsub := b.Subscribe("u/x", gone.Handle)
	defer b.Subscribe("u/x", kept.Handle)()
	b.Publish(core.Message{Topic: "u/x", Payload: []byte("1")})
	gone.WaitN(t, 1)
	kept.WaitN(t, 1)
	unsub()
	unsub() // twice is harmless
	b.Publish(core.Message{Topic: "u/x", Payload: []byte("2")})
	b.Publish(core.Message{Topic: "u/x", Payload: []byte("3")})
	kept.WaitN(t, 3)
	if n := len(gone.Messages()); n != 1 {
		t.Errorf("an unsubscribed handler received %d messages; want 1 (the one before unsubscribe)", n)
	}
	// Subscribing again works.
	var again Collector
	defer b.Subscribe("u/x", again.Handle)()
	b.Publish(core.Message{Topic: "u/x", Payload: []byte("4")})
	again.WaitN(t, 1)
}

func testOrder(t *testing.T, open func(t *testing.T) bus.Bus) {
	const publishers, each = 4, 500
	b := openBus(t, open)
	var c, byTopic Collector
	defer b.Subscribe("order/#", c.Handle)()
	defer b.Subscribe("order/+/n", byTopic.Handle)()
	var wg sync.WaitGroup
	for p := range publishers {
		wg.Go(func() {
			for i := range each {
				// One publisher alternates between two topics: the order
				// holds across topics the same filter matches.
				tp := fmt.Sprintf("order/%d/n", p)
				if i%2 == 1 {
					tp = fmt.Sprintf("order/%d/m", p)
				}
				b.Publish(core.Message{Topic: tp, ClientID: strconv.Itoa(p), Payload: []byte(strconv.Itoa(i))})
			}
		})
	}
	wg.Wait()
	check := func(name string, c *Collector, n int, step int) {
		got := c.WaitN(t, n)
		if len(got) != n {
			t.Fatalf("%s received %d messages; want %d", name, len(got), n)
		}
		last := map[string]int{}
		for _, m := range got {
			i, _ := strconv.Atoi(string(m.Payload))
			if prev, ok := last[m.ClientID]; ok && i != prev+step {
				t.Fatalf("%s: publisher %s's message %d came after %d", name, m.ClientID, i, prev)
			}
			last[m.ClientID] = i
		}
	}
	check("order/#", &c, publishers*each, 1)
	check("order/+/n", &byTopic, publishers*each/2, 2)
}

func testManySubscribers(t *testing.T, open func(t *testing.T) bus.Bus) {
	const subscribers, msgs = 50, 20
	b := openBus(t, open)
	filters := []string{"many/+", "many/#", "#", "+/x"}
	cs := make([]*Collector, subscribers)
	for i := range cs {
		cs[i] = new(Collector)
		defer b.Subscribe(filters[i%len(filters)], cs[i].Handle)()
	}
	for i := range msgs {
		b.Publish(core.Message{Topic: "many/x", Payload: []byte(strconv.Itoa(i))})
	}
	for i, c := range cs {
		got := c.WaitN(t, msgs)
		for j, m := range got {
			if string(m.Payload) != strconv.Itoa(j) {
				t.Fatalf("subscriber %d (%s): message %d has payload %q", i, filters[i%len(filters)], j, m.Payload)
			}
		}
	}
	// Exactly msgs each, no duplicates.
	for i := range cs {
		if n := len(cs[i].Messages()); n != msgs {
			t.Errorf("subscriber %d received %d messages; want %d", i, n, msgs)
		}
	}
}

func testConcurrency(t *testing.T, open func(t *testing.T) bus.Bus) {
	const publishers, each, churn = 4, 200, 10
	b := openBus(t, open)
	var steady atomic.Int64
	defer b.Subscribe("c/#", func(core.Message) { steady.Add(1) })()
	var wg sync.WaitGroup
	for range publishers {
		wg.Go(func() {
			for range churn {
				var n atomic.Int64
				u := b.Subscribe("c/+", func(core.Message) { n.Add(1) })
				u()
			}
		})
		wg.Go(func() {
			for i := range each {
				b.Publish(core.Message{Topic: "c/" + strconv.Itoa(i%3), Payload: []byte("x")})
			}
		})
	}
	wg.Wait()
	WaitFor(t, "every message at the steady subscriber", func() bool { return steady.Load() >= publishers*each })
	if got := steady.Load(); got != publishers*each {
		t.Errorf("steady subscriber received %d; want %d", got, publishers*each)
	}
}

func testClose(t *testing.T, open func(t *testing.T) bus.Bus) {
	b := open(t)
	var c Collector
	b.Subscribe("z", c.Handle)
	b.Publish(core.Message{Topic: "z"})
	c.WaitN(t, 1)
	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	b.Publish(core.Message{Topic: "z"}) // dropped, no panic
	if err := b.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}
