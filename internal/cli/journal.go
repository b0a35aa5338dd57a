package cli

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/datadir"
	"github.com/moteiot/mote/internal/wal"
)

// mote admin journal: look at and repair the ingest journal offline, when
// the server refuses to start because a record in it is damaged.

func (a *app) adminJournalCmd() *cobra.Command {
	cmd := parentCmd("journal", "Inspect or salvage a damaged ingest journal (offline, server stopped)")
	cmd.AddCommand(a.adminJournalInspectCmd())
	cmd.AddCommand(a.adminJournalSalvageCmd())
	return cmd
}

// journalDir resolves --data-dir (or MOTE_DATA_DIR) to the journal's
// directory, which must exist.
func (a *app) journalDir(cmd *cobra.Command, dir string) (string, error) {
	if !cmd.Flags().Changed("data-dir") {
		if v, ok := a.env(EnvDataDir); ok && v != "" {
			dir = v
		}
	}
	j := datadir.Journal(dir)
	if _, err := os.Stat(j); errors.Is(err, fs.ErrNotExist) {
		return "", &core.Error{Kind: core.KindNotFound, Msg: fmt.Sprintf("no ingest journal in %s (expected %s)", dir, j)}
	} else if err != nil {
		return "", err
	}
	return j, nil
}

func (a *app) adminJournalInspectCmd() *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "inspect",
		Short: "List the journal's segments, their records and any damage",
		Long: `List the segments of the ingest journal (the durable queue of acknowledged
QoS 1/2 messages not yet in the telemetry store) with their valid records and
the byte ranges that are damaged. It changes nothing and may run while the
server runs.

Exit code 0 when the server can start on the journal (a torn tail, the end
of a write cut short by a crash, is cut off at start by itself), 4 when a
damaged record that valid records follow stops it: run "mote admin journal
salvage" with the server stopped.`,
		Example: `  mote admin journal inspect --data-dir /var/lib/mote`,
		Args:    exactArgs(),
		RunE: run(func(cmd *cobra.Command, _ []string) error {
			j, err := a.journalDir(cmd, dir)
			if err != nil {
				return err
			}
			rep, err := wal.Inspect(j)
			if err != nil {
				return err
			}
			damaged := printJournal(a.stdout, rep)
			if damaged > 0 {
				return core.Errorf(core.KindConflict, "%d damaged segment(s): the server will not start; with it stopped, run `mote admin journal salvage --data-dir %s`", damaged, dir)
			}
			return nil
		}),
	}
	cmd.Flags().StringVar(&dir, "data-dir", datadir.Default, "the server's data directory (env "+EnvDataDir+")")
	return cmd
}

// printJournal writes the report and returns how many segments are
// damaged.
func printJournal(w io.Writer, rep *wal.Report) int {
	fmt.Fprintf(w, "journal %s, checkpoint %d, %d segment(s)\n", rep.Dir, rep.Checkpoint, len(rep.Segments))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SEGMENT\tFIRST\tBYTES\tRECORDS\tVALID\tSTATE")
	damaged := 0
	for _, s := range rep.Segments {
		state := "ok"
		switch {
		case s.Torn:
			state = fmt.Sprintf("torn tail at offset %d (%d bytes, cut off at start)", s.Good, s.Size-s.Good)
		case s.Applied && len(s.Lost) > 0:
			state = fmt.Sprintf("damaged at offset %d, but every record is applied (the server ignores it)", s.Good)
		case s.Damaged():
			damaged++
			state = fmt.Sprintf("DAMAGED at offset %d: %s", s.Good, s.Bad)
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%s\n", s.Path, s.First, s.Size, s.Records, s.Valid(), state)
	}
	tw.Flush()
	for _, s := range rep.Segments {
		if !s.Damaged() {
			continue
		}
		for _, r := range s.Lost {
			fmt.Fprintf(w, "  %s: bytes %d-%d damaged (up to %d records)\n", s.Path, r.Offset, r.End, r.MaxRecords())
		}
	}
	return damaged
}

func (a *app) adminJournalSalvageCmd() *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "salvage",
		Short: "Keep the valid records of damaged journal segments so the server starts",
		Long: `Move every damaged segment of the ingest journal aside (to NAME.wal.corrupt,
kept for inspection) and write its valid records to new segments, so that
the server starts and replays them into the telemetry store. It prints what
was kept and the damaged byte ranges that were lost. Stop the server first.

Records after a damaged range are renumbered no lower than they were, so
none that the store has not applied is skipped; one it had applied may be
stored again.`,
		Example: `  mote admin journal salvage --data-dir /var/lib/mote`,
		Args:    exactArgs(),
		RunE: run(func(cmd *cobra.Command, _ []string) error {
			j, err := a.journalDir(cmd, dir)
			if err != nil {
				return err
			}
			out, err := wal.Salvage(j)
			for _, r := range out {
				fmt.Fprintf(a.stdout, "%s: moved to %s\n", r.Path, r.MovedTo)
				for _, k := range r.Kept {
					fmt.Fprintf(a.stdout, "  kept records %d-%d in %s\n", k.First, k.Last, k.Path)
				}
				for _, l := range r.Lost {
					fmt.Fprintf(a.stdout, "  LOST bytes %d-%d (up to %d records)\n", l.Offset, l.End, l.MaxRecords())
				}
			}
			if err != nil {
				return err
			}
			if len(out) == 0 {
				fmt.Fprintln(a.stdout, "no damaged segment: nothing to do")
			}
			return nil
		}),
	}
	cmd.Flags().StringVar(&dir, "data-dir", datadir.Default, "the server's data directory (env "+EnvDataDir+")")
	return cmd
}
