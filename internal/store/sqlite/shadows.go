package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/store"
)

type shadowStore struct{ s *Store }

// shadowNotFound is the error of a missing or deleted shadow.
func shadowNotFound(thing, name string) error {
	if name == "" {
		return &core.Error{Kind: core.KindNotFound, Msg: fmt.Sprintf("classic shadow of thing %q not found", thing)}
	}
	return &core.Error{Kind: core.KindNotFound, Msg: fmt.Sprintf("shadow %q of thing %q not found", name, thing)}
}

// Get returns a shadow; see store.ShadowStore.
func (ss *shadowStore) Get(ctx context.Context, thing, name string) (store.Shadow, error) {
	var (
		sh  = store.Shadow{Thing: thing, Name: name}
		doc sql.NullString
		at  int64
	)
	err := ss.s.getShadow.QueryRowContext(ctx, thing, name).Scan(&sh.Version, &doc, &at)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return store.Shadow{}, shadowNotFound(thing, name)
	case err != nil:
		return store.Shadow{}, internal("get shadow", err)
	}
	sh.UpdatedAt = fromMS(at)
	if !doc.Valid {
		sh.Deleted = true
		return sh, shadowNotFound(thing, name)
	}
	sh.Document = []byte(doc.String)
	return sh, nil
}

// List returns the live shadows of a thing; see store.ShadowStore.
func (ss *shadowStore) List(ctx context.Context, thing string) ([]store.ShadowInfo, error) {
	rows, err := ss.s.r.QueryContext(ctx,
		`SELECT name, version, updated_at FROM shadows WHERE thing = ? AND document IS NOT NULL ORDER BY name`, thing)
	if err != nil {
		return nil, internal("list shadows", err)
	}
	defer rows.Close()
	list := []store.ShadowInfo{}
	for rows.Next() {
		var (
			si store.ShadowInfo
			at int64
		)
		if err := rows.Scan(&si.Name, &si.Version, &at); err != nil {
			return nil, internal("list shadows", err)
		}
		si.UpdatedAt = fromMS(at)
		list = append(list, si)
	}
	if err := rows.Err(); err != nil {
		return nil, internal("list shadows", err)
	}
	return list, nil
}

// shadowUpsert writes one shadow if its thing exists (the SELECT yields
// no row otherwise, so nothing is inserted and RowsAffected is 0) and,
// for a checked write (?6), if the stored row has version ?7 and is
// deleted exactly when ?8 (the update's WHERE; RowsAffected 0 otherwise).
const shadowUpsert = `INSERT INTO shadows (thing, name, version, document, updated_at)
	SELECT ?1, ?2, ?3, ?4, ?5 WHERE EXISTS (SELECT 1 FROM things WHERE name = ?1)
	ON CONFLICT (thing, name) DO UPDATE SET
		version = excluded.version, document = excluded.document, updated_at = excluded.updated_at
	WHERE ?6 = 0 OR (shadows.version = ?7 AND (shadows.document IS NULL) = ?8)`

// Write applies a batch in one transaction; see store.ShadowStore.
func (ss *shadowStore) Write(ctx context.Context, batch []store.ShadowWrite) ([]int, error) {
	skipped, _, err := ss.WriteChecked(ctx, batch)
	return skipped, err
}

// WriteChecked applies a batch in one transaction with compare-and-set
// for its checked writes; see store.ShadowStore.
func (ss *shadowStore) WriteChecked(ctx context.Context, batch []store.ShadowWrite) ([]int, []int, error) {
	if len(batch) == 0 {
		return nil, nil, nil
	}
	for _, w := range batch {
		if err := requireName("thing", w.Thing); err != nil {
			return nil, nil, err
		}
		if !w.Deleted && w.Document == nil {
			return nil, nil, core.Invalid("document", "a shadow write needs a document unless it is a deletion")
		}
	}
	var skipped, conflicts []int
	err := ss.s.inTx(ctx, func(tx *sql.Tx) error {
		skipped, conflicts = skipped[:0], conflicts[:0]
		failed := map[[2]string]bool{} // shadows with a conflict in this batch
		st := tx.StmtContext(ctx, ss.s.putShadow)
		defer st.Close()
		t := now()
		for i, w := range batch {
			key := [2]string{w.Thing, w.Name}
			if failed[key] {
				conflicts = append(conflicts, i)
				continue
			}
			at := t
			if !w.At.IsZero() {
				at = w.At
			}
			var doc any
			if !w.Deleted {
				doc = string(w.Document)
			}
			res, err := st.ExecContext(ctx, w.Thing, w.Name, w.Version, doc, toMS(at), w.Checked, w.IfVersion, w.IfDeleted)
			if err != nil {
				return internal("write shadow", err)
			}
			n, err := res.RowsAffected()
			if err != nil {
				return internal("write shadow", err)
			}
			if n > 0 {
				continue
			}
			// Not applied: the thing is gone, or the check failed.
			var one int
			switch err := tx.QueryRowContext(ctx, `SELECT 1 FROM things WHERE name = ?`, w.Thing).Scan(&one); {
			case errors.Is(err, sql.ErrNoRows):
				skipped = append(skipped, i)
			case err != nil:
				return internal("write shadow", err)
			default:
				failed[key] = true
				conflicts = append(conflicts, i)
			}
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	return skipped, conflicts, nil
}
