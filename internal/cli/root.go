// Package cli is the `mote` command line: the server (mote serve), an
// offline admin command (mote admin token) and a client of the REST API
// for everything else.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/moteiot/mote/internal/apiclient"
	"github.com/moteiot/mote/internal/core"
)

// Exit codes of mote.
const (
	ExitOK          = 0
	ExitError       = 1 // server or internal error
	ExitUsage       = 2 // usage error or invalid input (HTTP 400)
	ExitNotFound    = 3
	ExitConflict    = 4
	ExitAuth        = 5 // unauthorized or forbidden, or no token
	ExitUnreachable = 6 // the server could not be reached
)

// Defaults and environment variables of the global flags.
const (
	DefaultServer = "http://127.0.0.1:8080"
	EnvServer     = "MOTE_SERVER"
	EnvToken      = "MOTE_TOKEN"
	EnvOutput     = "MOTE_OUTPUT"
	EnvDataDir    = "MOTE_DATA_DIR"
)

const rootLong = `Mote is a self-hosted IoT platform: an MQTT broker, a device registry and
a REST API in one binary. "mote serve" runs the server; the other commands
talk to a running server over its REST API (except "mote admin token", which
works offline on the data directory).

Global flags can also be set in the environment; a flag wins over its
variable:
  --server   MOTE_SERVER   (default ` + DefaultServer + `)
  --token    MOTE_TOKEN    (an API token; "mote admin token" prints one)
  --output   MOTE_OUTPUT   (table or json; default table)

Exit codes:
  0  success
  1  server or internal error
  2  usage error or invalid input (HTTP 400)
  3  not found
  4  conflict (already exists, still in use)
  5  unauthorized or forbidden (missing, wrong or insufficient token)
  6  the server could not be reached`

// Main runs the mote command line with the given arguments (without the
// program name) and returns the process exit code. SIGINT and SIGTERM
// cancel the context of the running command.
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return execute(ctx, args, os.LookupEnv, stdin, stdout, stderr)
}

// app is the state of one run of the command line.
type app struct {
	env    func(string) (string, bool)
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer

	// Global flags, resolved against the environment before a command runs.
	server string
	token  string
	output string
}

func execute(ctx context.Context, args []string, env func(string) (string, bool), stdin io.Reader, stdout, stderr io.Writer) int {
	a := &app{env: env, stdin: stdin, stdout: stdout, stderr: stderr}
	root := a.rootCmd()
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return ExitOK
	}
	var re *runError
	if !errors.As(err, &re) {
		// Anything cobra or a flag check refused before the command ran.
		fmt.Fprintf(stderr, "mote: %v\n", err)
		if cmd != nil {
			fmt.Fprintf(stderr, "\n%s", cmd.UsageString())
		}
		return ExitUsage
	}
	fmt.Fprintf(stderr, "mote: %s\n", message(re.err))
	return exitCode(re.err)
}

func (a *app) rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "mote",
		Short:         "Mote: a self-hosted IoT platform (MQTT broker, device registry, REST API)",
		Long:          rootLong,
		SilenceErrors: true,
		SilenceUsage:  true,
		Args:          groupArgs,
		RunE:          groupRun,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return a.resolveGlobals(cmd)
		},
	}
	root.CompletionOptions.HiddenDefaultCmd = true
	pf := root.PersistentFlags()
	pf.StringVar(&a.server, "server", DefaultServer, "URL of the Mote server (env "+EnvServer+")")
	pf.StringVar(&a.token, "token", "", "API token (env "+EnvToken+")")
	pf.StringVarP(&a.output, "output", "o", "table", "output format: table or json (env "+EnvOutput+")")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })

	root.AddCommand(
		newServeCmd(),
		a.thingCmd(),
		a.shadowCmd(),
		a.methodCmd(),
		a.commandCmd(),
		a.alarmCmd(),
		a.analyticsCmd(),
		a.dashboardCmd(),
		a.jobCmd(),
		a.profileCmd(),
		a.credCmd(),
		a.policyCmd(),
		a.typeCmd(),
		a.groupCmd(),
		a.ruleCmd(),
		a.telemetryCmd(),
		a.artifactCmd(),
		a.fileCmd(),
		a.tokenCmd(),
		a.userCmd(),
		a.auditCmd(),
		a.enrollmentCmd(),
		a.claimCmd(),
		a.adminCmd(),
		a.simCmd(),
		a.benchCmd(),
	)
	return root
}

// resolveGlobals applies the environment to global flags not given on the
// command line and checks them.
func (a *app) resolveGlobals(cmd *cobra.Command) error {
	fromEnv := func(flag, env string, dst *string) {
		if f := cmd.Flags().Lookup(flag); f != nil && f.Changed {
			return
		}
		if v, ok := a.env(env); ok && v != "" {
			*dst = v
		}
	}
	fromEnv("server", EnvServer, &a.server)
	fromEnv("token", EnvToken, &a.token)
	fromEnv("output", EnvOutput, &a.output)

	a.output = strings.ToLower(strings.TrimSpace(a.output))
	if a.output != "table" && a.output != "json" {
		return usageErrorf("--output must be table or json, not %q", a.output)
	}
	a.token = strings.TrimSpace(a.token)
	return nil
}

// client returns an API client for the resolved --server and --token, or
// an error if there is no token or the server URL is malformed.
func (a *app) client() (*apiclient.Client, error) {
	if a.token == "" {
		return nil, &core.Error{Kind: core.KindUnauthorized, Msg: "no API token: pass --token or set " + EnvToken +
			" (on the server host, `mote admin token --data-dir DIR` prints a new admin token)"}
	}
	s := strings.TrimSpace(a.server)
	if !strings.Contains(s, "://") {
		s = "http://" + s
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, usageErrorf("--server must be an http:// or https:// URL such as %s, not %q", DefaultServer, a.server)
	}
	a.server = strings.TrimRight(s, "/")
	c := apiclient.New(a.server, a.token)
	c.UserAgent = "mote-cli"
	return c, nil
}

// ---- errors and exit codes ----

// usageError is a mistake in how mote was called: exit code 2 and the
// command's usage on stderr.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usageErrorf(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// runError is an error of a command that did run; its kind decides the
// exit code and no usage is shown.
type runError struct{ err error }

func (e *runError) Error() string { return e.err.Error() }
func (e *runError) Unwrap() error { return e.err }

// run adapts a command body: a usageError it returns shows the usage, any
// other error is a runtime error.
func run(fn func(cmd *cobra.Command, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		err := fn(cmd, args)
		if err == nil {
			return nil
		}
		var ue usageError
		if errors.As(err, &ue) {
			return err
		}
		return &runError{err}
	}
}

// message is what mote prints after "mote: " for a runtime error.
func message(err error) string {
	s := err.Error()
	var ae *apiclient.Error
	if errors.As(err, &ae) {
		return s // already says the field
	}
	var ce *core.Error
	if errors.As(err, &ce) && ce.Field != "" && ce.Msg != "" {
		s += " (field: " + ce.Field + ")"
	}
	return s
}

// exitCode maps a runtime error to the exit code.
func exitCode(err error) int {
	if apiclient.IsUnreachable(err) {
		return ExitUnreachable
	}
	switch apiclient.KindOf(err) {
	case core.KindInvalid, core.KindTooLarge:
		return ExitUsage
	case core.KindNotFound:
		return ExitNotFound
	case core.KindConflict:
		return ExitConflict
	case core.KindUnauthorized, core.KindForbidden:
		return ExitAuth
	}
	return ExitError
}

// inputError is invalid input found while running (a bad file, say): exit
// code 2 without the usage.
func inputError(format string, args ...any) error {
	return &core.Error{Kind: core.KindInvalid, Msg: fmt.Sprintf(format, args...)}
}

// ---- command helpers ----

// groupArgs and groupRun make a command with subcommands show its help
// when called alone and refuse an unknown subcommand as a usage error.
func groupArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
		if cmd.SuggestionsMinimumDistance <= 0 {
			cmd.SuggestionsMinimumDistance = 2
		}
		if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
			msg += "; did you mean " + strings.Join(s, " or ") + "?"
		}
		return usageError{errors.New(msg)}
	}
	return nil
}

func groupRun(cmd *cobra.Command, _ []string) error { return cmd.Help() }

// parentCmd returns a command that only holds subcommands.
func parentCmd(use, short string, aliases ...string) *cobra.Command {
	return &cobra.Command{Use: use, Short: short, Aliases: aliases, Args: groupArgs, RunE: groupRun}
}

// exactArgs requires exactly the named positional arguments.
func exactArgs(names ...string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		switch {
		case len(names) == 0 && len(args) > 0:
			return usageErrorf("%s takes no arguments, got %q", cmd.CommandPath(), args)
		case len(args) != len(names):
			return usageErrorf("%s takes %s, got %d argument(s)", cmd.CommandPath(), strings.Join(names, " "), len(args))
		}
		for i, v := range args {
			if v == "" {
				return usageErrorf("%s must not be empty", names[i])
			}
		}
		return nil
	}
}

// deleteCmd is "delete NAME" for a resource whose client method deletes by
// name: it prints `Deleted NOUN "NAME".` (nothing with --output json).
func (a *app) deleteCmd(noun, short string, del func(*apiclient.Client, context.Context, string) error) *cobra.Command {
	return &cobra.Command{
		Use:     "delete NAME",
		Aliases: []string{"rm"},
		Short:   short,
		Args:    exactArgs("NAME"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			if err := del(c, cmd.Context(), args[0]); err != nil {
				return err
			}
			if !a.jsonOut() {
				a.printf("Deleted %s %q.\n", noun, args[0])
			}
			return nil
		}),
	}
}

// getCmd is "get NAME" for a resource the client reads by name; print
// shows it (table or JSON).
func getCmd[T any](a *app, short string, get func(*apiclient.Client, context.Context, string) (T, error), print func(T) error) *cobra.Command {
	return &cobra.Command{
		Use:   "get NAME",
		Short: short,
		Args:  exactArgs("NAME"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			v, err := get(c, cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return print(v)
		}),
	}
}

// listCmd is "list" for a resource the client lists page by page (the
// --limit, --cursor and --all flags): JSON, or a table with header and one
// row per item. plural names the resource in hints ("groups").
func listCmd[T any](a *app, plural, short string, list func(*apiclient.Client, context.Context, apiclient.ListOptions) ([]T, string, error),
	header []string, row func(T) []string) *cobra.Command {
	var lf listFlags
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   short,
		Args:    exactArgs(),
		RunE: run(func(cmd *cobra.Command, _ []string) error {
			if err := lf.check(); err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			items, next, err := fetch(cmd, &lf, func(cur string) ([]T, string, error) {
				return list(c, cmd.Context(), apiclient.ListOptions{Limit: lf.limit, Cursor: cur})
			})
			if err != nil {
				return err
			}
			if a.jsonOut() {
				err = a.printJSON(items)
			} else {
				t := newTable(a.stdout, header...)
				for _, it := range items {
					t.row(row(it)...)
				}
				err = t.flush()
			}
			a.moreHint(plural, next)
			return err
		}),
	}
	lf.register(cmd, plural)
	return cmd
}
