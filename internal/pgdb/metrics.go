package pgdb

import (
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

// PoolCollector exports the statistics of connection pools as
// mote_store_pool_* metrics, labelled pool=<name>. The pool bounds the
// connections (--store-max-conns); a caller that finds none free waits,
// which mote_store_pool_acquire_waits_total and
// mote_store_pool_acquire_wait_seconds_total count.
type PoolCollector struct {
	names []string
	pools []*pgxpool.Pool
}

// Add adds a pool under name.
func (c *PoolCollector) Add(name string, pool *pgxpool.Pool) {
	c.names = append(c.names, name)
	c.pools = append(c.pools, pool)
}

// Len is the number of pools.
func (c *PoolCollector) Len() int { return len(c.pools) }

var (
	poolLabels    = []string{"pool"}
	descMax       = prometheus.NewDesc("mote_store_pool_max_connections", "Most connections the PostgreSQL pool opens (--store-max-conns).", poolLabels, nil)
	descOpen      = prometheus.NewDesc("mote_store_pool_connections", "Open connections of the PostgreSQL pool, by state.", append(poolLabels, "state"), nil)
	descAcquires  = prometheus.NewDesc("mote_store_pool_acquires_total", "Connections taken from the PostgreSQL pool.", poolLabels, nil)
	descWaits     = prometheus.NewDesc("mote_store_pool_acquire_waits_total", "Takes that had to wait because every connection was in use or being opened.", poolLabels, nil)
	descWaitSecs  = prometheus.NewDesc("mote_store_pool_acquire_wait_seconds_total", "Time spent waiting for a connection of the PostgreSQL pool.", poolLabels, nil)
	descCancelled = prometheus.NewDesc("mote_store_pool_acquire_cancelled_total", "Takes that gave up (deadline or cancellation) before a connection was free.", poolLabels, nil)
)

// Describe implements prometheus.Collector.
func (c *PoolCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descMax, descOpen, descAcquires, descWaits, descWaitSecs, descCancelled} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *PoolCollector) Collect(ch chan<- prometheus.Metric) {
	for i, p := range c.pools {
		collectPool(ch, c.names[i], p.Stat())
	}
}

func collectPool(ch chan<- prometheus.Metric, name string, st *pgxpool.Stat) {
	ch <- prometheus.MustNewConstMetric(descMax, prometheus.GaugeValue, float64(st.MaxConns()), name)
	ch <- prometheus.MustNewConstMetric(descOpen, prometheus.GaugeValue, float64(st.AcquiredConns()), name, "acquired")
	ch <- prometheus.MustNewConstMetric(descOpen, prometheus.GaugeValue, float64(st.IdleConns()), name, "idle")
	ch <- prometheus.MustNewConstMetric(descOpen, prometheus.GaugeValue, float64(st.ConstructingConns()), name, "opening")
	ch <- prometheus.MustNewConstMetric(descAcquires, prometheus.CounterValue, float64(st.AcquireCount()), name)
	ch <- prometheus.MustNewConstMetric(descWaits, prometheus.CounterValue, float64(st.EmptyAcquireCount()), name)
	ch <- prometheus.MustNewConstMetric(descWaitSecs, prometheus.CounterValue, st.AcquireDuration().Seconds(), name)
	ch <- prometheus.MustNewConstMetric(descCancelled, prometheus.CounterValue, float64(st.CanceledAcquireCount()), name)
}
