package cli

import (
	"encoding/csv"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/moteiot/mote/internal/apiclient"
	"github.com/moteiot/mote/internal/core"
)

func (a *app) thingImportCmd() *cobra.Command {
	var (
		mode, format, out string
		dryRun            bool
	)
	cmd := &cobra.Command{
		Use:   "import FILE [--mode atomic|bestEffort] [--dry-run] [--out SECRETS.csv]",
		Short: "Import things in bulk from a CSV or JSON lines file",
		Long: `Imports things from FILE ("-": standard input): CSV with a header row
(name,type,attributes.KEY,...,groups,tags,credential; groups and tags separated
by ';') or JSON lines ({"name","type","attributes","groups","tags","credential"}).
--mode atomic (default) creates every row or none; bestEffort creates the good
rows. The report lists every row that was not created with its reason.
Rows with credential "secret" get a new secret credential: the secrets are
shown once, written to --out (mode 0600) as CSV thing,credentialId,secret.
Exit code 4 when rows had errors. See docs/import.md.`,
		Example: `  mote thing import devices.csv --dry-run
  mote thing import devices.csv --out secrets.csv
  mote thing import devices.ndjson --mode bestEffort`,
		Args: exactArgs("FILE"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			ct, err := importType(format, args[0])
			if err != nil {
				return err
			}
			in := a.stdin
			if args[0] != "-" {
				f, err := os.Open(args[0])
				if err != nil {
					return inputError("%v", err)
				}
				defer f.Close()
				in = f
			}
			var secrets *os.File
			if out != "" {
				// Created before the import: the secrets must have a place to go.
				secrets, err = os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
				if err != nil {
					return inputError("--out: %v (it must not exist yet)", err)
				}
				defer secrets.Close()
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			rep, err := c.ImportThings(cmd.Context(), ct, in, mode, dryRun)
			if err != nil {
				if secrets != nil {
					secrets.Close()
					os.Remove(out)
				}
				return err
			}
			if err := a.writeSecrets(rep, secrets); err != nil {
				return err
			}
			if a.jsonOut() {
				for i := range rep.Rows {
					rep.Rows[i].Secret = "" // written to --out or printed below, not twice
				}
				if err := a.printJSON(rep); err != nil {
					return err
				}
			} else {
				verb := "created"
				if rep.DryRun {
					verb = "would be created"
				} else if !rep.Applied {
					verb = "created (nothing: the import had errors)"
					rep.Created = 0
				}
				a.printf("%d %s, %d unchanged, %d errors (mode %s)\n", rep.Created, verb, rep.Unchanged, rep.Errors, rep.Mode)
				if rep.Errors > 0 {
					t := newTable(a.stdout, "LINE", "NAME", "REASON")
					for _, r := range rep.Rows {
						if r.Result == "error" {
							t.row(fmt.Sprint(r.Line), r.Name, r.Reason)
						}
					}
					if err := t.flush(); err != nil {
						return err
					}
				}
			}
			if rep.Errors > 0 {
				return &core.Error{Kind: core.KindConflict, Msg: fmt.Sprintf("%d rows had errors", rep.Errors)}
			}
			return nil
		}),
	}
	cmd.Flags().StringVar(&mode, "mode", "", "atomic (default: every row or none) or bestEffort (the good rows)")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "check every row, create nothing")
	cmd.Flags().StringVar(&format, "format", "", "csv or jsonl (default: from the file name: .csv, or .ndjson/.jsonl)")
	cmd.Flags().StringVar(&out, "out", "", "write generated secrets to this new file (mode 0600); without it they are printed")
	return cmd
}

func importType(format, file string) (string, error) {
	if format == "" {
		switch strings.ToLower(filepath.Ext(file)) {
		case ".csv":
			format = "csv"
		case ".ndjson", ".jsonl":
			format = "jsonl"
		default:
			return "", usageErrorf("cannot tell the format of %q: name it .csv, .ndjson or .jsonl, or give --format", file)
		}
	}
	switch format {
	case "csv":
		return "text/csv", nil
	case "jsonl", "ndjson":
		return "application/x-ndjson", nil
	}
	return "", usageErrorf("--format must be csv or jsonl, not %q", format)
}

// writeSecrets hands the generated secrets over once: to the file, or
// (without --out) to standard output.
func (a *app) writeSecrets(rep apiclient.ImportReport, f *os.File) error {
	var rows [][]string
	for _, r := range rep.Rows {
		if r.Secret != "" {
			rows = append(rows, []string{r.Name, r.CredentialID, r.Secret})
		}
	}
	if len(rows) == 0 {
		return nil
	}
	w := a.stdout
	if f != nil {
		w = f
	} else {
		fmt.Fprintf(a.stderr, "%d secrets follow; they are shown only now (use --out FILE to write them to a file)\n", len(rows))
	}
	cw := csv.NewWriter(w)
	cw.Write([]string{"thing", "credentialId", "secret"})
	cw.WriteAll(rows)
	if err := cw.Error(); err != nil {
		return fmt.Errorf("write secrets: %w", err)
	}
	if f != nil {
		if err := f.Sync(); err != nil {
			return fmt.Errorf("write secrets: %w", err)
		}
		fmt.Fprintf(a.stderr, "%d secrets written to %s\n", len(rows), f.Name())
	}
	return nil
}
