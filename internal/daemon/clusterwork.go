package daemon

import (
	"github.com/prometheus/client_golang/prometheus"
)

// registerShadowMetrics counts the shadow writes that lost the store's
// compare-and-set to another node (docs/shadows.md).
func (d *Daemon) registerShadowMetrics() error {
	return d.metrics.Register(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "mote_shadow_store_conflicts_total",
		Help: "Shadow writes that found the stored version changed by another cluster node and ran again on a fresh read.",
	}, func() float64 { return float64(d.shadows.Conflicts()) }))
}
