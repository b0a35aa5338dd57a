package sqlite

import (
	"context"
	"database/sql"

	"github.com/moteiot/mote/internal/store"
)

// RuleWindows returns the store of windowed rules' open windows.
func (s *Store) RuleWindows() store.RuleWindowStore { return ruleWindowStore{s} }

type ruleWindowStore struct{ s *Store }

// Put saves the state of w.Rule, unless the rule is gone.
func (rw ruleWindowStore) Put(ctx context.Context, w store.RuleWindowState) error {
	return rw.s.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO rule_windows (rule, sql, state, saved_at)
			SELECT ?1, ?2, ?3, ?4 WHERE EXISTS (SELECT 1 FROM rules WHERE name = ?1)
			ON CONFLICT (rule) DO UPDATE SET sql = excluded.sql, state = excluded.state, saved_at = excluded.saved_at`,
			w.Rule, w.SQL, w.State, toMS(orNow(w.SavedAt))); err != nil {
			return internal("put rule windows", err)
		}
		return nil
	})
}

// List returns every saved state ordered by rule.
func (rw ruleWindowStore) List(ctx context.Context) ([]store.RuleWindowState, error) {
	rows, err := rw.s.r.QueryContext(ctx, `SELECT rule, sql, state, saved_at FROM rule_windows ORDER BY rule`)
	if err != nil {
		return nil, internal("list rule windows", err)
	}
	defer rows.Close()
	list := []store.RuleWindowState{}
	for rows.Next() {
		var (
			w  store.RuleWindowState
			at int64
		)
		if err := rows.Scan(&w.Rule, &w.SQL, &w.State, &at); err != nil {
			return nil, internal("list rule windows", err)
		}
		w.SavedAt = fromMS(at)
		list = append(list, w)
	}
	if err := rows.Err(); err != nil {
		return nil, internal("list rule windows", err)
	}
	return list, nil
}

// Delete removes the state of rule.
func (rw ruleWindowStore) Delete(ctx context.Context, rule string) error {
	return rw.s.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM rule_windows WHERE rule = ?`, rule); err != nil {
			return internal("delete rule windows", err)
		}
		return nil
	})
}
