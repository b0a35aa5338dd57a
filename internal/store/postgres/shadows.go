package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

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
		doc *string
		at  time.Time
	)
	err := ss.s.pool.QueryRow(ctx, `SELECT version, document, updated_at FROM shadows WHERE thing = $1 AND name = $2`,
		thing, name).Scan(&sh.Version, &doc, &at)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return store.Shadow{}, shadowNotFound(thing, name)
	case err != nil:
		return store.Shadow{}, internal("get shadow", err)
	}
	sh.UpdatedAt = at.UTC()
	if doc == nil {
		sh.Deleted = true
		return sh, shadowNotFound(thing, name)
	}
	sh.Document = []byte(*doc)
	return sh, nil
}

// List returns the live shadows of a thing; see store.ShadowStore.
func (ss *shadowStore) List(ctx context.Context, thing string) ([]store.ShadowInfo, error) {
	return queryList(ctx, ss.s.pool, "list shadows", func(row scanner) (store.ShadowInfo, error) {
		var (
			si store.ShadowInfo
			at time.Time
		)
		err := row.Scan(&si.Name, &si.Version, &at)
		si.UpdatedAt = at.UTC()
		return si, err
	}, `SELECT name, version, updated_at FROM shadows WHERE thing = $1 AND document IS NOT NULL ORDER BY name`, thing)
}

// shadowUpsert writes one shadow if its thing exists (the SELECT yields
// no row otherwise, so nothing is inserted and no row is affected) and,
// for a checked write ($6), if the stored row has version $7 and is
// deleted exactly when $8 (the update's WHERE; no row affected otherwise).
const shadowUpsert = `INSERT INTO shadows (thing, name, version, document, updated_at)
	SELECT $1, $2, $3, $4, $5 WHERE EXISTS (SELECT 1 FROM things WHERE name = $1)
	ON CONFLICT (thing, name) DO UPDATE SET
		version = excluded.version, document = excluded.document, updated_at = excluded.updated_at
	WHERE NOT $6::boolean OR (shadows.version = $7 AND (shadows.document IS NULL) = $8::boolean)`

// errShadowRedo makes WriteChecked run a batch again one write at a time.
var errShadowRedo = errors.New("postgres: shadow batch with a write not applied")

// Write applies a batch in one transaction, sent in one round trip; see
// store.ShadowStore.
func (ss *shadowStore) Write(ctx context.Context, batch []store.ShadowWrite) ([]int, error) {
	skipped, _, err := ss.WriteChecked(ctx, batch)
	return skipped, err
}

// WriteChecked applies a batch in one transaction, sent in one round trip
// while every write applies. When one does not (its thing is gone, or its
// check failed), the transaction is rolled back and the batch runs again
// one write at a time, so that the later writes of a shadow whose check
// failed are not applied either; see store.ShadowStore.
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
	args := func(w store.ShadowWrite, t time.Time) []any {
		at := t
		if !w.At.IsZero() {
			at = ms(w.At)
		}
		var doc *string
		if !w.Deleted {
			d := string(w.Document)
			doc = &d
		}
		return []any{w.Thing, w.Name, w.Version, doc, at, w.Checked, w.IfVersion, w.IfDeleted}
	}
	err := ss.s.inTx(ctx, func(tx pgx.Tx) error {
		t := now()
		b := &pgx.Batch{}
		for _, w := range batch {
			b.Queue(shadowUpsert, args(w, t)...)
		}
		br := tx.SendBatch(ctx, b)
		redo := false
		for range batch {
			tag, err := br.Exec()
			if err != nil {
				br.Close()
				return internal("write shadow", err)
			}
			if tag.RowsAffected() == 0 {
				redo = true
			}
		}
		if err := br.Close(); err != nil {
			return internal("write shadow", err)
		}
		if redo {
			return errShadowRedo
		}
		return nil
	})
	if err == nil {
		return nil, nil, nil
	}
	if !errors.Is(err, errShadowRedo) {
		return nil, nil, err
	}
	var skipped, conflicts []int
	err = ss.s.inTx(ctx, func(tx pgx.Tx) error {
		skipped, conflicts = skipped[:0], conflicts[:0]
		failed := map[[2]string]bool{} // shadows with a conflict in this batch
		t := now()
		for i, w := range batch {
			key := [2]string{w.Thing, w.Name}
			if failed[key] {
				conflicts = append(conflicts, i)
				continue
			}
			tag, err := tx.Exec(ctx, shadowUpsert, args(w, t)...)
			if err != nil {
				return internal("write shadow", err)
			}
			if tag.RowsAffected() > 0 {
				continue
			}
			ok, err := exists(ctx, tx, `SELECT 1 FROM things WHERE name = $1`, w.Thing)
			switch {
			case err != nil:
				return internal("write shadow", err)
			case !ok:
				skipped = append(skipped, i)
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
