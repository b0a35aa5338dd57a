package cli

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/moteiot/mote/internal/apiclient"
)

const alarmHelp = `Alarms say what is wrong with a thing: a type (overheat, device-silent, ...),
a severity (critical, major, minor, warning) and details. An alarm is raised
active by a rule (raiseAlarm action) or an analytics detector, acknowledged
by an operator, and cleared by its source or an operator. A thing has at most
one open (active or acknowledged) alarm per type: raising it again counts up.
See docs/alarms.md.`

func (a *app) alarmCmd() *cobra.Command {
	cmd := parentCmd("alarm", "List, acknowledge and clear alarms", "alarms")
	cmd.Long = alarmHelp
	cmd.AddCommand(a.alarmListCmd(), a.alarmGetCmd(), a.alarmAckCmd(), a.alarmClearCmd())
	return cmd
}

func (a *app) alarmListCmd() *cobra.Command {
	var (
		lf listFlags
		f  apiclient.AlarmFilter
	)
	cmd := &cobra.Command{
		Use:     "list [--status STATUS] [--thing THING] [--severity SEVERITY] [--type TYPE]",
		Aliases: []string{"ls"},
		Short:   "List alarms, newest first",
		Example: `  mote alarm list --status active
  mote alarm list --thing sensor-1 --severity critical`,
		Args: exactArgs(),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			if err := lf.check(); err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			list, next, err := fetch(cmd, &lf, func(cur string) ([]apiclient.Alarm, string, error) {
				return c.ListAlarms(cmd.Context(), f, apiclient.ListOptions{Limit: lf.limit, Cursor: cur})
			})
			if err != nil {
				return err
			}
			if a.jsonOut() {
				err = a.printJSON(list)
			} else {
				t := newTable(a.stdout, "ID", "THING", "TYPE", "SEVERITY", "STATUS", "COUNT", "LAST")
				for _, x := range list {
					t.row(x.ID, x.Thing, x.Type, x.Severity, x.Status, fmt.Sprint(x.Count), fmtTime(x.LastAt))
				}
				err = t.flush()
			}
			a.moreHint("alarms", next)
			return err
		}),
	}
	lf.register(cmd, "alarms")
	cmd.Flags().StringVar(&f.Status, "status", "", "only alarms in this status: active, acknowledged, cleared, or open (active or acknowledged)")
	cmd.Flags().StringVar(&f.Thing, "thing", "", "only alarms of this thing")
	cmd.Flags().StringVar(&f.Severity, "severity", "", "only alarms of this severity: critical, major, minor, warning")
	cmd.Flags().StringVar(&f.Type, "type", "", "only alarms of this type")
	return cmd
}

func (a *app) alarmOneCmd(use, short string, op func(*apiclient.Client, *cobra.Command, string) (apiclient.Alarm, error)) *cobra.Command {
	return &cobra.Command{
		Use:   use + " ID",
		Short: short,
		Args:  exactArgs("ID"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			out, err := op(c, cmd, args[0])
			if err != nil {
				return err
			}
			return a.printAlarm(out)
		}),
	}
}

func (a *app) alarmGetCmd() *cobra.Command {
	return a.alarmOneCmd("get", "Show an alarm", func(c *apiclient.Client, cmd *cobra.Command, id string) (apiclient.Alarm, error) {
		return c.GetAlarm(cmd.Context(), id)
	})
}

func (a *app) alarmAckCmd() *cobra.Command {
	return a.alarmOneCmd("ack", "Acknowledge an active alarm (exit code 4 unless it was active)", func(c *apiclient.Client, cmd *cobra.Command, id string) (apiclient.Alarm, error) {
		return c.AckAlarm(cmd.Context(), id)
	})
}

func (a *app) alarmClearCmd() *cobra.Command {
	return a.alarmOneCmd("clear", "Clear an alarm, acknowledged or not (exit code 4 if it was cleared already)", func(c *apiclient.Client, cmd *cobra.Command, id string) (apiclient.Alarm, error) {
		return c.ClearAlarm(cmd.Context(), id)
	})
}

func (a *app) printAlarm(x apiclient.Alarm) error {
	if a.jsonOut() {
		return a.printJSON(x)
	}
	d := newDetails(a.stdout)
	d.add("ID", x.ID)
	d.add("Thing", x.Thing)
	d.add("Type", x.Type)
	d.add("Severity", x.Severity)
	d.add("Status", x.Status)
	d.add("Count", fmt.Sprint(x.Count))
	d.add("Details", string(x.Details))
	d.add("Created", fmtTime(x.CreatedAt))
	d.add("Last", fmtTime(x.LastAt))
	d.add("Acknowledged", fmtTimePtr(x.AcknowledgedAt))
	d.add("Cleared", fmtTimePtr(x.ClearedAt))
	return d.flush()
}

const analyticsHelp = `Analytics rules run a detector on the live stream for every thing of a type
(--type), of a group (--group) or every thing, and raise alarms: threshold,
geofence, speed, silence, flapping, anomaly. --config is the detector's JSON
configuration; see docs/alarms.md.`

func (a *app) analyticsCmd() *cobra.Command {
	cmd := parentCmd("analytics", "Manage analytics rules (detectors that raise alarms)", "detector")
	cmd.Long = analyticsHelp
	cmd.AddCommand(a.analyticsPutCmd(true), a.analyticsPutCmd(false), a.analyticsListCmd(), a.analyticsGetCmd(),
		a.deleteCmd("analytics rule", "Delete an analytics rule and its detectors' state", (*apiclient.Client).DeleteAnalyticsRule))
	return cmd
}

func (a *app) analyticsPutCmd(create bool) *cobra.Command {
	var (
		r        apiclient.AnalyticsRule
		config   string
		disabled bool
	)
	use, short := "create", "Create an analytics rule"
	if !create {
		use, short = "update", "Replace an analytics rule (its detectors start afresh)"
	}
	cmd := &cobra.Command{
		Use:   use + " NAME --kind KIND --config JSON [--type TYPE | --group GROUP] [--disabled]",
		Short: short,
		Example: `  mote analytics create overheat --kind threshold --type boiler \
    --config '{"key":"temperature","above":80,"for":"5m","clearBelow":75,"severity":"critical"}'
  mote analytics create depot --kind geofence --group trucks \
    --config '{"fence":{"type":"Circle","center":[13.4,52.5],"radiusMeters":800},"alarmOn":"exit"}'`,
		Args: exactArgs("NAME"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			if !json.Valid([]byte(config)) {
				return inputError("--config: not JSON: %s", config)
			}
			r.Name, r.Config = args[0], json.RawMessage(config)
			enabled := !disabled
			r.Enabled = &enabled
			c, err := a.client()
			if err != nil {
				return err
			}
			var out apiclient.AnalyticsRule
			if create {
				out, err = c.CreateAnalyticsRule(cmd.Context(), r)
			} else {
				out, err = c.UpdateAnalyticsRule(cmd.Context(), r)
			}
			if err != nil {
				return err
			}
			return a.printAnalyticsRule(out)
		}),
	}
	cmd.Flags().StringVar(&r.Kind, "kind", "", "threshold, geofence, speed, silence, flapping or anomaly")
	cmd.Flags().StringVar(&config, "config", "{}", "the detector's configuration (JSON)")
	cmd.Flags().StringVar(&r.ThingType, "type", "", "only things of this type")
	cmd.Flags().StringVar(&r.Group, "group", "", "only things in this group")
	cmd.Flags().BoolVar(&disabled, "disabled", false, "store the rule disabled")
	return cmd
}

func (a *app) analyticsListCmd() *cobra.Command {
	var lf listFlags
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List analytics rules",
		Args:    exactArgs(),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			if err := lf.check(); err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			list, next, err := fetch(cmd, &lf, func(cur string) ([]apiclient.AnalyticsRule, string, error) {
				return c.ListAnalyticsRules(cmd.Context(), apiclient.ListOptions{Limit: lf.limit, Cursor: cur})
			})
			if err != nil {
				return err
			}
			if a.jsonOut() {
				err = a.printJSON(list)
			} else {
				t := newTable(a.stdout, "NAME", "KIND", "SCOPE", "ENABLED")
				for _, x := range list {
					t.row(x.Name, x.Kind, analyticsScope(x), fmt.Sprint(x.Enabled != nil && *x.Enabled))
				}
				err = t.flush()
			}
			a.moreHint("analytics rules", next)
			return err
		}),
	}
	lf.register(cmd, "analytics rules")
	return cmd
}

func analyticsScope(r apiclient.AnalyticsRule) string {
	switch {
	case r.ThingType != "":
		return "type " + r.ThingType
	case r.Group != "":
		return "group " + r.Group
	}
	return "every thing"
}

func (a *app) analyticsGetCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "get NAME",
		Short: "Show an analytics rule",
		Args:  exactArgs("NAME"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			out, err := c.GetAnalyticsRule(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return a.printAnalyticsRule(out)
		}),
	}
}

func (a *app) printAnalyticsRule(x apiclient.AnalyticsRule) error {
	if a.jsonOut() {
		return a.printJSON(x)
	}
	d := newDetails(a.stdout)
	d.add("Name", x.Name)
	d.add("Kind", x.Kind)
	d.add("Scope", analyticsScope(x))
	d.add("Enabled", fmt.Sprint(x.Enabled != nil && *x.Enabled))
	d.add("Config", string(x.Config))
	d.add("Created", fmtTime(x.CreatedAt))
	d.add("Updated", fmtTime(x.UpdatedAt))
	return d.flush()
}
