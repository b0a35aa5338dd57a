package cli

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/moteiot/mote/internal/apiclient"
)

const jobHelp = `A job is work for a set of things: a job document (any JSON object the
devices understand), targets (things, groups, later a fleet query), and how
fast to roll it out, when to abort, how long an execution may take and how
often to retry. Devices follow the AWS IoT Jobs device API on
$aws/things/THING/jobs/... (or $mote/things/THING/jobs/..., or the HTTP
device API). See docs/jobs.md.`

func (a *app) jobCmd() *cobra.Command {
	cmd := parentCmd("job", "Create and follow jobs (staged rollouts to devices)", "jobs")
	cmd.Long = jobHelp
	cmd.AddCommand(a.jobCreateCmd(), a.jobListCmd(), a.jobGetCmd(), a.jobCancelCmd(), a.jobDeleteCmd(), a.jobExecutionsCmd(), a.jobThingCmd())
	return cmd
}

func (a *app) jobCreateCmd() *cobra.Command {
	var (
		file, id, desc, document, query string
		things, groups                  []string
		perMinute                       int
		continuous                      bool
	)
	cmd := &cobra.Command{
		Use:   "create (--file JOB.json | ID --document JSON (--things A,B | --groups G | --query Q)) [--max-per-minute N] [--continuous]",
		Short: "Create a job",
		Long: `Create a job, from a file holding the request body of POST /api/v1/jobs
(--file, - for stdin), or from flags for the common case.`,
		Example: `  mote job create reboot-1 --document '{"operation":"reboot"}' --groups lamps --max-per-minute 60
  mote job create --file ota.json`,
		Args: cobra.MaximumNArgs(1),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			var spec json.RawMessage
			if file != "" {
				if len(args) > 0 || document != "" {
					return usageErrorf("give --file or ID and --document, not both")
				}
				b, err := a.readInput("file", file)
				if err != nil {
					return err
				}
				if !json.Valid(b) {
					return inputError("--file %s: not valid JSON", file)
				}
				spec = b
			} else {
				if len(args) == 0 {
					return usageErrorf("give the job's ID (or --file)")
				}
				id = args[0]
				if !json.Valid([]byte(document)) {
					return inputError("--document: not JSON: %s", document)
				}
				body := map[string]any{"jobId": id, "document": json.RawMessage(document)}
				if desc != "" {
					body["description"] = desc
				}
				t := map[string]any{}
				if len(things) > 0 {
					t["things"] = things
				}
				if len(groups) > 0 {
					t["groups"] = groups
				}
				if query != "" {
					t["query"] = query
				}
				body["targets"] = t
				if perMinute > 0 {
					body["rollout"] = map[string]int{"maximumPerMinute": perMinute}
				}
				if continuous {
					body["targetSelection"] = "continuous"
				}
				spec, _ = json.Marshal(body)
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			j, err := c.CreateJob(cmd.Context(), spec)
			if err != nil {
				return err
			}
			return a.printJob(j)
		}),
	}
	f := cmd.Flags()
	f.StringVarP(&file, "file", "f", "", "the job request (JSON file; - for stdin)")
	f.StringVar(&desc, "description", "", "description")
	f.StringVar(&document, "document", "", "the job document (a JSON object)")
	f.StringSliceVar(&things, "things", nil, "target things (comma-separated)")
	f.StringSliceVar(&groups, "groups", nil, "target groups (comma-separated)")
	f.StringVar(&query, "query", "", "target query (needs the fleet index)")
	f.IntVar(&perMinute, "max-per-minute", 0, "release at most this many executions per minute (1 to 1000; 0: all at once)")
	f.BoolVar(&continuous, "continuous", false, "also run on things that join the target groups later")
	return cmd
}

func (a *app) printJob(j apiclient.Job) error {
	if a.jsonOut() {
		return a.printJSON(j)
	}
	d := newDetails(a.stdout)
	d.add("Job", j.JobID)
	d.add("Status", j.Status)
	if j.ReasonCode != "" || j.Comment != "" {
		d.add("Reason", strings.TrimSpace(j.ReasonCode+" "+j.Comment))
	}
	d.add("Description", j.Description)
	d.add("Targets", string(j.Targets))
	d.add("Selection", j.TargetSelection)
	if len(j.Rollout) > 0 {
		d.add("Rollout", string(j.Rollout))
	}
	d.add("Released", fmt.Sprint(j.Released))
	d.add("Executions", countsText(j.Counts))
	d.add("Created", fmtTime(j.CreatedAt))
	d.add("Completed", fmtTimePtr(j.CompletedAt))
	return d.flush()
}

func countsText(m map[string]int) string {
	var parts []string
	for k, v := range m {
		if v > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", k, v))
		}
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

func (a *app) jobListCmd() *cobra.Command {
	var lf listFlags
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List jobs by id",
		Args:    cobra.NoArgs,
		RunE: run(func(cmd *cobra.Command, args []string) error {
			if err := lf.check(); err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			list, next, err := fetch(cmd, &lf, func(cur string) ([]apiclient.Job, string, error) {
				return c.ListJobs(cmd.Context(), apiclient.ListOptions{Limit: lf.limit, Cursor: cur})
			})
			if err != nil {
				return err
			}
			if a.jsonOut() {
				err = a.printJSON(list)
			} else {
				t := newTable(a.stdout, "JOB", "STATUS", "SELECTION", "RELEASED", "CREATED", "DESCRIPTION")
				for _, j := range list {
					t.row(j.JobID, j.Status, j.TargetSelection, fmt.Sprint(j.Released), fmtTime(j.CreatedAt), truncate(j.Description, 40))
				}
				err = t.flush()
			}
			a.moreHint("jobs", next)
			return err
		}),
	}
	lf.register(cmd, "jobs")
	return cmd
}

func (a *app) jobGetCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "get ID",
		Short: "Show a job and its executions' counts per status",
		Args:  exactArgs("ID"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			j, err := c.GetJob(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return a.printJob(j)
		}),
	}
}

func (a *app) jobCancelCmd() *cobra.Command {
	var in apiclient.JobCancel
	cmd := &cobra.Command{
		Use:   "cancel ID [--force] [--comment TEXT]",
		Short: "Cancel a job (with --force also its executions in progress)",
		Args:  exactArgs("ID"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			j, err := c.CancelJob(cmd.Context(), args[0], in)
			if err != nil {
				return err
			}
			return a.printJob(j)
		}),
	}
	cmd.Flags().BoolVar(&in.Force, "force", false, "also cancel executions in progress")
	cmd.Flags().StringVar(&in.ReasonCode, "reason-code", "", "reason code kept with the job")
	cmd.Flags().StringVar(&in.Comment, "comment", "", "comment kept with the job")
	return cmd
}

func (a *app) jobDeleteCmd() *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "delete ID [--force]",
		Short: "Delete a job and its executions (--force: also one in progress)",
		Args:  exactArgs("ID"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			if err := c.DeleteJob(cmd.Context(), args[0], force); err != nil {
				return err
			}
			a.printf("deleted job %s\n", args[0])
			return nil
		}),
	}
	cmd.Flags().BoolVar(&force, "force", false, "delete a job in progress (its executions are canceled first)")
	return cmd
}

func (a *app) printExecutions(list []apiclient.JobExecution) error {
	if a.jsonOut() {
		return a.printJSON(list)
	}
	t := newTable(a.stdout, "JOB", "THING", "STATUS", "EXECUTION", "VERSION", "UPDATED", "DETAILS")
	for _, x := range list {
		t.row(x.JobID, x.ThingName, x.Status, fmt.Sprint(x.ExecutionNumber), fmt.Sprint(x.VersionNumber), fmtTime(x.LastUpdatedAt), fmtAttrs(x.StatusDetails))
	}
	return t.flush()
}

func (a *app) jobExecutionsCmd() *cobra.Command {
	var lf listFlags
	cmd := &cobra.Command{
		Use:     "executions ID",
		Aliases: []string{"exec"},
		Short:   "List a job's executions by thing",
		Args:    exactArgs("ID"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			if err := lf.check(); err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			list, next, err := fetch(cmd, &lf, func(cur string) ([]apiclient.JobExecution, string, error) {
				return c.ListJobExecutions(cmd.Context(), args[0], apiclient.ListOptions{Limit: lf.limit, Cursor: cur})
			})
			if err != nil {
				return err
			}
			err = a.printExecutions(list)
			a.moreHint("executions", next)
			return err
		}),
	}
	lf.register(cmd, "executions")
	return cmd
}

func (a *app) jobThingCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "thing THING",
		Short: "List a thing's job executions, oldest first",
		Args:  exactArgs("THING"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			list, err := c.ListThingJobs(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return a.printExecutions(list)
		}),
	}
}
