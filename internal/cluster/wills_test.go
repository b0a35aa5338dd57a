package cluster

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/moteiot/mote/internal/core"
)

// willSink is a WillPublisher that records what it was given.
type willSink struct {
	mu   sync.Mutex
	sent []core.Message
	err  error
}

func (s *willSink) PublishWill(_ context.Context, m core.Message) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	s.sent = append(s.sent, m)
	return nil
}

func (s *willSink) all() []core.Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]core.Message(nil), s.sent...)
}

func openWills(t *testing.T, n *Node, o WillOptions) *Wills {
	t.Helper()
	w, err := n.OpenWills(context.Background(), o, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Close() })
	return w
}

func count(w *Wills, result string) float64 {
	return testutil.ToFloat64(w.total.WithLabelValues(result))
}

// TestLostWillsOnce: node x records two wills and clears a third (its
// connection ended cleanly); x is lost. Two survivors publish x's wills at
// once: each will is published once in all (one survivor claims it), with
// its fields; the cleared one never; a will whose thing may no longer
// publish there is counted denied. The records are gone afterwards.
func TestLostWillsOnce(t *testing.T) {
	s := startJetStream(t)
	x := join(t, s, "x", &fakeBroker{}, 0)
	wx := openWills(t, x, WillOptions{})
	will := func(client, topic string) core.Message {
		return core.Message{Topic: topic, Payload: []byte("gone " + client), QoS: 1, Retain: true,
			ClientID: client, Thing: "th-" + client, Properties: []core.Property{{Key: "k", Value: "v"}}}
	}
	x.WillSet(1, will("c1", "t/c1/status"), 0)
	x.WillSet(2, will("c2", "t/c2/status"), 0)
	x.WillSet(3, will("c3", "t/c3/status"), 0)
	x.WillClear(3, "c3")
	x.WillClear(99, "c2") // another connection's: no effect
	waitFor(t, "the records", func() bool { return count(wx, "recorded") == 3 && count(wx, "cleared") == 1 })

	sa, sb := &willSink{}, &willSink{}
	a, b := join(t, s, "a", &fakeBroker{}, 0), join(t, s, "b", &fakeBroker{}, 0)
	wa, wb := openWills(t, a, WillOptions{}), openWills(t, b, WillOptions{})
	wa.Start(sa)
	wb.Start(sb)
	_ = wx.Close()
	wa.PublishLost("x")
	wb.PublishLost("x")
	done := func() float64 {
		return count(wa, "lost_sent") + count(wb, "lost_sent")
	}
	waitFor(t, "the lost wills", func() bool { return done() == 2 })
	// Both runs end (Close waits for them), then count.
	_, _ = wa.Close(), wb.Close()
	got := append(sa.all(), sb.all()...)
	if len(got) != 2 {
		t.Fatalf("published %d wills; want 2 (c1, c2 once each): %+v", len(got), got)
	}
	seen := map[string]bool{}
	for _, m := range got {
		want := will(m.ClientID, "t/"+m.ClientID+"/status")
		if seen[m.ClientID] || m.Topic != want.Topic || string(m.Payload) != string(want.Payload) || m.QoS != 1 || !m.Retain ||
			m.Thing != want.Thing || m.Protocol != ProtocolWill || len(m.Properties) != 1 {
			t.Errorf("published %+v; want %+v once", m, want)
		}
		seen[m.ClientID] = true
	}
	if seen["c3"] {
		t.Error("the cleared will was published")
	}
	if n := count(wa, "lost_claimed_elsewhere") + count(wb, "lost_claimed_elsewhere"); n > 2 {
		t.Errorf("claimed elsewhere = %v; want at most 2", n)
	}

	// Nothing left: a third survivor publishes nothing.
	sc := &willSink{}
	c := join(t, s, "c", &fakeBroker{}, 0)
	wc := openWills(t, c, WillOptions{})
	wc.Start(sc)
	wc.PublishLost("x")
	_ = wc.Close()
	if n := len(sc.all()); n != 0 {
		t.Errorf("a later survivor published %d wills; want 0", n)
	}
}

// TestLostWillDenied: a will its thing may no longer publish (the
// publisher refuses it) is counted denied and not retried.
func TestLostWillDenied(t *testing.T) {
	s := startJetStream(t)
	x := join(t, s, "x", &fakeBroker{}, 0)
	wx := openWills(t, x, WillOptions{})
	x.WillSet(1, core.Message{Topic: "t/c/status", ClientID: "c", Thing: "c"}, 0)
	waitFor(t, "the record", func() bool { return count(wx, "recorded") == 1 })
	a := join(t, s, "a", &fakeBroker{}, 0)
	wa := openWills(t, a, WillOptions{})
	wa.Start(&willSink{err: core.Errorf(core.KindForbidden, "denied")})
	wa.PublishLost("x")
	waitFor(t, "the denial", func() bool { return count(wa, "lost_denied") == 1 })
	if n := count(wa, "lost_sent"); n != 0 {
		t.Errorf("lost_sent = %v; want 0", n)
	}
}

// TestWillQueueBounded: with the writer stopped, WillSet never waits:
// beyond the queue the records are dropped and counted.
func TestWillQueueBounded(t *testing.T) {
	s := startJetStream(t)
	x := join(t, s, "x", &fakeBroker{}, 0)
	w := openWills(t, x, WillOptions{Queue: 2})
	close(w.stop) // the writer stops: nothing leaves the queue
	<-w.done
	for i := range 10 {
		x.WillSet(uint64(i+1), core.Message{Topic: "t", ClientID: "c"}, 0)
	}
	if n := count(w, "record_dropped"); n != 8 {
		t.Errorf("record_dropped = %v; want 8", n)
	}
	w.closeOnce.Do(func() {}) // stop and done are closed already
}

func TestWillRecordRoundTrip(t *testing.T) {
	in := WillRecord{Node: "n", ClientID: "c", Thing: "t", Topic: "a/b", Payload: []byte{0, 1, 2}, QoS: 2, Retain: true, Delay: 30,
		Properties: []core.Property{{Key: "k", Value: "v"}}}
	data, err := encodeWill(in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := decodeWill(data)
	if err != nil {
		t.Fatal(err)
	}
	if out.Node != in.Node || out.ClientID != in.ClientID || out.Topic != in.Topic || string(out.Payload) != string(in.Payload) ||
		out.QoS != 2 || !out.Retain || out.Delay != 30 || len(out.Properties) != 1 {
		t.Errorf("decodeWill(encodeWill(%+v)) = %+v", in, out)
	}
	for _, bad := range []string{``, `{}`, `{"v":2,"node":"n","clientId":"c","topic":"t"}`, `{"v":1,"node":"n","clientId":"c","topic":""}`,
		`{"v":1,"node":"n","clientId":"c","topic":"t","qos":3}`, `{"v":1,"clientId":"c","topic":"t"}`} {
		if _, err := decodeWill([]byte(bad)); err == nil {
			t.Errorf("decodeWill(%q) = nil error; want one", bad)
		}
	}
}

func FuzzDecodeWill(f *testing.F) {
	good, _ := encodeWill(WillRecord{Node: "n", ClientID: "c", Thing: "t", Topic: "a/b", Payload: []byte("x"), QoS: 1})
	f.Add(good)
	f.Add([]byte(`{"v":1,"node":"n","clientId":"c","topic":"\u0000","qos":2,"delay":4294967295}`))
	f.Add([]byte(`{"v":1`))
	f.Fuzz(func(t *testing.T, data []byte) {
		w, err := decodeWill(data)
		if err != nil {
			return
		}
		again, err := encodeWill(w)
		if err != nil {
			t.Fatalf("encodeWill(%+v): %v", w, err)
		}
		if _, err := decodeWill(again); err != nil {
			t.Fatalf("a decoded record does not decode again: %v", err)
		}
	})
}

// TestLostWillDelayed: a lost node's will with a delay waits it out on the
// survivor; its device reconnecting to another node during the delay
// cancels it (MQTT 5: a new connection with the client id before the
// delay ends).
func TestLostWillDelayed(t *testing.T) {
	s := startJetStream(t)
	x := join(t, s, "x", &fakeBroker{}, 0)
	wx := openWills(t, x, WillOptions{})
	x.WillSet(1, core.Message{Topic: "t/c/status", ClientID: "c", Thing: "c"}, 1)
	waitFor(t, "the record", func() bool { return count(wx, "recorded") == 1 })
	_ = wx.Close()
	a := join(t, s, "a", &fakeBroker{}, 0)
	sink := &willSink{}
	wa := openWills(t, a, WillOptions{})
	wa.Start(sink)
	wa.PublishLost("x")
	// The device is back, on node y, within the second.
	yb := &ownerBroker{things: map[string]string{}}
	y := join(t, s, "y", yb, 0)
	yb.hold("c", "c")
	y.ClientConnected("c", "c")
	flush(t, y)
	waitFor(t, "the cancelled will", func() bool { return count(wa, "lost_reconnected") == 1 })
	if n := len(sink.all()); n != 0 || count(wa, "lost_sent") != 0 {
		t.Errorf("published %d wills; want none (the device reconnected within the delay)", n)
	}
}

// TestWillBucketFull: beyond the bucket's size a will is refused by
// JetStream and counted; the records already there stay.
func TestWillBucketFull(t *testing.T) {
	s := startJetStream(t)
	x := join(t, s, "x", &fakeBroker{}, 0)
	w := openWills(t, x, WillOptions{MaxBytes: 8 << 10})
	for i := range 10 {
		x.WillSet(uint64(i+1), core.Message{Topic: "t", ClientID: fmt.Sprintf("c%d", i), Payload: make([]byte, 2000)}, 0)
	}
	waitFor(t, "the writes", func() bool { return count(w, "recorded")+count(w, "record_failed") == 10 })
	if count(w, "record_failed") == 0 || count(w, "recorded") == 0 {
		t.Errorf("recorded %v, failed %v; want some of each (the bucket holds about 3)", count(w, "recorded"), count(w, "record_failed"))
	}
}

// TestWillsDeadJetStream: with NATS gone, a will's record fails within
// the wills' timeout and is counted (WillSet itself only enqueues:
// TestWillQueueBounded).
func TestWillsDeadJetStream(t *testing.T) {
	s := startJetStream(t)
	x, err := Connect(Options{URL: s.ClientURL(), NodeID: "x"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = x.Close() }) // its flush fails: NATS is gone
	w := openWills(t, x, WillOptions{Timeout: 200 * time.Millisecond})
	s.Shutdown()
	s.WaitForShutdown()
	for i := range 5 {
		x.WillSet(uint64(i+1), core.Message{Topic: "t", ClientID: fmt.Sprintf("c%d", i)}, 0)
	}
	waitFor(t, "the failures", func() bool { return count(w, "record_failed") == 5 })
}

// TestWillsLeftByPreviousRun: a node starting under an id publishes the
// wills its previous run recorded and never cleared (killed).
func TestWillsLeftByPreviousRun(t *testing.T) {
	s := startJetStream(t)
	x := join(t, s, "x", &fakeBroker{}, 0)
	wx := openWills(t, x, WillOptions{})
	x.WillSet(1, core.Message{Topic: "t/c/status", ClientID: "c", Thing: "c", Payload: []byte("bye")}, 0)
	waitFor(t, "the record", func() bool { return count(wx, "recorded") == 1 })
	_ = wx.Close()
	_ = x.Close()
	again := join(t, s, "x", &fakeBroker{}, 0)
	sink := &willSink{}
	w := openWills(t, again, WillOptions{})
	w.Start(sink)
	waitFor(t, "the left will", func() bool { return count(w, "lost_sent") == 1 })
	if got := sink.all(); len(got) != 1 || string(got[0].Payload) != "bye" {
		t.Errorf("published %+v; want c's will once", got)
	}
}

// BenchmarkWillRecord: wills recorded in MOTE_WILLS per second by one
// node's writer (one JetStream put each, R1, in-process server): the rate
// of connections with a will a node can protect against its own loss.
func BenchmarkWillRecord(b *testing.B) {
	s := startJetStream(b)
	n, err := Connect(Options{URL: s.ClientURL(), NodeID: "x"})
	if err != nil {
		b.Fatal(err)
	}
	defer n.Close()
	w, err := n.OpenWills(context.Background(), WillOptions{Queue: 1 << 20}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	payload := make([]byte, 64)
	b.ResetTimer()
	for i := range b.N {
		n.WillSet(uint64(i+1), core.Message{Topic: "things/dev/status", ClientID: fmt.Sprintf("c%d", i), Thing: "dev", Payload: payload, QoS: 1}, 0)
	}
	for count(w, "recorded")+count(w, "record_failed") < float64(b.N) {
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
	if f := count(w, "record_failed"); f > 0 {
		b.Fatalf("%v records failed", f)
	}
}
