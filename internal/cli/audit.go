package cli

import (
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/moteiot/mote/internal/apiclient"
)

const auditHelp = `The audit log records every change made through the API (and so the CLI
and the console): who (user or token), what (action and target), when, from
which address, with which result, and the target's document before and after
when it is small. Secrets never appear in it. Reading it needs an admin
token. See docs/audit.md.`

func (a *app) auditCmd() *cobra.Command {
	cmd := parentCmd("audit", "Read and export the audit log", "audit")
	cmd.Long = auditHelp
	cmd.AddCommand(a.auditListCmd(), a.auditExportCmd())
	return cmd
}

// auditFlags are the filters of list and export.
type auditFlags struct {
	f            apiclient.AuditFilter
	since, until string
}

func (af *auditFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&af.f.Actor, "actor", "", "only changes by this user or token name")
	cmd.Flags().StringVar(&af.f.Action, "action", "", "only this action (thing.create), or a prefix ending in * (thing.*)")
	cmd.Flags().StringVar(&af.f.Target, "target", "", "only changes to this target: kind:name (thing:sensor-1) or a bare name")
	cmd.Flags().StringVar(&af.since, "since", "", "only entries at or after this time: RFC 3339, or a duration ago (24h)")
	cmd.Flags().StringVar(&af.until, "until", "", "only entries before this time: RFC 3339, or a duration ago")
}

func (af *auditFlags) filter() (apiclient.AuditFilter, error) {
	f := af.f
	for _, p := range []struct {
		flag, v string
		dst     *time.Time
	}{{"since", af.since, &f.Since}, {"until", af.until, &f.Until}} {
		if p.v == "" {
			continue
		}
		if d, err := time.ParseDuration(p.v); err == nil {
			*p.dst = time.Now().Add(-d)
			continue
		}
		t, err := time.Parse(time.RFC3339, p.v)
		if err != nil {
			return f, usageErrorf("--%s: %q is neither an RFC 3339 time nor a duration", p.flag, p.v)
		}
		*p.dst = t
	}
	return f, nil
}

func (a *app) auditListCmd() *cobra.Command {
	var (
		lf listFlags
		af auditFlags
	)
	cmd := &cobra.Command{
		Use:     "list [--actor NAME] [--action ACTION] [--target KIND:NAME] [--since T] [--until T]",
		Aliases: []string{"ls"},
		Short:   "List audit entries, newest first",
		Example: `  mote audit list --target thing:sensor-1
  mote audit list --action 'policy.*' --since 24h`,
		Args: exactArgs(),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			if err := lf.check(); err != nil {
				return err
			}
			f, err := af.filter()
			if err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			list, next, err := fetch(cmd, &lf, func(cur string) ([]apiclient.AuditEntry, string, error) {
				return c.ListAudit(cmd.Context(), f, apiclient.ListOptions{Limit: lf.limit, Cursor: cur})
			})
			if err != nil {
				return err
			}
			if a.jsonOut() {
				err = a.printJSON(list)
			} else {
				t := newTable(a.stdout, "TIME", "ACTOR", "ACTION", "TARGET", "STATUS", "SOURCE")
				for _, x := range list {
					t.row(fmtTime(x.Time), x.Actor.Kind+":"+x.Actor.Name, x.Action, x.Target.Kind+":"+x.Target.Name, fmt.Sprint(x.Status), x.Source)
				}
				err = t.flush()
			}
			a.moreHint("audit entries", next)
			return err
		}),
	}
	lf.register(cmd, "audit entries")
	af.register(cmd)
	return cmd
}

func (a *app) auditExportCmd() *cobra.Command {
	var (
		af  auditFlags
		out string
	)
	cmd := &cobra.Command{
		Use:   "export [--out FILE] [filters]",
		Short: "Export audit entries as JSON lines (newest first)",
		Example: `  mote audit export --since 720h --out audit.ndjson
  mote audit export --target thing:sensor-1`,
		Args: exactArgs(),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			f, err := af.filter()
			if err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			w := a.stdout
			if out != "" {
				file, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
				if err != nil {
					return err
				}
				defer file.Close()
				w = file
			}
			_, err = c.ExportAudit(cmd.Context(), f, w)
			return err
		}),
	}
	af.register(cmd)
	cmd.Flags().StringVar(&out, "out", "", "write to this file (mode 0600) instead of standard output")
	return cmd
}
