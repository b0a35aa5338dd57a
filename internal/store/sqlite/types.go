package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/store"
)

type typeStore struct{ s *Store }

const typeSelect = `SELECT y.name, y.description, y.created_at, y.updated_at,
	(SELECT json_group_array(p.policy ORDER BY p.position) FROM type_policies p WHERE p.type = y.name), y.model
FROM thing_types y`

func scanType(row scanner) (store.ThingType, error) {
	var (
		t                store.ThingType
		created, updated int64
		policies         string
		model            sql.NullString
	)
	if err := row.Scan(&t.Name, &t.Description, &created, &updated, &policies, &model); err != nil {
		return store.ThingType{}, err
	}
	if model.Valid {
		t.Model = json.RawMessage(model.String)
	}
	t.CreatedAt = fromMS(created)
	t.UpdatedAt = fromMS(updated)
	var err error
	t.Policies, err = jsonList(policies)
	return t, err
}

func getType(ctx context.Context, q querier, name string) (store.ThingType, error) {
	return getOne(q.QueryRowContext(ctx, typeSelect+` WHERE y.name = ?`, name), scanType, "thing type", name)
}

// Create stores a new thing type with its policies (kept in the given
// order, repeats dropped).
//
//   - A type of the same name → core.Conflict `thing type "x" already exists`.
//   - A policy that does not exist → core.Invalid field "policies".
//   - A zero CreatedAt becomes now; a zero UpdatedAt becomes CreatedAt.
func (ys *typeStore) Create(ctx context.Context, t store.ThingType) (store.ThingType, error) {
	if err := requireName("name", t.Name); err != nil {
		return store.ThingType{}, err
	}
	created, updated := createdUpdated(t.CreatedAt, t.UpdatedAt)
	var out store.ThingType
	err := ys.s.inTx(ctx, func(tx *sql.Tx) error {
		dup, err := exists(ctx, tx, `SELECT 1 FROM thing_types WHERE name = ?`, t.Name)
		if err != nil {
			return err
		}
		if dup {
			return core.Conflict("thing type %q already exists", t.Name)
		}
		if err := checkPolicies(ctx, tx, t.Policies); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO thing_types (name, description, created_at, updated_at, model) VALUES (?, ?, ?, ?, ?)`,
			t.Name, t.Description, toMS(created), toMS(updated), modelText(t.Model)); err != nil {
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
	return getType(ctx, ys.s.r, name)
}

// List returns types ordered by name, with names greater than after, at
// most limit of them (0 means 100; more than 1000 means 1000).
func (ys *typeStore) List(ctx context.Context, after string, limit int) ([]store.ThingType, error) {
	rows, err := ys.s.r.QueryContext(ctx, typeSelect+` WHERE y.name > ? ORDER BY y.name LIMIT ?`, after, normLimit(limit))
	if err != nil {
		return nil, internal("list thing types", err)
	}
	defer rows.Close()
	list := []store.ThingType{}
	for rows.Next() {
		t, err := scanType(rows)
		if err != nil {
			return nil, internal("list thing types", err)
		}
		list = append(list, t)
	}
	if err := rows.Err(); err != nil {
		return nil, internal("list thing types", err)
	}
	return list, nil
}

// Update replaces the Description, Policies and Model of the type t.Name
// (nil Policies detaches all, nil Model removes it) and sets UpdatedAt to
// now.
//
//   - A missing type → core.NotFound `thing type "x" not found`.
//   - A policy that does not exist → core.Invalid field "policies".
func (ys *typeStore) Update(ctx context.Context, t store.ThingType) (store.ThingType, error) {
	var out store.ThingType
	err := ys.s.inTx(ctx, func(tx *sql.Tx) error {
		ok, err := exists(ctx, tx, `SELECT 1 FROM thing_types WHERE name = ?`, t.Name)
		if err != nil {
			return err
		}
		if !ok {
			return core.NotFound("thing type", t.Name)
		}
		if err := checkPolicies(ctx, tx, t.Policies); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE thing_types SET description = ?, updated_at = ?, model = ? WHERE name = ?`,
			t.Description, toMS(now()), modelText(t.Model), t.Name); err != nil {
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

// Delete removes the type and its policy attachments.
//
//   - A missing type → core.NotFound `thing type "x" not found`.
//   - A type that things still use → core.Conflict
//     `thing type "x" is used by N thing(s)`, and nothing changes.
func (ys *typeStore) Delete(ctx context.Context, name string) error {
	return ys.s.inTx(ctx, func(tx *sql.Tx) error {
		ok, err := exists(ctx, tx, `SELECT 1 FROM thing_types WHERE name = ?`, name)
		if err != nil {
			return err
		}
		if !ok {
			return core.NotFound("thing type", name)
		}
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM things WHERE type = ?`, name).Scan(&n); err != nil {
			return internal("delete thing type", err)
		}
		if n > 0 {
			s := "s"
			if n == 1 {
				s = ""
			}
			return core.Conflict("thing type %q is used by %d thing%s", name, n, s)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM thing_types WHERE name = ?`, name); err != nil {
			return internal("delete thing type", err)
		}
		return nil
	})
}

func setTypePolicies(ctx context.Context, tx *sql.Tx, typ string, policies []string, replace bool) error {
	return setList(ctx, tx, "type policies", `DELETE FROM type_policies WHERE type = ?`,
		`INSERT INTO type_policies (type, policy, position) VALUES (?, ?, ?)`, typ, policies, replace, true)
}

// modelText is a type's model as stored: NULL for none.
func modelText(m json.RawMessage) any {
	if len(m) == 0 {
		return nil
	}
	return string(m)
}
