package postgres

import (
	"context"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/store"
)

type auditStore struct{ s *Store }

const auditSelect = `SELECT id, at, actor_kind, actor_name, actor_id, action, target_kind, target_name, status, source, request_id, before_doc, after_doc, omitted FROM audit_log`

func scanAudit(row scanner) (store.AuditEntry, error) {
	var (
		e             store.AuditEntry
		at            time.Time
		before, after *string
	)
	if err := row.Scan(&e.ID, &at, &e.ActorKind, &e.ActorName, &e.ActorID, &e.Action, &e.TargetKind, &e.TargetName,
		&e.Status, &e.Source, &e.RequestID, &before, &after, &e.Omitted); err != nil {
		return store.AuditEntry{}, err
	}
	e.Time = at.UTC()
	if before != nil {
		e.Before = []byte(*before)
	}
	if after != nil {
		e.After = []byte(*after)
	}
	return e, nil
}

func nullDoc(b []byte) *string {
	if b == nil {
		return nil
	}
	s := string(b)
	return &s
}

// Append stores a batch in one transaction (one round trip: a pgx batch).
func (as *auditStore) Append(ctx context.Context, entries []store.AuditEntry) error {
	if len(entries) == 0 {
		return nil
	}
	for _, e := range entries {
		if err := requireName("id", e.ID); err != nil {
			return err
		}
	}
	return as.s.inTx(ctx, func(tx pgx.Tx) error {
		b := &pgx.Batch{}
		for _, e := range entries {
			b.Queue(`INSERT INTO audit_log (id, at, actor_kind, actor_name, actor_id, action, target_kind, target_name, status, source, request_id, before_doc, after_doc, omitted)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)`,
				e.ID, orNow(e.Time), e.ActorKind, e.ActorName, e.ActorID, e.Action, e.TargetKind, e.TargetName,
				e.Status, e.Source, e.RequestID, nullDoc(e.Before), nullDoc(e.After), e.Omitted)
		}
		br := tx.SendBatch(ctx, b)
		for _, e := range entries {
			if _, err := br.Exec(); err != nil {
				br.Close()
				if pe, ok := err.(*pgconn.PgError); ok && pe.Code == "23505" {
					return core.Conflict("audit entry %q already exists", e.ID)
				}
				return internal("append audit", err)
			}
		}
		if err := br.Close(); err != nil {
			return internal("append audit", err)
		}
		return nil
	})
}

// List returns the matching entries newest first.
func (as *auditStore) List(ctx context.Context, f store.AuditFilter) ([]store.AuditEntry, error) {
	var where []string
	var a args
	if f.Actor != "" {
		where = append(where, `actor_name = `+a.add(f.Actor))
	}
	if p, ok := strings.CutSuffix(f.Action, "*"); ok {
		if p != "" {
			where = append(where, `action >= `+a.add(p))
			if end, ok := store.PrefixEnd(p); ok {
				where = append(where, `action < `+a.add(end))
			}
		}
	} else if f.Action != "" {
		where = append(where, `action = `+a.add(f.Action))
	}
	if f.TargetKind != "" {
		where = append(where, `target_kind = `+a.add(f.TargetKind))
	}
	if f.TargetName != "" {
		where = append(where, `target_name = `+a.add(f.TargetName))
	}
	if !f.Since.IsZero() {
		where = append(where, `at >= `+a.add(ms(f.Since)))
	}
	if !f.Until.IsZero() {
		where = append(where, `at < `+a.add(ms(f.Until)))
	}
	if f.After != "" {
		where = append(where, `id < `+a.add(f.After))
	}
	q := auditSelect
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, ` AND `)
	}
	q += ` ORDER BY id DESC LIMIT ` + a.add(normLimit(f.Limit))
	return queryList(ctx, as.s.pool, "list audit", scanAudit, q, a...)
}

// Prune deletes the entries recorded before t.
func (as *auditStore) Prune(ctx context.Context, before time.Time) (int64, error) {
	tag, err := as.s.pool.Exec(ctx, `DELETE FROM audit_log WHERE at < $1`, ms(before))
	if err != nil {
		return 0, internal("prune audit", err)
	}
	return tag.RowsAffected(), nil
}
