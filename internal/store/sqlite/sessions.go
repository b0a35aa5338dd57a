package sqlite

import (
	"context"
	"database/sql"

	"github.com/moteiot/mote/internal/store"
)

type sessionStore struct{ s *Store }

// Apply writes a batch of session changes in one transaction: clients
// first (a delete or Reset removes the client's messages), then messages.
func (ss *sessionStore) Apply(ctx context.Context, c store.SessionChanges) error {
	if len(c.Clients) == 0 && len(c.Messages) == 0 {
		return nil
	}
	at := toMS(now())
	return ss.s.inTx(ctx, func(tx *sql.Tx) error {
		for _, cl := range c.Clients {
			if cl.Data == nil || cl.Reset {
				if _, err := tx.ExecContext(ctx, `DELETE FROM mqtt_session_messages WHERE client_id = ?`, cl.ID); err != nil {
					return internal("delete session messages", err)
				}
			}
			var err error
			if cl.Data == nil {
				_, err = tx.ExecContext(ctx, `DELETE FROM mqtt_sessions WHERE client_id = ?`, cl.ID)
			} else {
				_, err = tx.ExecContext(ctx, `INSERT INTO mqtt_sessions (client_id, data, updated_at) VALUES (?, ?, ?)
					ON CONFLICT (client_id) DO UPDATE SET data = excluded.data, updated_at = excluded.updated_at`,
					cl.ID, cl.Data, at)
			}
			if err != nil {
				return internal("store session", err)
			}
		}
		for _, m := range c.Messages {
			var err error
			if m.Data == nil {
				_, err = tx.ExecContext(ctx, `DELETE FROM mqtt_session_messages WHERE client_id = ? AND packet_id = ?`, m.Client, m.PacketID)
			} else {
				_, err = tx.ExecContext(ctx, `INSERT INTO mqtt_session_messages (client_id, packet_id, data) VALUES (?, ?, ?)
					ON CONFLICT (client_id, packet_id) DO UPDATE SET data = excluded.data`, m.Client, m.PacketID, m.Data)
			}
			if err != nil {
				return internal("store session message", err)
			}
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
	list, err := ss.list(ctx, "WHERE s.client_id = ? ", id)
	if err != nil || len(list) == 0 {
		return store.StoredSession{}, false, err
	}
	return list[0], true, nil
}

func (ss *sessionStore) list(ctx context.Context, where string, args ...any) ([]store.StoredSession, error) {
	rows, err := ss.s.r.QueryContext(ctx, `SELECT s.client_id, s.data, m.packet_id, m.data
		FROM mqtt_sessions s LEFT JOIN mqtt_session_messages m ON m.client_id = s.client_id
		`+where+`ORDER BY s.client_id, m.packet_id`, args...)
	if err != nil {
		return nil, internal("list sessions", err)
	}
	defer rows.Close()
	var out []store.StoredSession
	for rows.Next() {
		var (
			id, data []byte
			pid      sql.NullInt64
			msg      []byte
		)
		if err := rows.Scan(&id, &data, &pid, &msg); err != nil {
			return nil, internal("list sessions", err)
		}
		if n := len(out); n == 0 || out[n-1].ID != string(id) {
			out = append(out, store.StoredSession{ID: string(id), Data: data})
		}
		if pid.Valid {
			last := &out[len(out)-1]
			last.Messages = append(last.Messages, store.SessionMessage{Client: last.ID, PacketID: uint16(pid.Int64), Data: msg})
		}
	}
	if err := rows.Err(); err != nil {
		return nil, internal("list sessions", err)
	}
	return out, nil
}
