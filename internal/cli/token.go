package cli

import (
	"strings"

	"github.com/spf13/cobra"

	"github.com/moteiot/mote/internal/apiclient"
)

func (a *app) tokenCmd() *cobra.Command {
	cmd := parentCmd("token", "Manage API tokens (your own; an admin: everyone's)", "tokens")
	cmd.AddCommand(a.tokenCreateCmd(), a.tokenListCmd(), a.tokenDeleteCmd())
	return cmd
}

func (a *app) tokenCreateCmd() *cobra.Command {
	var role, expires, user string
	var groups []string
	var rateLimit int
	cmd := &cobra.Command{
		Use:   "create NAME",
		Short: "Create an API token (shown only once)",
		Long: `Create an API token. Roles: viewer may only read; operator may also create,
change and delete things, types, groups, policies and credentials; admin may
also manage users and every token. A token belongs to a user (yours, or with
--user, as an admin, another's): its role is no higher and its --group scope no
wider than that user's. --rate-limit bounds its requests per minute (429 with
Retry-After beyond). The token is shown only once.`,
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
			tr := apiclient.TokenRequest{Name: args[0], Role: role, Groups: groups, ExpiresAt: exp, RateLimit: rateLimit}
			if cmd.Flags().Changed("user") {
				tr.User = &user
			}
			t, err := c.CreateTokenFor(cmd.Context(), tr)
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
	cmd.Flags().StringVar(&role, "role", "", "admin, operator or viewer (default: the owner's role)")
	cmd.Flags().StringVar(&user, "user", "", "the owner (an admin only; default: you)")
	cmd.Flags().StringSliceVar(&groups, "group", nil, "scope the token to this group (repeatable)")
	cmd.Flags().IntVar(&rateLimit, "rate-limit", 0, "requests per minute (0: none)")
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
			t := newTable(a.stdout, "ID", "NAME", "ROLE", "USER", "GROUPS", "CREATED", "EXPIRES", "LAST USED")
			for _, tok := range tokens {
				t.row(tok.ID, tok.Name, tok.Role, tok.User, strings.Join(tok.Groups, ","), fmtTime(tok.CreatedAt), fmtTimePtr(tok.ExpiresAt), fmtTimePtr(tok.LastUsedAt))
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
