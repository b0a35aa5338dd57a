package sqlite

import (
	"context"
	"database/sql"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/store"
)

type groupStore struct{ s *Store }

const groupSelect = `SELECT name, description, created_at, updated_at, query FROM groups`

func scanGroup(row scanner) (store.Group, error) {
	var (
		g                store.Group
		created, updated int64
	)
	if err := row.Scan(&g.Name, &g.Description, &created, &updated, &g.Query); err != nil {
		return store.Group{}, err
	}
	g.CreatedAt = fromMS(created)
	g.UpdatedAt = fromMS(updated)
	return g, nil
}

func getGroup(ctx context.Context, q querier, name string) (store.Group, error) {
	return getOne(q.QueryRowContext(ctx, groupSelect+` WHERE name = ?`, name), scanGroup, "group", name)
}

// Create stores a new group.
//
//   - A group of the same name → core.Conflict `group "x" already exists`.
//   - A zero CreatedAt becomes now; a zero UpdatedAt becomes CreatedAt.
func (gs *groupStore) Create(ctx context.Context, g store.Group) (store.Group, error) {
	if err := requireName("name", g.Name); err != nil {
		return store.Group{}, err
	}
	created, updated := createdUpdated(g.CreatedAt, g.UpdatedAt)
	var out store.Group
	err := gs.s.inTx(ctx, func(tx *sql.Tx) error {
		dup, err := exists(ctx, tx, `SELECT 1 FROM groups WHERE name = ?`, g.Name)
		if err != nil {
			return err
		}
		if dup {
			return core.Conflict("group %q already exists", g.Name)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO groups (name, description, created_at, updated_at, query) VALUES (?, ?, ?, ?, ?)`,
			g.Name, g.Description, toMS(created), toMS(updated), g.Query); err != nil {
			return internal("create group", err)
		}
		out, err = getGroup(ctx, tx, g.Name)
		return err
	})
	return out, err
}

// Get returns the group, or core.NotFound `group "x" not found`.
func (gs *groupStore) Get(ctx context.Context, name string) (store.Group, error) {
	return getGroup(ctx, gs.s.r, name)
}

// List returns groups ordered by name, with names greater than after, at
// most limit of them (0 means 100; more than 1000 means 1000).
func (gs *groupStore) List(ctx context.Context, after string, limit int) ([]store.Group, error) {
	rows, err := gs.s.r.QueryContext(ctx, groupSelect+` WHERE name > ? ORDER BY name LIMIT ?`, after, normLimit(limit))
	if err != nil {
		return nil, internal("list groups", err)
	}
	defer rows.Close()
	list := []store.Group{}
	for rows.Next() {
		g, err := scanGroup(rows)
		if err != nil {
			return nil, internal("list groups", err)
		}
		list = append(list, g)
	}
	if err := rows.Err(); err != nil {
		return nil, internal("list groups", err)
	}
	return list, nil
}

// Update replaces the Description and Query of the group g.Name and sets UpdatedAt
// to now. A missing group → core.NotFound `group "x" not found`.
func (gs *groupStore) Update(ctx context.Context, g store.Group) (store.Group, error) {
	var out store.Group
	err := gs.s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE groups SET description = ?, query = ?, updated_at = ? WHERE name = ?`,
			g.Description, g.Query, toMS(now()), g.Name)
		if err != nil {
			return internal("update group", err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return internal("update group", err)
		} else if n == 0 {
			return core.NotFound("group", g.Name)
		}
		out, err = getGroup(ctx, tx, g.Name)
		return err
	})
	return out, err
}

// Delete removes the group and every thing's membership in it. A missing
// group → core.NotFound `group "x" not found`.
func (gs *groupStore) Delete(ctx context.Context, name string) error {
	return gs.s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM groups WHERE name = ?`, name)
		if err != nil {
			return internal("delete group", err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return internal("delete group", err)
		} else if n == 0 {
			return core.NotFound("group", name)
		}
		return nil
	})
}
