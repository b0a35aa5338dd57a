package daemon

import (
	"github.com/moteiot/mote/internal/broker"
	"github.com/moteiot/mote/internal/dashboards"
)

// startDashboards builds the dashboard service and starts the overview's
// history sampler (docs/dashboards.md), after the registry, the broker
// and the alarms it counts; the sampler is stopped before them.
func (d *Daemon) startDashboards() {
	d.dashboards = dashboards.New(dashboards.Options{
		Store:         d.store.Dashboards(),
		Limits:        dashboards.Limits{MaxWidgets: d.cfg.DashboardMaxWidgets, MaxSize: d.cfg.DashboardMaxSize},
		MaxDashboards: d.cfg.MaxDashboards,
		Logger:        d.log.With("component", "dashboards"),
		Metrics:       d.metrics,
	})
	d.statsSampler = dashboards.NewSampler(dashboards.SamplerOptions{
		Store:    d.store.StatsHistory(),
		Things:   d.registry,
		Alarms:   d.alarms,
		Messages: brokerMessages{d.broker},
		Interval: d.cfg.StatsHistoryInterval,
		Logger:   d.log.With("component", "stats-history"),
		Metrics:  d.metrics,
	})
	d.statsSampler.Start()
	d.onClose(d.statsSampler.Close)
}

// brokerMessages is the broker's running count of messages received.
type brokerMessages struct{ b *broker.Broker }

func (m brokerMessages) MessagesReceived() int64 { return m.b.Stats().MessagesReceived }

// Dashboards returns the dashboard service.
func (d *Daemon) Dashboards() *dashboards.Service { return d.dashboards }
