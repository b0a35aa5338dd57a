package cluster

// Replaying the relay stream into persistent sessions (docs/cluster.md,
// "A dead node's sessions"; broker/replay.go has the broker's side).
//
// The relay stream MOTE_RELAY holds every QoS 1/2 message of the cluster
// with its stream sequence for --cluster-relay-max-age: it is the offline
// queue of the sessions whose node died. A node writes with each
// persistent session a replay point P (ReplayPoint, lowered by the broker
// for its own publishes in flight): every message with a sequence up to P
// that matches the session is in what it wrote. A node that loads such a
// session from the store reads the stream from P+1 up to its last
// sequence (Replay), read after the session was subscribed here, so that
// this node's live consumer covers everything after; what matches is
// queued to the session. A duplicate is possible (QoS 1 allows it), a
// loss within the stream's limits is not.

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/moteiot/mote/internal/bus/natsbus"
	"github.com/moteiot/mote/internal/core"
)

// ReplayPoint returns the highest stream sequence this node's consumer
// has handed to the broker (every message of another node up to it is in
// the subscribers' queues here). Before the consumer runs it is the
// stream's last sequence when the relay was opened: no session of this
// run existed before it.
func (r *JSRelay) ReplayPoint() uint64 {
	if h := r.handedSafe.Load(); h != 0 {
		return h
	}
	if info := r.stream.CachedInfo(); info != nil {
		return info.State.LastSeq
	}
	return 0
}

// LivePosition returns the stream sequence after which this node's relay
// consumer hands the other nodes' messages to the broker from now on.
// running says the consumer runs: it may be handing over the first
// message after seq right now (its fan-out began earlier). Before Start
// it is the durable consumer's delivered position (what it delivers next
// comes after it, or again: unacknowledged); ok is false when there is
// none yet (it will start with new messages only).
func (r *JSRelay) LivePosition(ctx context.Context) (seq uint64, running, ok bool, err error) {
	if r.started.Load() {
		return r.handedMax.Load(), true, true, nil
	}
	cons, err := r.js.Consumer(ctx, r.o.Stream, r.durable)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return 0, false, false, nil
	}
	if err != nil {
		return 0, false, false, fmt.Errorf("cluster replay: consumer %s: %w", r.durable, err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return 0, false, false, fmt.Errorf("cluster replay: consumer %s: %w", r.durable, err)
	}
	return info.Delivered.Stream, false, true, nil
}

// ReplayResult says what a Replay read.
type ReplayResult struct {
	Read    int    // messages read from the stream
	Last    uint64 // the last sequence to read (the stream's, when the replay started)
	Missing uint64 // sequences from `from` on that the stream's limits removed already
	Stopped bool   // fn asked to stop before Last
}

// Replay reads the relay stream from sequence from up to its last
// sequence now, with an ordered consumer, and calls fn with each message
// and its sequence until fn returns false. It ends with ctx (an error
// wrapping ctx's).
func (r *JSRelay) Replay(ctx context.Context, from uint64, fn func(seq uint64, m core.Message) bool) (ReplayResult, error) {
	var res ReplayResult
	if from == 0 {
		from = 1
	}
	info, err := r.stream.Info(ctx)
	if err != nil {
		return res, fmt.Errorf("cluster replay: stream info: %w", err)
	}
	res.Last = info.State.LastSeq
	if from > res.Last {
		return res, nil
	}
	if first := info.State.FirstSeq; from < first {
		res.Missing = first - from
		from = first
	}
	cons, err := r.js.OrderedConsumer(ctx, r.o.Stream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{r.prefix + ".>"},
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    from,
	})
	if err != nil {
		return res, fmt.Errorf("cluster replay: consumer: %w", err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(r.o.Batch))
	if err != nil {
		return res, fmt.Errorf("cluster replay: consume: %w", err)
	}
	defer it.Stop()
	next := from
	for next <= res.Last {
		msg, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			if ctxErr := ctx.Err(); ctxErr != nil {
				return res, fmt.Errorf("cluster replay: read up to %d of %d: %w", next-1, res.Last, ctxErr)
			}
			return res, fmt.Errorf("cluster replay: %w", err)
		}
		md, err := msg.Metadata()
		if err != nil {
			continue
		}
		seq := md.Sequence.Stream
		if seq > next {
			res.Missing += seq - next // removed meanwhile by the stream's limits
		}
		next = seq + 1
		res.Read++
		m, err := natsbus.DecodeMessage(msg.Data())
		if err != nil {
			r.decode.Add(1)
			continue
		}
		if !fn(seq, m) {
			res.Stopped = true
			return res, nil
		}
	}
	return res, nil
}
