package cli

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/moteiot/mote/internal/apiclient"
	"github.com/moteiot/mote/internal/httpapi/wire"
)

func (a *app) typeCmd() *cobra.Command {
	cmd := parentCmd("type", "Manage thing types (policies attached to a type apply to all its things)", "types")
	cmd.AddCommand(a.typeCreateCmd(), a.typeListCmd(), a.typeGetCmd(), a.typeUpdateCmd(), a.typeDeleteCmd())
	return cmd
}

func (a *app) typeCreateCmd() *cobra.Command {
	var description, modelFile string
	var policies []string
	cmd := &cobra.Command{
		Use:     "create NAME",
		Short:   "Create a thing type",
		Example: `  mote type create sensor --description "temperature sensors" --policy telemetry-only --model sensor-model.json`,
		Args:    exactArgs("NAME"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			model, err := readModel(modelFile)
			if err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			t, err := c.CreateType(cmd.Context(), apiclient.NewType{Name: args[0], Description: description, Policies: policies, Model: model})
			if err != nil {
				return err
			}
			return a.printType(t)
		}),
	}
	cmd.Flags().StringVar(&description, "description", "", "description")
	cmd.Flags().StringArrayVar(&policies, "policy", nil, "policy to attach to the type (repeatable)")
	cmd.Flags().StringVar(&modelFile, "model", "", "file with the type's device model (JSON; docs/device-models.md)")
	return cmd
}

// readModel reads a device model file ("" none); the server checks it.
func readModel(file string) (json.RawMessage, error) {
	if file == "" {
		return nil, nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, usageErrorf("--model: %v", err)
	}
	if !json.Valid(b) {
		return nil, usageErrorf("--model: %s is not JSON", file)
	}
	return b, nil
}

func (a *app) typeListCmd() *cobra.Command {
	return listCmd(a, "types", "List thing types", (*apiclient.Client).ListTypes,
		[]string{"NAME", "POLICIES", "DESCRIPTION"},
		func(t wire.ThingType) []string {
			return []string{t.Name, fmtList(t.Policies), truncate(t.Description, 60)}
		})
}

func (a *app) typeGetCmd() *cobra.Command {
	return getCmd(a, "Show a thing type", (*apiclient.Client).GetType, a.printType)
}

func (a *app) typeUpdateCmd() *cobra.Command {
	var description, modelFile string
	var policies []string
	var removeModel bool
	cmd := &cobra.Command{
		Use:   "update NAME [--description TEXT] [--policies P1,P2] [--model FILE | --remove-model]",
		Short: "Change a thing type's description, policies and/or device model",
		Long: `Change a thing type. --policies replaces the whole list (--policies ""
detaches all); see also "mote policy attach --type". --model replaces the
device model, --remove-model removes it.`,
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
			var err error
			if p.Model, err = readModel(modelFile); err != nil {
				return err
			}
			if p.Model != nil && removeModel {
				return usageErrorf("give --model or --remove-model, not both")
			}
			p.RemoveModel = removeModel
			if p.Description == nil && p.Policies == nil && p.Model == nil && !p.RemoveModel {
				return usageErrorf("nothing to update: give --description, --policies, --model or --remove-model")
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
	cmd.Flags().StringVar(&modelFile, "model", "", "file with the new device model (JSON; docs/device-models.md)")
	cmd.Flags().BoolVar(&removeModel, "remove-model", false, "remove the type's device model")
	return cmd
}

func (a *app) typeDeleteCmd() *cobra.Command {
	return a.deleteCmd("type", "Delete a thing type (refused while things use it)", (*apiclient.Client).DeleteType)
}

func (a *app) printType(t wire.ThingType) error {
	if a.jsonOut() {
		return a.printJSON(t)
	}
	d := newDetails(a.stdout)
	d.add("Name", t.Name)
	d.add("Description", t.Description)
	d.add("Policies", fmtList(t.Policies))
	d.add("Model", modelSummary(t.Model))
	d.add("Created", fmtTime(t.CreatedAt))
	d.add("Updated", fmtTime(t.UpdatedAt))
	return d.flush()
}

// modelSummary counts what a device model describes.
func modelSummary(raw json.RawMessage) string {
	if len(raw) == 0 {
		return "-"
	}
	var m struct {
		Telemetry  map[string]json.RawMessage `json:"telemetry"`
		Properties map[string]json.RawMessage `json:"properties"`
		Commands   map[string]json.RawMessage `json:"commands"`
	}
	if json.Unmarshal(raw, &m) != nil {
		return "(unreadable)"
	}
	return fmt.Sprintf("%d telemetry keys, %d property schemas, %d commands (--json shows it)", len(m.Telemetry), len(m.Properties), len(m.Commands))
}
