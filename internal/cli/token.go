package cli

import (
	"github.com/spf13/cobra"
)

func (a *app) tokenCmd() *cobra.Command {
	cmd := parentCmd("token", "Manage API tokens (needs an admin token)", "tokens")
	cmd.AddCommand(a.tokenCreateCmd(), a.tokenListCmd(), a.tokenDeleteCmd())
	return cmd
}

func (a *app) tokenCreateCmd() *cobra.Command {
	var role, expires string
	cmd := &cobra.Command{
		Use:   "create NAME",
		Short: "Create an API token (shown only once)",
		Long: `Create an API token. Roles: viewer may only read; operator may also create,
change and delete things, types, groups, policies and credentials; admin may
also manage API tokens. The token is shown only once.`,
		Example: `  mote token create ci --role operator --expires 90d
  TOKEN=$(mote token create dashboard --role viewer -o json | jq -r .token)`,
		Args: exactArgs("NAME"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			exp, err := parseExpiry("expires", expires)
			if err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			t, err := c.CreateToken(cmd.Context(), args[0], role, exp)
			if err != nil {
				return err
			}
			if a.jsonOut() {
				return a.printJSON(t)
			}
			a.printf("Created API token %s %q (role %s", t.ID, t.Name, t.Role)
			if t.ExpiresAt != nil {
				a.printf(", expires %s", fmtTime(*t.ExpiresAt))
			}
			a.printf(").\nToken: %s\n", t.Secret)
			a.printf("The token is shown only this once: store it now.\n")
			return nil
		}),
	}
	cmd.Flags().StringVar(&role, "role", "", "admin, operator or viewer (default: admin)")
	cmd.Flags().StringVar(&expires, "expires", "", "expiry, an RFC 3339 time or a duration like 720h or 90d (default: never)")
	return cmd
}

func (a *app) tokenListCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List API tokens (never their secrets)",
		Args:    exactArgs(),
		RunE: run(func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			tokens, err := c.ListTokens(cmd.Context())
			if err != nil {
				return err
			}
			if a.jsonOut() {
				return a.printJSON(tokens)
			}
			t := newTable(a.stdout, "ID", "NAME", "ROLE", "CREATED", "EXPIRES", "LAST USED")
			for _, tok := range tokens {
				t.row(tok.ID, tok.Name, tok.Role, fmtTime(tok.CreatedAt), fmtTimePtr(tok.ExpiresAt), fmtTimePtr(tok.LastUsedAt))
			}
			return t.flush()
		}),
	}
}

func (a *app) tokenDeleteCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "delete ID",
		Aliases: []string{"rm"},
		Short:   "Delete an API token (it stops working at once)",
		Args:    exactArgs("ID"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			if err := c.DeleteToken(cmd.Context(), args[0]); err != nil {
				return err
			}
			if !a.jsonOut() {
				a.printf("Deleted API token %s.\n", args[0])
			}
			return nil
		}),
	}
}
