package live

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/bus"
	"github.com/moteiot/mote/internal/core"
)

// totals is a settable Options.Totals.
type totals struct {
	mu sync.Mutex
	t  Totals
}

func (f *totals) get() Totals {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.t
}

func (f *totals) set(t Totals) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.t = t
}

// stoppedHub returns a Hub whose once-a-second sampling is stopped, so the
// test calls sample with the times it chooses.
func stoppedHub(t *testing.T, o Options) *Hub {
	t.Helper()
	h := New(o)
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if err := h.Close(); err != nil {
		t.Fatalf("second Close = %v; want nil", err)
	}
	return h
}

func TestRates(t *testing.T) {
	f := &totals{}
	h := stoppedHub(t, Options{Totals: f.get})
	w := h.Watch(WatchOptions{Stats: true, Queue: 1})
	defer w.Close()

	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f.set(Totals{MessagesIn: 100, MessagesOut: 50, Connected: 3})
	h.sample(t0)
	<-w.C // the first sample of this test
	f.set(Totals{MessagesIn: 300, MessagesOut: 150, Connected: 4})
	h.sample(t0.Add(2 * time.Second))
	st := h.Stats()
	if st.MessagesIn != 100 || st.MessagesOut != 50 || st.Connected != 4 || !st.Time.Equal(t0.Add(2*time.Second)) {
		t.Errorf("Stats() after 200 in, 100 out in 2s = %+v; want 100/s in, 50/s out, 4 connections", st)
	}
	it := <-w.C
	if it.Kind != "stats" || it.Stats == nil || *it.Stats != st {
		t.Errorf("stats watcher got %+v; want the sample %+v", it, st)
	}

	// Counters that went back (a restart) give 0, not a negative rate.
	f.set(Totals{MessagesIn: 10, MessagesOut: 5, Connected: 1})
	h.sample(t0.Add(3 * time.Second))
	if st := h.Stats(); st.MessagesIn != 0 || st.MessagesOut != 0 || st.Connected != 1 {
		t.Errorf("Stats() after counters went back = %+v; want 0/s and 1 connection", st)
	}
	// The watcher did not read that one: its queue of 1 is full, the next
	// sample is dropped and counted.
	h.sample(t0.Add(4 * time.Second))
	if n := w.Dropped(); n != 1 {
		t.Errorf("Dropped() with a full queue = %d; want 1", n)
	}
	// A closed watcher gets no more samples.
	w.Close()
	<-w.C
	h.sample(t0.Add(5 * time.Second))
	select {
	case it := <-w.C:
		t.Errorf("a closed watcher got %+v", it)
	default:
	}

	// Without Totals there are no stats.
	h2 := stoppedHub(t, Options{})
	h2.sample(t0)
	if st := h2.Stats(); st != (Stats{}) {
		t.Errorf("Stats() without Totals = %+v; want zero", st)
	}
}

func TestWatcherQueueIsBounded(t *testing.T) {
	b := new(bus.Local)
	h := New(Options{Bus: b})
	defer h.Close()
	const queue, sent = 4, 10
	w := h.Watch(WatchOptions{Thing: "dev", Queue: queue})
	defer w.Close()

	for i := range sent {
		b.Publish(core.Message{Topic: "things/dev/telemetry", Thing: "dev", Payload: fmt.Appendf(nil, `{"n":%d}`, i)})
	}
	b.Publish(core.Message{Topic: "things/other/telemetry", Thing: "other", Payload: []byte(`{}`)})
	if n := w.Dropped(); n != sent-queue {
		t.Errorf("Dropped() after %d messages into a queue of %d = %d; want %d", sent, queue, n, sent-queue)
	}
	if n := w.Dropped(); n != 0 {
		t.Errorf("Dropped() again = %d; want 0 (it resets)", n)
	}
	// The queue holds the first messages, in order; none of another thing.
	for i := range queue {
		it := <-w.C
		if it.Kind != "message" || it.Event == nil || it.Event.Thing != "dev" || string(it.Event.Payload) != fmt.Sprintf(`{"n":%d}`, i) {
			t.Fatalf("item %d = %+v; want message {\"n\":%d} of dev", i, it, i)
		}
	}
	select {
	case it := <-w.C:
		t.Fatalf("more than the queue held: %+v", it)
	default:
	}

	// Every topic family of the thing reaches it; a payload that is not
	// JSON is shown as text, cut at 4 KiB.
	for _, topic := range []string{"$mote/things/dev/shadow/update", "$aws/things/dev/shadow/get", "$mote/events/commands/dev/cmd_1"} {
		b.Publish(core.Message{Topic: topic, Payload: []byte(`{}`)})
		if it := <-w.C; it.Event.Topic != topic {
			t.Errorf("got %q; want %q", it.Event.Topic, topic)
		}
	}
	big := strings.Repeat("x", 10<<10)
	b.Publish(core.Message{Topic: "things/dev/raw", Payload: []byte(big)})
	it := <-w.C
	if it.Event.Payload != nil || len(it.Event.Text) != maxText || it.Event.Size != len(big) {
		t.Errorf("a 10 KiB text payload: payload %d bytes, text %d, size %d; want text of %d, size %d",
			len(it.Event.Payload), len(it.Event.Text), it.Event.Size, maxText, len(big))
	}

	// After Close the watcher leaves the bus.
	w.Close()
	b.Publish(core.Message{Topic: "things/dev/telemetry", Payload: []byte(`{}`)})
	select {
	case it := <-w.C:
		t.Errorf("a closed watcher got %+v", it)
	default:
	}
	if n := w.Dropped(); n != 0 {
		t.Errorf("a closed watcher counted %d drops", n)
	}
}

func TestPresence(t *testing.T) {
	b := new(bus.Local)
	const keep = 3
	h := New(Options{Bus: b, Recent: keep})
	defer h.Close()
	w := h.Watch(WatchOptions{Presence: true})
	defer w.Close()

	received := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 5 {
		b.Publish(core.Message{
			Topic:    fmt.Sprintf("$mote/events/presence/connected/c%d", i),
			ClientID: fmt.Sprintf("c%d", i), Thing: "dev",
			Payload: []byte(`{"event":"connected"}`), Received: received,
		})
	}
	b.Publish(core.Message{Topic: "things/dev/telemetry", Payload: []byte(`{}`)}) // not presence

	got := h.RecentPresence()
	if len(got) != keep {
		t.Fatalf("RecentPresence() = %d events; want the last %d", len(got), keep)
	}
	for i, e := range got {
		if want := fmt.Sprintf("c%d", i+2); e.ClientID != want || !e.Time.Equal(received) {
			t.Errorf("RecentPresence()[%d] = %+v; want client %s, oldest first", i, e, want)
		}
	}
	// The presence watcher got all five, as presence items.
	for i := range 5 {
		it := <-w.C
		if it.Kind != "presence" || it.Event.ClientID != fmt.Sprintf("c%d", i) {
			t.Errorf("presence item %d = %+v", i, it)
		}
	}

	// Close leaves the bus: later events are not kept.
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	b.Publish(core.Message{Topic: "$mote/events/presence/disconnected/c9", ClientID: "c9"})
	if got := h.RecentPresence(); got[len(got)-1].ClientID == "c9" {
		t.Error("a closed Hub still records presence")
	}
}

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
	var b bus.Local
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

// A positions watcher gets the telemetry that names lat and lon, of every
// thing, and none other; a flood that it does not read fills its bounded
// queue and the rest is dropped and counted, never waited for.
func TestPositionsWatcher(t *testing.T) {
	b := &bus.Local{}
	h := New(Options{Bus: b})
	defer h.Close()
	w := h.Watch(WatchOptions{Positions: true, Queue: 8})
	defer w.Close()
	b.Publish(core.Message{Topic: "things/a/telemetry", Payload: []byte(`{"temperature": 1}`)})
	b.Publish(core.Message{Topic: "things/a/status", Payload: []byte(`{"lat": 1, "lon": 2}`)})
	b.Publish(core.Message{Topic: "things/b/telemetry", Payload: []byte(`{"lat": 1, "lon": 2}`), Received: time.Unix(5, 0)})
	select {
	case it := <-w.C:
		if it.Kind != "position" || it.Event.Thing != "b" || string(it.Event.Payload) != `{"lat": 1, "lon": 2}` || !it.Event.Time.Equal(time.Unix(5, 0)) {
			t.Fatalf("item = %+v %+v; want b's position", it, it.Event)
		}
	default:
		t.Fatal("no position")
	}
	if len(w.C) != 0 {
		t.Fatalf("%d more items; want only b's telemetry with a position", len(w.C))
	}
	done := make(chan struct{})
	go func() {
		for i := range 1000 {
			b.Publish(core.Message{Topic: fmt.Sprintf("things/t%d/telemetry", i), Payload: []byte(`{"lat": 1, "lon": 2}`)})
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the publisher was held by a watcher nobody reads")
	}
	if len(w.C) != 8 {
		t.Errorf("queue holds %d; want it full (8)", len(w.C))
	}
	if n := w.Dropped(); n != 1000-8 {
		t.Errorf("Dropped() = %d; want %d", n, 1000-8)
	}
}
