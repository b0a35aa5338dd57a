package daemon

import (
	"context"
	"fmt"

	"github.com/moteiot/mote/internal/cluster"
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

// nodeLost runs when this node marked a lost node's things disconnected
// (cluster lease): their disconnected events, then the wills of the lost
// node's connections.
func (d *Daemon) nodeLost(node string, things []string) {
	d.broker.NodeLost(node, things)
	if d.wills != nil {
		d.wills.PublishLost(node)
	}
}
