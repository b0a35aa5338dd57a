package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/store"
)

type groupStore struct{ s *Store }

const groupSelect = `SELECT name, description, created_at, updated_at, query FROM groups`

func scanGroup(row scanner) (store.Group, error) {
	var (
		g                store.Group
		created, updated time.Time
	)
	if err := row.Scan(&g.Name, &g.Description, &created, &updated, &g.Query); err != nil {
		return store.Group{}, err
	}
	g.CreatedAt, g.UpdatedAt = created.UTC(), updated.UTC()
	return g, nil
}

func getGroup(ctx context.Context, q querier, name string) (store.Group, error) {
	return getOne(q.QueryRow(ctx, groupSelect+` WHERE name = $1`, name), scanGroup, "group", name)
}

// Create stores a new group; the same name → core.Conflict.
func (gs *groupStore) Create(ctx context.Context, g store.Group) (store.Group, error) {
	if err := requireName("name", g.Name); err != nil {
		return store.Group{}, err
	}
	created, updated := createdUpdated(g.CreatedAt, g.UpdatedAt)
	var out store.Group
	err := gs.s.inTx(ctx, func(tx pgx.Tx) error {
		dup, err := exists(ctx, tx, `SELECT 1 FROM groups WHERE name = $1`, g.Name)
		if err != nil {
			return err
		}
		if dup {
			return core.Conflict("group %q already exists", g.Name)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO groups (name, description, created_at, updated_at, query) VALUES ($1, $2, $3, $4, $5)`,
			g.Name, g.Description, created, updated, g.Query); err != nil {
			return internal("create group", err)
		}
		out, err = getGroup(ctx, tx, g.Name)
		return err
	})
	return out, err
}

// Get returns the group, or core.NotFound `group "x" not found`.
func (gs *groupStore) Get(ctx context.Context, name string) (store.Group, error) {
	return getGroup(ctx, gs.s.pool, name)
}

// List returns groups ordered by name, after the name after.
func (gs *groupStore) List(ctx context.Context, after string, limit int) ([]store.Group, error) {
	return queryList(ctx, gs.s.pool, "list groups", scanGroup,
		groupSelect+` WHERE name > $1 ORDER BY name LIMIT $2`, after, normLimit(limit))
}

// Update replaces the Description and Query and sets UpdatedAt to now.
func (gs *groupStore) Update(ctx context.Context, g store.Group) (store.Group, error) {
	out, err := getOne(gs.s.pool.QueryRow(ctx, `UPDATE groups SET description = $1, query = $4, updated_at = $2 WHERE name = $3
		RETURNING name, description, created_at, updated_at, query`, g.Description, now(), g.Name, g.Query), scanGroup, "group", g.Name)
	return out, err
}

// Delete removes the group and its memberships. A missing group →
// core.NotFound.
func (gs *groupStore) Delete(ctx context.Context, name string) error {
	tag, err := gs.s.pool.Exec(ctx, `DELETE FROM groups WHERE name = $1`, name)
	return affected(tag, err, "delete group", "group", name)
}
