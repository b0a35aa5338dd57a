package postgres

import (
	"context"

	"github.com/moteiot/mote/internal/store"
)

// RuleWindows returns the store of windowed rules' open windows.
func (s *Store) RuleWindows() store.RuleWindowStore { return ruleWindowStore{s} }

type ruleWindowStore struct{ s *Store }

// Put saves the state of w.Rule, unless the rule is gone.
func (rw ruleWindowStore) Put(ctx context.Context, w store.RuleWindowState) error {
	if _, err := rw.s.pool.Exec(ctx, `INSERT INTO rule_windows (rule, sql, state, saved_at)
		SELECT $1, $2, $3, $4 WHERE EXISTS (SELECT 1 FROM rules WHERE name = $1 FOR KEY SHARE)
		ON CONFLICT (rule) DO UPDATE SET sql = excluded.sql, state = excluded.state, saved_at = excluded.saved_at`,
		w.Rule, w.SQL, w.State, orNow(w.SavedAt)); err != nil {
		return internal("put rule windows", err)
	}
	return nil
}

// List returns every saved state ordered by rule.
func (rw ruleWindowStore) List(ctx context.Context) ([]store.RuleWindowState, error) {
	return queryList(ctx, rw.s.pool, "list rule windows", func(row scanner) (store.RuleWindowState, error) {
		var w store.RuleWindowState
		err := row.Scan(&w.Rule, &w.SQL, &w.State, &w.SavedAt)
		w.SavedAt = w.SavedAt.UTC()
		return w, err
	}, `SELECT rule, sql, state, saved_at FROM rule_windows ORDER BY rule`)
}

// Delete removes the state of rule.
func (rw ruleWindowStore) Delete(ctx context.Context, rule string) error {
	if _, err := rw.s.pool.Exec(ctx, `DELETE FROM rule_windows WHERE rule = $1`, rule); err != nil {
		return internal("delete rule windows", err)
	}
	return nil
}
