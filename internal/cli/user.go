package cli

import (
	"bufio"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/moteiot/mote/internal/users"
)

// mote user ...: console users over the REST API (docs/users.md).

func (a *app) userCmd() *cobra.Command {
	cmd := parentCmd("user", "Manage console users, their roles and group scopes (needs an admin)", "users")
	cmd.AddCommand(a.userCreateCmd(), a.userListCmd(), a.userGetCmd(), a.userUpdateCmd(), a.userDeleteCmd(), a.userPasswordCmd())
	return cmd
}

// readPassword reads one line of standard input.
func (a *app) readPassword(flag string) (string, error) {
	line, err := bufio.NewReader(a.stdin).ReadString('\n')
	if err != nil && line == "" {
		return "", usageErrorf("%s: no password on standard input", flag)
	}
	return strings.TrimRight(line, "\r\n"), nil
}

func (a *app) userCreateCmd() *cobra.Command {
	var role string
	var groups []string
	var fromStdin bool
	cmd := &cobra.Command{
		Use:   "create NAME",
		Short: "Create a console user",
		Long: `Create a console user with a role (admin, operator or viewer) and, with
--group, a scope: the user then sees and acts on only the things of those
groups (static or dynamic). Without --password-stdin a random password is made
and printed once.`,
		Example: `  mote user create alice --role operator --group plant-3
  echo 'a long passphrase' | mote user create bob --role viewer --password-stdin`,
		Args: exactArgs("NAME"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			pw := users.NewPassword()
			if fromStdin {
				var err error
				if pw, err = a.readPassword("--password-stdin"); err != nil {
					return err
				}
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			u, err := c.CreateUser(cmd.Context(), args[0], pw, role, groups)
			if err != nil {
				return err
			}
			if a.jsonOut() {
				return a.printJSON(u)
			}
			a.printf("Created user %s (role %s", u.Name, u.Role)
			if len(u.Groups) > 0 {
				a.printf(", groups %s", strings.Join(u.Groups, ", "))
			}
			a.printf(").\n")
			if !fromStdin {
				a.printf("Password: %s\n", pw)
			}
			return nil
		}),
	}
	f := cmd.Flags()
	f.StringVar(&role, "role", "viewer", "admin, operator or viewer")
	f.StringSliceVar(&groups, "group", nil, "scope the user to this group (repeatable)")
	f.BoolVar(&fromStdin, "password-stdin", false, "read the password from the first line of standard input instead of making one")
	return cmd
}

func (a *app) userListCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List console users",
		Args:    exactArgs(),
		RunE: run(func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			list, err := c.ListUsers(cmd.Context())
			if err != nil {
				return err
			}
			if a.jsonOut() {
				return a.printJSON(list)
			}
			t := newTable(a.stdout, "NAME", "ROLE", "GROUPS", "CREATED", "LAST LOGIN")
			for _, u := range list {
				t.row(u.Name, u.Role, strings.Join(u.Groups, ","), fmtTime(u.CreatedAt), fmtTimePtr(u.LastLoginAt))
			}
			return t.flush()
		}),
	}
}

func (a *app) userGetCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "get NAME",
		Short: "Show a console user",
		Args:  exactArgs("NAME"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			u, err := c.GetUser(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if a.jsonOut() {
				return a.printJSON(u)
			}
			a.printf("Name:       %s\nRole:       %s\nGroups:     %s\nCreated:    %s\nLast login: %s\n",
				u.Name, u.Role, orAll(u.Groups), fmtTime(u.CreatedAt), fmtTimePtr(u.LastLoginAt))
			return nil
		}),
	}
}

func orAll(groups []string) string {
	if len(groups) == 0 {
		return "(every thing)"
	}
	return strings.Join(groups, ", ")
}

func (a *app) userUpdateCmd() *cobra.Command {
	var role string
	var groups []string
	var noGroups bool
	cmd := &cobra.Command{
		Use:   "update NAME",
		Short: "Change a user's role or group scope",
		Long: `Change a console user's role and/or group scope. --group replaces the
scope; --no-groups removes it (the user then sees every thing). The last admin
cannot be demoted.`,
		Example: `  mote user update alice --role viewer
  mote user update alice --group plant-3 --group plant-4
  mote user update alice --no-groups`,
		Args: exactArgs("NAME"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			var g *[]string
			switch {
			case noGroups && len(groups) > 0:
				return usageErrorf("--group and --no-groups exclude each other")
			case noGroups:
				g = &[]string{}
			case len(groups) > 0:
				g = &groups
			case role == "":
				return usageErrorf("nothing to change: give --role, --group or --no-groups")
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			u, err := c.UpdateUser(cmd.Context(), args[0], role, g)
			if err != nil {
				return err
			}
			if a.jsonOut() {
				return a.printJSON(u)
			}
			a.printf("User %s: role %s, groups %s.\n", u.Name, u.Role, orAll(u.Groups))
			return nil
		}),
	}
	f := cmd.Flags()
	f.StringVar(&role, "role", "", "admin, operator or viewer")
	f.StringSliceVar(&groups, "group", nil, "scope the user to this group (repeatable; replaces the scope)")
	f.BoolVar(&noGroups, "no-groups", false, "remove the user's group scope")
	return cmd
}

func (a *app) userDeleteCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "delete NAME",
		Aliases: []string{"rm"},
		Short:   "Delete a user with its sessions and API tokens",
		Args:    exactArgs("NAME"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			if err := c.DeleteUser(cmd.Context(), args[0]); err != nil {
				return err
			}
			if !a.jsonOut() {
				a.printf("Deleted user %s (its sessions and API tokens with it).\n", args[0])
			}
			return nil
		}),
	}
}

func (a *app) userPasswordCmd() *cobra.Command {
	var old bool
	cmd := &cobra.Command{
		Use:   "password NAME",
		Short: "Set a user's password (an admin), or change your own (--old)",
		Long: `Set a console user's password over the API. Standard input holds the new
password on its first line; with --old, the current password on the first
line and the new one on the second (changing your own). The user's sessions
end. (Offline, without the API: mote admin password.)`,
		Example: `  echo 'a long passphrase' | mote user password alice
  printf '%s\n%s\n' "$OLD" "$NEW" | mote user password alice --old`,
		Args: exactArgs("NAME"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			rd := bufio.NewReader(a.stdin)
			line := func() (string, error) {
				l, err := rd.ReadString('\n')
				if err != nil && l == "" {
					return "", usageErrorf("not enough lines on standard input")
				}
				return strings.TrimRight(l, "\r\n"), nil
			}
			var oldPW string
			if old {
				var err error
				if oldPW, err = line(); err != nil {
					return err
				}
			}
			pw, err := line()
			if err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			if err := c.SetUserPassword(cmd.Context(), args[0], oldPW, pw); err != nil {
				return err
			}
			if !a.jsonOut() {
				fmt.Fprintf(a.stderr, "password of %s set; its sessions ended\n", args[0])
			}
			return nil
		}),
	}
	cmd.Flags().BoolVar(&old, "old", false, "changing your own password: the first line is the current one")
	return cmd
}
