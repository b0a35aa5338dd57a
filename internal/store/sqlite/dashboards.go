package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/store"
)

// Dashboards returns the dashboard store.
func (s *Store) Dashboards() store.DashboardStore { return dashboardStore{s} }

// StatsHistory returns the store of the overview's history.
func (s *Store) StatsHistory() store.StatsHistoryStore { return statsHistoryStore{s} }

type dashboardStore struct{ s *Store }

const dashboardSelect = `SELECT name, title, widgets, version, created_at, updated_at FROM dashboards`

func scanDashboard(row scanner) (store.Dashboard, error) {
	var (
		d                store.Dashboard
		widgets          string
		created, updated int64
	)
	if err := row.Scan(&d.Name, &d.Title, &widgets, &d.Version, &created, &updated); err != nil {
		return store.Dashboard{}, err
	}
	d.Widgets = []byte(widgets)
	d.CreatedAt, d.UpdatedAt = fromMS(created), fromMS(updated)
	return d, nil
}

func getDashboard(ctx context.Context, q querier, name string) (store.Dashboard, error) {
	return getOne(q.QueryRowContext(ctx, dashboardSelect+` WHERE name = ?`, name), scanDashboard, "dashboard", name)
}

func widgetsText(b []byte) string {
	if len(b) == 0 {
		return "[]"
	}
	return string(b)
}

// Create stores a new dashboard with version 1.
func (ds dashboardStore) Create(ctx context.Context, d store.Dashboard, max int) (store.Dashboard, error) {
	if err := requireName("name", d.Name); err != nil {
		return store.Dashboard{}, err
	}
	created, updated := createdUpdated(d.CreatedAt, d.UpdatedAt)
	var out store.Dashboard
	err := ds.s.inTx(ctx, func(tx *sql.Tx) error {
		dup, err := exists(ctx, tx, `SELECT 1 FROM dashboards WHERE name = ?`, d.Name)
		if err != nil {
			return err
		}
		if dup {
			return core.Conflict("dashboard %q already exists", d.Name)
		}
		if max > 0 {
			var n int
			if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM dashboards`).Scan(&n); err != nil {
				return internal("create dashboard", err)
			}
			if n >= max {
				return core.Conflict("there are already %d dashboards, the limit (--max-dashboards)", n)
			}
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO dashboards (name, title, widgets, version, created_at, updated_at) VALUES (?, ?, ?, 1, ?, ?)`,
			d.Name, d.Title, widgetsText(d.Widgets), toMS(created), toMS(updated)); err != nil {
			return internal("create dashboard", err)
		}
		out, err = getDashboard(ctx, tx, d.Name)
		return err
	})
	return out, err
}

// Get returns a dashboard.
func (ds dashboardStore) Get(ctx context.Context, name string) (store.Dashboard, error) {
	return getDashboard(ctx, ds.s.r, name)
}

// List returns dashboards by name after the cursor.
func (ds dashboardStore) List(ctx context.Context, after string, limit int) ([]store.Dashboard, error) {
	rows, err := ds.s.r.QueryContext(ctx, dashboardSelect+` WHERE name > ? ORDER BY name LIMIT ?`, after, normLimit(limit))
	if err != nil {
		return nil, internal("list dashboards", err)
	}
	defer rows.Close()
	list := []store.Dashboard{}
	for rows.Next() {
		d, err := scanDashboard(rows)
		if err != nil {
			return nil, internal("list dashboards", err)
		}
		list = append(list, d)
	}
	if err := rows.Err(); err != nil {
		return nil, internal("list dashboards", err)
	}
	return list, nil
}

// checkVersion returns the stored version of name: NotFound when there is
// none, a stale-version conflict when ifVersion > 0 differs.
func checkVersion(ctx context.Context, tx *sql.Tx, name string, ifVersion int64) error {
	var v int64
	err := tx.QueryRowContext(ctx, `SELECT version FROM dashboards WHERE name = ?`, name).Scan(&v)
	switch {
	case errors.Is(err, sql.ErrNoRows):
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
	err := ds.s.inTx(ctx, func(tx *sql.Tx) error {
		if err := checkVersion(ctx, tx, d.Name, ifVersion); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE dashboards SET title = ?, widgets = ?, version = version + 1, updated_at = ? WHERE name = ?`,
			d.Title, widgetsText(d.Widgets), toMS(now()), d.Name); err != nil {
			return internal("update dashboard", err)
		}
		var err error
		out, err = getDashboard(ctx, tx, d.Name)
		return err
	})
	return out, err
}

// Delete deletes a dashboard.
func (ds dashboardStore) Delete(ctx context.Context, name string, ifVersion int64) error {
	return ds.s.inTx(ctx, func(tx *sql.Tx) error {
		if err := checkVersion(ctx, tx, name, ifVersion); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM dashboards WHERE name = ?`, name); err != nil {
			return internal("delete dashboard", err)
		}
		return nil
	})
}

type statsHistoryStore struct{ s *Store }

// Append stores a point and prunes the points older than before.
func (hs statsHistoryStore) Append(ctx context.Context, p store.StatsPoint, before time.Time) error {
	return hs.s.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO stats_history (at, interval_ms, messages, connected, active_alarms) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (at) DO UPDATE SET interval_ms = excluded.interval_ms, messages = excluded.messages, connected = excluded.connected, active_alarms = excluded.active_alarms`,
			toMS(p.Time), p.Interval.Milliseconds(), p.Messages, p.Connected, p.ActiveAlarms); err != nil {
			return internal("append stats point", err)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM stats_history WHERE at < ?`, toMS(before)); err != nil {
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
	rows, err := hs.s.r.QueryContext(ctx, `SELECT at, interval_ms, messages, connected, active_alarms FROM
		(SELECT * FROM stats_history WHERE at >= ? ORDER BY at DESC LIMIT ?) ORDER BY at`, toMS(since), limit)
	if err != nil {
		return nil, internal("stats history", err)
	}
	defer rows.Close()
	list := []store.StatsPoint{}
	for rows.Next() {
		var (
			p          store.StatsPoint
			at, ivalMS int64
		)
		if err := rows.Scan(&at, &ivalMS, &p.Messages, &p.Connected, &p.ActiveAlarms); err != nil {
			return nil, internal("stats history", err)
		}
		p.Time, p.Interval = fromMS(at), time.Duration(ivalMS)*time.Millisecond
		list = append(list, p)
	}
	if err := rows.Err(); err != nil {
		return nil, internal("stats history", err)
	}
	return list, nil
}
