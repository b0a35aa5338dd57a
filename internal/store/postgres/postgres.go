// Package postgres is the PostgreSQL backend of store.Store, for several
// Mote nodes sharing one database (issue 12). It keeps the semantics of the
// embedded SQLite backend (store/sqlite) exactly — the same error kinds and
// messages, orderings and cursors — and both run the same conformance
// suite (store/storetest).
//
// It uses pgx through a pgxpool. The schema is a set of versioned
// migrations (migrations/NNNN_name.sql, embedded) applied by Open under a
// PostgreSQL advisory lock, so several nodes starting together on a fresh
// database migrate it once (see pgdb.Schema.Migrate). Keys use the "C"
// collation, so orderings are byte-wise whatever the database's locale.
//
// Writes run in READ COMMITTED transactions. The methods check for
// duplicates and missing references before they write, to give the same
// precise messages as SQLite; a concurrent transaction that slips in
// between is caught by the constraints, whose violations map to kinds
// (pgdb.Internal: 23505 → conflict, 23503 → conflict). Read-modify-write
// steps (command transitions, expiry) lock their rows (FOR UPDATE, SKIP
// LOCKED for the expiry sweep), so two nodes never move one command twice.
//
// Times are timestamptz, truncated to the millisecond and returned in UTC,
// as the SQLite backend returns them.
package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/pgdb"
	"github.com/moteiot/mote/internal/store"
)

var _ store.Store = (*Store)(nil)

// Limits of the List methods (as in the SQLite backend).
const (
	defaultLimit = 100
	maxLimit     = 1000
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

var schema = pgdb.Schema{FS: migrationFiles, Dir: "migrations", Table: "schema_migrations", Label: "postgres"}

// SchemaVersion is the schema version this binary brings a database to.
func SchemaVersion() int { return schema.Version() }

// ErrSchemaTooNew is returned by Open for a database written by a newer
// Mote whose schema this binary does not know.
var ErrSchemaTooNew = pgdb.ErrSchemaTooNew

// Options tune Open. The zero value is ready to use.
type Options struct {
	// MaxConns bounds the connection pool; 0 means pgx's default
	// (the larger of 4 and the number of CPUs).
	MaxConns int32
}

// Store is a store.Store on a PostgreSQL database. It is safe for
// concurrent use, also by several processes on the same database.
type Store struct {
	pool *pgxpool.Pool

	// Migrated is how many migrations Open applied (0 when the database
	// was up to date, or another node migrated it).
	Migrated int

	things      thingStore
	types       typeStore
	groups      groupStore
	credentials credentialStore
	policies    policyStore
	tokens      tokenStore
	shadows     shadowStore
	rules       ruleStore
	commands    commandStore
	users       userStore
	retained    retainedStore
	sessions    sessionStore
	artifacts   artifactStore
	files       fileStore
	alarms      alarmStore
	analytics   analyticsStore
	jobs        jobStore
	profiles    profileStore

	provisioning provisioningStore // provisioning.go
	audit        auditStore

	closeOnce sync.Once
}

// Open connects to the database at url (postgres://...), brings its schema
// up to date and returns the store. It refuses a database whose schema is
// newer than this binary knows (ErrSchemaTooNew).
func Open(ctx context.Context, url string, opts Options) (*Store, error) {
	pool, err := pgdb.OpenPool(ctx, url, opts.MaxConns)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	n, err := schema.Migrate(ctx, pool)
	if err != nil {
		pool.Close()
		return nil, err
	}
	s := &Store{pool: pool, Migrated: n}
	s.things = thingStore{s}
	s.types = typeStore{s}
	s.groups = groupStore{s}
	s.credentials = credentialStore{s}
	s.policies = policyStore{s}
	s.tokens = tokenStore{s}
	s.shadows = shadowStore{s}
	s.rules = ruleStore{s}
	s.commands = commandStore{s}
	s.users = userStore{s}
	s.retained = retainedStore{s}
	s.sessions = sessionStore{s}
	s.artifacts = artifactStore{s}
	s.files = fileStore{s}
	s.alarms = alarmStore{s}
	s.analytics = analyticsStore{s}
	s.jobs = jobStore{s}
	s.profiles = profileStore{s}
	s.provisioning = provisioningStore{s}
	s.audit = auditStore{s}
	return s, nil
}

// Pool returns the connection pool (for tools such as migrate-store).
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

func (s *Store) Things() store.ThingStore           { return &s.things }
func (s *Store) Types() store.TypeStore             { return &s.types }
func (s *Store) Groups() store.GroupStore           { return &s.groups }
func (s *Store) Credentials() store.CredentialStore { return &s.credentials }
func (s *Store) Policies() store.PolicyStore        { return &s.policies }
func (s *Store) Tokens() store.TokenStore           { return &s.tokens }
func (s *Store) Shadows() store.ShadowStore         { return &s.shadows }
func (s *Store) Rules() store.RuleStore             { return &s.rules }
func (s *Store) Commands() store.CommandStore       { return &s.commands }
func (s *Store) Users() store.UserStore             { return &s.users }
func (s *Store) Retained() store.RetainedStore      { return &s.retained }
func (s *Store) Sessions() store.SessionStore       { return &s.sessions }
func (s *Store) Artifacts() store.ArtifactStore     { return &s.artifacts }
func (s *Store) Files() store.FileStore             { return &s.files }
func (s *Store) Alarms() store.AlarmStore           { return &s.alarms }
func (s *Store) Analytics() store.AnalyticsStore    { return &s.analytics }
func (s *Store) Jobs() store.JobStore               { return &s.jobs }
func (s *Store) Profiles() store.ProfileStore       { return &s.profiles }

// Provisioning keeps enrollment groups and claim tokens (provisioning.go).
func (s *Store) Provisioning() store.ProvisioningStore { return &s.provisioning }
func (s *Store) Audit() store.AuditStore               { return &s.audit }

// Close closes the pool, waiting for connections in use to be returned.
// Every write is committed when its method returns, so there is nothing to
// flush. Calls after the first do nothing.
func (s *Store) Close() error {
	s.closeOnce.Do(s.pool.Close)
	return nil
}

// inTx runs fn in a transaction and commits if fn returns nil.
func (s *Store) inTx(ctx context.Context, fn func(tx pgx.Tx) error) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("postgres: begin: %w", err)
	}
	if err := fn(tx); err != nil {
		tx.Rollback(context.WithoutCancel(ctx))
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return internal("commit", err)
	}
	return nil
}

// querier is what *pgxpool.Pool and pgx.Tx have in common.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

type scanner interface{ Scan(dest ...any) error }

// exists reports whether query (a SELECT 1 ...) returns a row.
func exists(ctx context.Context, q querier, query string, args ...any) (bool, error) {
	var one int
	err := q.QueryRow(ctx, query, args...).Scan(&one)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return false, nil
	case err != nil:
		return false, internal("exists", err)
	}
	return true, nil
}

// internal wraps an unexpected database error; constraint violations get
// a kind (see pgdb.Internal).
func internal(op string, err error) error { return pgdb.Internal("postgres", op, err) }

// affected turns the result of an UPDATE or DELETE by key into
// core.NotFound when it touched no row.
func affected(tag pgconn.CommandTag, err error, op, what, key string) error {
	if err != nil {
		return internal(op, err)
	}
	if tag.RowsAffected() == 0 {
		return core.NotFound(what, key)
	}
	return nil
}

// normLimit applies the List limits: 0 (or less) means 100, at most 1000.
func normLimit(n int) int {
	switch {
	case n <= 0:
		return defaultLimit
	case n > maxLimit:
		return maxLimit
	}
	return n
}

// ms is a time as the store keeps it: UTC, truncated to the millisecond.
func ms(t time.Time) time.Time { return t.UTC().Truncate(time.Millisecond) }

// now returns the current time as the store keeps it.
func now() time.Time { return ms(time.Now()) }

// msPtr converts an optional time for a nullable column.
func msPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	v := ms(*t)
	return &v
}

// utcPtr returns a scanned nullable time in UTC.
func utcPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	v := t.UTC()
	return &v
}

// nullString stores "" as NULL.
func nullString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// nullBytes stores an empty slice as NULL.
func nullBytes(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

// requireName is the one check the store makes on its input: an empty key
// cannot be stored.
func requireName(field, v string) error {
	if v == "" {
		return core.Invalid(field, "%s is required", field)
	}
	return nil
}

// getOne reads the one row a query by key returns: no row is a
// core.NotFound error for kind and key, another error an internal one.
func getOne[T any](row scanner, scan func(scanner) (T, error), kind, key string) (T, error) {
	v, err := scan(row)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		var zero T
		return zero, core.NotFound(kind, key)
	case err != nil:
		var zero T
		return zero, internal("get "+kind, err)
	}
	return v, nil
}

// queryList runs a query and scans every row; an empty, non-nil list when
// there are none.
func queryList[T any](ctx context.Context, q querier, op string, scan func(scanner) (T, error), query string, args ...any) ([]T, error) {
	rows, err := q.Query(ctx, query, args...)
	if err != nil {
		return nil, internal(op, err)
	}
	defer rows.Close()
	list := []T{}
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, internal(op, err)
		}
		list = append(list, v)
	}
	if err := rows.Err(); err != nil {
		return nil, internal(op, err)
	}
	return list, nil
}

// orNow is t, or now when t is zero (a Create without a CreatedAt).
func orNow(t time.Time) time.Time {
	if t.IsZero() {
		return now()
	}
	return ms(t)
}

// createdUpdated gives a new row its times: CreatedAt or now, and
// UpdatedAt or the creation time.
func createdUpdated(created, updated time.Time) (time.Time, time.Time) {
	created = orNow(created)
	if updated.IsZero() {
		return created, created
	}
	return created, ms(updated)
}

// args builds the positional parameters ($1, $2, ...) of a dynamic query.
type args []any

// add appends v and returns its placeholder.
func (a *args) add(v any) string {
	*a = append(*a, v)
	return fmt.Sprintf("$%d", len(*a))
}
