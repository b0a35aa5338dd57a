package cli

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"sort"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/moteiot/mote/internal/loadgen"
)

func (a *app) benchReportCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "report FILE.jsonl...",
		Short: "Medians per broker and scenario of mote bench JSON lines",
		Long: `Read the JSON lines of mote bench runs (--out, or scripts/bench.sh's
results) and print, per broker and scenario, the number of runs and the
median of each figure, with the min-max of msgs/s.`,
		Example: `  mote bench report /tmp/benchres/$(date -u +%F)/*.jsonl`,
		Args:    cobra.MinimumNArgs(1),
		RunE: run(func(_ *cobra.Command, files []string) error {
			type key struct{ broker, scenario string }
			groups := map[key][]loadgen.Result{}
			for _, f := range files {
				if err := readBenchLines(f, func(r loadgen.Result) {
					k := key{r.Broker, r.Scenario}
					groups[k] = append(groups[k], r)
				}); err != nil {
					return err
				}
			}
			keys := make([]key, 0, len(groups))
			for k := range groups {
				keys = append(keys, k)
			}
			sort.Slice(keys, func(i, j int) bool {
				if keys[i].scenario != keys[j].scenario {
					return keys[i].scenario < keys[j].scenario
				}
				return keys[i].broker < keys[j].broker
			})
			tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
			fmt.Fprintln(tw, "scenario\tbroker\truns\tmsgs/s\tmin-max\tlost %\tdup\tp50 µs\tp99 µs\tconnects/s\tKB/conn\tbroker CPU %\tloadgen CPU %\t")
			for _, k := range keys {
				rs := groups[k]
				med := func(f func(loadgen.Result) float64) float64 {
					v := make([]float64, len(rs))
					for i, r := range rs {
						v[i] = f(r)
					}
					slices.Sort(v)
					if len(v)%2 == 1 {
						return v[len(v)/2]
					}
					return (v[len(v)/2-1] + v[len(v)/2]) / 2
				}
				lo, hi := rs[0].MsgsPerSec, rs[0].MsgsPerSec
				for _, r := range rs {
					lo, hi = min(lo, r.MsgsPerSec), max(hi, r.MsgsPerSec)
				}
				fmt.Fprintf(tw, "%s\t%s\t%d\t%.0f\t%.0f-%.0f\t%.1f\t%.0f\t%.0f\t%.0f\t%.0f\t%.1f\t%.0f\t%.0f\t\n",
					k.scenario, k.broker, len(rs),
					med(func(r loadgen.Result) float64 { return r.MsgsPerSec }), lo, hi,
					med(func(r loadgen.Result) float64 { return r.LostPct }),
					med(func(r loadgen.Result) float64 { return float64(r.Dup) }),
					med(func(r loadgen.Result) float64 { return r.P50 }),
					med(func(r loadgen.Result) float64 { return r.P99 }),
					med(func(r loadgen.Result) float64 { return r.ConnectsPerSec }),
					med(func(r loadgen.Result) float64 { return r.KBPerConn }),
					med(func(r loadgen.Result) float64 { return r.BrokerCPU }),
					med(func(r loadgen.Result) float64 { return r.LoadgenCPU }))
			}
			return tw.Flush()
		}),
	}
}

func readBenchLines(name string, fn func(loadgen.Result)) error {
	f, err := os.Open(name)
	if err != nil {
		return usageErrorf("bench report: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		if len(sc.Bytes()) == 0 {
			continue
		}
		var r loadgen.Result
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			return usageErrorf("bench report: %s line %d: %v", name, n, err)
		}
		fn(r)
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("bench report: read %s: %w", name, err)
	}
	return nil
}
