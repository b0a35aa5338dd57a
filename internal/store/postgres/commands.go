package postgres

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/store"
)

type commandStore struct{ s *Store }

const commandColumns = `id, thing, name, payload, status, created_at, expires_at, delivered_at, completed_at, result_status, result_output`

const commandSelect = `SELECT ` + commandColumns + ` FROM commands`

func scanCommand(row scanner) (store.Command, error) {
	var (
		c                      store.Command
		payload, rStatus, rOut *string
		created, expires       time.Time
		delivered, completed   *time.Time
	)
	if err := row.Scan(&c.ID, &c.Thing, &c.Name, &payload, &c.Status, &created, &expires, &delivered, &completed, &rStatus, &rOut); err != nil {
		return store.Command{}, err
	}
	if payload != nil {
		c.Payload = json.RawMessage(*payload)
	}
	c.CreatedAt, c.ExpiresAt = created.UTC(), expires.UTC()
	c.DeliveredAt = utcPtr(delivered)
	c.CompletedAt = utcPtr(completed)
	if rStatus != nil {
		c.Result = &store.CommandResult{Status: *rStatus}
		if rOut != nil {
			c.Result.Output = json.RawMessage(*rOut)
		}
	}
	return c, nil
}

func getCommand(ctx context.Context, q querier, thing, id string, lock bool) (store.Command, error) {
	query := commandSelect + ` WHERE id = $1 AND thing = $2`
	if lock {
		query += ` FOR UPDATE`
	}
	return getOne(q.QueryRow(ctx, query, id, thing), scanCommand, "command", id)
}

func rawOrNull(b json.RawMessage) *string {
	if len(b) == 0 {
		return nil
	}
	s := string(b)
	return &s
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
	err := cs.s.inTx(ctx, func(tx pgx.Tx) error {
		// FOR KEY SHARE: the thing cannot be deleted before we commit.
		ok, err := exists(ctx, tx, `SELECT 1 FROM things WHERE name = $1 FOR KEY SHARE`, c.Thing)
		if err != nil {
			return err
		}
		if !ok {
			return core.NotFound("thing", c.Thing)
		}
		dup, err := exists(ctx, tx, `SELECT 1 FROM commands WHERE id = $1`, c.ID)
		if err != nil {
			return err
		}
		if dup {
			return core.Conflict("command %q already exists", c.ID)
		}
		var rStatus, rOut *string
		if c.Result != nil {
			rStatus, rOut = &c.Result.Status, rawOrNull(c.Result.Output)
		}
		out, err = getOne(tx.QueryRow(ctx, `INSERT INTO commands (`+commandColumns+`)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING `+commandColumns,
			c.ID, c.Thing, c.Name, rawOrNull(c.Payload), c.Status, created, ms(c.ExpiresAt),
			msPtr(c.DeliveredAt), msPtr(c.CompletedAt), rStatus, rOut), scanCommand, "command", c.ID)
		return err
	})
	return out, err
}

// Get returns a command of a thing, or core.NotFound `command "id" not found`.
func (cs *commandStore) Get(ctx context.Context, thing, id string) (store.Command, error) {
	return getCommand(ctx, cs.s.pool, thing, id, false)
}

// List returns a thing's commands newest first, optionally of one status,
// created before the command f.Before.
func (cs *commandStore) List(ctx context.Context, f store.CommandFilter) ([]store.Command, error) {
	var a args
	where := []string{"thing = " + a.add(f.Thing)}
	if f.Status != "" {
		where = append(where, "status = "+a.add(f.Status))
	}
	if f.Before != "" {
		where = append(where, "seq < coalesce((SELECT seq FROM commands WHERE id = "+a.add(f.Before)+" AND thing = $1), 0)")
	}
	return queryList(ctx, cs.s.pool, "list commands", scanCommand,
		commandSelect+` WHERE `+strings.Join(where, " AND ")+` ORDER BY seq DESC LIMIT `+a.add(normLimit(f.Limit)), a...)
}

// Pending returns the queued, unexpired commands of a thing, oldest first.
func (cs *commandStore) Pending(ctx context.Context, thing string, at time.Time, limit int) ([]store.Command, error) {
	return queryList(ctx, cs.s.pool, "pending commands", scanCommand,
		commandSelect+` WHERE thing = $1 AND status = 'queued' AND expires_at > $2 ORDER BY seq LIMIT $3`,
		thing, ms(at), normLimit(limit))
}

// Transition changes the status of a command whose status is one of from.
// The row is locked while it is checked and changed, so two nodes cannot
// both move it.
func (cs *commandStore) Transition(ctx context.Context, thing, id string, from []string, to string, at time.Time, result *store.CommandResult) (store.Command, error) {
	at = ms(at)
	var out store.Command
	err := cs.s.inTx(ctx, func(tx pgx.Tx) error {
		c, err := getCommand(ctx, tx, thing, id, true)
		if err != nil {
			return err
		}
		if !slices.Contains(from, c.Status) {
			out = c
			return core.Conflict("command %q is %s", id, c.Status)
		}
		var (
			q    string
			args = []any{to}
		)
		switch {
		case to == store.CommandDelivered:
			q = `UPDATE commands SET status = $1, delivered_at = $2 WHERE id = $3`
			args = append(args, at, id)
		case result != nil:
			q = `UPDATE commands SET status = $1, delivered_at = coalesce(delivered_at, $2), completed_at = $2, result_status = $3, result_output = $4 WHERE id = $5`
			args = append(args, at, result.Status, rawOrNull(result.Output), id)
		default:
			q = `UPDATE commands SET status = $1, completed_at = $2 WHERE id = $3`
			args = append(args, at, id)
		}
		if _, err := tx.Exec(ctx, q, args...); err != nil {
			return internal("update command", err)
		}
		out, err = getCommand(ctx, tx, thing, id, false)
		return err
	})
	return out, err
}

// Expire marks queued commands expired whose time has come, oldest first.
// Rows another node is expiring at the same moment are skipped (SKIP
// LOCKED), so each command is expired once.
func (cs *commandStore) Expire(ctx context.Context, at time.Time, limit int) ([]store.Command, error) {
	var out []store.Command
	err := cs.s.inTx(ctx, func(tx pgx.Tx) error {
		list, err := queryList(ctx, tx, "expire commands", scanCommand,
			commandSelect+` WHERE status = 'queued' AND expires_at <= $1 ORDER BY expires_at, seq LIMIT $2 FOR UPDATE SKIP LOCKED`,
			ms(at), normLimit(limit))
		if err != nil {
			return err
		}
		done := now()
		ids := make([]string, len(list))
		for i := range list {
			ids[i] = list[i].ID
			list[i].Status = store.CommandExpired
			list[i].CompletedAt = &done
		}
		if len(ids) > 0 {
			if _, err := tx.Exec(ctx, `UPDATE commands SET status = 'expired', completed_at = $1 WHERE id = ANY($2)`, done, ids); err != nil {
				return internal("expire commands", err)
			}
		}
		out = list
		return nil
	})
	return out, err
}
