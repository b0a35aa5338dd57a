package live

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/bus"
	"github.com/moteiot/mote/internal/core"
)

func presenceEvent(i int) core.Message {
	client := fmt.Sprintf("c%d", i)
	return core.Message{
		Topic:    core.PresenceConnected + client,
		Payload:  []byte(`{"event":"connected","clientId":"` + client + `"}`),
		Received: time.Unix(int64(i), 0),
		Protocol: "platform",
	}
}

// TestRecentPresence: the hub keeps the latest Recent presence events,
// oldest first, before and after its list has wrapped around.
func TestRecentPresence(t *testing.T) {
	for _, tc := range []struct {
		events int
		want   string
	}{{0, ""}, {2, "c0 c1"}, {3, "c0 c1 c2"}, {4, "c1 c2 c3"}, {7, "c4 c5 c6"}, {8, "c5 c6 c7"}} {
		h := New(Options{Recent: 3})
		for i := range tc.events {
			h.onPresence(presenceEvent(i))
		}
		var got []string
		for _, e := range h.RecentPresence() {
			got = append(got, strings.TrimPrefix(e.Topic, core.PresenceConnected))
		}
		h.Close()
		if s := strings.Join(got, " "); s != tc.want {
			t.Errorf("RecentPresence after %d events (Recent 3) = %q; want %q", tc.events, s, tc.want)
		}
	}

	// Through the bus, as the broker's presence events arrive.
	var b bus.Bus
	h := New(Options{Bus: &b, Recent: 3})
	defer h.Close()
	for i := range 5 {
		b.Publish(presenceEvent(i))
	}
	got := h.RecentPresence()
	if len(got) != 3 || got[0].Time.Unix() != 2 || got[2].Time.Unix() != 4 || got[2].Topic != core.PresenceConnected+"c4" {
		t.Fatalf("RecentPresence after 5 bus events (Recent 3) = %+v; want the events of c2, c3, c4", got)
	}
}

// TestPresenceEventAllocs: once the list is full, a presence event costs
// no allocation. Every MQTT connect and disconnect is one; copying the
// list for each made it the largest allocation of a connect
// (BenchmarkConnect in internal/broker).
func TestPresenceEventAllocs(t *testing.T) {
	h := New(Options{})
	defer h.Close()
	m := presenceEvent(1)
	for i := range 2 * 50 {
		h.onPresence(presenceEvent(i))
	}
	if allocs := testing.AllocsPerRun(1000, func() { h.onPresence(m) }); allocs != 0 {
		t.Fatalf("a presence event with a full list allocates %.1f times; want 0", allocs)
	}
}
