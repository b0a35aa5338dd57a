package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/store"
)

type ruleStore struct{ s *Store }

const ruleSelect = `SELECT name, sql, description, enabled, actions, error_action, created_at, updated_at FROM rules`

func scanRule(row scanner) (store.Rule, error) {
	var (
		r                store.Rule
		enabled          int64
		actions          string
		errorAction      sql.NullString
		created, updated int64
	)
	if err := row.Scan(&r.Name, &r.SQL, &r.Description, &enabled, &actions, &errorAction, &created, &updated); err != nil {
		return store.Rule{}, err
	}
	r.Enabled = enabled != 0
	r.Actions = json.RawMessage(actions)
	if errorAction.Valid {
		r.ErrorAction = json.RawMessage(errorAction.String)
	}
	r.CreatedAt = fromMS(created)
	r.UpdatedAt = fromMS(updated)
	return r, nil
}

func getRule(ctx context.Context, q querier, name string) (store.Rule, error) {
	return getOne(q.QueryRowContext(ctx, ruleSelect+` WHERE name = ?`, name), scanRule, "rule", name)
}

func ruleActions(r store.Rule) (string, any) {
	actions := "[]"
	if len(r.Actions) > 0 {
		actions = string(r.Actions)
	}
	var errorAction any
	if len(r.ErrorAction) > 0 && string(r.ErrorAction) != "null" {
		errorAction = string(r.ErrorAction)
	}
	return actions, errorAction
}

func insertRule(ctx context.Context, tx *sql.Tx, r store.Rule) error {
	created, updated := createdUpdated(r.CreatedAt, r.UpdatedAt)
	actions, errorAction := ruleActions(r)
	if _, err := tx.ExecContext(ctx, `INSERT INTO rules (name, sql, description, enabled, actions, error_action, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		r.Name, r.SQL, r.Description, boolInt(r.Enabled), actions, errorAction, toMS(created), toMS(updated)); err != nil {
		return internal("create rule", err)
	}
	return nil
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// Create stores a new rule.
//
//   - A rule of the same name → core.Conflict `rule "x" already exists`.
//   - A zero CreatedAt becomes now; a zero UpdatedAt becomes CreatedAt.
//   - Empty Actions are stored as []; an empty or null ErrorAction as none.
func (rs *ruleStore) Create(ctx context.Context, r store.Rule) (store.Rule, error) {
	if err := requireName("name", r.Name); err != nil {
		return store.Rule{}, err
	}
	var out store.Rule
	err := rs.s.inTx(ctx, func(tx *sql.Tx) error {
		dup, err := exists(ctx, tx, `SELECT 1 FROM rules WHERE name = ?`, r.Name)
		if err != nil {
			return err
		}
		if dup {
			return core.Conflict("rule %q already exists", r.Name)
		}
		if err := insertRule(ctx, tx, r); err != nil {
			return err
		}
		out, err = getRule(ctx, tx, r.Name)
		return err
	})
	return out, err
}

// Get returns the rule, or core.NotFound `rule "x" not found`.
func (rs *ruleStore) Get(ctx context.Context, name string) (store.Rule, error) {
	return getRule(ctx, rs.s.r, name)
}

// List returns rules ordered by name, with names greater than after, at
// most limit of them (0 means 100; more than 1000 means 1000).
func (rs *ruleStore) List(ctx context.Context, after string, limit int) ([]store.Rule, error) {
	rows, err := rs.s.r.QueryContext(ctx, ruleSelect+` WHERE name > ? ORDER BY name LIMIT ?`, after, normLimit(limit))
	if err != nil {
		return nil, internal("list rules", err)
	}
	defer rows.Close()
	list := []store.Rule{}
	for rows.Next() {
		r, err := scanRule(rows)
		if err != nil {
			return nil, internal("list rules", err)
		}
		list = append(list, r)
	}
	if err := rows.Err(); err != nil {
		return nil, internal("list rules", err)
	}
	return list, nil
}

// Update replaces SQL, Description, Enabled, Actions and ErrorAction of the
// rule r.Name and sets UpdatedAt to now. A missing rule → core.NotFound.
func (rs *ruleStore) Update(ctx context.Context, r store.Rule) (store.Rule, error) {
	actions, errorAction := ruleActions(r)
	var out store.Rule
	err := rs.s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE rules SET sql = ?, description = ?, enabled = ?, actions = ?, error_action = ?, updated_at = ? WHERE name = ?`,
			r.SQL, r.Description, boolInt(r.Enabled), actions, errorAction, toMS(now()), r.Name)
		if err != nil {
			return internal("update rule", err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return internal("update rule", err)
		} else if n == 0 {
			return core.NotFound("rule", r.Name)
		}
		out, err = getRule(ctx, tx, r.Name)
		return err
	})
	return out, err
}

// Delete removes the rule. A missing rule → core.NotFound.
func (rs *ruleStore) Delete(ctx context.Context, name string) error {
	return rs.s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM rules WHERE name = ?`, name)
		if err != nil {
			return internal("delete rule", err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return internal("delete rule", err)
		} else if n == 0 {
			return core.NotFound("rule", name)
		}
		return nil
	})
}

// Seed creates r once per database: see store.RuleStore.
func (rs *ruleStore) Seed(ctx context.Context, r store.Rule) (bool, error) {
	if err := requireName("name", r.Name); err != nil {
		return false, err
	}
	created := false
	err := rs.s.inTx(ctx, func(tx *sql.Tx) error {
		seeded, err := exists(ctx, tx, `SELECT 1 FROM seeded_rules WHERE name = ?`, r.Name)
		if err != nil || seeded {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO seeded_rules (name, seeded_at) VALUES (?, ?)`, r.Name, toMS(now())); err != nil {
			return internal("seed rule", err)
		}
		dup, err := exists(ctx, tx, `SELECT 1 FROM rules WHERE name = ?`, r.Name)
		if err != nil || dup {
			return err
		}
		if err := insertRule(ctx, tx, r); err != nil {
			return err
		}
		created = true
		return nil
	})
	if err != nil {
		return false, err
	}
	return created, nil
}
