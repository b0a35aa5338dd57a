package daemon

import (
	"context"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/moteiot/mote/internal/config"
	"github.com/moteiot/mote/internal/datadir"
	"github.com/moteiot/mote/internal/pgdb"
	"github.com/moteiot/mote/internal/store"
	storepostgres "github.com/moteiot/mote/internal/store/postgres"
	"github.com/moteiot/mote/internal/store/sqlite"
	"github.com/moteiot/mote/internal/telemetry"
	telemetrypostgres "github.com/moteiot/mote/internal/telemetry/postgres"
	telemetrysqlite "github.com/moteiot/mote/internal/telemetry/sqlite"
)

// openStore opens the registry store: PostgreSQL when cfg.Store is a URL,
// else the embedded SQLite database in the data directory.
func openStore(ctx context.Context, cfg config.Config) (store.Store, error) {
	if cfg.Store == "" {
		return sqlite.Open(datadir.DB(cfg.DataDir))
	}
	return storepostgres.Open(ctx, cfg.Store, storepostgres.Options{MaxConns: int32(cfg.StoreMaxConns)})
}

// openTelemetry opens the telemetry store on the same backend as openStore.
// A cluster node keeps its own replay point (its JetStream journal's
// sequence), named for the node.
func openTelemetry(ctx context.Context, cfg config.Config) (telemetry.Store, error) {
	if cfg.Store == "" {
		return telemetrysqlite.Open(datadir.Telemetry(cfg.DataDir))
	}
	var journal string
	if cfg.Cluster != "" {
		journal = cfg.NodeID
	}
	return telemetrypostgres.Open(ctx, cfg.Store, telemetrypostgres.Options{MaxConns: int32(cfg.StoreMaxConns), Journal: journal})
}

// registerStoreMetrics exports the connection pools of the PostgreSQL
// stores (mote_store_pool_*); the SQLite stores have none.
func registerStoreMetrics(reg prometheus.Registerer, st store.Store, ts telemetry.Store) {
	var c pgdb.PoolCollector
	if p, ok := st.(*storepostgres.Store); ok {
		c.Add("store", p.Pool())
	}
	if p, ok := ts.(*telemetrypostgres.Store); ok {
		c.Add("telemetry", p.Pool())
	}
	if c.Len() > 0 {
		reg.MustRegister(&c)
	}
}

// storeName describes the store for the log, without a password.
func storeName(url string) string {
	if url == "" {
		return "sqlite"
	}
	return fmt.Sprintf("postgres (%s)", pgdb.Redact(url))
}
