package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/moteiot/mote/internal/auth"
	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/datadir"
	"github.com/moteiot/mote/internal/pki"
	"github.com/moteiot/mote/internal/registry"
)

func (a *app) adminCmd() *cobra.Command {
	cmd := parentCmd("admin", "Offline administration on the server's data directory")
	cmd.AddCommand(a.adminTokenCmd())
	cmd.AddCommand(a.adminPasswordCmd())
	cmd.AddCommand(a.adminJournalCmd())
	cmd.AddCommand(a.adminMigrateStoreCmd())
	return cmd
}

func (a *app) adminTokenCmd() *cobra.Command {
	var dir, storeURL, name, role, expires string
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Create an API token directly in the data directory (offline)",
		Long: `Create an API token directly in the data directory, without the REST API:
the way to get a first (or a lost) admin token. Run it on the server host as
a user that can read the data directory; the server may be running. Only the
token is printed, so TOKEN=$(mote admin token) works.

The data directory must already hold Mote data: start the server with
"mote serve --data-dir DIR" once first.`,
		Example: `  export MOTE_TOKEN=$(mote admin token --data-dir /var/lib/mote)
  mote admin token --data-dir /var/lib/mote --store postgres://mote:pw@db/mote
  mote admin token --name ci --role operator --expires 90d`,
		Args: exactArgs(),
		RunE: run(func(cmd *cobra.Command, _ []string) error {
			if !cmd.Flags().Changed("data-dir") {
				if v, ok := a.env(EnvDataDir); ok && v != "" {
					dir = v
				}
			}
			if err := a.storeFromEnv(cmd, &storeURL); err != nil {
				return err
			}
			if !registry.ValidRole(role) {
				return usageErrorf("--role must be admin, operator or viewer, not %q", role)
			}
			exp, err := parseExpiry("expires", expires)
			if err != nil {
				return err
			}
			tok, err := adminToken(cmd, dir, storeURL, name, role, exp)
			if err != nil {
				return err
			}
			fmt.Fprintln(a.stdout, tok)
			return nil
		}),
	}
	f := cmd.Flags()
	f.StringVar(&dir, "data-dir", datadir.Default, "the server's data directory (env "+EnvDataDir+")")
	a.storeFlag(cmd, &storeURL)
	f.StringVar(&name, "name", "admin (mote admin token)", "a name for the token, to recognise it in `mote token list`")
	f.StringVar(&role, "role", registry.RoleAdmin, "admin, operator or viewer")
	f.StringVar(&expires, "expires", "", "expiry, an RFC 3339 time or a duration like 720h or 90d (default: never)")
	return cmd
}

// adminToken opens the data directory (never creating one) and creates a
// token in its store: SQLite in dir, or the PostgreSQL database storeURL.
// The hash key is always in dir.
func adminToken(cmd *cobra.Command, dir, storeURL, name, role string, exp *time.Time) (string, error) {
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return "", &core.Error{Kind: core.KindNotFound,
			Msg: fmt.Sprintf("no Mote data in %s; start `mote serve --data-dir %s` once first", dir, dir)}
	}
	if storeURL == "" {
		if _, err := os.Stat(datadir.DB(dir)); errors.Is(err, fs.ErrNotExist) {
			return "", &core.Error{Kind: core.KindNotFound,
				Msg: fmt.Sprintf("no Mote data in %s; start `mote serve --data-dir %s` once first", dir, dir)}
		}
	}
	// A new hash key would make every stored secret and token useless.
	if _, err := os.Stat(datadir.HashKey(dir)); errors.Is(err, fs.ErrNotExist) {
		return "", &core.Error{Kind: core.KindNotFound, Msg: fmt.Sprintf(
			"%s is missing although the store exists; refusing to create a new key (restore it, or start `mote serve --data-dir %s` once)",
			datadir.HashKey(dir), dir)}
	} else if err != nil {
		return "", err
	}

	st, err := openAdminStore(cmd.Context(), dir, storeURL)
	if err != nil {
		return "", err
	}
	defer st.Close()
	h, err := auth.LoadOrCreateHasher(datadir.HashKey(dir))
	if err != nil {
		return "", err
	}
	ca, err := pki.LoadOrCreateCA(datadir.PKI(dir))
	if err != nil {
		return "", err
	}
	reg := registry.New(registry.Options{Store: st, Hasher: h, CA: ca, Logger: slog.New(slog.DiscardHandler)})
	ctx := cmd.Context()
	if err := reg.Bootstrap(ctx); err != nil {
		return "", err
	}
	_, tok, err := reg.CreateToken(ctx, name, role, exp)
	if err != nil {
		return "", err
	}
	if err := st.Close(); err != nil {
		return "", fmt.Errorf("close store: %w", err)
	}
	return tok, nil
}
