package postgres

import (
	"context"
	"encoding/json"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/store"
)

type typeStore struct{ s *Store }

const typeSelect = `SELECT y.name, y.description, y.created_at, y.updated_at,
	(SELECT coalesce(array_agg(p.policy ORDER BY p.position), '{}') FROM type_policies p WHERE p.type = y.name), y.model
FROM thing_types y`

func scanType(row scanner) (store.ThingType, error) {
	var (
		t                store.ThingType
		created, updated time.Time
		model            *string
	)
	if err := row.Scan(&t.Name, &t.Description, &created, &updated, &t.Policies, &model); err != nil {
		return store.ThingType{}, err
	}
	if model != nil {
		t.Model = json.RawMessage(*model)
	}
	t.CreatedAt, t.UpdatedAt = created.UTC(), updated.UTC()
	if t.Policies == nil {
		t.Policies = []string{}
	}
	return t, nil
}

func getType(ctx context.Context, q querier, name string) (store.ThingType, error) {
	return getOne(q.QueryRow(ctx, typeSelect+` WHERE y.name = $1`, name), scanType, "thing type", name)
}

// Create stores a new thing type with its policies; see the SQLite backend.
func (ys *typeStore) Create(ctx context.Context, t store.ThingType) (store.ThingType, error) {
	if err := requireName("name", t.Name); err != nil {
		return store.ThingType{}, err
	}
	created, updated := createdUpdated(t.CreatedAt, t.UpdatedAt)
	var out store.ThingType
	err := ys.s.inTx(ctx, func(tx pgx.Tx) error {
		dup, err := exists(ctx, tx, `SELECT 1 FROM thing_types WHERE name = $1`, t.Name)
		if err != nil {
			return err
		}
		if dup {
			return core.Conflict("thing type %q already exists", t.Name)
		}
		if err := checkPolicies(ctx, tx, t.Policies); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO thing_types (name, description, created_at, updated_at, model) VALUES ($1, $2, $3, $4, $5)`,
			t.Name, t.Description, created, updated, modelText(t.Model)); err != nil {
			return internal("create thing type", err)
		}
		if err := setTypePolicies(ctx, tx, t.Name, t.Policies, false); err != nil {
			return err
		}
		out, err = getType(ctx, tx, t.Name)
		return err
	})
	return out, err
}

// Get returns the type, or core.NotFound `thing type "x" not found`.
func (ys *typeStore) Get(ctx context.Context, name string) (store.ThingType, error) {
	return getType(ctx, ys.s.pool, name)
}

// List returns types ordered by name, after the name after.
func (ys *typeStore) List(ctx context.Context, after string, limit int) ([]store.ThingType, error) {
	return queryList(ctx, ys.s.pool, "list thing types", scanType,
		typeSelect+` WHERE y.name > $1 ORDER BY y.name LIMIT $2`, after, normLimit(limit))
}

// Update replaces the Description, Policies and Model of the type t.Name and sets
// UpdatedAt to now; see the SQLite backend.
func (ys *typeStore) Update(ctx context.Context, t store.ThingType) (store.ThingType, error) {
	var out store.ThingType
	err := ys.s.inTx(ctx, func(tx pgx.Tx) error {
		ok, err := exists(ctx, tx, `SELECT 1 FROM thing_types WHERE name = $1 FOR UPDATE`, t.Name)
		if err != nil {
			return err
		}
		if !ok {
			return core.NotFound("thing type", t.Name)
		}
		if err := checkPolicies(ctx, tx, t.Policies); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE thing_types SET description = $1, updated_at = $2, model = $4 WHERE name = $3`,
			t.Description, now(), t.Name, modelText(t.Model)); err != nil {
			return internal("update thing type", err)
		}
		if err := setTypePolicies(ctx, tx, t.Name, t.Policies, true); err != nil {
			return err
		}
		out, err = getType(ctx, tx, t.Name)
		return err
	})
	return out, err
}

// Delete removes the type; one that things still use is a conflict.
func (ys *typeStore) Delete(ctx context.Context, name string) error {
	return ys.s.inTx(ctx, func(tx pgx.Tx) error {
		ok, err := exists(ctx, tx, `SELECT 1 FROM thing_types WHERE name = $1 FOR UPDATE`, name)
		if err != nil {
			return err
		}
		if !ok {
			return core.NotFound("thing type", name)
		}
		var n int
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM things WHERE type = $1`, name).Scan(&n); err != nil {
			return internal("delete thing type", err)
		}
		if n > 0 {
			s := "s"
			if n == 1 {
				s = ""
			}
			return core.Conflict("thing type %q is used by %d thing%s", name, n, s)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM thing_types WHERE name = $1`, name); err != nil {
			return internal("delete thing type", err)
		}
		return nil
	})
}

func setTypePolicies(ctx context.Context, tx pgx.Tx, typ string, policies []string, replace bool) error {
	return setList(ctx, tx, "type policies", "type_policies", "type", "policy", true, typ, policies, replace)
}

// modelText is a type's model as stored: NULL for none.
func modelText(m json.RawMessage) *string {
	if len(m) == 0 {
		return nil
	}
	s := string(m)
	return &s
}
