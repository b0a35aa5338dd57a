package cli

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/moteiot/mote/internal/apiclient"
)

const profileHelp = `A configuration profile is a fragment of desired state (a JSON object)
with a target (a static or dynamic group, or a fleet query) and a
priority. Mote merges the profiles that apply to a thing into its classic
shadow's desired state (the higher priority wins each key; equal
priorities: the lower name), follows things that join or leave the
target, and reports compliance: whether the reported state holds the
merged value of every key a profile decides. See docs/profiles.md.`

func (a *app) profileCmd() *cobra.Command {
	cmd := parentCmd("profile", "Manage configuration profiles (desired state merged into groups or queries)", "profiles")
	cmd.Long = profileHelp
	cmd.AddCommand(a.profileCreateCmd(), a.profileListCmd(), a.profileGetCmd(), a.profileUpdateCmd(), a.profileDeleteCmd(), a.profileComplianceCmd())
	return cmd
}

type profileFlags struct {
	desired, file, group, query, description string
	priority                                 int
}

func (f *profileFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.desired, "desired", "", "the desired state the profile sets (a JSON object)")
	fl.StringVarP(&f.file, "file", "f", "", "read the desired state from a JSON file (- for stdin)")
	fl.StringVar(&f.group, "group", "", "target: a static or dynamic group")
	fl.StringVarP(&f.query, "query", "q", "", "target: a fleet query")
	fl.StringVar(&f.description, "description", "", "description")
	fl.IntVar(&f.priority, "priority", 0, "priority: the higher wins each key")
}

func (a *app) profileInput(f *profileFlags, name string) (apiclient.ProfileInput, error) {
	in := apiclient.ProfileInput{Name: name, Description: f.description, Priority: f.priority,
		Target: apiclient.ProfileTarget{Group: f.group, Query: f.query}}
	switch {
	case f.desired != "" && f.file != "":
		return in, usageErrorf("give --desired or --file, not both")
	case f.file != "":
		b, err := a.readInput("file", f.file)
		if err != nil {
			return in, err
		}
		in.Desired = b
	case f.desired != "":
		in.Desired = json.RawMessage(f.desired)
	default:
		return in, usageErrorf("give the desired state: --desired JSON or --file FILE")
	}
	if !json.Valid(in.Desired) {
		return in, inputError("the desired state is not JSON")
	}
	if (f.group == "") == (f.query == "") {
		return in, usageErrorf("give the target: --group or --query (one of them)")
	}
	return in, nil
}

func (a *app) profileCreateCmd() *cobra.Command {
	var f profileFlags
	cmd := &cobra.Command{
		Use:   "create NAME (--desired JSON | --file FILE) (--group G | --query Q) [--priority N]",
		Short: "Create a profile",
		Example: `  mote profile create plant-wifi --desired '{"wifi":{"ssid":"plant"}}' --group plant --priority 10
  mote profile create slow-reporting --desired '{"reportingInterval":300}' --query "attributes.site = 'ams'"`,
		Args: exactArgs("NAME"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			in, err := a.profileInput(&f, args[0])
			if err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			p, err := c.CreateProfile(cmd.Context(), in)
			if err != nil {
				return err
			}
			return a.printProfile(p)
		}),
	}
	f.register(cmd)
	return cmd
}

func (a *app) profileUpdateCmd() *cobra.Command {
	var f profileFlags
	cmd := &cobra.Command{
		Use:   "update NAME (--desired JSON | --file FILE) (--group G | --query Q) [--priority N]",
		Short: "Replace a profile (all but its name)",
		Args:  exactArgs("NAME"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			in, err := a.profileInput(&f, "")
			if err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			p, err := c.UpdateProfile(cmd.Context(), args[0], in)
			if err != nil {
				return err
			}
			return a.printProfile(p)
		}),
	}
	f.register(cmd)
	return cmd
}

func targetText(t apiclient.ProfileTarget) string {
	if t.Group != "" {
		return "group " + t.Group
	}
	return "query " + t.Query
}

func (a *app) profileListCmd() *cobra.Command {
	return listCmd(a, "profiles", "List profiles by name", (*apiclient.Client).ListProfiles,
		[]string{"NAME", "PRIORITY", "TARGET", "DESCRIPTION"},
		func(p apiclient.Profile) []string {
			return []string{p.Name, fmt.Sprint(p.Priority), truncate(targetText(p.Target), 50), truncate(p.Description, 40)}
		})
}

func (a *app) profileGetCmd() *cobra.Command {
	return getCmd(a, "Show a profile", (*apiclient.Client).GetProfile, a.printProfile)
}

func (a *app) profileDeleteCmd() *cobra.Command {
	return a.deleteCmd("profile", "Delete a profile (the keys it set are removed from its things)", (*apiclient.Client).DeleteProfile)
}

func (a *app) printProfile(p apiclient.Profile) error {
	if a.jsonOut() {
		return a.printJSON(p)
	}
	d := newDetails(a.stdout)
	d.add("Name", p.Name)
	d.add("Description", p.Description)
	d.add("Target", targetText(p.Target))
	d.add("Priority", fmt.Sprint(p.Priority))
	d.add("Desired", string(p.Desired))
	d.add("Created", fmtTime(p.CreatedAt))
	d.add("Updated", fmtTime(p.UpdatedAt))
	return d.flush()
}

func (a *app) profileComplianceCmd() *cobra.Command {
	var lf listFlags
	cmd := &cobra.Command{
		Use:     "compliance NAME",
		Short:   "Show a profile's compliance and its non-compliant things",
		Example: `  mote profile compliance plant-wifi --all`,
		Args:    exactArgs("NAME"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			if err := lf.check(); err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			var first apiclient.ProfileCompliance
			items, next, err := fetch(cmd, &lf, func(cur string) ([]apiclient.ThingCompliance, string, error) {
				pc, err := c.GetProfileCompliance(cmd.Context(), args[0], apiclient.ListOptions{Limit: lf.limit, Cursor: cur})
				if first.Profile == "" {
					first = pc
				}
				return pc.Items, pc.NextCursor, err
			})
			if err != nil {
				return err
			}
			first.Items, first.NextCursor = items, next
			if a.jsonOut() {
				return a.printJSON(first)
			}
			a.printf("%s: %d things, %d compliant, %d non-compliant\n", args[0], first.Things, first.Compliant, first.NonCompliant)
			t := newTable(a.stdout, "THING", "DIFFERING KEYS (desired / reported)")
			for _, it := range items {
				var keys []string
				for _, d := range it.Differing {
					keys = append(keys, fmt.Sprintf("%s: %s / %s", d.Key, d.Desired, d.Reported))
				}
				t.row(it.Thing, truncate(strings.Join(keys, "; "), 100))
			}
			err = t.flush()
			a.moreHint("things", next)
			return err
		}),
	}
	lf.register(cmd, "things")
	return cmd
}
