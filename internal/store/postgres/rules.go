package postgres

import (
	"context"
	"encoding/json"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/store"
)

type ruleStore struct{ s *Store }

const ruleColumns = `name, sql, description, enabled, actions, error_action, created_at, updated_at`

const ruleSelect = `SELECT ` + ruleColumns + ` FROM rules`

func scanRule(row scanner) (store.Rule, error) {
	var (
		r                store.Rule
		actions          string
		errorAction      *string
		created, updated time.Time
	)
	if err := row.Scan(&r.Name, &r.SQL, &r.Description, &r.Enabled, &actions, &errorAction, &created, &updated); err != nil {
		return store.Rule{}, err
	}
	r.Actions = json.RawMessage(actions)
	if errorAction != nil {
		r.ErrorAction = json.RawMessage(*errorAction)
	}
	r.CreatedAt, r.UpdatedAt = created.UTC(), updated.UTC()
	return r, nil
}

func getRule(ctx context.Context, q querier, name string) (store.Rule, error) {
	return getOne(q.QueryRow(ctx, ruleSelect+` WHERE name = $1`, name), scanRule, "rule", name)
}

func ruleActions(r store.Rule) (string, *string) {
	actions := "[]"
	if len(r.Actions) > 0 {
		actions = string(r.Actions)
	}
	if len(r.ErrorAction) > 0 && string(r.ErrorAction) != "null" {
		e := string(r.ErrorAction)
		return actions, &e
	}
	return actions, nil
}

func insertRule(ctx context.Context, tx pgx.Tx, r store.Rule) error {
	created, updated := createdUpdated(r.CreatedAt, r.UpdatedAt)
	actions, errorAction := ruleActions(r)
	if _, err := tx.Exec(ctx, `INSERT INTO rules (`+ruleColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		r.Name, r.SQL, r.Description, r.Enabled, actions, errorAction, created, updated); err != nil {
		return internal("create rule", err)
	}
	return nil
}

// Create stores a new rule; the same name → core.Conflict.
func (rs *ruleStore) Create(ctx context.Context, r store.Rule) (store.Rule, error) {
	if err := requireName("name", r.Name); err != nil {
		return store.Rule{}, err
	}
	var out store.Rule
	err := rs.s.inTx(ctx, func(tx pgx.Tx) error {
		dup, err := exists(ctx, tx, `SELECT 1 FROM rules WHERE name = $1`, r.Name)
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
	return getRule(ctx, rs.s.pool, name)
}

// List returns rules ordered by name, after the name after.
func (rs *ruleStore) List(ctx context.Context, after string, limit int) ([]store.Rule, error) {
	return queryList(ctx, rs.s.pool, "list rules", scanRule,
		ruleSelect+` WHERE name > $1 ORDER BY name LIMIT $2`, after, normLimit(limit))
}

// Update replaces SQL, Description, Enabled, Actions and ErrorAction and
// sets UpdatedAt to now. A missing rule → core.NotFound.
func (rs *ruleStore) Update(ctx context.Context, r store.Rule) (store.Rule, error) {
	actions, errorAction := ruleActions(r)
	return getOne(rs.s.pool.QueryRow(ctx, `UPDATE rules SET sql = $1, description = $2, enabled = $3, actions = $4,
		error_action = $5, updated_at = $6 WHERE name = $7 RETURNING `+ruleColumns,
		r.SQL, r.Description, r.Enabled, actions, errorAction, now(), r.Name), scanRule, "rule", r.Name)
}

// Delete removes the rule. A missing rule → core.NotFound.
func (rs *ruleStore) Delete(ctx context.Context, name string) error {
	tag, err := rs.s.pool.Exec(ctx, `DELETE FROM rules WHERE name = $1`, name)
	return affected(tag, err, "delete rule", "rule", name)
}

// Seed creates r once per database: see store.RuleStore. Nodes seeding at
// the same time agree through the primary key of seeded_rules: one
// inserts the mark, the others find it.
func (rs *ruleStore) Seed(ctx context.Context, r store.Rule) (bool, error) {
	if err := requireName("name", r.Name); err != nil {
		return false, err
	}
	created := false
	err := rs.s.inTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `INSERT INTO seeded_rules (name, seeded_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING`,
			r.Name, now())
		if err != nil {
			return internal("seed rule", err)
		}
		if tag.RowsAffected() == 0 {
			return nil // seeded before
		}
		dup, err := exists(ctx, tx, `SELECT 1 FROM rules WHERE name = $1`, r.Name)
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
