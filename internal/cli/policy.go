package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/moteiot/mote/internal/apiclient"
	"github.com/moteiot/mote/internal/core"
)

func (a *app) policyCmd() *cobra.Command {
	cmd := parentCmd("policy", "Manage policies (what things may publish, subscribe to and receive)", "policies")
	cmd.AddCommand(a.policyCreateCmd(), a.policyListCmd(), a.policyGetCmd(), a.policyUpdateCmd(), a.policyDeleteCmd(),
		a.policyAttachCmd(true), a.policyAttachCmd(false))
	cmd.AddCommand(a.policyValidateCmd())
	return cmd
}

const policyFileHelp = `The file holds the policy document, for example:

  {"statements": [
    {"effect": "allow", "actions": ["publish"], "topics": ["things/${thing}/telemetry"]},
    {"effect": "allow", "actions": ["subscribe", "receive"], "topics": ["things/${thing}/commands/#"]}
  ]}`

// readDocument reads a policy document from --file.
func (a *app) readDocument(file string) (json.RawMessage, error) {
	b, err := a.readInput("file", file)
	if err != nil {
		return nil, err
	}
	var doc json.RawMessage
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, inputError("--file %s: not valid JSON: %v", file, err)
	}
	if len(bytes.TrimSpace(doc)) == 0 || doc[0] != '{' {
		return nil, inputError(`--file %s: want a JSON object {"statements": [...]}`, file)
	}
	return doc, nil
}

func (a *app) policyCreateCmd() *cobra.Command {
	var file, description string
	cmd := &cobra.Command{
		Use:     "create NAME --file DOC.json",
		Short:   "Create a policy",
		Long:    "Create a policy from a document file (- reads stdin).\n\n" + policyFileHelp,
		Example: `  mote policy create telemetry-only --file telemetry.json --description "publish telemetry"`,
		Args:    exactArgs("NAME"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			doc, err := a.readDocument(file)
			if err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			p, err := c.CreatePolicy(cmd.Context(), apiclient.NewPolicy{Name: args[0], Description: description, Document: doc})
			if err != nil {
				return err
			}
			return a.printPolicy(p)
		}),
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "policy document (JSON file; - for stdin) (required)")
	cmd.Flags().StringVar(&description, "description", "", "description")
	_ = cmd.MarkFlagRequired("file")
	return cmd
}

func (a *app) policyListCmd() *cobra.Command {
	return listCmd(a, "policies", "List policies", (*apiclient.Client).ListPolicies,
		[]string{"NAME", "BUILTIN", "STATEMENTS", "DESCRIPTION"},
		func(p apiclient.Policy) []string {
			n := "?"
			if d, err := p.Decode(); err == nil {
				n = strconv.Itoa(len(d.Statements))
			}
			return []string{p.Name, yesNo(p.Builtin), n, truncate(p.Description, 60)}
		})
}

func (a *app) policyGetCmd() *cobra.Command {
	return getCmd(a, "Show a policy and its document", (*apiclient.Client).GetPolicy, a.printPolicy)
}

func (a *app) policyUpdateCmd() *cobra.Command {
	var file, description string
	cmd := &cobra.Command{
		Use:   "update NAME [--file DOC.json] [--description TEXT]",
		Short: "Replace a policy's document and/or description",
		Long: "Replace a policy's document (--file, - reads stdin) and/or its description;\n" +
			"what is not given stays. Connected things get the new permissions at once.\n\n" + policyFileHelp,
		Args: exactArgs("NAME"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			f := cmd.Flags()
			if !f.Changed("file") && !f.Changed("description") {
				return usageErrorf("nothing to update: give --file and/or --description")
			}
			var doc json.RawMessage
			if f.Changed("file") {
				var err error
				if doc, err = a.readDocument(file); err != nil {
					return err
				}
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			if doc == nil || !f.Changed("description") {
				// PUT replaces both: keep what was not given.
				cur, err := c.GetPolicy(ctx, args[0])
				if err != nil {
					return err
				}
				if doc == nil {
					doc = cur.Document
				}
				if !f.Changed("description") {
					description = cur.Description
				}
			}
			p, err := c.UpdatePolicy(ctx, args[0], description, doc)
			if err != nil {
				return err
			}
			return a.printPolicy(p)
		}),
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "new policy document (JSON file; - for stdin)")
	cmd.Flags().StringVar(&description, "description", "", "new description")
	return cmd
}

func (a *app) policyDeleteCmd() *cobra.Command {
	return a.deleteCmd("policy", "Delete a policy (it is detached everywhere)", (*apiclient.Client).DeletePolicy)
}

// policyAttachCmd builds "policy attach" (attach true) and "policy detach".
func (a *app) policyAttachCmd(attach bool) *cobra.Command {
	var thing, typ string
	use, short, verb, prep := "attach", "Attach a policy to a thing or to a thing type", "Attached", "to"
	if !attach {
		use, short, verb, prep = "detach", "Detach a policy from a thing or from a thing type", "Detached", "from"
	}
	cmd := &cobra.Command{
		Use:   use + " POLICY (--thing THING | --type TYPE)",
		Short: short,
		Long: short + `. A policy attached to a type applies to
every thing of that type. Connected things get the new permissions at once.`,
		Example: "  mote policy " + use + " telemetry-only --thing sensor-1\n  mote policy " + use + " telemetry-only --type sensor",
		Args:    exactArgs("POLICY"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			name := args[0]
			c, err := a.client()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			if thing != "" {
				op := c.AttachPolicy
				if !attach {
					op = c.DetachPolicy
				}
				t, err := op(ctx, thing, name)
				if err != nil {
					return err
				}
				if a.jsonOut() {
					return a.printJSON(t)
				}
				a.printf("%s policy %q %s thing %q.\n", verb, name, prep, thing)
				return nil
			}

			// A type's policies are a list: read, change, write back.
			tt, err := c.GetType(ctx, typ)
			if err != nil {
				return err
			}
			has := slices.Contains(tt.Policies, name)
			switch {
			case attach && !has:
				if _, err := c.GetPolicy(ctx, name); err != nil {
					return err
				}
				policies := append(slices.Clone(tt.Policies), name)
				if tt, err = c.UpdateType(ctx, typ, apiclient.TypePatch{Policies: policies}); err != nil {
					return err
				}
			case !attach && has:
				policies := slices.DeleteFunc(slices.Clone(tt.Policies), func(p string) bool { return p == name })
				if policies == nil {
					policies = []string{}
				}
				if tt, err = c.UpdateType(ctx, typ, apiclient.TypePatch{Policies: policies}); err != nil {
					return err
				}
			case !attach:
				return core.Errorf(core.KindNotFound, "policy %q is not attached to type %q", name, typ)
			}
			if a.jsonOut() {
				return a.printJSON(tt)
			}
			a.printf("%s policy %q %s type %q.\n", verb, name, prep, typ)
			return nil
		}),
	}
	cmd.Flags().StringVar(&thing, "thing", "", "the thing")
	cmd.Flags().StringVar(&typ, "type", "", "the thing type")
	cmd.MarkFlagsOneRequired("thing", "type")
	cmd.MarkFlagsMutuallyExclusive("thing", "type")
	return cmd
}

func (a *app) printPolicy(p apiclient.Policy) error {
	if a.jsonOut() {
		return a.printJSON(p)
	}
	d := newDetails(a.stdout)
	d.add("Name", p.Name)
	d.add("Description", p.Description)
	d.add("Builtin", yesNo(p.Builtin))
	d.add("Created", fmtTime(p.CreatedAt))
	d.add("Updated", fmtTime(p.UpdatedAt))
	if err := d.flush(); err != nil {
		return err
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, p.Document, "", "  "); err != nil {
		buf.Reset()
		buf.Write(p.Document)
	}
	a.printf("Document:\n%s\n", buf.String())
	return nil
}

func (a *app) policyValidateCmd() *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:     "validate --file DOC.json",
		Short:   "Check a policy document without storing it",
		Long:    "Check a policy document as the server would on create (POST /policies:validate); a syntax error names its line and column.\n\n" + policyFileHelp,
		Example: `  mote policy validate --file telemetry.json`,
		Args:    cobra.NoArgs,
		RunE: run(func(cmd *cobra.Command, args []string) error {
			doc, err := a.readInput("file", file) // as it is: the server names the line and column
			if err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			v, err := c.ValidatePolicy(cmd.Context(), doc)
			if err != nil {
				return err
			}
			if a.jsonOut() {
				return a.printJSON(v)
			}
			_, err = fmt.Fprintf(a.stdout, "valid: %d statement(s)\n", v.Statements)
			return err
		}),
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "policy document (JSON file; - for stdin) (required)")
	_ = cmd.MarkFlagRequired("file")
	return cmd
}
