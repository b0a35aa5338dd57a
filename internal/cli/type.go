package cli

import (
	"github.com/spf13/cobra"

	"github.com/moteiot/mote/internal/apiclient"
	"github.com/moteiot/mote/internal/store"
)

func (a *app) typeCmd() *cobra.Command {
	cmd := parentCmd("type", "Manage thing types (policies attached to a type apply to all its things)", "types")
	cmd.AddCommand(a.typeCreateCmd(), a.typeListCmd(), a.typeGetCmd(), a.typeUpdateCmd(), a.typeDeleteCmd())
	return cmd
}

func (a *app) typeCreateCmd() *cobra.Command {
	var description string
	var policies []string
	cmd := &cobra.Command{
		Use:     "create NAME",
		Short:   "Create a thing type",
		Example: `  mote type create sensor --description "temperature sensors" --policy telemetry-only`,
		Args:    exactArgs("NAME"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			t, err := c.CreateType(cmd.Context(), apiclient.NewType{Name: args[0], Description: description, Policies: policies})
			if err != nil {
				return err
			}
			return a.printType(t)
		}),
	}
	cmd.Flags().StringVar(&description, "description", "", "description")
	cmd.Flags().StringArrayVar(&policies, "policy", nil, "policy to attach to the type (repeatable)")
	return cmd
}

func (a *app) typeListCmd() *cobra.Command {
	return listCmd(a, "types", "List thing types", (*apiclient.Client).ListTypes,
		[]string{"NAME", "POLICIES", "DESCRIPTION"},
		func(t store.ThingType) []string {
			return []string{t.Name, fmtList(t.Policies), truncate(t.Description, 60)}
		})
}

func (a *app) typeGetCmd() *cobra.Command {
	return getCmd(a, "Show a thing type", (*apiclient.Client).GetType, a.printType)
}

func (a *app) typeUpdateCmd() *cobra.Command {
	var description string
	var policies []string
	cmd := &cobra.Command{
		Use:   "update NAME [--description TEXT] [--policies P1,P2]",
		Short: "Change a thing type's description and/or policies",
		Long: `Change a thing type. --policies replaces the whole list (--policies ""
detaches all); see also "mote policy attach --type".`,
		Args: exactArgs("NAME"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			var p apiclient.TypePatch
			if cmd.Flags().Changed("description") {
				p.Description = &description
			}
			if cmd.Flags().Changed("policies") {
				p.Policies = policies
				if p.Policies == nil {
					p.Policies = []string{}
				}
			}
			if p.Description == nil && p.Policies == nil {
				return usageErrorf("nothing to update: give --description and/or --policies")
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			t, err := c.UpdateType(cmd.Context(), args[0], p)
			if err != nil {
				return err
			}
			return a.printType(t)
		}),
	}
	cmd.Flags().StringVar(&description, "description", "", "new description")
	cmd.Flags().StringSliceVar(&policies, "policies", nil, "policies of the type, comma-separated (replaces all)")
	return cmd
}

func (a *app) typeDeleteCmd() *cobra.Command {
	return a.deleteCmd("type", "Delete a thing type (refused while things use it)", (*apiclient.Client).DeleteType)
}

func (a *app) printType(t store.ThingType) error {
	if a.jsonOut() {
		return a.printJSON(t)
	}
	d := newDetails(a.stdout)
	d.add("Name", t.Name)
	d.add("Description", t.Description)
	d.add("Policies", fmtList(t.Policies))
	d.add("Created", fmtTime(t.CreatedAt))
	d.add("Updated", fmtTime(t.UpdatedAt))
	return d.flush()
}
