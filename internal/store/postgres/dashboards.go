package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/store"
)

// Dashboards returns the dashboard store.
func (s *Store) Dashboards() store.DashboardStore { return dashboardStore{s} }

// StatsHistory returns the store of the overview's history.
func (s *Store) StatsHistory() store.StatsHistoryStore { return statsHistoryStore{s} }

type dashboardStore struct{ s *Store }

const dashboardColumns = `name, title, widgets, version, created_at, updated_at`

func scanDashboard(row scanner) (store.Dashboard, error) {
	var (
		d       store.Dashboard
		widgets string
	)
	if err := row.Scan(&d.Name, &d.Title, &widgets, &d.Version, &d.CreatedAt, &d.UpdatedAt); err != nil {
		return store.Dashboard{}, err
	}
	d.Widgets = []byte(widgets)
	d.CreatedAt, d.UpdatedAt = d.CreatedAt.UTC(), d.UpdatedAt.UTC()
	return d, nil
}

func widgetsText(b []byte) string {
	if len(b) == 0 {
		return "[]"
	}
	return string(b)
}

// Create stores a new dashboard with version 1. The table lock makes the
// count and the insert one step across nodes.
func (ds dashboardStore) Create(ctx context.Context, d store.Dashboard, max int) (store.Dashboard, error) {
	if err := requireName("name", d.Name); err != nil {
		return store.Dashboard{}, err
	}
	created, updated := createdUpdated(d.CreatedAt, d.UpdatedAt)
	var out store.Dashboard
	err := ds.s.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `LOCK TABLE dashboards IN SHARE ROW EXCLUSIVE MODE`); err != nil {
			return internal("create dashboard", err)
		}
		dup, err := exists(ctx, tx, `SELECT 1 FROM dashboards WHERE name = $1`, d.Name)
		if err != nil {
			return err
		}
		if dup {
			return core.Conflict("dashboard %q already exists", d.Name)
		}
		if max > 0 {
			var n int
			if err := tx.QueryRow(ctx, `SELECT count(*) FROM dashboards`).Scan(&n); err != nil {
				return internal("create dashboard", err)
			}
			if n >= max {
				return core.Conflict("there are already %d dashboards, the limit (--max-dashboards)", n)
			}
		}
		out, err = getOne(tx.QueryRow(ctx, `INSERT INTO dashboards (`+dashboardColumns+`) VALUES ($1, $2, $3, 1, $4, $5) RETURNING `+dashboardColumns,
			d.Name, d.Title, widgetsText(d.Widgets), created, updated), scanDashboard, "dashboard", d.Name)
		return err
	})
	return out, err
}

// Get returns a dashboard.
func (ds dashboardStore) Get(ctx context.Context, name string) (store.Dashboard, error) {
	return getOne(ds.s.pool.QueryRow(ctx, `SELECT `+dashboardColumns+` FROM dashboards WHERE name = $1`, name), scanDashboard, "dashboard", name)
}

// List returns dashboards by name after the cursor.
func (ds dashboardStore) List(ctx context.Context, after string, limit int) ([]store.Dashboard, error) {
	return queryList(ctx, ds.s.pool, "list dashboards", scanDashboard,
		`SELECT `+dashboardColumns+` FROM dashboards WHERE name > $1 ORDER BY name LIMIT $2`, after, normLimit(limit))
}

// checkVersion locks the row of name and checks its version: NotFound
// when there is none, a stale-version conflict when ifVersion > 0 differs.
func checkVersion(ctx context.Context, tx pgx.Tx, name string, ifVersion int64) error {
	var v int64
	err := tx.QueryRow(ctx, `SELECT version FROM dashboards WHERE name = $1 FOR UPDATE`, name).Scan(&v)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return core.NotFound("dashboard", name)
	case err != nil:
		return internal("get dashboard", err)
	case ifVersion > 0 && v != ifVersion:
		return &core.Error{Kind: core.KindConflict, Msg: "dashboard " + name + " is at another version", Err: store.ErrStaleVersion}
	}
	return nil
}

// Update replaces the title and widgets and increments the version.
func (ds dashboardStore) Update(ctx context.Context, d store.Dashboard, ifVersion int64) (store.Dashboard, error) {
	var out store.Dashboard
	err := ds.s.inTx(ctx, func(tx pgx.Tx) error {
		if err := checkVersion(ctx, tx, d.Name, ifVersion); err != nil {
			return err
		}
		var err error
		out, err = getOne(tx.QueryRow(ctx, `UPDATE dashboards SET title = $1, widgets = $2, version = version + 1, updated_at = $3 WHERE name = $4 RETURNING `+dashboardColumns,
			d.Title, widgetsText(d.Widgets), now(), d.Name), scanDashboard, "dashboard", d.Name)
		return err
	})
	return out, err
}

// Delete deletes a dashboard.
func (ds dashboardStore) Delete(ctx context.Context, name string, ifVersion int64) error {
	return ds.s.inTx(ctx, func(tx pgx.Tx) error {
		if err := checkVersion(ctx, tx, name, ifVersion); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `DELETE FROM dashboards WHERE name = $1`, name)
		return affected(tag, err, "delete dashboard", "dashboard", name)
	})
}

type statsHistoryStore struct{ s *Store }

// Append stores a point and prunes the points older than before.
func (hs statsHistoryStore) Append(ctx context.Context, p store.StatsPoint, before time.Time) error {
	return hs.s.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO stats_history (at, interval_ms, messages, connected, active_alarms) VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (at) DO UPDATE SET interval_ms = excluded.interval_ms, messages = excluded.messages, connected = excluded.connected, active_alarms = excluded.active_alarms`,
			ms(p.Time), p.Interval.Milliseconds(), p.Messages, p.Connected, p.ActiveAlarms); err != nil {
			return internal("append stats point", err)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM stats_history WHERE at < $1`, ms(before)); err != nil {
			return internal("prune stats history", err)
		}
		return nil
	})
}

// Since returns the points from since on, oldest first.
func (hs statsHistoryStore) Since(ctx context.Context, since time.Time, limit int) ([]store.StatsPoint, error) {
	if limit <= 0 || limit > 100_000 {
		limit = 100_000
	}
	return queryList(ctx, hs.s.pool, "stats history", func(row scanner) (store.StatsPoint, error) {
		var (
			p      store.StatsPoint
			ivalMS int64
		)
		if err := row.Scan(&p.Time, &ivalMS, &p.Messages, &p.Connected, &p.ActiveAlarms); err != nil {
			return store.StatsPoint{}, err
		}
		p.Time, p.Interval = p.Time.UTC(), time.Duration(ivalMS)*time.Millisecond
		return p, nil
	}, `SELECT at, interval_ms, messages, connected, active_alarms FROM
		(SELECT * FROM stats_history WHERE at >= $1 ORDER BY at DESC LIMIT $2) h ORDER BY at`, ms(since), limit)
}
