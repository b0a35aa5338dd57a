package bus

import (
	"sync"
	"sync/atomic"
	"testing"

	"github.com/moteiot/mote/internal/core"
)

func TestPublishMatchesFilters(t *testing.T) {
	var b Local
	var got []string
	b.Subscribe("things/+/telemetry", func(m core.Message) { got = append(got, "tele:"+m.Topic) })
	unsub := b.Subscribe("#", func(m core.Message) { got = append(got, "all:"+m.Topic) })
	b.Subscribe("$aws/things/+/shadow/#", func(m core.Message) { got = append(got, "shadow:"+m.Topic) })

	b.Publish(core.Message{Topic: "things/a/telemetry"})
	b.Publish(core.Message{Topic: "$aws/things/a/shadow/update"})
	unsub()
	b.Publish(core.Message{Topic: "things/b/other"})

	want := []string{"tele:things/a/telemetry", "all:things/a/telemetry", "shadow:$aws/things/a/shadow/update"}
	if len(got) != len(want) {
		t.Fatalf("got %v; want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("delivery %d = %q; want %q (all: %v)", i, got[i], want[i], got)
		}
	}
}

func TestConcurrentSubscribeAndPublish(t *testing.T) {
	const publishers, perPublisher, churn = 4, 1000, 100
	var b Local
	var kept, other, churned atomic.Int64
	b.Subscribe("x/#", func(core.Message) { kept.Add(1) })
	b.Subscribe("y/#", func(core.Message) { other.Add(1) })
	var wg sync.WaitGroup
	for range publishers {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for range churn {
				u := b.Subscribe("x/#", func(core.Message) { churned.Add(1) })
				u()
			}
		}()
		go func() {
			defer wg.Done()
			for range perPublisher {
				b.Publish(core.Message{Topic: "x/y"})
			}
		}()
	}
	wg.Wait()

	// The subscription that stayed saw every message, whatever the churn
	// around it; the one on another filter saw none.
	if got, want := kept.Load(), int64(publishers*perPublisher); got != want {
		t.Errorf("deliveries to the steady subscriber = %d; want %d", got, want)
	}
	if got := other.Load(); got != 0 {
		t.Errorf("deliveries to a non-matching subscriber = %d; want 0", got)
	}
	// A churned subscription can only have seen messages published while
	// it existed, so at most one per publish.
	if got, max := churned.Load(), int64(publishers*perPublisher*publishers); got > max {
		t.Errorf("deliveries to churned subscribers = %d; want at most %d", got, max)
	}
	// Every unsubscribe took effect: only the two steady subscriptions are
	// left, and a new message reaches no churned handler.
	if n := len(*b.subs.Load()); n != 2 {
		t.Errorf("subscriptions left = %d; want 2", n)
	}
	before := churned.Load()
	b.Publish(core.Message{Topic: "x/y"})
	if got := churned.Load(); got != before {
		t.Errorf("a message after every unsubscribe reached %d churned handlers", got-before)
	}
	if got, want := kept.Load(), int64(publishers*perPublisher+1); got != want {
		t.Errorf("deliveries to the steady subscriber after the last publish = %d; want %d", got, want)
	}
}

func BenchmarkPublish(b *testing.B) {
	var bus Local
	bus.Subscribe("$aws/things/+/shadow/#", func(core.Message) {})
	bus.Subscribe("$mote/things/+/shadow/#", func(core.Message) {})
	bus.Subscribe("things/+/telemetry", func(core.Message) {})
	m := core.Message{Topic: "things/sensor-1/telemetry", Payload: []byte(`{"t":1}`)}
	b.ReportAllocs()
	for b.Loop() {
		bus.Publish(m)
	}
}

// TestPublishInvalid: filters are checked once, at Subscribe, and topics
// once per Publish; an invalid filter or topic still matches nothing.
func TestPublishInvalid(t *testing.T) {
	b := &Local{}
	var got []string
	for _, f := range []string{"a/#/b", "a/b+", "", "#"} {
		b.Subscribe(f, func(m core.Message) { got = append(got, f+" <- "+m.Topic) })
	}
	for _, topic := range []string{"a/+/b", "a/#", "", "a/\x00", "a/b"} {
		b.Publish(core.Message{Topic: topic})
	}
	if want := []string{"# <- a/b"}; len(got) != 1 || got[0] != want[0] {
		t.Errorf("deliveries = %q; want %q", got, want)
	}
}
