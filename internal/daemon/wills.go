package daemon

import (
	"context"
	"fmt"

	"github.com/moteiot/mote/internal/cluster"
	"github.com/moteiot/mote/internal/ingest/jsjournal"
)

// openWills opens, in a cluster, the record of the last wills of live
// connections (internal/cluster/wills.go, docs/cluster.md "Last wills"),
// before the broker: it closes after the broker, whose shutdown sends the
// wills and clears their records.
func (d *Daemon) openWills(ctx context.Context) error {
	if d.cluster == nil {
		return nil
	}
	w, err := d.cluster.OpenWills(ctx, cluster.WillOptions{
		Replicas: d.cfg.ClusterReplicas,
		MaxBytes: d.cfg.ClusterWillsMaxBytes,
		Queue:    d.cfg.ClusterWillQueue,
		Timeout:  d.cfg.ClusterIngestTimeout,
	}, d.metrics)
	if err != nil {
		return fmt.Errorf("open wills on JetStream: %w", err)
	}
	d.wills = w
	d.onClose(w.Close)
	return nil
}

// startWills makes the broker the publisher of lost nodes' wills, and
// publishes those this node's id left behind (a previous run killed).
func (d *Daemon) startWills() {
	if d.wills != nil {
		d.wills.Start(d.broker)
	}
}

// nodeGone runs on every survivor for each lost node (cluster lease),
// after its things were marked disconnected: one survivor adopts its
// ingest backlog (adopt.go), and one publishes the wills of its
// connections (each record is claimed by deleting it at the revision
// read, so two survivors never both send one). Every survivor tries, so
// a lost node's wills go out also when no survivor got any of its things
// from the presence reset.
func (d *Daemon) nodeGone(adopter *jsjournal.Adopter, node string) {
	if adopter != nil {
		adopter.Lost(node)
	}
	if d.wills != nil {
		d.wills.PublishLost(node)
	}
}
