package daemon

import (
	"context"
	"fmt"

	"github.com/moteiot/mote/internal/core"

	"github.com/moteiot/mote/internal/broker"
	"github.com/moteiot/mote/internal/cluster"
)

// openRelay opens, in a cluster, the JetStream relay of QoS 1/2 messages
// between the nodes (internal/cluster/jsrelay.go, docs/cluster.md): the
// broker's journal then waits for JetStream to store each QoS 1/2 publish
// (and for the ingest journal, at the same time, when a rule stores it)
// before its PUBACK. Its publisher is drained after the broker closed.
func (d *Daemon) openRelay(ctx context.Context) error {
	if d.cluster == nil {
		return nil
	}
	cfg := d.cfg
	r, err := d.cluster.OpenRelay(ctx, cluster.RelayOptions{
		Replicas:   cfg.ClusterReplicas,
		MaxBytes:   cfg.ClusterRelayMaxBytes,
		MaxAge:     cfg.ClusterRelayMaxAge,
		Batch:      cfg.ClusterRelayBatch,
		AckTimeout: cfg.ClusterIngestTimeout,
		MaxPending: cfg.ClusterIngestPending,
	}, d.metrics)
	if err != nil {
		return fmt.Errorf("open relay on JetStream: %w", err)
	}
	d.relay = r
	d.onClose(r.Close)
	return nil
}

// brokerJournal is what the broker's QoS 1/2 publishes wait for: the
// ingest journal alone, or in a cluster the relay wrapping it.
func (d *Daemon) brokerJournal() broker.Journal {
	if d.relay != nil {
		return d.relay.Journal(d.ingest)
	}
	if d.ingest == nil {
		return nil
	}
	return d.ingest
}

// startRelay starts this node's consumer of the relay stream (after the
// broker runs); it stops before the broker closes.
func (d *Daemon) startRelay() error {
	if d.relay == nil {
		return nil
	}
	if err := d.relay.Start(context.Background()); err != nil {
		return err
	}
	d.onClose(d.relay.Close)
	return nil
}

// sessionReplayer replays the relay stream into persistent sessions
// loaded from the store (broker/replay.go); nil without the relay.
func (d *Daemon) sessionReplayer() broker.SessionReplayer {
	if d.relay == nil {
		return nil
	}
	return relayReplayer{d.relay}
}

// relayReplayer is the relay as the broker's SessionReplayer.
type relayReplayer struct{ r *cluster.JSRelay }

func (rr relayReplayer) ReplayPoint() uint64 { return rr.r.ReplayPoint() }

func (rr relayReplayer) LivePosition(ctx context.Context) (uint64, bool, bool, error) {
	return rr.r.LivePosition(ctx)
}

func (rr relayReplayer) Replay(ctx context.Context, from uint64, fn func(seq uint64, m core.Message) bool) (int, uint64, error) {
	res, err := rr.r.Replay(ctx, from, fn)
	return res.Read, res.Missing, err
}
