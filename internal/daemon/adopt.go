package daemon

import (
	"context"
	"errors"
	"fmt"

	"github.com/moteiot/mote/internal/ingest/jsjournal"
	"github.com/moteiot/mote/internal/ruleengine"
	"github.com/moteiot/mote/internal/telemetry"
	telemetrypostgres "github.com/moteiot/mote/internal/telemetry/postgres"
)

// newAdopter makes the adopter of lost nodes' ingest backlogs
// (docs/cluster.md, "A node that never comes back"): the lease tells it
// which node is lost (Gone) and, once started with the lease's Alive,
// whether the node is heard again. nil when --cluster-ingest-adopt is off.
func (d *Daemon) newAdopter() (*jsjournal.Adopter, error) {
	if !d.cfg.ClusterIngestAdopt {
		return nil, nil
	}
	log := d.log.With("component", "ingest-adopt")
	return jsjournal.NewAdopter(jsjournal.AdopterOptions{
		Conn:         d.cluster.Conn(),
		Self:         d.cfg.NodeID,
		Open:         adoptionOpener{url: d.cfg.Store, maxConns: d.cfg.StoreMaxConns, rules: d.rules, log: log.Warn}.open,
		RetryEvery:   d.cfg.ClusterLeaseInterval,
		SweepAfter:   d.cfg.ClusterLeaseTimeout, // nodes that died before this one started
		BatchTimeout: d.cfg.ClusterIngestTimeout,
		Logger:       log,
		Metrics:      d.metrics,
	})
}

// adoptionOpener opens the target of one adoption: the lost node's
// journal in the telemetry store (its own small pool), claimed by an
// advisory lock for the adoption, with a writer the rules' durable pass
// stores into.
type adoptionOpener struct {
	url      string
	maxConns int
	rules    *ruleengine.Engine
	log      func(msg string, args ...any)
}

func (o adoptionOpener) open(ctx context.Context, node string) (*jsjournal.Target, error) {
	// One connection holds the claim, the others write.
	ts, err := telemetrypostgres.Open(ctx, o.url, telemetrypostgres.Options{MaxConns: int32(min(max(o.maxConns, 3), 4)), Journal: node})
	if err != nil {
		return nil, fmt.Errorf("telemetry store of node %q: %w", node, err)
	}
	release, ok, err := ts.ClaimJournal(ctx, node)
	if err != nil || !ok {
		_ = ts.Close()
		if err == nil {
			err = jsjournal.ErrClaimed
		}
		return nil, err
	}
	w, err := telemetry.NewWriter(ctx, ts, telemetry.WriterOptions{
		OnError: func(err error) { o.log("adopted telemetry write failed; retrying", "lost", node, "error", err) },
	})
	if err != nil {
		release()
		_ = ts.Close()
		return nil, err
	}
	return &jsjournal.Target{
		Consumer: o.rules.DurableTo(stoppingWriter{w: w, ctx: ctx}),
		Applied:  w.Committed,
		Flush:    w.Flush,
		Close: func() error {
			err := w.Close()
			release()
			return errors.Join(err, ts.Close())
		},
	}, nil
}

// stoppingWriter is the adoption's writer as the rules engine sees it:
// once the adopter stops (ctx), Add reports the writer closed, so that
// the durable pass does not wait on it (the message stays in JetStream).
type stoppingWriter struct {
	w   *telemetry.Writer
	ctx context.Context
}

func (s stoppingWriter) Add(ctx context.Context, points []telemetry.Point, seq uint64) error {
	if s.ctx.Err() != nil {
		return telemetry.ErrWriterClosed
	}
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	defer context.AfterFunc(s.ctx, stop)()
	err := s.w.Add(ctx, points, seq)
	if err != nil && s.ctx.Err() != nil {
		return telemetry.ErrWriterClosed
	}
	return err
}
