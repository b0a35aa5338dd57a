package sqlite

import (
	"embed"

	"github.com/moteiot/mote/internal/sqlitedb"
)

// ErrSchemaTooNew is returned by Open for a telemetry database written by a newer
// Mote whose schema this binary does not know.
var ErrSchemaTooNew = sqlitedb.ErrSchemaTooNew

//go:embed migrations/*.sql
var migrationFiles embed.FS

var schema = sqlitedb.Schema{FS: migrationFiles, Dir: "migrations", Label: "telemetry sqlite"}

// SchemaVersion is the schema version this binary brings a database to.
func SchemaVersion() int { return schema.Version() }
