package cli

import (
	"github.com/spf13/cobra"

	"github.com/moteiot/mote/internal/apiclient"
	"github.com/moteiot/mote/internal/httpapi/wire"
)

func (a *app) groupCmd() *cobra.Command {
	cmd := parentCmd("group", "Manage groups of things: static (membership is a thing's groups) or dynamic (--query)", "groups")
	cmd.AddCommand(a.groupCreateCmd(), a.groupListCmd(), a.groupGetCmd(), a.groupUpdateCmd(), a.groupDeleteCmd(), a.groupMembersCmd())
	return cmd
}

func (a *app) groupCreateCmd() *cobra.Command {
	var description, query string
	cmd := &cobra.Command{
		Use:   "create NAME",
		Short: "Create a group",
		Example: `  mote group create floor-1 --description "first floor"
  mote group create old-firmware --query "version(shadow.reported.firmware) < '1.5'"`,
		Args: exactArgs("NAME"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			g, err := c.CreateGroup(cmd.Context(), apiclient.NewGroup{Name: args[0], Description: description, Query: query})
			if err != nil {
				return err
			}
			return a.printGroup(g)
		}),
	}
	cmd.Flags().StringVar(&description, "description", "", "description")
	cmd.Flags().StringVarP(&query, "query", "q", "", "a fleet query: the group is dynamic, its members are the things that match it")
	return cmd
}

func (a *app) groupListCmd() *cobra.Command {
	return listCmd(a, "groups", "List groups (members: mote thing list --group NAME)", (*apiclient.Client).ListGroups,
		[]string{"NAME", "DESCRIPTION", "CREATED"},
		func(g wire.Group) []string {
			return []string{g.Name, truncate(g.Description, 60), fmtTime(g.CreatedAt)}
		})
}

func (a *app) groupGetCmd() *cobra.Command {
	return getCmd(a, "Show a group", (*apiclient.Client).GetGroup, a.printGroup)
}

func (a *app) groupUpdateCmd() *cobra.Command {
	var description, query string
	cmd := &cobra.Command{
		Use:   "update NAME (--description TEXT | --query QUERY)",
		Short: "Change a group's description or a dynamic group's query",
		Args:  exactArgs("NAME"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			setD, setQ := cmd.Flags().Changed("description"), cmd.Flags().Changed("query")
			if !setD && !setQ {
				return usageErrorf("give --description or --query")
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			var g wire.Group
			if setD {
				if g, err = c.UpdateGroup(cmd.Context(), args[0], description); err != nil {
					return err
				}
			}
			if setQ {
				if g, err = c.UpdateGroupQuery(cmd.Context(), args[0], query); err != nil {
					return err
				}
			}
			return a.printGroup(g)
		}),
	}
	cmd.Flags().StringVar(&description, "description", "", "new description")
	cmd.Flags().StringVarP(&query, "query", "q", "", "a dynamic group's new fleet query")
	return cmd
}

func (a *app) groupMembersCmd() *cobra.Command {
	var lf listFlags
	cmd := &cobra.Command{
		Use:     "members NAME",
		Short:   "List a group's members (static or dynamic)",
		Example: `  mote group members old-firmware --all`,
		Args:    exactArgs("NAME"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			if err := lf.check(); err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			things, next, err := fetch(cmd, &lf, func(cur string) ([]wire.Thing, string, error) {
				return c.GroupThings(cmd.Context(), args[0], apiclient.ListOptions{Limit: lf.limit, Cursor: cur})
			})
			if err != nil {
				return err
			}
			if a.jsonOut() {
				err = a.printJSON(things)
			} else {
				t := newTable(a.stdout, "NAME", "TYPE", "CONNECTED", "LAST SEEN")
				for _, th := range things {
					t.row(th.Name, th.Type, yesNo(th.Connected), fmtTimePtr(th.LastSeen))
				}
				err = t.flush()
			}
			a.moreHint("members", next)
			return err
		}),
	}
	lf.register(cmd, "members")
	return cmd
}

func (a *app) groupDeleteCmd() *cobra.Command {
	return a.deleteCmd("group", "Delete a group (its members stay, without the membership)", (*apiclient.Client).DeleteGroup)
}

func (a *app) printGroup(g wire.Group) error {
	if a.jsonOut() {
		return a.printJSON(g)
	}
	d := newDetails(a.stdout)
	d.add("Name", g.Name)
	d.add("Description", g.Description)
	if g.Query != "" {
		d.add("Query", g.Query)
	}
	d.add("Created", fmtTime(g.CreatedAt))
	d.add("Updated", fmtTime(g.UpdatedAt))
	return d.flush()
}
