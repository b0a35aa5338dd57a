package sqlite

import (
	"context"
	"database/sql"

	"github.com/moteiot/mote/internal/store"
)

type retainedStore struct{ s *Store }

// Apply upserts or deletes retained messages in one transaction.
func (rs *retainedStore) Apply(ctx context.Context, changes []store.RetainedMessage) error {
	if len(changes) == 0 {
		return nil
	}
	at := toMS(now())
	return rs.s.inTx(ctx, func(tx *sql.Tx) error {
		for _, c := range changes {
			var err error
			if c.Data == nil {
				_, err = tx.ExecContext(ctx, `DELETE FROM retained WHERE topic = ?`, c.Topic)
			} else {
				_, err = tx.ExecContext(ctx, `INSERT INTO retained (topic, data, updated_at) VALUES (?, ?, ?)
					ON CONFLICT (topic) DO UPDATE SET data = excluded.data, updated_at = excluded.updated_at`,
					c.Topic, c.Data, at)
			}
			if err != nil {
				return internal("store retained message", err)
			}
		}
		return nil
	})
}

// List returns every retained message, ordered by topic.
func (rs *retainedStore) List(ctx context.Context) ([]store.RetainedMessage, error) {
	rows, err := rs.s.r.QueryContext(ctx, `SELECT topic, data FROM retained ORDER BY topic`)
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
