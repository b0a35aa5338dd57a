package postgres

import (
	"context"

	"github.com/jackc/pgx/v5"

	"github.com/moteiot/mote/internal/store"
)

type sessionStore struct{ s *Store }

// Apply writes a batch of session changes in one transaction, sent in one
// round trip: clients first (a delete or Reset removes the client's
// messages), then messages.
func (ss *sessionStore) Apply(ctx context.Context, c store.SessionChanges) error {
	if len(c.Clients) == 0 && len(c.Messages) == 0 {
		return nil
	}
	at := now()
	b := &pgx.Batch{}
	for _, cl := range c.Clients {
		if cl.Data == nil || cl.Reset {
			b.Queue(`DELETE FROM mqtt_session_messages WHERE client_id = $1`, cl.ID)
		}
		if cl.Data == nil {
			b.Queue(`DELETE FROM mqtt_sessions WHERE client_id = $1`, cl.ID)
		} else {
			b.Queue(`INSERT INTO mqtt_sessions (client_id, data, updated_at) VALUES ($1, $2, $3)
				ON CONFLICT (client_id) DO UPDATE SET data = excluded.data, updated_at = excluded.updated_at`, cl.ID, cl.Data, at)
		}
	}
	for _, m := range c.Messages {
		if m.Data == nil {
			b.Queue(`DELETE FROM mqtt_session_messages WHERE client_id = $1 AND packet_id = $2`, m.Client, int32(m.PacketID))
		} else {
			b.Queue(`INSERT INTO mqtt_session_messages (client_id, packet_id, data) VALUES ($1, $2, $3)
				ON CONFLICT (client_id, packet_id) DO UPDATE SET data = excluded.data`, m.Client, int32(m.PacketID), m.Data)
		}
	}
	return ss.s.inTx(ctx, func(tx pgx.Tx) error {
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return internal("store sessions", err)
		}
		return nil
	})
}

// List returns every session ordered by client id, with its messages by
// packet id.
func (ss *sessionStore) List(ctx context.Context) ([]store.StoredSession, error) {
	return ss.list(ctx, "")
}

// Get returns the session of one client id with its messages; ok is false
// when there is none.
func (ss *sessionStore) Get(ctx context.Context, id string) (s store.StoredSession, ok bool, err error) {
	list, err := ss.list(ctx, "WHERE s.client_id = $1 ", id)
	if err != nil || len(list) == 0 {
		return store.StoredSession{}, false, err
	}
	return list[0], true, nil
}

func (ss *sessionStore) list(ctx context.Context, where string, args ...any) ([]store.StoredSession, error) {
	rows, err := ss.s.pool.Query(ctx, `SELECT s.client_id, s.data, m.packet_id, m.data
		FROM mqtt_sessions s LEFT JOIN mqtt_session_messages m ON m.client_id = s.client_id
		`+where+`ORDER BY s.client_id, m.packet_id`, args...)
	if err != nil {
		return nil, internal("list sessions", err)
	}
	defer rows.Close()
	var out []store.StoredSession
	for rows.Next() {
		var (
			id   string
			data []byte
			pid  *int32
			msg  []byte
		)
		if err := rows.Scan(&id, &data, &pid, &msg); err != nil {
			return nil, internal("list sessions", err)
		}
		if n := len(out); n == 0 || out[n-1].ID != id {
			out = append(out, store.StoredSession{ID: id, Data: data})
		}
		if pid != nil {
			last := &out[len(out)-1]
			last.Messages = append(last.Messages, store.SessionMessage{Client: last.ID, PacketID: uint16(*pid), Data: msg})
		}
	}
	if err := rows.Err(); err != nil {
		return nil, internal("list sessions", err)
	}
	return out, nil
}
