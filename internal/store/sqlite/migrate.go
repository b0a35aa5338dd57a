package sqlite

import (
	"context"
	"database/sql"
	"embed"

	"github.com/moteiot/mote/internal/sqlitemigrate"
)

// ErrSchemaTooNew is returned by Open for a database written by a newer
// Mote whose schema this binary does not know.
var ErrSchemaTooNew = sqlitemigrate.ErrSchemaTooNew

//go:embed migrations/*.sql
var migrationFiles embed.FS

func loadMigrations() ([]sqlitemigrate.Migration, error) {
	return sqlitemigrate.Load(migrationFiles, "migrations", "sqlite")
}

// SchemaVersion is the schema version this binary brings a database to.
func SchemaVersion() int {
	ms, err := loadMigrations()
	if err != nil {
		return 0
	}
	return sqlitemigrate.Latest(ms)
}

// migrate applies the pending migrations (see package sqlitemigrate).
func migrate(ctx context.Context, db *sql.DB, path string) error {
	ms, err := loadMigrations()
	if err != nil {
		return err
	}
	return sqlitemigrate.Apply(ctx, db, path, "sqlite", ms)
}
