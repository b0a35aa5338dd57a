package daemon

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/moteiot/mote/internal/bus"
	"github.com/moteiot/mote/internal/cluster"
	"github.com/moteiot/mote/internal/methods"
	"github.com/moteiot/mote/internal/store"
)

// newMethodRouter routes the direct method calls of things connected to
// other nodes there (docs/cluster.md); nil for one node alone. It serves
// the calls routed here once the broker runs (startCluster).
func (d *Daemon) newMethodRouter() (methods.Remote, error) {
	if d.cluster == nil {
		return nil, nil
	}
	r, err := cluster.NewMethodRouter(d.cluster, storeLocator{d.store.Things()}, d.cfg.ClusterMethodCalls, d.metrics)
	if err != nil {
		return nil, err
	}
	d.routes = r
	return r, nil
}

// relayedBus carries the other nodes' messages to the console's live
// events (nil alone: an untyped nil interface).
func (d *Daemon) relayedBus() bus.Bus {
	if d.cluster == nil {
		return nil
	}
	return d.cluster.Relayed()
}

// storeLocator finds the node a thing is connected to in the shared store
// (presence: things.connected, things.node).
type storeLocator struct{ things store.ThingStore }

func (l storeLocator) NodeOf(ctx context.Context, thing string) (string, error) {
	t, err := l.things.Get(ctx, thing)
	if err != nil || !t.Connected {
		return "", err
	}
	return t.Node, nil
}

// registerShadowMetrics counts the shadow writes that lost the store's
// compare-and-set to another node (docs/shadows.md).
func (d *Daemon) registerShadowMetrics() error {
	return d.metrics.Register(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "mote_shadow_store_conflicts_total",
		Help: "Shadow writes that found the stored version changed by another cluster node and ran again on a fresh read.",
	}, func() float64 { return float64(d.shadows.Conflicts()) }))
}
