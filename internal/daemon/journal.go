package daemon

import (
	"context"
	"errors"
	"fmt"

	"github.com/moteiot/mote/internal/datadir"
	"github.com/moteiot/mote/internal/ingest"
	"github.com/moteiot/mote/internal/ingest/jsjournal"
	"github.com/moteiot/mote/internal/wal"
)

// openJournal opens the ingest journal: QoS 1/2 messages that a rule
// stores as telemetry are made durable in it before their PUBACK, and
// applied to the telemetry writer in order. It is started, with a replay,
// once the rules engine runs: Start(d.rules) in Daemon.Start is where the
// journal gets its consumer (the engine publishes through the broker,
// which appends to the journal, so the two are wired there, not here).
// Until then it wants nothing. One node alone: the write-ahead log in the data
// directory. In a cluster: this node's subject on JetStream
// (docs/cluster.md), whose replay point is this node's row in the
// telemetry store (openTelemetry). Its last checkpoint is taken after the
// writer's final flush, so its Close is registered before the writer's
// (closers run last first; the cluster's NATS connection, registered
// before, closes after it).
func (d *Daemon) openJournal(ctx context.Context) error {
	cfg := d.cfg
	if d.cluster != nil {
		j, err := jsjournal.Open(ctx, jsjournal.Options{
			Conn:       d.cluster.Conn(),
			Node:       cfg.NodeID,
			Replicas:   cfg.ClusterReplicas,
			MaxBytes:   cfg.ClusterIngestMaxBytes,
			AckTimeout: cfg.ClusterIngestTimeout,
			MaxPending: cfg.ClusterIngestPending,
			Applied:    d.twriter.Committed,
			Logger:     d.log.With("component", "ingest"),
			Metrics:    d.metrics,
		})
		if err != nil {
			return fmt.Errorf("open ingest journal on JetStream: %w", err)
		}
		d.ingest = j
		d.onClose(j.Close)
		d.onClose(d.twriter.Close)
		return nil
	}
	j, err := ingest.Open(ingest.Options{
		Dir:     datadir.Journal(cfg.DataDir),
		Applied: d.twriter.Committed,
		Logger:  d.log.With("component", "ingest"),
		Metrics: d.metrics,
	})
	if err != nil {
		if ce := (*wal.CorruptError)(nil); errors.As(err, &ce) {
			return fmt.Errorf("open ingest journal: %w; nothing was changed: list the damage with `mote admin journal inspect --data-dir %s`, "+
				"keep the valid records with `mote admin journal salvage --data-dir %s` (see docs/architecture.md, journal recovery)", err, cfg.DataDir, cfg.DataDir)
		}
		return fmt.Errorf("open ingest journal: %w", err)
	}
	d.journal, d.ingest = j, j
	d.onClose(j.Close)
	d.onClose(d.twriter.Close)
	return nil
}
