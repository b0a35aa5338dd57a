package cli

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/spf13/cobra"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/datadir"
	"github.com/moteiot/mote/internal/pgdb"
	"github.com/moteiot/mote/internal/store"
	storepostgres "github.com/moteiot/mote/internal/store/postgres"
	"github.com/moteiot/mote/internal/store/sqlite"
	"github.com/moteiot/mote/internal/storemigrate"
)

// EnvStore is the environment variable of --store, as for `mote serve`.
const EnvStore = "MOTE_STORE"

// storeFlag adds --store to an admin command: the server's store, "" for
// SQLite in the data directory.
func (a *app) storeFlag(cmd *cobra.Command, p *string) {
	cmd.Flags().StringVar(p, "store", "", `the server's --store: "" for SQLite in the data directory, or its PostgreSQL URL (env `+EnvStore+`)`)
}

// storeFromEnv applies MOTE_STORE when --store was not given.
func (a *app) storeFromEnv(cmd *cobra.Command, p *string) error {
	if !cmd.Flags().Changed("store") {
		if v, ok := a.env(EnvStore); ok {
			*p = v
		}
	}
	if *p != "" {
		if err := pgdb.CheckURL(*p); err != nil {
			return usageErrorf("--store: %v", err)
		}
	}
	return nil
}

// openAdminStore opens the store of an existing installation, never
// creating one: SQLite in dir, or the PostgreSQL database at storeURL
// (whose schema must already be there: the server has run on it).
func openAdminStore(ctx context.Context, dir, storeURL string) (store.Store, error) {
	noData := &core.Error{Kind: core.KindNotFound,
		Msg: fmt.Sprintf("no Mote data in %s; start `mote serve --data-dir %s` once first", dir, dir)}
	paths := []string{dir, datadir.DB(dir)}
	if storeURL != "" {
		paths = paths[:1]
	}
	for _, p := range paths {
		if _, err := os.Stat(p); errors.Is(err, fs.ErrNotExist) {
			return nil, noData
		} else if err != nil {
			return nil, err
		}
	}
	if storeURL == "" {
		return sqlite.Open(datadir.DB(dir))
	}
	// Refuse a database the server never ran on, as for an empty
	// directory: opening the store would create the schema.
	pool, err := pgdb.OpenPool(ctx, storeURL, 1)
	if err != nil {
		return nil, err
	}
	var migrated bool
	err = pool.QueryRow(ctx, `SELECT to_regclass('schema_migrations') IS NOT NULL`).Scan(&migrated)
	pool.Close()
	if err != nil {
		return nil, fmt.Errorf("check %s: %w", pgdb.Redact(storeURL), err)
	}
	if !migrated {
		return nil, &core.Error{Kind: core.KindNotFound, Msg: fmt.Sprintf(
			"no Mote data in %s; start `mote serve --store URL --data-dir %s` once first", pgdb.Redact(storeURL), dir)}
	}
	return storepostgres.Open(ctx, storeURL, storepostgres.Options{MaxConns: 2})
}

func (a *app) adminMigrateStoreCmd() *cobra.Command {
	var from, to string
	cmd := &cobra.Command{
		Use:   "migrate-store",
		Short: "Copy an embedded (SQLite) installation into PostgreSQL, verified",
		Long: `Copy the registry, shadows, rules, commands, console users, retained
messages, persistent sessions and telemetry of a data directory's SQLite
databases into an empty PostgreSQL database, then verify every table by its
row count and a SHA-256 of its rows on both sides. Stop the server first.
Afterwards run "mote serve --data-dir DATA_DIR --store URL": the hash key,
the CA and the ingest journal stay in the data directory.`,
		Example: `  mote admin migrate-store --from /var/lib/mote --to postgres://mote:pw@db/mote`,
		Args:    exactArgs(),
		RunE: run(func(cmd *cobra.Command, _ []string) error {
			if from == "" || to == "" {
				return usageErrorf("--from and --to are required")
			}
			if err := pgdb.CheckURL(to); err != nil {
				return usageErrorf("--to: %v", err)
			}
			if _, err := os.Stat(datadir.DB(from)); err != nil {
				return &core.Error{Kind: core.KindNotFound, Msg: fmt.Sprintf("no Mote data in %s (%s is missing)", from, datadir.DB(from))}
			}
			rep, err := storemigrate.Copy(cmd.Context(), from, to, a.stderr)
			if err != nil {
				return err
			}
			for _, t := range rep.Tables {
				fmt.Fprintf(a.stdout, "%-22s %10d  sha256:%s\n", t.Table, t.Rows, t.Checksum)
			}
			fmt.Fprintf(a.stdout, "verified; telemetry WAL position %d\n", rep.LastSeq)
			return nil
		}),
	}
	f := cmd.Flags()
	f.StringVar(&from, "from", "", "the data directory of the embedded installation")
	f.StringVar(&to, "to", "", "the PostgreSQL URL of an empty database")
	return cmd
}
