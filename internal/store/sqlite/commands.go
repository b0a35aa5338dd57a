package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"strings"
	"time"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/store"
)

type commandStore struct{ s *Store }

const commandSelect = `SELECT id, thing, name, payload, status, created_at, expires_at, delivered_at, completed_at, result_status, result_output FROM commands`

func scanCommand(row scanner) (store.Command, error) {
	var (
		c                      store.Command
		payload, rStatus, rOut sql.NullString
		created, expires       int64
		delivered, completed   sql.NullInt64
	)
	if err := row.Scan(&c.ID, &c.Thing, &c.Name, &payload, &c.Status, &created, &expires, &delivered, &completed, &rStatus, &rOut); err != nil {
		return store.Command{}, err
	}
	if payload.Valid {
		c.Payload = json.RawMessage(payload.String)
	}
	c.CreatedAt = fromMS(created)
	c.ExpiresAt = fromMS(expires)
	c.DeliveredAt = ptrMS(delivered)
	c.CompletedAt = ptrMS(completed)
	if rStatus.Valid {
		c.Result = &store.CommandResult{Status: rStatus.String}
		if rOut.Valid {
			c.Result.Output = json.RawMessage(rOut.String)
		}
	}
	return c, nil
}

func getCommand(ctx context.Context, q querier, thing, id string) (store.Command, error) {
	return getOne(q.QueryRowContext(ctx, commandSelect+` WHERE id = ? AND thing = ?`, id, thing), scanCommand, "command", id)
}

func queryCommands(ctx context.Context, q querier, op, query string, args ...any) ([]store.Command, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, internal(op, err)
	}
	defer rows.Close()
	list := []store.Command{}
	for rows.Next() {
		c, err := scanCommand(rows)
		if err != nil {
			return nil, internal(op, err)
		}
		list = append(list, c)
	}
	if err := rows.Err(); err != nil {
		return nil, internal(op, err)
	}
	return list, nil
}

func rawOrNull(b json.RawMessage) any {
	if len(b) == 0 {
		return nil
	}
	return string(b)
}

// Create stores a new command. A missing thing → core.NotFound; a
// duplicate id → core.Conflict. A zero CreatedAt becomes now.
func (cs *commandStore) Create(ctx context.Context, c store.Command) (store.Command, error) {
	if err := requireName("id", c.ID); err != nil {
		return store.Command{}, err
	}
	if err := requireName("name", c.Name); err != nil {
		return store.Command{}, err
	}
	if c.Status == "" {
		c.Status = store.CommandQueued
	}
	created := orNow(c.CreatedAt)
	var out store.Command
	err := cs.s.inTx(ctx, func(tx *sql.Tx) error {
		ok, err := exists(ctx, tx, `SELECT 1 FROM things WHERE name = ?`, c.Thing)
		if err != nil {
			return err
		}
		if !ok {
			return core.NotFound("thing", c.Thing)
		}
		dup, err := exists(ctx, tx, `SELECT 1 FROM commands WHERE id = ?`, c.ID)
		if err != nil {
			return err
		}
		if dup {
			return core.Conflict("command %q already exists", c.ID)
		}
		var rStatus, rOut any
		if c.Result != nil {
			rStatus, rOut = c.Result.Status, rawOrNull(c.Result.Output)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO commands (id, thing, name, payload, status, created_at, expires_at, delivered_at, completed_at, result_status, result_output) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			c.ID, c.Thing, c.Name, rawOrNull(c.Payload), c.Status, toMS(created), toMS(c.ExpiresAt),
			nullMS(c.DeliveredAt), nullMS(c.CompletedAt), rStatus, rOut); err != nil {
			return internal("create command", err)
		}
		out, err = getCommand(ctx, tx, c.Thing, c.ID)
		return err
	})
	return out, err
}

// Get returns a command of a thing, or core.NotFound `command "id" not found`.
func (cs *commandStore) Get(ctx context.Context, thing, id string) (store.Command, error) {
	return getCommand(ctx, cs.s.r, thing, id)
}

// List returns a thing's commands newest first, optionally of one status,
// created before the command f.Before.
func (cs *commandStore) List(ctx context.Context, f store.CommandFilter) ([]store.Command, error) {
	var (
		where = []string{"thing = ?"}
		args  = []any{f.Thing}
	)
	if f.Status != "" {
		where = append(where, "status = ?")
		args = append(args, f.Status)
	}
	if f.Before != "" {
		where = append(where, "seq < coalesce((SELECT seq FROM commands WHERE id = ? AND thing = ?), 0)")
		args = append(args, f.Before, f.Thing)
	}
	args = append(args, normLimit(f.Limit))
	return queryCommands(ctx, cs.s.r, "list commands",
		commandSelect+` WHERE `+strings.Join(where, " AND ")+` ORDER BY seq DESC LIMIT ?`, args...)
}

// Pending returns the queued, unexpired commands of a thing, oldest first.
func (cs *commandStore) Pending(ctx context.Context, thing string, at time.Time, limit int) ([]store.Command, error) {
	return queryCommands(ctx, cs.s.r, "pending commands",
		commandSelect+` WHERE thing = ? AND status = 'queued' AND expires_at > ? ORDER BY seq LIMIT ?`,
		thing, toMS(at), normLimit(limit))
}

// Transition changes the status of a command whose status is one of from.
func (cs *commandStore) Transition(ctx context.Context, thing, id string, from []string, to string, at time.Time, result *store.CommandResult) (store.Command, error) {
	at = at.UTC().Truncate(time.Millisecond)
	var out store.Command
	err := cs.s.inTx(ctx, func(tx *sql.Tx) error {
		c, err := getCommand(ctx, tx, thing, id)
		if err != nil {
			return err
		}
		ok := false
		for _, s := range from {
			ok = ok || s == c.Status
		}
		if !ok {
			out = c
			return core.Conflict("command %q is %s", id, c.Status)
		}
		var q string
		args := []any{to}
		switch {
		case to == store.CommandDelivered:
			q = `UPDATE commands SET status = ?, delivered_at = ? WHERE id = ?`
			args = append(args, toMS(at), id)
		case result != nil:
			q = `UPDATE commands SET status = ?, delivered_at = coalesce(delivered_at, ?), completed_at = ?, result_status = ?, result_output = ? WHERE id = ?`
			args = append(args, toMS(at), toMS(at), result.Status, rawOrNull(result.Output), id)
		default:
			q = `UPDATE commands SET status = ?, completed_at = ? WHERE id = ?`
			args = append(args, toMS(at), id)
		}
		if _, err := tx.ExecContext(ctx, q, args...); err != nil {
			return internal("update command", err)
		}
		out, err = getCommand(ctx, tx, thing, id)
		return err
	})
	return out, err
}

// Expire marks queued commands expired whose time has come.
func (cs *commandStore) Expire(ctx context.Context, at time.Time, limit int) ([]store.Command, error) {
	var out []store.Command
	err := cs.s.inTx(ctx, func(tx *sql.Tx) error {
		list, err := queryCommands(ctx, tx, "expire commands",
			commandSelect+` WHERE status = 'queued' AND expires_at <= ? ORDER BY expires_at, seq LIMIT ?`, toMS(at), normLimit(limit))
		if err != nil {
			return err
		}
		done := toMS(now())
		for i := range list {
			if _, err := tx.ExecContext(ctx, `UPDATE commands SET status = 'expired', completed_at = ? WHERE id = ?`, done, list[i].ID); err != nil {
				return internal("expire commands", err)
			}
			list[i].Status = store.CommandExpired
			t := fromMS(done)
			list[i].CompletedAt = &t
		}
		out = list
		return nil
	})
	return out, err
}
