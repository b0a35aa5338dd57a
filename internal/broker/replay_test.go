package broker

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/policy"
)

// fakeRelay is a relay stream in memory: msgs[i] has sequence i+1. block
// makes Replay wait for its context (a stream that does not answer).
type fakeRelay struct {
	point atomic.Uint64
	msgs  []core.Message
	block bool
	from  atomic.Uint64 // the last Replay's start

	live            uint64 // LivePosition
	running, liveOK bool
}

func (f *fakeRelay) LivePosition(context.Context) (uint64, bool, bool, error) {
	return f.live, f.running, f.liveOK, nil
}

func (f *fakeRelay) ReplayPoint() uint64 { return f.point.Load() }

func (f *fakeRelay) Replay(ctx context.Context, from uint64, fn func(uint64, core.Message) bool) (int, uint64, error) {
	f.from.Store(from)
	if f.block {
		<-ctx.Done()
		return 0, 0, ctx.Err()
	}
	read := 0
	for seq := max(from, 1); seq <= uint64(len(f.msgs)); seq++ {
		read++
		if !fn(seq, f.msgs[seq-1]) {
			break
		}
	}
	return read, 0, nil
}

func replayBroker(t *testing.T, f *fakeRelay, max int, timeout time.Duration) *Broker {
	t.Helper()
	b, err := New(Options{
		MQTTAddr:      "127.0.0.1:0",
		NodeID:        "n1",
		Auth:          anyThing{},
		Policies:      &heldPolicies{topic: "d/in"},
		Logger:        slog.New(slog.NewTextHandler(io.Discard, nil)),
		Replay:        f,
		ReplayMax:     max,
		ReplayTimeout: timeout,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// TestReplayPointOwnPublishes: the replay point never passes a publish of
// this node still in flight (JetStream may have stored it before its
// local fan-out), and follows the relay consumer once it is done.
func TestReplayPointOwnPublishes(t *testing.T) {
	f := &fakeRelay{}
	b := replayBroker(t, f, 10, time.Second)
	f.point.Store(10)
	tok := b.ownPublishBegin()
	f.point.Store(50) // the consumer went on, past the publish's sequence
	if p, ok := b.replayPoint(); !ok || p != 10 {
		t.Errorf("replay point with a publish in flight since 10 = %d, %v; want 10", p, ok)
	}
	b.ownPublishEnd(tok)
	if p, _ := b.replayPoint(); p != 50 {
		t.Errorf("replay point once it is fanned out = %d; want 50", p)
	}
	b.ownPublishEnd(0) // no relay, or a refused publish: nothing
	alone := replayBroker(t, f, 10, time.Second)
	alone.opts.Replay = nil
	if tok := alone.ownPublishBegin(); tok != 0 {
		t.Errorf("token without a relay = %d; want 0", tok)
	}
	if _, ok := alone.replayPoint(); ok {
		t.Error("a replay point without a relay")
	}
}

// replayTo makes a disconnected session of thing with the given
// subscriptions, as restoreOne does.
func replayTo(b *Broker, thing string, from uint64, deny string, subs ...packets.Subscription) *replayTarget {
	cl := b.server.NewClient(nil, "local", thing, false)
	cl.Properties.ProtocolVersion = 5
	for _, sb := range subs {
		cl.State.Subscriptions.Add(sb.Filter, sb)
	}
	s := &session{cl: cl}
	st := []policy.Statement{{Effect: policy.Allow, Actions: []policy.Action{policy.Subscribe, policy.Receive}, Topics: []string{"#"}}}
	if deny != "" {
		st = append(st, policy.Statement{Effect: policy.Deny, Actions: []policy.Action{policy.Receive}, Topics: []string{deny}})
	}
	s.setEvaluator(policy.Compile([]policy.Document{{Statements: st}}, policy.Vars{Thing: thing}), 0)
	return &replayTarget{cl: cl, s: s, from: from}
}

// TestReplayMatchesAndBounds: a replay queues, from the session's replay
// point on, the QoS 1/2 messages that match its subscriptions (not its
// shared ones, not its own with No Local) and that its thing may receive,
// as QoS 1 at most; it stops at ReplayMax, counted.
func TestReplayMatchesAndBounds(t *testing.T) {
	f := &fakeRelay{}
	for i := range 40 {
		m := core.Message{Topic: "d/in", QoS: 1, Payload: []byte(fmt.Sprint(i)), ClientID: "pub"}
		switch i % 8 {
		case 1:
			m.Topic = "other/in" // no subscription
		case 2:
			m.QoS = 0 // nothing was owed
		case 3:
			m.Topic = "d/secret" // the thing may not receive it
		case 4:
			m.ClientID = "dev" // its own, with No Local
		case 5:
			m.QoS = 2
		}
		f.msgs = append(f.msgs, m)
	}
	b := replayBroker(t, f, 10, time.Second)
	tg := replayTo(b, "dev", 5, "d/secret",
		packets.Subscription{Filter: "d/#", Qos: 2, NoLocal: true},
		packets.Subscription{Filter: "$share/g/other/#", Qos: 1})
	b.replaySessions([]*replayTarget{tg})
	if got := f.from.Load(); got != 5 {
		t.Errorf("replay started at %d; want the session's replay point 5", got)
	}
	var got []string
	for _, pk := range tg.cl.State.Inflight.GetAll(false) {
		if pk.FixedHeader.Qos != 1 || pk.TopicName != "d/in" {
			t.Errorf("queued %s at QoS %d; want d/in at QoS 1", pk.TopicName, pk.FixedHeader.Qos)
		}
		got = append(got, string(pk.Payload))
	}
	// From sequence 5 (i = 4) on: i%8 in {0, 5, 6, 7} match; 10 at most.
	if len(got) != 10 || tg.n != 10 || !tg.full {
		t.Errorf("queued %d (%v, n %d, full %v); want the bound 10", len(got), got, tg.n, tg.full)
	}
	if v := b.replay.limit.Load(); v != 1 {
		t.Errorf("replays stopped at the bound = %d; want 1", v)
	}
	if v := b.replay.denied.Load(); v == 0 {
		t.Error("no message counted as denied by the thing's policy")
	}
	if v := b.replay.queued.Load(); v != 10 {
		t.Errorf("messages replayed = %d; want 10", v)
	}
}

// TestReplayDeadline: a relay stream that does not answer holds a replay
// (and the CONNACK waiting for it) no longer than ReplayTimeout, counted.
func TestReplayDeadline(t *testing.T) {
	f := &fakeRelay{block: true}
	b := replayBroker(t, f, 10, 150*time.Millisecond)
	tg := replayTo(b, "dev", 1, "", packets.Subscription{Filter: "#", Qos: 1})
	start := time.Now()
	b.replaySessions([]*replayTarget{tg})
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("replay took %s; want it ended by its 150ms deadline", d)
	}
	if v := b.replay.timeout.Load(); v != 1 {
		t.Errorf("replays ended by the deadline = %d; want 1", v)
	}
}

// TestReplayLeavesTheLiveConsumer: the other nodes' messages after the
// relay consumer's position reach the session through the consumer, so a
// replay leaves them — but for the first one, which the consumer may be
// handing over as the session is subscribed, and this node's own ones,
// which the consumer skips. Before the consumer runs (a restart) it
// leaves them all.
func TestReplayLeavesTheLiveConsumer(t *testing.T) {
	for _, tc := range []struct {
		name    string
		running bool
		want    string
	}{
		{"consumer running", true, "[3 4 5 6 7 8 9 10 11 15]"},
		{"at a restart", false, "[3 4 5 6 7 8 9 10 15]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeRelay{live: 10, running: tc.running, liveOK: true}
			for i := 1; i <= 20; i++ {
				m := core.Message{Topic: "d/in", QoS: 1, Payload: []byte(fmt.Sprint(i)), Node: "n2"}
				if i == 15 {
					m.Node = "n1" // published here
				}
				f.msgs = append(f.msgs, m)
			}
			b := replayBroker(t, f, 100, time.Second)
			tg := replayTo(b, "dev", 3, "", packets.Subscription{Filter: "d/in", Qos: 1})
			b.replaySessions([]*replayTarget{tg})
			var got []int
			for _, pk := range tg.cl.State.Inflight.GetAll(false) {
				var n int
				fmt.Sscan(string(pk.Payload), &n)
				got = append(got, n)
			}
			sort.Ints(got)
			if fmt.Sprint(got) != tc.want {
				t.Errorf("replayed %v; want %s", got, tc.want)
			}
		})
	}
}
