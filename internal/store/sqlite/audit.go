package sqlite

import (
	"context"
	"database/sql"
	"strings"
	"time"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/store"
)

type auditStore struct{ s *Store }

const auditSelect = `SELECT id, at, actor_kind, actor_name, actor_id, action, target_kind, target_name, status, source, request_id, before_doc, after_doc, omitted FROM audit_log`

func scanAudit(row scanner) (store.AuditEntry, error) {
	var (
		e             store.AuditEntry
		at            int64
		before, after sql.NullString
	)
	if err := row.Scan(&e.ID, &at, &e.ActorKind, &e.ActorName, &e.ActorID, &e.Action, &e.TargetKind, &e.TargetName,
		&e.Status, &e.Source, &e.RequestID, &before, &after, &e.Omitted); err != nil {
		return store.AuditEntry{}, err
	}
	e.Time = fromMS(at)
	if before.Valid {
		e.Before = []byte(before.String)
	}
	if after.Valid {
		e.After = []byte(after.String)
	}
	return e, nil
}

func nullDoc(b []byte) any {
	if b == nil {
		return nil
	}
	return string(b)
}

// Append stores a batch in one transaction with one prepared statement.
func (as *auditStore) Append(ctx context.Context, entries []store.AuditEntry) error {
	if len(entries) == 0 {
		return nil
	}
	return as.s.inTx(ctx, func(tx *sql.Tx) error {
		st, err := tx.PrepareContext(ctx, `INSERT INTO audit_log (id, at, actor_kind, actor_name, actor_id, action, target_kind, target_name, status, source, request_id, before_doc, after_doc, omitted)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
		if err != nil {
			return internal("append audit", err)
		}
		defer st.Close()
		for _, e := range entries {
			if err := requireName("id", e.ID); err != nil {
				return err
			}
			if _, err := st.ExecContext(ctx, e.ID, toMS(orNow(e.Time)), e.ActorKind, e.ActorName, e.ActorID, e.Action, e.TargetKind, e.TargetName,
				e.Status, e.Source, e.RequestID, nullDoc(e.Before), nullDoc(e.After), e.Omitted); err != nil {
				if isUnique(err) {
					return core.Conflict("audit entry %q already exists", e.ID)
				}
				return internal("append audit", err)
			}
		}
		return nil
	})
}

// List returns the matching entries newest first.
func (as *auditStore) List(ctx context.Context, f store.AuditFilter) ([]store.AuditEntry, error) {
	var where []string
	var args []any
	if f.Actor != "" {
		where = append(where, `actor_name = ?`)
		args = append(args, f.Actor)
	}
	if p, ok := strings.CutSuffix(f.Action, "*"); ok {
		if p != "" {
			where = append(where, `action >= ?`)
			args = append(args, p)
			if end, ok := store.PrefixEnd(p); ok {
				where = append(where, `action < ?`)
				args = append(args, end)
			}
		}
	} else if f.Action != "" {
		where = append(where, `action = ?`)
		args = append(args, f.Action)
	}
	if f.TargetKind != "" {
		where = append(where, `target_kind = ?`)
		args = append(args, f.TargetKind)
	}
	if f.TargetName != "" {
		where = append(where, `target_name = ?`)
		args = append(args, f.TargetName)
	}
	if !f.Since.IsZero() {
		where = append(where, `at >= ?`)
		args = append(args, toMS(f.Since))
	}
	if !f.Until.IsZero() {
		where = append(where, `at < ?`)
		args = append(args, toMS(f.Until))
	}
	if f.After != "" {
		where = append(where, `id < ?`)
		args = append(args, f.After)
	}
	q := auditSelect
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, ` AND `)
	}
	q += ` ORDER BY id DESC LIMIT ?`
	args = append(args, normLimit(f.Limit))
	return queryList(ctx, as.s.r, "list audit", scanAudit, q, args...)
}

// Prune deletes the entries recorded before t.
func (as *auditStore) Prune(ctx context.Context, before time.Time) (int64, error) {
	res, err := as.s.w.ExecContext(ctx, `DELETE FROM audit_log WHERE at < ?`, toMS(before))
	if err != nil {
		return 0, internal("prune audit", err)
	}
	n, _ := res.RowsAffected()
	return n, nil
}
