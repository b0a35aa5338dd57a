// Package pgdb is what the PostgreSQL backends (store/postgres and
// telemetry/postgres) share: opening a pgxpool, versioned migrations run
// under an advisory lock, and the mapping of PostgreSQL errors to core
// error kinds.
package pgdb

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/sqlitedb"
)

// ErrSchemaTooNew is returned for a database written by a newer Mote whose
// schema this binary does not know.
var ErrSchemaTooNew = sqlitedb.ErrSchemaTooNew

// IsURL reports whether s names a PostgreSQL database (postgres:// or
// postgresql://) rather than a file.
func IsURL(s string) bool {
	return strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://")
}

// CheckURL checks that s is a PostgreSQL URL pgx can use. The error does
// not repeat the URL (it may hold a password).
func CheckURL(s string) error {
	if !IsURL(s) {
		return errors.New("not a PostgreSQL URL: want postgres://user:password@host:port/database (or empty for the embedded SQLite store)")
	}
	if _, err := pgconn.ParseConfig(s); err != nil {
		return errors.New("invalid PostgreSQL URL: want postgres://user:password@host:port/database?sslmode=...")
	}
	return nil
}

// Redact returns url with its password (in the user part or a password
// parameter) replaced, for logs and errors.
func Redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable postgres URL)"
	}
	q := u.Query()
	if q.Has("password") {
		q.Set("password", "xxxxx")
		u.RawQuery = q.Encode()
	}
	return u.Redacted()
}

// OpenPool connects to url with at most maxConns connections (0: pgx's
// default) and checks the connection. Every connection works in UTC.
func OpenPool(ctx context.Context, dbURL string, maxConns int32) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		// The parse error may quote the URL with its password.
		return nil, errors.New("parse database URL: invalid postgres URL")
	}
	if maxConns > 0 {
		cfg.MaxConns = maxConns
	}
	if cfg.ConnConfig.RuntimeParams == nil {
		cfg.ConnConfig.RuntimeParams = map[string]string{}
	}
	cfg.ConnConfig.RuntimeParams["timezone"] = "UTC"
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = 10 * time.Second
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect %s: %w", Redact(dbURL), err)
	}
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := pool.Ping(pctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connect %s: %w", Redact(dbURL), err)
	}
	return pool, nil
}

// Schema is a set of migrations files NNNN_name.sql in Dir of FS,
// recorded in Table.
type Schema struct {
	FS    fs.FS
	Dir   string
	Table string // e.g. "schema_migrations"
	Label string // prefixes errors: "postgres", "telemetry postgres"
}

// Version is the schema version the migrations bring a database to.
func (s Schema) Version() int {
	ms, err := sqlitedb.Load(s.FS, s.Dir, s.Label)
	if err != nil {
		panic(err)
	}
	return sqlitedb.Latest(ms)
}

// lockKey is the advisory lock key of a schema: a hash of its table name,
// so that the store and telemetry migrate independently.
func (s Schema) lockKey() int64 {
	h := fnv.New64a()
	h.Write([]byte("mote migrate " + s.Table))
	return int64(h.Sum64())
}

// Migrate brings the database up to date and returns how many migrations
// it applied. It holds a session-level advisory lock while it works, so
// several nodes starting together on one database migrate once: the
// first applies the migrations, the others wait for the lock and find
// nothing left to do. Each migration runs in its own transaction together
// with its row in the migrations table. A database whose recorded version
// is newer than this binary knows is ErrSchemaTooNew.
func (s Schema) Migrate(ctx context.Context, pool *pgxpool.Pool) (applied int, err error) {
	ms, err := sqlitedb.Load(s.FS, s.Dir, s.Label)
	if err != nil {
		return 0, err
	}
	latest := sqlitedb.Latest(ms)
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return 0, fmt.Errorf("%s: migrate: acquire: %w", s.Label, err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, s.lockKey()); err != nil {
		return 0, fmt.Errorf("%s: migrate: lock: %w", s.Label, err)
	}
	defer func() {
		// A fresh context: the lock must be released even if ctx ended.
		uctx, ucancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer ucancel()
		if _, uerr := conn.Exec(uctx, `SELECT pg_advisory_unlock($1)`, s.lockKey()); uerr != nil {
			// An unreleased session lock would block the next node: drop
			// the connection, which releases it.
			conn.Conn().Close(uctx)
			err = errors.Join(err, fmt.Errorf("%s: migrate: unlock: %w", s.Label, uerr))
		}
	}()
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+s.Table+` (
		version    integer     NOT NULL PRIMARY KEY,
		name       text        NOT NULL,
		applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return 0, fmt.Errorf("%s: migrate: create %s: %w", s.Label, s.Table, err)
	}
	var current int
	if err := conn.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM `+s.Table).Scan(&current); err != nil {
		return 0, fmt.Errorf("%s: migrate: read version: %w", s.Label, err)
	}
	if current > latest {
		return 0, fmt.Errorf("%s: schema version %d, this binary knows %d: %w", s.Label, current, latest, ErrSchemaTooNew)
	}
	for _, m := range ms[current:] {
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, m.SQL); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `INSERT INTO `+s.Table+` (version, name) VALUES ($1, $2)`, m.Version, m.Name)
			return err
		})
		if err != nil {
			return applied, fmt.Errorf("%s: migration %s: %w", s.Label, m.Name, err)
		}
		applied++
	}
	return applied, nil
}

// PostgreSQL error codes (SQLSTATE) the backends map to kinds.
const (
	codeUniqueViolation     = "23505"
	codeForeignKeyViolation = "23503"
	codeCheckViolation      = "23514"
	codeNotNullViolation    = "23502"
	codeSerialization       = "40001"
	codeDeadlock            = "40P01"
	codeBadEncoding         = "22021" // character_not_in_repertoire: NUL or invalid UTF-8 in text
)

// Code returns the SQLSTATE of err, or "".
func Code(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

// Internal wraps an unexpected database error of the step op. Constraint
// violations get a kind, as the SQLite backend does for a duplicate: the
// methods check for these cases first to give precise messages, and this
// is the fallback when a concurrent transaction slips in between:
//
//   - 23505 unique_violation → core.KindConflict (a duplicate)
//   - 23503 foreign_key_violation → core.KindConflict (a row another one
//     refers to, or one that refers to a row deleted meanwhile)
//   - 23514 check, 23502 not null → core.KindInvalid
//   - 40001 serialization failure, 40P01 deadlock → core.KindConflict (retry)
//   - 22021 a text value with a NUL byte or invalid UTF-8 (which SQLite
//     would keep, but PostgreSQL text cannot hold) → core.KindInvalid
//
// The message names the constraint, never the values.
func Internal(label, op string, err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case codeUniqueViolation:
			return &core.Error{Kind: core.KindConflict, Msg: op + ": duplicate", Err: err}
		case codeForeignKeyViolation:
			return &core.Error{Kind: core.KindConflict, Msg: op + ": a referenced row is missing or still referenced (" + pe.ConstraintName + ")", Err: err}
		case codeCheckViolation, codeNotNullViolation:
			return &core.Error{Kind: core.KindInvalid, Msg: op + ": " + pe.ConstraintName + " violated", Err: err}
		case codeBadEncoding:
			return &core.Error{Kind: core.KindInvalid, Msg: op + ": a text value holds a NUL byte or invalid UTF-8", Err: err}
		case codeSerialization, codeDeadlock:
			return &core.Error{Kind: core.KindConflict, Msg: op + ": concurrent update, try again", Err: err}
		}
	}
	return fmt.Errorf("%s: %s: %w", label, op, err)
}
