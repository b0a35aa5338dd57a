package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/moteiot/mote/internal/apiclient"
)

const dashboardFileHelp = `A dashboard document (docs/dashboards.md):

  {"name": "plant", "title": "Plant floor", "widgets": [
    {"id": "temps", "type": "timeseries", "grid": {"x": 0, "y": 0, "w": 8, "h": 4},
     "things": ["dev1", "dev2"], "keys": ["temp"], "window": "1h"},
    {"id": "now", "type": "latest", "grid": {"x": 8, "y": 0, "w": 4, "h": 4},
     "group": "floor1", "keys": ["temp", "hum"]}]}

Widget types: timeseries, latest, gauge, map, alarms, command.`

func (a *app) dashboardCmd() *cobra.Command {
	cmd := parentCmd("dashboard", "Manage the console's dashboards", "dashboards")
	cmd.AddCommand(a.dashboardListCmd(), a.dashboardGetCmd(), a.dashboardWriteCmd(true), a.dashboardWriteCmd(false), a.dashboardDeleteCmd())
	return cmd
}

func (a *app) readDashboard(file string) (json.RawMessage, error) {
	b, err := a.readInput("file", file)
	if err != nil {
		return nil, err
	}
	var doc json.RawMessage
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, inputError("--file %s: not valid JSON: %v", file, err)
	}
	if len(bytes.TrimSpace(doc)) == 0 || doc[0] != '{' {
		return nil, inputError(`--file %s: want a JSON object {"name", "widgets": [...]}`, file)
	}
	return doc, nil
}

// dashboardWriteCmd builds "dashboard create" (create true) and
// "dashboard update".
func (a *app) dashboardWriteCmd(create bool) *cobra.Command {
	var (
		file      string
		ifVersion int64
	)
	use, short := "create -f FILE", "Create a dashboard from a document file"
	if !create {
		use, short = "update NAME -f FILE [--if-version N]", "Replace a dashboard's title and widgets"
	}
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Long:  short + " (- reads stdin).\n\n" + dashboardFileHelp,
		RunE: run(func(cmd *cobra.Command, args []string) error {
			doc, err := a.readDashboard(file)
			if err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			var out apiclient.Dashboard
			if create {
				out, err = c.CreateDashboard(cmd.Context(), doc)
			} else {
				out, err = c.ReplaceDashboard(cmd.Context(), args[0], doc, ifVersion)
			}
			if err != nil {
				return err
			}
			return a.printDashboard(out)
		}),
	}
	if create {
		cmd.Args = exactArgs()
		cmd.Example = "  mote dashboard create -f plant.json"
	} else {
		cmd.Args = exactArgs("NAME")
		cmd.Example = "  mote dashboard update plant -f plant.json --if-version 3"
		cmd.Flags().Int64Var(&ifVersion, "if-version", 0, "only if the dashboard is still at this version (else 412); 0: any")
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "the dashboard document (JSON file; - for stdin) (required)")
	_ = cmd.MarkFlagRequired("file")
	return cmd
}

func (a *app) dashboardListCmd() *cobra.Command {
	return listCmd(a, "dashboards", "List dashboards", (*apiclient.Client).ListDashboards,
		[]string{"NAME", "TITLE", "WIDGETS", "VERSION", "UPDATED"},
		func(d apiclient.DashboardSummary) []string {
			return []string{d.Name, truncate(d.Title, 40), fmt.Sprint(d.Widgets), fmt.Sprint(d.Version), fmtTime(d.UpdatedAt)}
		})
}

func (a *app) dashboardGetCmd() *cobra.Command {
	return getCmd(a, "Show a dashboard and its widgets (-o json prints the document)", (*apiclient.Client).GetDashboard, a.printDashboard)
}

func (a *app) dashboardDeleteCmd() *cobra.Command {
	var ifVersion int64
	cmd := a.deleteCmd("dashboard", "Delete a dashboard", func(c *apiclient.Client, ctx context.Context, name string) error {
		return c.DeleteDashboard(ctx, name, ifVersion)
	})
	cmd.Flags().Int64Var(&ifVersion, "if-version", 0, "only if the dashboard is still at this version (else 412); 0: any")
	return cmd
}

func (a *app) printDashboard(d apiclient.Dashboard) error {
	if a.jsonOut() {
		return a.printJSON(d)
	}
	det := newDetails(a.stdout)
	det.add("Name", d.Name)
	det.add("Title", d.Title)
	det.add("Version", fmt.Sprint(d.Version))
	det.add("Created", fmtTime(d.CreatedAt))
	det.add("Updated", fmtTime(d.UpdatedAt))
	if err := det.flush(); err != nil {
		return err
	}
	var ws []struct {
		ID     string `json:"id"`
		Type   string `json:"type"`
		Title  string `json:"title"`
		Grid   struct{ X, Y, W, H int }
		Things []string `json:"things"`
		Group  string   `json:"group"`
		Keys   []string `json:"keys"`
	}
	if err := json.Unmarshal(d.Widgets, &ws); err != nil {
		return fmt.Errorf("widgets: %w", err)
	}
	a.printf("\n")
	t := newTable(a.stdout, "WIDGET", "TYPE", "GRID (x,y w×h)", "THINGS", "KEYS", "TITLE")
	for _, w := range ws {
		targets := strings.Join(w.Things, ",")
		if w.Group != "" {
			targets = "group " + w.Group
		}
		t.row(w.ID, w.Type, fmt.Sprintf("%d,%d %d×%d", w.Grid.X, w.Grid.Y, w.Grid.W, w.Grid.H), truncate(targets, 40), strings.Join(w.Keys, ","), truncate(w.Title, 30))
	}
	return t.flush()
}
