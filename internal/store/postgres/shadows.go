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
// no row otherwise, so nothing is inserted and no row is affected).
const shadowUpsert = `INSERT INTO shadows (thing, name, version, document, updated_at)
	SELECT $1, $2, $3, $4, $5 WHERE EXISTS (SELECT 1 FROM things WHERE name = $1)
	ON CONFLICT (thing, name) DO UPDATE SET
		version = excluded.version, document = excluded.document, updated_at = excluded.updated_at`

// Write applies a batch in one transaction, sent in one round trip; see
// store.ShadowStore.
func (ss *shadowStore) Write(ctx context.Context, batch []store.ShadowWrite) ([]int, error) {
	if len(batch) == 0 {
		return nil, nil
	}
	for _, w := range batch {
		if err := requireName("thing", w.Thing); err != nil {
			return nil, err
		}
		if !w.Deleted && w.Document == nil {
			return nil, core.Invalid("document", "a shadow write needs a document unless it is a deletion")
		}
	}
	var skipped []int
	err := ss.s.inTx(ctx, func(tx pgx.Tx) error {
		skipped = skipped[:0]
		t := now()
		b := &pgx.Batch{}
		for _, w := range batch {
			at := t
			if !w.At.IsZero() {
				at = ms(w.At)
			}
			var doc *string
			if !w.Deleted {
				d := string(w.Document)
				doc = &d
			}
			b.Queue(shadowUpsert, w.Thing, w.Name, w.Version, doc, at)
		}
		br := tx.SendBatch(ctx, b)
		for i := range batch {
			tag, err := br.Exec()
			if err != nil {
				br.Close()
				return internal("write shadow", err)
			}
			if tag.RowsAffected() == 0 {
				skipped = append(skipped, i)
			}
		}
		if err := br.Close(); err != nil {
			return internal("write shadow", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return skipped, nil
}
