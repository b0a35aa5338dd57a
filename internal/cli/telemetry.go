package cli

import (
	"fmt"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/moteiot/mote/internal/apiclient"
	"github.com/moteiot/mote/internal/telemetry"
)

func (a *app) telemetryCmd() *cobra.Command {
	cmd := parentCmd("telemetry", "Read the telemetry devices sent")
	cmd.AddCommand(a.telemetryGetCmd(), a.telemetryLatestCmd())
	return cmd
}

func fmtTS(ms int64) string {
	return time.UnixMilli(ms).UTC().Format(time.RFC3339Nano)
}

func (a *app) telemetryGetCmd() *cobra.Command {
	var (
		keys                            []string
		from, to, agg, interval, cursor string
		limit                           int
	)
	cmd := &cobra.Command{
		Use:   "get THING [--keys a,b] [--from T] [--to T] [--agg avg --interval 1m]",
		Short: "Show a thing's telemetry: raw points, or aggregates with --agg and --interval (default: the last hour)",
		Example: `  mote telemetry get sensor-1 --keys temp --from 2026-11-25T10:00:00Z
  mote telemetry get sensor-1 --keys temp --agg avg --interval 5m`,
		Args: exactArgs("THING"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			if (agg == "") != (interval == "") {
				return usageError{fmt.Errorf("--agg and --interval go together")}
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			q := apiclient.TelemetryQuery{Keys: keys, From: from, To: to, Limit: limit, Cursor: cursor, Agg: agg, Interval: interval}
			if agg != "" {
				buckets, err := c.TelemetryAggregate(cmd.Context(), args[0], q)
				if err != nil {
					return err
				}
				if a.jsonOut() {
					return a.printJSON(buckets)
				}
				t := newTable(a.stdout, "KEY", "BUCKET", agg)
				for _, b := range buckets {
					t.row(b.Key, fmtTS(b.TS), strconv.FormatFloat(b.Value, 'g', -1, 64))
				}
				return t.flush()
			}
			points, next, err := c.Telemetry(cmd.Context(), args[0], q)
			if err != nil {
				return err
			}
			if a.jsonOut() {
				return a.printJSON(points)
			}
			if err := a.pointTable(points); err != nil {
				return err
			}
			if next != "" {
				a.printf("More: --cursor %s\n", next)
			}
			return nil
		}),
	}
	fl := cmd.Flags()
	fl.StringSliceVar(&keys, "keys", nil, "keys to show (default: all)")
	fl.StringVar(&from, "from", "", "start, RFC 3339 or Unix ms (default: --to minus 1h)")
	fl.StringVar(&to, "to", "", "end (exclusive), RFC 3339 or Unix ms (default: now)")
	fl.StringVar(&agg, "agg", "", "aggregate: min, max, avg, sum, count, first or last")
	fl.StringVar(&interval, "interval", "", "bucket width with --agg, e.g. 1m")
	fl.IntVar(&limit, "limit", 0, "raw points per page (default 1000)")
	fl.StringVar(&cursor, "cursor", "", "the cursor of the next page")
	return cmd
}

func (a *app) telemetryLatestCmd() *cobra.Command {
	var keys []string
	cmd := &cobra.Command{
		Use:   "latest THING [--keys a,b]",
		Short: "Show the newest value of each key of a thing",
		Args:  exactArgs("THING"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			points, err := c.TelemetryLatest(cmd.Context(), args[0], keys)
			if err != nil {
				return err
			}
			if a.jsonOut() {
				return a.printJSON(points)
			}
			return a.pointTable(points)
		}),
	}
	cmd.Flags().StringSliceVar(&keys, "keys", nil, "keys to show (default: all)")
	return cmd
}

func (a *app) pointTable(points []telemetry.Point) error {
	t := newTable(a.stdout, "KEY", "TIME", "VALUE")
	for _, p := range points {
		t.row(p.Key, fmtTS(p.TS), p.Value.String())
	}
	return t.flush()
}
