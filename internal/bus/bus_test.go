package bus

import (
	"sync"
	"testing"

	"github.com/moteiot/mote/internal/core"
)

func TestPublishMatchesFilters(t *testing.T) {
	var b Bus
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
	var b Bus
	var wg sync.WaitGroup
	var mu sync.Mutex
	n := 0
	for i := 0; i < 4; i++ {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for j := 0; j < 100; j++ {
				u := b.Subscribe("x/#", func(core.Message) { mu.Lock(); n++; mu.Unlock() })
				u()
			}
		}()
		go func() {
			defer wg.Done()
			for j := 0; j < 1000; j++ {
				b.Publish(core.Message{Topic: "x/y"})
			}
		}()
	}
	wg.Wait()
}

func BenchmarkPublish(b *testing.B) {
	var bus Bus
	bus.Subscribe("$aws/things/+/shadow/#", func(core.Message) {})
	bus.Subscribe("$mote/things/+/shadow/#", func(core.Message) {})
	bus.Subscribe("things/+/telemetry", func(core.Message) {})
	m := core.Message{Topic: "things/sensor-1/telemetry", Payload: []byte(`{"t":1}`)}
	b.ReportAllocs()
	for b.Loop() {
		bus.Publish(m)
	}
}
