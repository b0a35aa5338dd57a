// Package sqlite is the embedded SQLite backend of store.Store, the default
// storage of a single Mote node. It uses the pure-Go driver
// modernc.org/sqlite (no cgo).
//
// A Store holds two connection pools on the same database file: one
// connection for writes (SQLite admits one writer at a time, so writers
// queue in Go instead of meeting SQLITE_BUSY) and a few query-only
// connections for reads. The database runs in WAL mode, so reads see the
// last committed state and never wait behind a write transaction.
// synchronous=FULL makes every acknowledged commit durable across a crash
// or power loss.
//
// Times are stored as Unix milliseconds and returned as UTC time.Time
// values truncated to the millisecond.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/sqlitedb"
	"github.com/moteiot/mote/internal/store"
)

var _ store.Store = (*Store)(nil)

// readConns is the size of the read pool.
const readConns = 4

// Limits of the List methods.
const (
	defaultLimit = 100
	maxLimit     = 1000
)

// Store is a store.Store on one SQLite database file. It is safe for
// concurrent use.
type Store struct {
	path string
	w    *sql.DB // exactly one connection: all writes
	r    *sql.DB // query-only connections: all reads outside write transactions

	// Prepared statements of the device connect path, on the read pool.
	getThing        *sql.Stmt
	findSecret      *sql.Stmt
	findCertificate *sql.Stmt
	getShadow       *sql.Stmt // read pool
	putShadow       *sql.Stmt // write pool, used inside transactions

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
	closeErr  error
}

// Open opens the database at path, creating it if it does not exist, and
// brings its schema up to date. It refuses a database whose schema is newer
// than this binary knows (ErrSchemaTooNew).
func Open(path string) (*Store, error) {
	if path == "" {
		return nil, errors.New("sqlite: empty database path")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	s := &Store{path: abs}

	s.w, err = sql.Open("sqlite", sqlitedb.DSN(abs,
		"_pragma=busy_timeout(10000)",
		"_pragma=journal_mode(WAL)",
		"_pragma=foreign_keys(1)",
		"_pragma=synchronous(FULL)",
		"_txlock=immediate", // take the write lock at BEGIN: no lock upgrades that could fail
	))
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", abs, err)
	}
	s.w.SetMaxOpenConns(1)
	s.w.SetMaxIdleConns(1)
	s.w.SetConnMaxLifetime(0)
	s.w.SetConnMaxIdleTime(0)

	ctx := context.Background()
	if err := s.w.PingContext(ctx); err != nil {
		s.w.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", abs, err)
	}
	if err := schema.Apply(ctx, s.w, abs); err != nil {
		s.w.Close()
		return nil, err
	}

	s.r, err = sql.Open("sqlite", sqlitedb.DSN(abs,
		"_pragma=busy_timeout(10000)",
		"_pragma=foreign_keys(1)",
		"_pragma=query_only(1)",
	))
	if err != nil {
		s.w.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", abs, err)
	}
	s.r.SetMaxOpenConns(readConns)
	s.r.SetMaxIdleConns(readConns)
	s.r.SetConnMaxLifetime(0)
	s.r.SetConnMaxIdleTime(0)

	if err := s.prepare(ctx); err != nil {
		s.closeAll()
		return nil, err
	}

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

func (s *Store) prepare(ctx context.Context) error {
	var err error
	if s.getThing, err = s.r.PrepareContext(ctx, thingSelect+` WHERE t.name = ?`); err != nil {
		return fmt.Errorf("sqlite: prepare: %w", err)
	}
	if s.findSecret, err = s.r.PrepareContext(ctx, credentialSelect+` WHERE secret_hash = ?`); err != nil {
		return fmt.Errorf("sqlite: prepare: %w", err)
	}
	if s.findCertificate, err = s.r.PrepareContext(ctx, credentialSelect+` WHERE fingerprint = ?`); err != nil {
		return fmt.Errorf("sqlite: prepare: %w", err)
	}
	if s.getShadow, err = s.r.PrepareContext(ctx, `SELECT version, document, updated_at FROM shadows WHERE thing = ? AND name = ?`); err != nil {
		return fmt.Errorf("sqlite: prepare: %w", err)
	}
	if s.putShadow, err = s.w.PrepareContext(ctx, shadowUpsert); err != nil {
		return fmt.Errorf("sqlite: prepare: %w", err)
	}
	return nil
}

// Path returns the absolute path of the database file.
func (s *Store) Path() string { return s.path }

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

// Close checkpoints the write-ahead log into the database file and closes
// both pools. Calls after the first return the first call's result.
func (s *Store) Close() error {
	s.closeOnce.Do(func() { s.closeErr = s.closeAll() })
	return s.closeErr
}

func (s *Store) closeAll() error {
	var errs []error
	for _, st := range []*sql.Stmt{s.getThing, s.findSecret, s.findCertificate, s.getShadow, s.putShadow} {
		if st != nil {
			errs = append(errs, st.Close())
		}
	}
	// Close the readers first so that the checkpoint can move the whole
	// log into the database and truncate it.
	if s.r != nil {
		errs = append(errs, s.r.Close())
	}
	errs = append(errs, s.checkpoint())
	errs = append(errs, s.w.Close())
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("sqlite: close: %w", err)
	}
	return nil
}

// checkpoint moves the write-ahead log into the database file and
// truncates the log. If another process is reading the database, it gives
// up after a second, leaving the rest of the log for later (it is not lost).
func (s *Store) checkpoint() error {
	ctx := context.Background()
	conn, err := s.w.Conn(ctx)
	if err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `PRAGMA busy_timeout = 1000`); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	var busy, logFrames, checkpointed int
	if err := conn.QueryRowContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`).Scan(&busy, &logFrames, &checkpointed); err != nil &&
		!isBusy(err) {
		return fmt.Errorf("checkpoint: %w", err)
	}
	return nil
}

// isBusy reports whether err is SQLITE_BUSY or SQLITE_LOCKED.
func isBusy(err error) bool {
	var e *sqlite.Error
	if errors.As(err, &e) {
		return e.Code()&0xff == sqlite3.SQLITE_BUSY || e.Code()&0xff == sqlite3.SQLITE_LOCKED
	}
	return false
}

// inTx runs fn in a write transaction and commits if fn returns nil.
func (s *Store) inTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: begin: %w", err)
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: commit: %w", err)
	}
	return nil
}

// querier is what *sql.DB and *sql.Tx have in common.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// exists reports whether query (a SELECT 1 ...) returns a row.
func exists(ctx context.Context, q querier, query string, args ...any) (bool, error) {
	var one int
	err := q.QueryRowContext(ctx, query, args...).Scan(&one)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("sqlite: %w", err)
	}
	return true, nil
}

// isUnique reports whether err is a violation of a PRIMARY KEY or UNIQUE
// constraint. The methods check for duplicates explicitly to give precise
// messages; this is the fallback should a duplicate slip through anyway.
func isUnique(err error) bool {
	var e *sqlite.Error
	if errors.As(err, &e) {
		return e.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE || e.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
	}
	return false
}

// internal wraps an unexpected database error.
func internal(op string, err error) error {
	if isUnique(err) {
		return &core.Error{Kind: core.KindConflict, Msg: op + ": duplicate", Err: err}
	}
	return fmt.Errorf("sqlite: %s: %w", op, err)
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

// now returns the current time as the store keeps it.
func now() time.Time { return time.Now().UTC().Truncate(time.Millisecond) }

// toMS converts a time to the stored Unix milliseconds.
func toMS(t time.Time) int64 { return t.UnixMilli() }

// fromMS converts stored Unix milliseconds to a UTC time.
func fromMS(ms int64) time.Time { return time.UnixMilli(ms).UTC() }

// nullMS converts an optional time to a nullable column value.
func nullMS(t *time.Time) any {
	if t == nil {
		return nil
	}
	return t.UnixMilli()
}

// ptrMS converts a nullable column to an optional time.
func ptrMS(v sql.NullInt64) *time.Time {
	if !v.Valid {
		return nil
	}
	t := fromMS(v.Int64)
	return &t
}

// nullString stores "" as NULL.
func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// nullBytes stores an empty slice as NULL.
func nullBytes(b []byte) any {
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
	case errors.Is(err, sql.ErrNoRows):
		var zero T
		return zero, core.NotFound(kind, key)
	case err != nil:
		var zero T
		return zero, internal("get "+kind, err)
	}
	return v, nil
}

// orNow is t, or now when t is zero (a Create without a CreatedAt).
func orNow(t time.Time) time.Time {
	if t.IsZero() {
		return now()
	}
	return t
}

// createdUpdated gives a new row its times: CreatedAt or now, and
// UpdatedAt or the creation time.
func createdUpdated(created, updated time.Time) (time.Time, time.Time) {
	created = orNow(created)
	if updated.IsZero() {
		updated = created
	}
	return created, updated
}
