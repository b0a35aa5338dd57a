package cli

import (
	"github.com/spf13/cobra"

	"github.com/moteiot/mote/internal/apiclient"
	"github.com/moteiot/mote/internal/store"
)

func (a *app) groupCmd() *cobra.Command {
	cmd := parentCmd("group", "Manage static groups of things (membership is a thing's groups)", "groups")
	cmd.AddCommand(a.groupCreateCmd(), a.groupListCmd(), a.groupGetCmd(), a.groupUpdateCmd(), a.groupDeleteCmd())
	return cmd
}

func (a *app) groupCreateCmd() *cobra.Command {
	var description string
	cmd := &cobra.Command{
		Use:     "create NAME",
		Short:   "Create a group",
		Example: `  mote group create floor-1 --description "first floor"`,
		Args:    exactArgs("NAME"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			g, err := c.CreateGroup(cmd.Context(), apiclient.NewGroup{Name: args[0], Description: description})
			if err != nil {
				return err
			}
			return a.printGroup(g)
		}),
	}
	cmd.Flags().StringVar(&description, "description", "", "description")
	return cmd
}

func (a *app) groupListCmd() *cobra.Command {
	return listCmd(a, "groups", "List groups (members: mote thing list --group NAME)", (*apiclient.Client).ListGroups,
		[]string{"NAME", "DESCRIPTION", "CREATED"},
		func(g store.Group) []string {
			return []string{g.Name, truncate(g.Description, 60), fmtTime(g.CreatedAt)}
		})
}

func (a *app) groupGetCmd() *cobra.Command {
	return getCmd(a, "Show a group", (*apiclient.Client).GetGroup, a.printGroup)
}

func (a *app) groupUpdateCmd() *cobra.Command {
	var description string
	cmd := &cobra.Command{
		Use:   "update NAME --description TEXT",
		Short: "Change a group's description",
		Args:  exactArgs("NAME"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			g, err := c.UpdateGroup(cmd.Context(), args[0], description)
			if err != nil {
				return err
			}
			return a.printGroup(g)
		}),
	}
	cmd.Flags().StringVar(&description, "description", "", "new description (required)")
	_ = cmd.MarkFlagRequired("description")
	return cmd
}

func (a *app) groupDeleteCmd() *cobra.Command {
	return a.deleteCmd("group", "Delete a group (its members stay, without the membership)", (*apiclient.Client).DeleteGroup)
}

func (a *app) printGroup(g store.Group) error {
	if a.jsonOut() {
		return a.printJSON(g)
	}
	d := newDetails(a.stdout)
	d.add("Name", g.Name)
	d.add("Description", g.Description)
	d.add("Created", fmtTime(g.CreatedAt))
	d.add("Updated", fmtTime(g.UpdatedAt))
	return d.flush()
}
