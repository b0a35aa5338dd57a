package cluster

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/moteiot/mote/internal/bus/natsbus"
	"github.com/moteiot/mote/internal/core"
)

func startJetStream(t testing.TB) *server.Server {
	t.Helper()
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true,
		JetStream: true, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	return s
}

func openRelay(t *testing.T, n *Node, o RelayOptions) *JSRelay {
	t.Helper()
	r, err := n.OpenRelay(context.Background(), o, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}

// fakeJournal is an ingest journal whose appends complete when told.
type fakeJournal struct {
	done chan error
	seq  uint64
}

func (j *fakeJournal) Wants(string) bool { return true }
func (j *fakeJournal) AppendAsync(core.Message) (uint64, <-chan error, error) {
	j.seq++
	return j.seq, j.done, nil
}

// TestJSRelayRoutesByQoS: QoS 0 crosses on core NATS, QoS 1/2 on
// JetStream, each message once; an MQTT QoS 1 publish is on the stream
// through the broker's journal (not a second time through Publish); the
// origin never gets its own.
func TestJSRelayRoutesByQoS(t *testing.T) {
	s := startJetStream(t)
	ba, bb := &fakeBroker{}, &fakeBroker{}
	a, b := join(t, s, "a", ba, 0), join(t, s, "b", bb, 0)
	ra, rb := openRelay(t, a, RelayOptions{}), openRelay(t, b, RelayOptions{})
	for _, r := range []*JSRelay{ra, rb} {
		if err := r.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	j := ra.Journal(nil)
	mqtt1 := core.Message{Topic: "t/mqtt1", QoS: 1, Protocol: "mqtt", Payload: []byte("1")}
	seq, done, err := j.AppendAsync(mqtt1)
	if err != nil || seq != 0 {
		t.Fatalf("AppendAsync = %d, %v; want 0, nil", seq, err)
	}
	if err := <-done; err != nil {
		t.Fatalf("JetStream ack: %v", err)
	}
	a.Publish(mqtt1) // the broker's OnMessage after the PUBACK
	a.Publish(core.Message{Topic: "t/mqtt0", QoS: 0, Protocol: "mqtt"})
	http1 := core.Message{Topic: "t/http1", QoS: 1, Protocol: "http"}
	if _, err := j.Append(http1); err != nil { // the broker's PublishVia
		t.Fatal(err)
	}
	a.Publish(http1)
	a.PlatformPublished(core.Message{Topic: "t/platform1", QoS: 1})
	waitFor(t, "4 messages on b", func() bool { n, _ := bb.counts(); return n >= 4 })
	// Anything relayed twice would arrive within the same round trips: one
	// more QoS 1 message after them marks the end.
	a.Publish(core.Message{Topic: "t/end", QoS: 1, Protocol: "bridge"}) // no journal: relayed by Publish
	waitFor(t, "the end marker", func() bool { n, _ := bb.counts(); return n >= 5 })
	bb.mu.Lock()
	got := map[string]int{}
	for _, m := range bb.relayed {
		got[m.Topic]++
	}
	bb.mu.Unlock()
	for _, topic := range []string{"t/mqtt1", "t/mqtt0", "t/http1", "t/platform1", "t/end"} {
		if got[topic] != 1 {
			t.Errorf("%s relayed %d times; want 1", topic, got[topic])
		}
	}
	if n, _ := ba.counts(); n != 0 {
		t.Errorf("origin got %d of its own messages; want 0", n)
	}
	waitFor(t, "b's counter", func() bool { return rb.delivered.Load() >= 4 })
	if rb.delivered.Load() != 4 || ra.acked.Load() < 4 {
		t.Errorf("b delivered %d from JetStream (want 4: mqtt1, http1, platform1, end), a acked %d (want ≥ 4)", rb.delivered.Load(), ra.acked.Load())
	}
}

// TestJSRelayWaitsForJournal: the PUBACK's channel says stored only when
// JetStream and the ingest journal both did, and carries the journal's
// refusal.
func TestJSRelayWaitsForJournal(t *testing.T) {
	s := startJetStream(t)
	a := join(t, s, "a", &fakeBroker{}, 0)
	r := openRelay(t, a, RelayOptions{AckTimeout: 500 * time.Millisecond})
	fj := &fakeJournal{done: make(chan error, 1)}
	j := r.Journal(fj)
	seq, done, err := j.AppendAsync(core.Message{Topic: "t", QoS: 1, Protocol: "mqtt"})
	if err != nil || seq != 1 {
		t.Fatalf("AppendAsync = %d, %v; want the journal's 1, nil", seq, err)
	}
	waitFor(t, "JetStream's ack", func() bool { return r.acked.Load() == 1 })
	select {
	case err := <-done:
		t.Fatalf("done before the journal stored it: %v", err)
	default:
	}
	refusal := errors.New("disk full")
	fj.done <- refusal
	if err := <-done; !errors.Is(err, refusal) {
		t.Fatalf("done = %v; want the journal's refusal", err)
	}
	// A journal that never answers: refused at the deadline.
	fj.done = make(chan error)
	_, done, err = j.AppendAsync(core.Message{Topic: "t", QoS: 1, Protocol: "mqtt"})
	if err != nil {
		t.Fatal(err)
	}
	if err := <-done; core.KindOf(err) != core.KindUnavailable {
		t.Fatalf("done = %v; want unavailable after the deadline", err)
	}
}

// TestJSRelayDeadJetStream: with its NATS server gone, a QoS 1 publish is
// refused (unavailable) within the ack timeout, never acknowledged.
func TestJSRelayDeadJetStream(t *testing.T) {
	s := startJetStream(t)
	a, err := Connect(Options{URL: s.ClientURL(), NodeID: "a"})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close() // fails: its server is gone
	if err := a.Start(&fakeBroker{}, nil); err != nil {
		t.Fatal(err)
	}
	r := openRelay(t, a, RelayOptions{AckTimeout: 300 * time.Millisecond})
	s.Shutdown()
	s.WaitForShutdown()
	start := time.Now()
	_, done, err := r.Journal(nil).AppendAsync(core.Message{Topic: "t", QoS: 1, Protocol: "mqtt"})
	if err == nil {
		err = <-done
	}
	if core.KindOf(err) != core.KindUnavailable {
		t.Fatalf("publish with JetStream down = %v; want unavailable", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("refused after %s; want about the ack timeout", d)
	}
	if got := r.acked.Load(); got != 0 {
		t.Errorf("acked = %d with JetStream down; want 0", got)
	}
}

// TestJSRelayResumesAndCountsExpired: a node's consumer resumes where it
// stopped; what the stream lost meanwhile (here purged, as its limits
// would) is counted as expired, the rest delivered once.
func TestJSRelayResumesAndCountsExpired(t *testing.T) {
	s := startJetStream(t)
	bb := &fakeBroker{}
	a, b := join(t, s, "a", &fakeBroker{}, 0), join(t, s, "b", bb, 0)
	ra := openRelay(t, a, RelayOptions{MaxBytes: 6 << 10}) // about 6 messages of 1 KB
	rb := openRelay(t, b, RelayOptions{MaxBytes: 6 << 10})
	if err := rb.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	pub := func(k int) {
		t.Helper()
		done, err := ra.publish(core.Message{Topic: fmt.Sprintf("t/%d", k), QoS: 1, Protocol: "http", Payload: make([]byte, 1000)}, nil)
		if err == nil {
			err = <-done
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	pub(0)
	waitFor(t, "the first message", func() bool { n, _ := bb.counts(); return n == 1 })
	_ = rb.Close() // b goes away
	for k := 1; k <= 10; k++ {
		pub(k)
	}
	info, err := ra.stream.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	lost := info.State.FirstSeq - 2 // the stream's limits removed the oldest (discard old)
	t.Logf("stream %d..%d", info.State.FirstSeq, info.State.LastSeq)
	rb2 := openRelay(t, b, RelayOptions{})
	if err := rb2.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the rest", func() bool { n, _ := bb.counts(); return n == 11-int(lost) })
	if got := rb2.expired.Load(); got != lost || lost == 0 {
		t.Errorf("expired = %d; want %d (> 0)", got, lost)
	}
	bb.mu.Lock()
	defer bb.mu.Unlock()
	for i, m := range bb.relayed[1:] {
		if want := fmt.Sprintf("t/%d", i+1+int(lost)); m.Topic != want {
			t.Errorf("delivery %d = %s; want %s", i+1, m.Topic, want)
		}
	}
}

// fakeMsg is a relay stream message with only what handle reads.
type fakeMsg struct {
	jetstream.Msg // nil: other methods are not called
	seq           uint64
	data          []byte
	acked         bool
}

func (m *fakeMsg) Metadata() (*jetstream.MsgMetadata, error) {
	return &jetstream.MsgMetadata{Sequence: jetstream.SequencePair{Stream: m.seq}}, nil
}
func (m *fakeMsg) Data() []byte { return m.data }
func (m *fakeMsg) Ack() error   { m.acked = true; return nil }

// TestJSRelayHandleSequences: a redelivery of what this run handed over
// is skipped; a redelivery of what a previous run fetched but never
// acknowledged (below the highest sequence seen) is delivered; a gap is
// counted as expired; one acknowledgement, of the highest sequence,
// covers them all.
func TestJSRelayHandleSequences(t *testing.T) {
	s := startJetStream(t)
	bb := &fakeBroker{}
	b := join(t, s, "b", bb, 0)
	r := openRelay(t, b, RelayOptions{Batch: 4})
	r.last, r.handed = 10, map[uint64]struct{}{} // as Start after a run that had fetched up to 10
	msg := func(seq uint64) *fakeMsg {
		return &fakeMsg{seq: seq, data: natsbusMessage("a", fmt.Sprintf("t/%d", seq))}
	}
	var all []*fakeMsg
	for _, seq := range []uint64{11, 12, 12, 8, 15, 8, 11} {
		m := msg(seq)
		all = append(all, m)
		r.handle(m)
	}
	r.flush()
	// One acknowledgement, of the highest sequence handed over: it
	// acknowledges all before it (AckAll).
	for _, m := range all {
		if want := m.seq == 15; m.acked != want {
			t.Errorf("message %d acknowledged %v; want %v", m.seq, m.acked, want)
		}
	}
	if r.acks.Load() != 1 {
		t.Errorf("%d acknowledgements; want 1", r.acks.Load())
	}
	bb.mu.Lock()
	var got []string
	for _, m := range bb.relayed {
		got = append(got, m.Topic)
	}
	bb.mu.Unlock()
	if want := "[t/11 t/12 t/8 t/15]"; fmt.Sprint(got) != want {
		t.Errorf("delivered %v; want %s", got, want)
	}
	if r.expired.Load() != 2 || r.skipped.Load() != 3 {
		t.Errorf("expired %d, skipped %d; want 2 (13, 14) and 3", r.expired.Load(), r.skipped.Load())
	}
	// The memory of handed-over sequences stays bounded.
	for seq := uint64(16); seq < 2000; seq++ {
		r.handle(msg(seq))
	}
	if n := len(r.handed); n > 2*16*4+1 {
		t.Errorf("%d sequences remembered; want at most %d", n, 2*16*4+1)
	}
}

func natsbusMessage(node, topic string) []byte {
	return natsbus.AppendMessage(nil, node, core.Message{Topic: topic, QoS: 1})
}

// relayPair starts nodes a and b with relays (b's consumer started with
// bo) on s; bb is b's broker.
func relayPair(t *testing.T, s *server.Server, bo RelayOptions) (ra, rb *JSRelay, bb *fakeBroker) {
	t.Helper()
	bb = &fakeBroker{}
	a, b := join(t, s, "a", &fakeBroker{}, 0), join(t, s, "b", bb, 0)
	ra, rb = openRelay(t, a, RelayOptions{}), openRelay(t, b, bo)
	if err := rb.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return ra, rb, bb
}

// publishN puts n QoS 1 messages t/<from>…t/<from+n-1> on the relay
// stream from r and waits for JetStream's acknowledgements.
func publishN(t *testing.T, r *JSRelay, from, n int) {
	t.Helper()
	var dones []<-chan error
	for k := from; k < from+n; k++ {
		done, err := r.publish(core.Message{Topic: fmt.Sprintf("t/%d", k), QoS: 1, Protocol: "http"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		dones = append(dones, done)
	}
	for _, d := range dones {
		if err := <-d; err != nil {
			t.Fatal(err)
		}
	}
}

// onceEach fails unless b's broker got t/0…t/n-1 exactly once each.
func onceEach(t *testing.T, bb *fakeBroker, n int) {
	t.Helper()
	bb.mu.Lock()
	defer bb.mu.Unlock()
	got := map[string]int{}
	for _, m := range bb.relayed {
		got[m.Topic]++
	}
	for k := range n {
		if c := got[fmt.Sprintf("t/%d", k)]; c != 1 {
			t.Errorf("t/%d delivered %d times; want 1", k, c)
		}
	}
	if len(bb.relayed) != n {
		t.Errorf("%d deliveries; want %d", len(bb.relayed), n)
	}
}

// consumerInfo reads the relay consumer of node id from JetStream.
func consumerInfo(t *testing.T, r *JSRelay, id string) *jetstream.ConsumerInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := r.js.Consumer(ctx, DefaultRelayStream, "relay-"+id)
	if err != nil {
		t.Fatal(err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info
}

// TestJSRelayBatchedAcks: the consumer acknowledges once per batch
// handed over (AckAll), not once per message, and what it handed over
// ends acknowledged in JetStream (nothing pending).
func TestJSRelayBatchedAcks(t *testing.T) {
	s := startJetStream(t)
	ra, rb, bb := relayPair(t, s, RelayOptions{Batch: 16, AckDelay: 300 * time.Millisecond})
	const n = 200
	publishN(t, ra, 0, n)
	waitFor(t, "200 delivered", func() bool { c, _ := bb.counts(); return c >= n })
	info, err := ra.stream.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "all acknowledged", func() bool {
		ci := consumerInfo(t, ra, "b")
		return ci.NumAckPending == 0 && ci.AckFloor.Stream == info.State.LastSeq
	})
	onceEach(t, bb, n)
	if ci := consumerInfo(t, ra, "b"); ci.Config.AckPolicy != jetstream.AckAllPolicy {
		t.Errorf("ack policy %v; want AckAll", ci.Config.AckPolicy)
	}
	// 200 / 16 = 12 full batches and one flushed after the delay; more
	// only when messages came slower than the delay.
	if acks := rb.acks.Load(); acks == 0 || acks > n/4 {
		t.Errorf("%d acknowledgements for %d messages; want 1 … %d", acks, n, n/4)
	}
}

// TestJSRelayRestartRedeliversAtOnce: a node killed after handing
// messages over and before acknowledging them gets them again as soon as
// it restarts (its consumer starts again at the acknowledgement floor),
// not after the ack wait; duplicates across a crash are what QoS 1
// allows.
func TestJSRelayRestartRedeliversAtOnce(t *testing.T) {
	s := startJetStream(t)
	a := join(t, s, "a", &fakeBroker{}, 0)
	ra := openRelay(t, a, RelayOptions{})
	slowAck := RelayOptions{Batch: 1000, AckDelay: time.Hour, AckWait: time.Minute}
	bb := &fakeBroker{}
	b, err := Connect(Options{URL: s.ClientURL(), NodeID: "b"})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(bb, nil); err != nil {
		t.Fatal(err)
	}
	rb := openRelay(t, b, slowAck)
	if err := rb.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	publishN(t, ra, 0, 20)
	waitFor(t, "20 handed over", func() bool { c, _ := bb.counts(); return c == 20 })
	if ci := consumerInfo(t, ra, "b"); ci.NumAckPending != 20 || rb.acks.Load() != 0 {
		t.Fatalf("before the kill: %d unacknowledged, %d acks; want 20, 0", ci.NumAckPending, rb.acks.Load())
	}
	b.Conn().Close() // killed: no acknowledgement leaves
	_ = b.Close()

	bb2 := &fakeBroker{}
	b2 := join(t, s, "b", bb2, 0)
	rb2 := openRelay(t, b2, slowAck)
	start := time.Now()
	if err := rb2.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the 20 again", func() bool { c, _ := bb2.counts(); return c == 20 })
	if d := time.Since(start); d >= slowAck.AckWait {
		t.Errorf("redelivered after %s; want before the ack wait (%s)", d, slowAck.AckWait)
	}
	publishN(t, ra, 20, 5)
	waitFor(t, "5 more", func() bool { c, _ := bb2.counts(); return c == 25 })
	onceEach(t, bb2, 25)
}

// TestJSRelayResyncSkipsHanded: the consumer deleted under a running
// node (as by an operator, or lost in a JetStream failure) is found
// missing by the stall check and created again at the acknowledgement
// floor; what this run handed over and had not acknowledged comes again
// and is skipped, not delivered twice.
func TestJSRelayResyncSkipsHanded(t *testing.T) {
	s := startJetStream(t)
	ra, rb, bb := relayPair(t, s, RelayOptions{Batch: 10, AckDelay: time.Hour, StallCheck: 200 * time.Millisecond})
	publishN(t, ra, 0, 10)
	waitFor(t, "10 handed over and acknowledged", func() bool { c, _ := bb.counts(); return c == 10 && rb.acks.Load() == 1 })
	publishN(t, ra, 10, 5) // handed over, not acknowledged (the delay is an hour)
	waitFor(t, "15 handed over", func() bool { c, _ := bb.counts(); return c == 15 })
	if err := ra.js.DeleteConsumer(context.Background(), DefaultRelayStream, "relay-b"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the resync", func() bool { return rb.resyncs.Load() >= 1 && rb.skipped.Load() == 5 })
	publishN(t, ra, 15, 5)
	waitFor(t, "20 handed over", func() bool { c, _ := bb.counts(); return c == 20 })
	onceEach(t, bb, 20)
	if ci := consumerInfo(t, ra, "b"); ci.Config.OptStartSeq != 11 {
		t.Errorf("created again at %d; want 11 (after the acknowledged 10)", ci.Config.OptStartSeq)
	}
}

// TestJSRelayUpgradesExplicitConsumer: a consumer an older version made
// (one acknowledgement per message) is created again with AckAll at its
// acknowledgement floor: what was published since is delivered.
func TestJSRelayUpgradesExplicitConsumer(t *testing.T) {
	s := startJetStream(t)
	bb := &fakeBroker{}
	a, b := join(t, s, "a", &fakeBroker{}, 0), join(t, s, "b", bb, 0)
	ra, rb := openRelay(t, a, RelayOptions{}), openRelay(t, b, RelayOptions{})
	if _, err := ra.js.CreateConsumer(context.Background(), DefaultRelayStream, jetstream.ConsumerConfig{Durable: "relay-b",
		DeliverPolicy: jetstream.DeliverNewPolicy, AckPolicy: jetstream.AckExplicitPolicy}); err != nil {
		t.Fatal(err)
	}
	publishN(t, ra, 0, 7) // while b was stopped
	if err := rb.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the 7", func() bool { c, _ := bb.counts(); return c == 7 })
	onceEach(t, bb, 7)
	if ci := consumerInfo(t, ra, "b"); ci.Config.AckPolicy != jetstream.AckAllPolicy {
		t.Errorf("ack policy %v; want AckAll", ci.Config.AckPolicy)
	}
}

// TestJSRelayStalledDetects: the idle check says stalled when JetStream
// holds messages for the consumer that it did not deliver (here nobody
// pulls: as when the pull requests went to a consumer leader that is
// gone), and not when there are none or when the only unacknowledged
// ones are those the node handed over itself.
func TestJSRelayStalledDetects(t *testing.T) {
	s := startJetStream(t)
	a, b := join(t, s, "a", &fakeBroker{}, 0), join(t, s, "b", &fakeBroker{}, 0)
	ra, rb := openRelay(t, a, RelayOptions{}), openRelay(t, b, RelayOptions{StallCheck: 2 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cons, err := rb.open(ctx, false) // the consumer, no iterator
	if err != nil {
		t.Fatal(err)
	}
	rb.cons = cons
	if rb.stalled() {
		t.Fatal("stalled with nothing published")
	}
	publishN(t, ra, 0, 3)
	if !rb.stalled() {
		t.Fatal("not stalled with 3 messages pending and nobody pulling")
	}
	batch, err := cons.FetchNoWait(3)
	if err != nil {
		t.Fatal(err)
	}
	for range batch.Messages() {
		rb.unacked++ // fetched and handed over, not acknowledged yet
	}
	if err := batch.Error(); err != nil {
		t.Fatal(err)
	}
	if rb.unacked != 3 || rb.stalled() {
		t.Fatalf("stalled with the node's own %d unacknowledged messages; want not", rb.unacked)
	}
	rb.unacked = 2 // one of the three lost on the way
	if !rb.stalled() {
		t.Fatal("not stalled with a delivery the node never got")
	}
}
