package cli

import (
	"bufio"
	"fmt"
	"log/slog"
	"strings"

	"github.com/spf13/cobra"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/datadir"
	"github.com/moteiot/mote/internal/users"
)

func (a *app) adminPasswordCmd() *cobra.Command {
	var dir, storeURL, user string
	var fromStdin bool
	cmd := &cobra.Command{
		Use:   "password",
		Short: "Set a console user's password directly in the data directory (offline)",
		Long: `Set the password of a web console user directly in the data directory,
without the REST API: the way back in when the admin password is lost. The
user's sessions end. Without --password-stdin a random password is made and
printed (only the password, so PW=$(mote admin password) works). Setting the
password of "admin" creates that user (role admin) if it was deleted.

The data directory must already hold Mote data: start the server with
"mote serve --data-dir DIR" once first. The server may be running.`,
		Example: `  mote admin password --data-dir /var/lib/mote
  echo 'a long passphrase' | mote admin password --user alice --password-stdin`,
		Args: exactArgs(),
		RunE: run(func(cmd *cobra.Command, _ []string) error {
			if !cmd.Flags().Changed("data-dir") {
				if v, ok := a.env(EnvDataDir); ok && v != "" {
					dir = v
				}
			}
			pw := users.NewPassword()
			if fromStdin {
				line, err := bufio.NewReader(a.stdin).ReadString('\n')
				if err != nil && line == "" {
					return usageErrorf("--password-stdin: no password on standard input")
				}
				pw = strings.TrimRight(line, "\r\n")
				if err := users.ValidPassword(pw); err != nil {
					return usageError{err}
				}
			}
			if err := a.storeFromEnv(cmd, &storeURL); err != nil {
				return err
			}
			if err := adminPassword(cmd, dir, storeURL, user, pw); err != nil {
				return err
			}
			if !fromStdin {
				fmt.Fprintln(a.stdout, pw)
			} else {
				fmt.Fprintf(a.stderr, "password of %s set\n", user)
			}
			return nil
		}),
	}
	f := cmd.Flags()
	f.StringVar(&dir, "data-dir", datadir.Default, "the server's data directory (env "+EnvDataDir+")")
	a.storeFlag(cmd, &storeURL)
	f.StringVar(&user, "user", users.AdminUser, "the console user")
	f.BoolVar(&fromStdin, "password-stdin", false, "read the new password from the first line of standard input instead of making one")
	return cmd
}

// adminPassword opens the data directory's store (never creating one; the
// PostgreSQL database storeURL if given) and sets a user's password in it.
func adminPassword(cmd *cobra.Command, dir, storeURL, user, pw string) error {
	st, err := openAdminStore(cmd.Context(), dir, storeURL)
	if err != nil {
		return err
	}
	defer st.Close()
	svc := users.New(users.Options{Store: st.Users(), Logger: slog.New(slog.DiscardHandler)})
	if _, err := svc.SetPassword(cmd.Context(), user, pw); err != nil {
		if core.IsNotFound(err) {
			return &core.Error{Kind: core.KindNotFound, Msg: fmt.Sprintf("no console user %q", user)}
		}
		return err
	}
	if err := st.Close(); err != nil {
		return fmt.Errorf("close store: %w", err)
	}
	return nil
}
