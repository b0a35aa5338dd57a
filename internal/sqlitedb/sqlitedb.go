// Package sqlitedb is what the two embedded SQLite stores (the registry's,
// store/sqlite, and telemetry's, telemetry/sqlite) share: the data source
// name of a database file, and versioned SQL migrations — files
// NNNN_description.sql, each applied in its own transaction and recorded in
// schema_migrations.
package sqlitedb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// DSN returns the driver's data source name for the database file at abs:
// a SQLite URI (so that any file name works) followed by the driver's
// parameters.
func DSN(abs string, params ...string) string {
	p := filepath.ToSlash(abs)
	if !strings.HasPrefix(p, "/") {
		p = "/" + p // Windows: file:/C:/...
	}
	p = strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(p)
	return "file:" + p + "?" + strings.Join(params, "&")
}

// Schema is a store's embedded migrations.
type Schema struct {
	FS    fs.FS  // the embedded files
	Dir   string // their directory in FS
	Label string // names the store in errors ("sqlite", "telemetry sqlite")
}

// Migrations loads the migrations.
func (s Schema) Migrations() ([]Migration, error) { return Load(s.FS, s.Dir, s.Label) }

// Version is the schema version this binary brings a database to (0 if the
// embedded files are broken, which the store's tests catch).
func (s Schema) Version() int {
	ms, err := s.Migrations()
	if err != nil {
		return 0
	}
	return Latest(ms)
}

// Apply applies the pending migrations to db, the database at path.
func (s Schema) Apply(ctx context.Context, db *sql.DB, path string) error {
	ms, err := s.Migrations()
	if err != nil {
		return err
	}
	return Apply(ctx, db, path, s.Label, ms)
}

// ErrSchemaTooNew is returned for a database written by a newer Mote whose
// schema this binary does not know.
var ErrSchemaTooNew = errors.New("database schema is newer than this version of mote supports")

// A migration is one file migrations/NNNN_name.sql, applied in one
// transaction and recorded in schema_migrations.
type Migration struct {
	Version int
	Name    string
	SQL     string
}

// Load reads and checks the migrations in dir of fsys: files named
// NNNN_description.sql whose versions run 1, 2, 3, ... without gaps or
// repeats. label prefixes error messages ("sqlite", "telemetry sqlite").
func Load(fsys fs.FS, dir, label string) ([]Migration, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, err
	}
	var ms []Migration
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".sql") {
			continue
		}
		num, _, ok := strings.Cut(name, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("%s: migration %s: name must be NNNN_description.sql", label, name)
		}
		b, err := fs.ReadFile(fsys, dir+"/"+name)
		if err != nil {
			return nil, err
		}
		ms = append(ms, Migration{Version: v, Name: name, SQL: string(b)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].Version < ms[j].Version })
	for i, m := range ms {
		if m.Version != i+1 {
			return nil, fmt.Errorf("%s: migration %s: expected version %d", label, m.Name, i+1)
		}
	}
	return ms, nil
}

// Latest is the version the migrations bring a database to.
func Latest(ms []Migration) int {
	if len(ms) == 0 {
		return 0
	}
	return ms[len(ms)-1].Version
}

// Apply applies the pending migrations to the database behind db (its
// write pool), each in its own transaction, recording them in
// schema_migrations. It refuses a database whose recorded version is newer
// than the newest migration it knows (ErrSchemaTooNew).
func Apply(ctx context.Context, db *sql.DB, path, label string, ms []Migration) error {
	latest := Latest(ms)
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    INTEGER NOT NULL PRIMARY KEY,
		applied_at INTEGER NOT NULL
	) STRICT`); err != nil {
		return fmt.Errorf("%s: %s: create schema_migrations: %w", label, path, err)
	}
	for {
		done, err := applyOne(ctx, db, path, label, ms, latest)
		if err != nil || done {
			return err
		}
	}
}

// applyOne applies the next pending migration, if any. The version is
// read inside the (immediate) transaction, so two processes opening the
// same file cannot apply a migration twice.
func applyOne(ctx context.Context, db *sql.DB, path, label string, ms []Migration, latest int) (done bool, err error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("%s: %s: begin migration: %w", label, path, err)
	}
	defer tx.Rollback()

	var current int
	if err := tx.QueryRowContext(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&current); err != nil {
		return false, fmt.Errorf("%s: %s: read schema version: %w", label, path, err)
	}
	if current > latest {
		return false, fmt.Errorf("%s: %s: %w (database version %d, newest known %d); upgrade mote",
			label, path, ErrSchemaTooNew, current, latest)
	}
	if current == latest {
		return true, nil
	}
	m := ms[current] // versions are 1..latest without gaps
	if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
		return false, fmt.Errorf("%s: %s: migration %s: %w", label, path, m.Name, err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)`,
		m.Version, time.Now().UnixMilli()); err != nil {
		return false, fmt.Errorf("%s: %s: record migration %s: %w", label, path, m.Name, err)
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("%s: %s: commit migration %s: %w", label, path, m.Name, err)
	}
	return false, nil
}
