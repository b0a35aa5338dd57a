package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"
	"time"
)

// ErrSchemaTooNew is returned by Open for a telemetry database written by a newer
// Mote whose schema this binary does not know.
var ErrSchemaTooNew = errors.New("telemetry database schema is newer than this version of mote supports")

//go:embed migrations/*.sql
var migrationFiles embed.FS

// A migration is one file migrations/NNNN_name.sql, applied in one
// transaction and recorded in schema_migrations.
type migration struct {
	version int
	name    string
	sql     string
}

// loadMigrations reads and checks the embedded migrations: versions must
// run 1, 2, 3, ... without gaps or repeats.
func loadMigrations() ([]migration, error) {
	entries, err := fs.ReadDir(migrationFiles, "migrations")
	if err != nil {
		return nil, err
	}
	var ms []migration
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".sql") {
			continue
		}
		num, _, ok := strings.Cut(name, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("telemetry sqlite: migration %s: name must be NNNN_description.sql", name)
		}
		b, err := migrationFiles.ReadFile("migrations/" + name)
		if err != nil {
			return nil, err
		}
		ms = append(ms, migration{version: v, name: name, sql: string(b)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].version < ms[j].version })
	for i, m := range ms {
		if m.version != i+1 {
			return nil, fmt.Errorf("telemetry sqlite: migration %s: expected version %d", m.name, i+1)
		}
	}
	return ms, nil
}

// SchemaVersion is the schema version this binary brings a database to.
func SchemaVersion() int {
	ms, err := loadMigrations()
	if err != nil || len(ms) == 0 {
		return 0
	}
	return ms[len(ms)-1].version
}

// migrate applies the pending migrations to the database behind db (the
// write pool), each in its own transaction. It refuses a database whose
// recorded version is newer than the newest migration it knows.
func migrate(ctx context.Context, db *sql.DB, path string) error {
	ms, err := loadMigrations()
	if err != nil {
		return err
	}
	latest := 0
	if len(ms) > 0 {
		latest = ms[len(ms)-1].version
	}
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    INTEGER NOT NULL PRIMARY KEY,
		applied_at INTEGER NOT NULL
	) STRICT`); err != nil {
		return fmt.Errorf("telemetry sqlite: %s: create schema_migrations: %w", path, err)
	}
	for {
		done, err := migrateOne(ctx, db, path, ms, latest)
		if err != nil || done {
			return err
		}
	}
}

// migrateOne applies the next pending migration, if any. The version is
// read inside the (immediate) transaction, so two processes opening the
// same file cannot apply a migration twice.
func migrateOne(ctx context.Context, db *sql.DB, path string, ms []migration, latest int) (done bool, err error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("telemetry sqlite: %s: begin migration: %w", path, err)
	}
	defer tx.Rollback()

	var current int
	if err := tx.QueryRowContext(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&current); err != nil {
		return false, fmt.Errorf("telemetry sqlite: %s: read schema version: %w", path, err)
	}
	if current > latest {
		return false, fmt.Errorf("telemetry sqlite: %s: %w (database version %d, newest known %d); upgrade mote",
			path, ErrSchemaTooNew, current, latest)
	}
	if current == latest {
		return true, nil
	}
	m := ms[current] // versions are 1..latest without gaps
	if _, err := tx.ExecContext(ctx, m.sql); err != nil {
		return false, fmt.Errorf("telemetry sqlite: %s: migration %s: %w", path, m.name, err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)`,
		m.version, time.Now().UnixMilli()); err != nil {
		return false, fmt.Errorf("telemetry sqlite: %s: record migration %s: %w", path, m.name, err)
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("telemetry sqlite: %s: commit migration %s: %w", path, m.name, err)
	}
	return false, nil
}
