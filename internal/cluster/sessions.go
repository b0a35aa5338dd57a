package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/moteiot/mote/internal/bus/natsbus"
)

// Session handover (see broker/handover.go for the whole design): a node
// whose device connects with Clean Start 0 under a client id whose stored
// session names another node asks that node, by a NATS request on
// "<prefix>.ctl.session.<node>", to release it. The request is the
// takeover announcement's form ("1", the asking node, NUL, the client id);
// the answer one byte: 'R' released (written to the store), 'N' not held
// there, 'E' failed. No answer within the deadline (a dead node: NATS says
// "no responders" at once when its connection is gone) means the asking
// node resumes what the store has.

// SessionReleaser is the broker's side of a handover (*broker.Broker).
type SessionReleaser interface {
	// ReleaseSession writes this node's session of clientID to the store
	// and forgets it; held says whether there was one, dropped how many
	// queued messages were left out for the bound.
	ReleaseSession(ctx context.Context, clientID string) (held bool, dropped int, err error)
}

// Answers to a release request.
const (
	releaseDone    = 'R'
	releaseNotHeld = 'N'
	releaseFailed  = 'E'
)

// maxConcurrentReleases bounds the handovers this node serves at once;
// beyond it a request is answered 'E' and the asking node resumes what the
// store has.
const maxConcurrentReleases = 64

type sessionStats struct {
	released, notHeld, failed, timeout atomic.Uint64 // requests made here, by result
	served, servedFailed, busy         atomic.Uint64 // requests served here
	dropped                            atomic.Uint64 // queued messages beyond the bound
	inflight                           atomic.Int64
}

func (n *Node) sessionSubject(node string) string { return n.opts.Prefix + ".ctl.session." + node }

// ReleaseSession asks node to release clientID's session and waits, until
// ctx ends, for its answer (broker.HandoverLink).
func (n *Node) ReleaseSession(ctx context.Context, node, clientID string) error {
	if n.closed.Load() {
		return errors.New("cluster: closed")
	}
	msg, err := n.nb.Conn().RequestWithContext(ctx, n.sessionSubject(node), appendTakeover(nil, n.opts.NodeID, clientID))
	if err != nil {
		n.sessions.timeout.Add(1)
		if errors.Is(err, nats.ErrNoResponders) {
			return fmt.Errorf("node %s is not in the cluster", node)
		}
		return fmt.Errorf("node %s did not answer: %w", node, err)
	}
	switch {
	case len(msg.Data) == 1 && msg.Data[0] == releaseDone:
		n.sessions.released.Add(1)
		return nil
	case len(msg.Data) == 1 && msg.Data[0] == releaseNotHeld:
		n.sessions.notHeld.Add(1)
		return nil
	default:
		n.sessions.failed.Add(1)
		return fmt.Errorf("node %s could not release the session", node)
	}
}

// serveReleases answers the other nodes' release requests.
func (n *Node) serveReleases(b SessionReleaser) (*nats.Subscription, error) {
	sub, err := n.nb.Conn().Subscribe(n.sessionSubject(n.opts.NodeID), func(msg *nats.Msg) {
		_, clientID, err := parseTakeover(msg.Data)
		if err != nil {
			n.decodeFailed.Add(1)
			return
		}
		if n.sessions.inflight.Add(1) > maxConcurrentReleases {
			n.sessions.inflight.Add(-1)
			n.sessions.busy.Add(1)
			_ = msg.Respond([]byte{releaseFailed})
			return
		}
		go func() {
			defer n.sessions.inflight.Add(-1)
			ctx, cancel := context.WithTimeout(context.Background(), n.opts.HandoverTimeout)
			defer cancel()
			held, dropped, err := b.ReleaseSession(ctx, clientID)
			n.sessions.dropped.Add(uint64(dropped))
			answer := byte(releaseNotHeld)
			switch {
			case err != nil:
				n.sessions.servedFailed.Add(1)
				n.log.Warn("persistent session not released to another node", "client", clientID, "error", err)
				answer = releaseFailed
			case held:
				n.sessions.served.Add(1)
				answer = releaseDone
			}
			_ = msg.Respond([]byte{answer})
		}()
	})
	if err != nil {
		return nil, err
	}
	if err := sub.SetPendingLimits(n.opts.RelayQueue, natsbus.DefaultPendingBytes); err != nil {
		_ = sub.Unsubscribe()
		return nil, err
	}
	return sub, nil
}

func (n *Node) registerSessions(reg prometheus.Registerer) error {
	counter := func(name, help string, labels prometheus.Labels, v *atomic.Uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: labels},
			func() float64 { return float64(v.Load()) })
	}
	const reqHelp = "Persistent sessions this node asked another node to hand over when their device connected here, by result: released, not_held (the other node no longer had it), failed, timeout (no answer within --cluster-handover-timeout, or the node is gone: the store's copy was resumed)."
	const servedHelp = "Persistent sessions this node was asked to hand over to another node, by result: released, failed, busy (too many at once)."
	s := &n.sessions
	for _, c := range []prometheus.Collector{
		counter("mote_cluster_session_handovers_total", reqHelp, prometheus.Labels{"result": "released"}, &s.released),
		counter("mote_cluster_session_handovers_total", reqHelp, prometheus.Labels{"result": "not_held"}, &s.notHeld),
		counter("mote_cluster_session_handovers_total", reqHelp, prometheus.Labels{"result": "failed"}, &s.failed),
		counter("mote_cluster_session_handovers_total", reqHelp, prometheus.Labels{"result": "timeout"}, &s.timeout),
		counter("mote_cluster_session_releases_total", servedHelp, prometheus.Labels{"result": "released"}, &s.served),
		counter("mote_cluster_session_releases_total", servedHelp, prometheus.Labels{"result": "failed"}, &s.servedFailed),
		counter("mote_cluster_session_releases_total", servedHelp, prometheus.Labels{"result": "busy"}, &s.busy),
		counter("mote_cluster_session_handover_dropped_total", "Queued messages left out of persistent sessions handed over to another node (beyond --cluster-handover-max-messages, the oldest).", nil, &s.dropped),
	} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}
