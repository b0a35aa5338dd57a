package cli

import (
	"bytes"
	"encoding/json"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/moteiot/mote/internal/apiclient"
)

const shadowHelp = `Shadows are JSON documents with a desired and a reported state, a computed
delta, per-field metadata and a version, as in AWS IoT Device Shadow. A thing
has a classic shadow (the default here, "classic" in the REST API) and any
number of named shadows (--name). Updates change only the fields given; null
deletes a field. See docs/shadows.md.`

func (a *app) shadowCmd() *cobra.Command {
	cmd := parentCmd("shadow", "Read and change device shadows", "shadows")
	cmd.Long = shadowHelp
	cmd.AddCommand(a.shadowGetCmd(), a.shadowUpdateCmd(), a.shadowDeleteCmd(), a.shadowListCmd())
	return cmd
}

// printRaw prints a JSON document indented.
func (a *app) printRaw(doc json.RawMessage) error {
	var buf bytes.Buffer
	if err := json.Indent(&buf, doc, "", "  "); err != nil {
		_, err = a.stdout.Write(append(doc, '\n'))
		return err
	}
	buf.WriteByte('\n')
	_, err := a.stdout.Write(buf.Bytes())
	return err
}

func (a *app) shadowGetCmd() *cobra.Command {
	var name string
	cmd := &cobra.Command{
		Use:     "get THING",
		Short:   "Show a shadow (desired, reported, delta, metadata, version)",
		Example: "  mote shadow get lamp-1\n  mote shadow get lamp-1 --name firmware",
		Args:    exactArgs("THING"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			doc, err := c.GetShadow(cmd.Context(), args[0], name)
			if err != nil {
				return err
			}
			return a.printRaw(doc)
		}),
	}
	cmd.Flags().StringVar(&name, "name", "", "named shadow (default: the classic shadow)")
	return cmd
}

func (a *app) shadowUpdateCmd() *cobra.Command {
	var (
		name, file, desired, reported, token string
		version                              int64
	)
	cmd := &cobra.Command{
		Use:   "update THING (--file F | --desired JSON | --reported JSON)",
		Short: "Update (or create) a shadow",
		Long: `Update a shadow. Either give a whole update document with --file (- reads
stdin), or the desired and/or reported state as JSON objects. Only the fields
given change; a null value deletes a field, and --desired null deletes the
whole desired section.`,
		Example: `  mote shadow update lamp-1 --desired '{"on": true, "level": 7}'
  mote shadow update lamp-1 --reported '{"level": null}'
  mote shadow update lamp-1 --name firmware --file update.json --version 4`,
		Args: exactArgs("THING"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			f := cmd.Flags()
			var body []byte
			switch {
			case file != "" && (f.Changed("desired") || f.Changed("reported")):
				return usageErrorf("give either --file or --desired/--reported, not both")
			case file != "":
				b, err := a.readInput("file", file)
				if err != nil {
					return err
				}
				var doc map[string]json.RawMessage
				if err := json.Unmarshal(b, &doc); err != nil {
					return inputError("--file: not a JSON object: %v", err)
				}
				if f.Changed("version") {
					doc["version"] = json.RawMessage(strconv.FormatInt(version, 10))
				}
				if token != "" {
					doc["clientToken"], _ = json.Marshal(token)
				}
				body, _ = json.Marshal(doc)
			case f.Changed("desired") || f.Changed("reported"):
				state := map[string]json.RawMessage{}
				for flag, v := range map[string]string{"desired": desired, "reported": reported} {
					if !f.Changed(flag) {
						continue
					}
					var probe any
					if err := json.Unmarshal([]byte(v), &probe); err != nil {
						return inputError("--%s: not JSON: %v", flag, err)
					}
					if _, ok := probe.(map[string]any); !ok && probe != nil {
						return inputError("--%s must be a JSON object or null", flag)
					}
					state[flag] = json.RawMessage(v)
				}
				doc := map[string]any{"state": state}
				if f.Changed("version") {
					doc["version"] = version
				}
				if token != "" {
					doc["clientToken"] = token
				}
				body, _ = json.Marshal(doc)
			default:
				return usageErrorf("nothing to update: give --file, --desired or --reported")
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			out, err := c.UpdateShadow(cmd.Context(), args[0], name, body)
			if err != nil {
				return err
			}
			return a.printRaw(out)
		}),
	}
	fl := cmd.Flags()
	fl.StringVar(&name, "name", "", "named shadow (default: the classic shadow)")
	fl.StringVarP(&file, "file", "f", "", "update document (JSON file; - for stdin)")
	fl.StringVar(&desired, "desired", "", "desired state to merge (JSON object, or null)")
	fl.StringVar(&reported, "reported", "", "reported state to merge (JSON object, or null)")
	fl.Int64Var(&version, "version", 0, "apply only if the shadow is at this version (else exit 4, conflict)")
	fl.StringVar(&token, "client-token", "", "clientToken to send (echoed in the answer)")
	return cmd
}

func (a *app) shadowDeleteCmd() *cobra.Command {
	var name string
	cmd := &cobra.Command{
		Use:   "delete THING",
		Short: "Delete a shadow (its version counter is kept)",
		Args:  exactArgs("THING"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			out, err := c.DeleteShadow(cmd.Context(), args[0], name)
			if err != nil {
				return err
			}
			if a.jsonOut() {
				return a.printRaw(out)
			}
			var d struct {
				Version int64 `json:"version"`
			}
			_ = json.Unmarshal(out, &d)
			shown := name
			if shown == "" {
				shown = apiclient.ClassicShadow
			}
			a.printf("deleted shadow %s of %s (version %d)\n", shown, args[0], d.Version)
			return nil
		}),
	}
	cmd.Flags().StringVar(&name, "name", "", "named shadow (default: the classic shadow)")
	return cmd
}

func (a *app) shadowListCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "list THING",
		Short: "List a thing's shadows",
		Args:  exactArgs("THING"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			items, err := apiclient.All(cmd.Context(), func(cursor string) ([]apiclient.ShadowInfo, string, error) {
				return c.ListShadows(cmd.Context(), args[0], apiclient.ListOptions{Limit: 1000, Cursor: cursor})
			})
			if err != nil {
				return err
			}
			if a.jsonOut() {
				if items == nil {
					items = []apiclient.ShadowInfo{}
				}
				return a.printJSON(items)
			}
			t := newTable(a.stdout, "NAME", "VERSION", "UPDATED")
			for _, s := range items {
				t.row(s.Name, strconv.FormatInt(s.Version, 10), fmtTime(s.UpdatedAt))
			}
			return t.flush()
		}),
	}
	return cmd
}
