package cli

import (
	"fmt"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/moteiot/mote/internal/apiclient"
	"github.com/moteiot/mote/internal/httpapi/wire"
)

func (a *app) thingCmd() *cobra.Command {
	cmd := parentCmd("thing", "Manage things (devices)", "things")
	cmd.AddCommand(a.thingCreateCmd(), a.thingListCmd(), a.thingGetCmd(), a.thingUpdateCmd(), a.thingDeleteCmd(), a.thingCountCmd(),
		a.thingImportCmd())
	return cmd
}

func (a *app) thingCreateCmd() *cobra.Command {
	var (
		typ                     string
		attrs, tags, groups, ps []string
		disabled                bool
	)
	cmd := &cobra.Command{
		Use:   "create NAME",
		Short: "Create a thing",
		Example: `  mote thing create sensor-1 --type sensor --attr site=ams --tag lab --group floor-1
  mote thing create gw-7 --policy gateway --disabled`,
		Args: exactArgs("NAME"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			attributes, err := parseKV("attr", attrs)
			if err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			nt := apiclient.NewThing{Name: args[0], Type: typ, Attributes: attributes, Tags: tags, Groups: groups, Policies: ps}
			if disabled {
				f := false
				nt.Enabled = &f
			}
			t, err := c.CreateThing(cmd.Context(), nt)
			if err != nil {
				return err
			}
			return a.printThing(t)
		}),
	}
	f := cmd.Flags()
	f.StringVar(&typ, "type", "", "thing type")
	f.StringArrayVar(&attrs, "attr", nil, "attribute KEY=VALUE (repeatable)")
	f.StringArrayVar(&tags, "tag", nil, "tag (repeatable)")
	f.StringArrayVar(&groups, "group", nil, "static group to join (repeatable)")
	f.StringArrayVar(&ps, "policy", nil, "policy to attach (repeatable)")
	f.BoolVar(&disabled, "disabled", false, "create the thing disabled (it cannot connect until enabled)")
	return cmd
}

func (a *app) thingListCmd() *cobra.Command {
	var (
		q         apiclient.ThingQuery
		attrs     []string
		connected string
		lf        listFlags
	)
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List things",
		Example: `  mote thing list --type sensor --attr site=ams --connected true
  mote thing list --group floor-1 --all -o json
  mote thing list --query "attributes.site = 'ams' AND version(shadow.reported.firmware) < '1.5'"`,
		Args: exactArgs(),
		RunE: run(func(cmd *cobra.Command, _ []string) error {
			if err := lf.check(); err != nil {
				return err
			}
			var err error
			if q.Attributes, err = parseKV("attr", attrs); err != nil {
				return err
			}
			if connected != "" {
				b, err := strconv.ParseBool(connected)
				if err != nil {
					return usageErrorf("--connected must be true or false, not %q", connected)
				}
				q.Connected = &b
			}
			q.Limit = lf.limit
			c, err := a.client()
			if err != nil {
				return err
			}
			things, next, err := fetch(cmd, &lf, func(cur string) ([]wire.Thing, string, error) {
				qq := q
				qq.Cursor = cur
				return c.ListThings(cmd.Context(), qq)
			})
			if err != nil {
				return err
			}
			if a.jsonOut() {
				err = a.printJSON(things)
			} else {
				t := newTable(a.stdout, "NAME", "TYPE", "ENABLED", "CONNECTED", "LAST SEEN", "GROUPS")
				for _, th := range things {
					t.row(th.Name, th.Type, yesNo(th.Enabled), yesNo(th.Connected), fmtTimePtr(th.LastSeen), fmtList(th.Groups))
				}
				err = t.flush()
			}
			a.moreHint("things", next)
			return err
		}),
	}
	f := cmd.Flags()
	f.StringVarP(&q.Query, "query", "q", "", "only things that match this fleet query (docs/fleet-query.md); not with the other filters")
	f.StringVar(&q.Prefix, "prefix", "", "only names starting with this")
	f.StringVar(&q.Type, "type", "", "only things of this type")
	f.StringVar(&q.Group, "group", "", "only members of this group")
	f.StringVar(&q.Tag, "tag", "", "only things with this tag")
	f.StringArrayVar(&attrs, "attr", nil, "only things with attribute KEY=VALUE (repeatable, ANDed)")
	f.StringVar(&connected, "connected", "", "only connected (true) or disconnected (false) things")
	lf.register(cmd, "things")
	return cmd
}

func (a *app) thingCountCmd() *cobra.Command {
	var query string
	cmd := &cobra.Command{
		Use:     "count --query QUERY",
		Short:   "Count the things that match a fleet query",
		Example: `  mote thing count --query "connected = true AND type = 'sensor'"`,
		Args:    exactArgs(),
		RunE: run(func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			n, err := c.CountThings(cmd.Context(), query)
			if err != nil {
				return err
			}
			if a.jsonOut() {
				return a.printJSON(map[string]int{"count": n})
			}
			_, err = fmt.Fprintln(a.stdout, n)
			return err
		}),
	}
	cmd.Flags().StringVarP(&query, "query", "q", "", "a fleet query (docs/fleet-query.md) (required)")
	_ = cmd.MarkFlagRequired("query")
	return cmd
}

func (a *app) thingGetCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "get NAME",
		Short: "Show a thing",
		Args:  exactArgs("NAME"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			t, err := c.GetThing(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return a.printThing(t)
		}),
	}
}

func (a *app) thingUpdateCmd() *cobra.Command {
	var (
		typ                    string
		attrs                  []string
		clearAttrs             bool
		enable, disable        bool
		tags, groups, policies []string
	)
	cmd := &cobra.Command{
		Use:   "update NAME",
		Short: "Change a thing (each given set replaces the old one)",
		Long: `Change a thing. Only the given fields change; --attr, --tags, --groups and
--policies each replace the whole set (--tags "" clears the tags,
--clear-attrs the attributes; --type "" removes the type). --disable
disconnects the thing at once.`,
		Example: `  mote thing update sensor-1 --attr site=ams --attr floor=2
  mote thing update sensor-1 --tags lab,outdoor --groups floor-1
  mote thing update sensor-1 --disable`,
		Args: exactArgs("NAME"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			f := cmd.Flags()
			var p apiclient.ThingPatch
			if f.Changed("type") {
				p.Type = &typ
			}
			if clearAttrs && f.Changed("attr") {
				return usageErrorf("--clear-attrs and --attr exclude each other")
			}
			if clearAttrs {
				p.Attributes = map[string]string{}
			} else if f.Changed("attr") {
				m, err := parseKV("attr", attrs)
				if err != nil {
					return err
				}
				p.Attributes = m
			}
			set := func(flag string, v []string) []string {
				if !f.Changed(flag) {
					return nil
				}
				if v == nil {
					return []string{}
				}
				return v
			}
			p.Tags, p.Groups, p.Policies = set("tags", tags), set("groups", groups), set("policies", policies)
			if enable || disable {
				p.Enabled = &enable
			}
			if p.Type == nil && p.Attributes == nil && p.Tags == nil && p.Groups == nil && p.Policies == nil && p.Enabled == nil {
				return usageErrorf("nothing to update: give at least one of --type, --attr, --clear-attrs, --enable, --disable, --tags, --groups, --policies")
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			t, err := c.UpdateThing(cmd.Context(), args[0], p)
			if err != nil {
				return err
			}
			return a.printThing(t)
		}),
	}
	f := cmd.Flags()
	f.StringVar(&typ, "type", "", `thing type ("" removes it)`)
	f.StringArrayVar(&attrs, "attr", nil, "attribute KEY=VALUE (repeatable; replaces all attributes)")
	f.BoolVar(&clearAttrs, "clear-attrs", false, "remove every attribute")
	f.BoolVar(&enable, "enable", false, "enable the thing")
	f.BoolVar(&disable, "disable", false, "disable the thing and disconnect it")
	f.StringSliceVar(&tags, "tags", nil, "tags, comma-separated (replaces all tags)")
	f.StringSliceVar(&groups, "groups", nil, "static groups, comma-separated (replaces all memberships)")
	f.StringSliceVar(&policies, "policies", nil, "policies attached to the thing, comma-separated (replaces all)")
	cmd.MarkFlagsMutuallyExclusive("enable", "disable")
	return cmd
}

func (a *app) thingDeleteCmd() *cobra.Command {
	return a.deleteCmd("thing", "Delete a thing and its credentials (disconnects it)", (*apiclient.Client).DeleteThing)
}

func (a *app) printThing(t wire.Thing) error {
	if a.jsonOut() {
		return a.printJSON(t)
	}
	d := newDetails(a.stdout)
	d.add("Name", t.Name)
	d.add("Type", t.Type)
	d.add("Enabled", yesNo(t.Enabled))
	d.add("Connected", yesNo(t.Connected))
	d.add("Last seen", fmtTimePtr(t.LastSeen))
	d.add("Attributes", fmtAttrs(t.Attributes))
	d.add("Tags", fmtList(t.Tags))
	d.add("Groups", fmtList(t.Groups))
	d.add("Policies", fmtList(t.Policies))
	d.add("Created", fmtTime(t.CreatedAt))
	d.add("Updated", fmtTime(t.UpdatedAt))
	return d.flush()
}
