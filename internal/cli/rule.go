package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/moteiot/mote/internal/apiclient"
	"github.com/moteiot/mote/internal/httpapi/wire"
)

func (a *app) ruleCmd() *cobra.Command {
	cmd := parentCmd("rule", "Manage rules of the rules engine (SQL → actions)", "rules")
	cmd.AddCommand(a.ruleCreateCmd(), a.ruleListCmd(), a.ruleGetCmd(), a.ruleUpdateCmd(), a.ruleDeleteCmd(),
		a.ruleEnableCmd(true), a.ruleEnableCmd(false), a.ruleTestCmd())
	return cmd
}

// ruleFlags are the flags of rule create and rule update.
type ruleFlags struct {
	sql, description, errorAction string
	actions                       []string
	disabled                      bool
}

func (f *ruleFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.sql, "sql", "", `the statement, e.g. "SELECT temp FROM 'things/+/telemetry' WHERE temp > 50"`)
	fl.StringVar(&f.description, "description", "", "description")
	fl.StringArrayVar(&f.actions, "action", nil, `an action as JSON (repeatable), e.g. '{"type":"republish","topic":"alerts/${topic(2)}"}'`)
	fl.StringVar(&f.errorAction, "error-action", "", `the error action as JSON, e.g. '{"type":"log"}'`)
	fl.BoolVar(&f.disabled, "disabled", false, "create or leave the rule disabled")
}

func (f *ruleFlags) actionsJSON() (json.RawMessage, error) {
	list := make([]json.RawMessage, 0, len(f.actions))
	for i, s := range f.actions {
		if !json.Valid([]byte(s)) {
			return nil, usageError{fmt.Errorf("--action %d is not valid JSON: %s", i+1, s)}
		}
		list = append(list, json.RawMessage(s))
	}
	b, err := json.Marshal(list)
	return b, err
}

func (f *ruleFlags) errorActionJSON() (json.RawMessage, error) {
	if f.errorAction == "" {
		return nil, nil
	}
	if !json.Valid([]byte(f.errorAction)) {
		return nil, usageError{fmt.Errorf("--error-action is not valid JSON: %s", f.errorAction)}
	}
	return json.RawMessage(f.errorAction), nil
}

func (a *app) ruleCreateCmd() *cobra.Command {
	var f ruleFlags
	cmd := &cobra.Command{
		Use:   "create NAME --sql SQL [--action JSON]...",
		Short: "Create a rule",
		Example: `  mote rule create hot --sql "SELECT temp, topic(2) AS device FROM 'things/+/telemetry' WHERE temp > 50" \
    --action '{"type":"republish","topic":"alerts/${device}"}' --error-action '{"type":"log"}'`,
		Args: exactArgs("NAME"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			actions, err := f.actionsJSON()
			if err != nil {
				return err
			}
			ea, err := f.errorActionJSON()
			if err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			enabled := !f.disabled
			r, err := c.CreateRule(cmd.Context(), apiclient.RuleInput{Name: args[0], SQL: f.sql, Description: f.description,
				Enabled: &enabled, Actions: actions, ErrorAction: ea})
			if err != nil {
				return err
			}
			return a.printRule(r)
		}),
	}
	f.register(cmd)
	_ = cmd.MarkFlagRequired("sql")
	return cmd
}

func (a *app) ruleUpdateCmd() *cobra.Command {
	var f ruleFlags
	cmd := &cobra.Command{
		Use:   "update NAME [--sql SQL] [--description TEXT] [--action JSON]... [--error-action JSON]",
		Short: "Change a rule; what is not given stays (--action replaces all actions; --error-action '' removes it)",
		Args:  exactArgs("NAME"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			cur, err := c.GetRule(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			in := apiclient.RuleInput{SQL: cur.SQL, Description: cur.Description, Enabled: &cur.Enabled, Actions: cur.Actions, ErrorAction: cur.ErrorAction}
			fl := cmd.Flags()
			if fl.Changed("sql") {
				in.SQL = f.sql
			}
			if fl.Changed("description") {
				in.Description = f.description
			}
			if fl.Changed("action") {
				if in.Actions, err = f.actionsJSON(); err != nil {
					return err
				}
			}
			if fl.Changed("error-action") {
				if in.ErrorAction, err = f.errorActionJSON(); err != nil {
					return err
				}
			}
			if fl.Changed("disabled") {
				enabled := !f.disabled
				in.Enabled = &enabled
			}
			r, err := c.ReplaceRule(cmd.Context(), args[0], in)
			if err != nil {
				return err
			}
			return a.printRule(r)
		}),
	}
	f.register(cmd)
	return cmd
}

func (a *app) ruleListCmd() *cobra.Command {
	return listCmd(a, "rules", "List rules", (*apiclient.Client).ListRules,
		[]string{"NAME", "ENABLED", "SQL", "ACTIONS"},
		func(r wire.Rule) []string {
			return []string{r.Name, fmt.Sprint(r.Enabled), truncate(r.SQL, 60), actionTypes(r.Actions)}
		})
}

func actionTypes(raw json.RawMessage) string {
	var list []struct {
		Type string `json:"type"`
	}
	_ = json.Unmarshal(raw, &list)
	var out []string
	for _, a := range list {
		out = append(out, a.Type)
	}
	return strings.Join(out, ",")
}

func (a *app) ruleGetCmd() *cobra.Command {
	return getCmd(a, "Show a rule", (*apiclient.Client).GetRule, a.printRule)
}

func (a *app) ruleEnableCmd(enable bool) *cobra.Command {
	use, short := "enable NAME", "Enable a rule (takes effect at once)"
	if !enable {
		use, short = "disable NAME", "Disable a rule (takes effect at once)"
	}
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  exactArgs("NAME"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			r, err := c.SetRuleEnabled(cmd.Context(), args[0], enable)
			if err != nil {
				return err
			}
			return a.printRule(r)
		}),
	}
}

func (a *app) ruleDeleteCmd() *cobra.Command {
	return a.deleteCmd("rule", "Delete a rule", (*apiclient.Client).DeleteRule)
}

func (a *app) ruleTestCmd() *cobra.Command {
	var sql, topic, payload, clientID, thing, messages string
	cmd := &cobra.Command{
		Use:   "test --sql SQL --topic TOPIC --payload JSON | --messages FILE",
		Short: "Evaluate a statement on a message, without running actions",
		Long: "Evaluate a statement on a message, without running actions. A windowed statement (GROUP BY ..., TUMBLING or SLIDING)\n" +
			"may be tried on timed messages instead: --messages names a file (- for standard input) holding a JSON array of\n" +
			`{"topic", "payload", "thing"?, "clientId"?, "at"} ("at" the receive time, RFC 3339); every window is closed and shown.`,
		Example: `  mote rule test --sql "SELECT temp * 2 AS t FROM 'things/+/telemetry'" --topic things/s1/telemetry --payload '{"temp": 21}'
  mote rule test --sql "SELECT avg(temp) AS a FROM 'things/+/telemetry' GROUP BY thing, TUMBLING(1m)" --messages msgs.json`,
		Args: exactArgs(),
		RunE: run(func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			p := json.RawMessage(payload)
			if !json.Valid(p) { // not JSON: send it as a string payload
				p, _ = json.Marshal(payload)
			}
			in := apiclient.RuleTest{SQL: sql, Topic: topic, Payload: p, ClientID: clientID, Thing: thing}
			if messages != "" {
				if in.Messages, err = readTestMessages(messages, cmd.InOrStdin()); err != nil {
					return err
				}
			} else if topic == "" {
				return usageErrorf("--topic (or --messages) is required")
			}
			res, err := c.TestRule(cmd.Context(), in)
			if err != nil {
				return err
			}
			if a.jsonOut() {
				return a.printJSON(res)
			}
			if res.Windows != nil || messages != "" {
				for _, w := range res.Windows {
					a.printf("%s  %s  %s\n", w.End.UTC().Format(time.RFC3339), w.Group, w.Output)
				}
				if len(res.Windows) == 0 {
					a.printf("No window.\n")
				}
				if res.Late > 0 || res.Skipped > 0 {
					a.printf("(%d late messages, %d values skipped as not numbers)\n", res.Late, res.Skipped)
				}
				return nil
			}
			if !res.Matched {
				a.printf("No match.\n")
				return nil
			}
			a.printf("%s\n", res.Output)
			return nil
		}),
	}
	fl := cmd.Flags()
	fl.StringVar(&sql, "sql", "", "the statement")
	fl.StringVar(&topic, "topic", "", "the message's topic")
	fl.StringVar(&payload, "payload", "{}", "the message's payload (JSON, or any text)")
	fl.StringVar(&clientID, "client-id", "", "the publisher's client id")
	fl.StringVar(&thing, "thing", "", "the publishing thing")
	fl.StringVar(&messages, "messages", "", "for a windowed statement: a file (- for standard input) with a JSON array of timed messages")
	_ = cmd.MarkFlagRequired("sql")
	return cmd
}

// readTestMessages reads the timed messages of rule test --messages.
func readTestMessages(name string, stdin io.Reader) ([]apiclient.RuleTestMessage, error) {
	var b []byte
	var err error
	if name == "-" {
		b, err = io.ReadAll(io.LimitReader(stdin, 16<<20))
	} else {
		b, err = os.ReadFile(name)
	}
	if err != nil {
		return nil, err
	}
	var list []apiclient.RuleTestMessage
	if err := json.Unmarshal(b, &list); err != nil {
		return nil, usageErrorf("--messages: %v (want a JSON array of {\"topic\", \"payload\", \"at\"})", err)
	}
	return list, nil
}

func (a *app) printRule(r wire.Rule) error {
	if a.jsonOut() {
		return a.printJSON(r)
	}
	d := newDetails(a.stdout)
	d.add("Name", r.Name)
	d.add("SQL", r.SQL)
	d.add("Description", r.Description)
	d.add("Enabled", fmt.Sprint(r.Enabled))
	d.add("Actions", string(r.Actions))
	if len(r.ErrorAction) > 0 {
		d.add("Error action", string(r.ErrorAction))
	}
	d.add("Created", fmtTime(r.CreatedAt))
	d.add("Updated", fmtTime(r.UpdatedAt))
	return d.flush()
}
