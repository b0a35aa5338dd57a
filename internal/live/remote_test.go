package live

import (
	"testing"

	"github.com/moteiot/mote/internal/bus"
	"github.com/moteiot/mote/internal/core"
)

// TestRemoteEvents: in a cluster, the messages of the other nodes (the
// Remote bus) reach the watchers and the recent presence as this node's
// own do; after Close, neither bus reaches the watcher.
func TestRemoteEvents(t *testing.T) {
	local, remote := &bus.Local{}, &bus.Local{}
	h := New(Options{Bus: local, Remote: remote})
	defer h.Close()
	w := h.Watch(WatchOptions{Presence: true, Thing: "far"})
	local.Publish(core.Message{Topic: "$mote/events/presence/connected/near", Thing: "near", Payload: []byte(`{}`)})
	remote.Publish(core.Message{Topic: "$mote/events/presence/connected/far", Thing: "far", Payload: []byte(`{}`)})
	remote.Publish(core.Message{Topic: "things/far/telemetry", Thing: "far", Payload: []byte(`{"t":1}`)})
	var got []string
	for range 3 {
		select {
		case it := <-w.C:
			got = append(got, it.Kind+" "+it.Event.Topic)
		default:
			t.Fatalf("watcher got %v; want 3 items", got)
		}
	}
	want := []string{"presence $mote/events/presence/connected/near", "presence $mote/events/presence/connected/far", "message things/far/telemetry"}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("item %d = %q; want %q", i, got[i], want[i])
		}
	}
	if r := h.RecentPresence(); len(r) != 2 || r[1].Thing != "far" {
		t.Errorf("recent presence = %+v; want near then far", r)
	}
	w.Close()
	remote.Publish(core.Message{Topic: "things/far/telemetry", Thing: "far", Payload: []byte(`{"t":2}`)})
	select {
	case it := <-w.C:
		t.Errorf("closed watcher got %+v", it)
	default:
	}
}
