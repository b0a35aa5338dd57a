package postgres

import (
	"context"

	"github.com/jackc/pgx/v5"

	"github.com/moteiot/mote/internal/store"
)

type retainedStore struct{ s *Store }

// Apply upserts or deletes retained messages in one transaction, sent in
// one round trip; a later entry for the same topic wins.
func (rs *retainedStore) Apply(ctx context.Context, changes []store.RetainedMessage) error {
	if len(changes) == 0 {
		return nil
	}
	at := now()
	b := &pgx.Batch{}
	for _, c := range changes {
		if c.Data == nil {
			b.Queue(`DELETE FROM retained WHERE topic = $1`, c.Topic)
		} else {
			b.Queue(`INSERT INTO retained (topic, data, updated_at) VALUES ($1, $2, $3)
				ON CONFLICT (topic) DO UPDATE SET data = excluded.data, updated_at = excluded.updated_at`, c.Topic, c.Data, at)
		}
	}
	return rs.s.inTx(ctx, func(tx pgx.Tx) error {
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return internal("store retained message", err)
		}
		return nil
	})
}

// List returns every retained message, ordered by topic.
func (rs *retainedStore) List(ctx context.Context) ([]store.RetainedMessage, error) {
	rows, err := rs.s.pool.Query(ctx, `SELECT topic, data FROM retained ORDER BY topic`)
	if err != nil {
		return nil, internal("list retained messages", err)
	}
	defer rows.Close()
	var out []store.RetainedMessage
	for rows.Next() {
		var m store.RetainedMessage
		if err := rows.Scan(&m.Topic, &m.Data); err != nil {
			return nil, internal("list retained messages", err)
		}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, internal("list retained messages", err)
	}
	return out, nil
}
