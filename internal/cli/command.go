package cli

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/moteiot/mote/internal/apiclient"
	"github.com/moteiot/mote/internal/httpapi/wire"
)

const commandHelp = `Commands are queued for a device and delivered when it can take them: at
once if it is connected and subscribed to $mote/things/THING/commands/+, or
when it connects, or when it polls GET /api/v1/devices/THING/commands. A
command not delivered within its TTL expires. The device reports the outcome
(succeeded, failed or rejected) on $mote/things/THING/commands/ID/result.

Standard commands, whose payload the server checks: reboot {"delaySeconds"},
lock {"message", "pin"}, wipe {"confirm": true}, locate {}, configure
{"settings": {...}}. Any other name is free, with any JSON payload. See
docs/commands.md.`

func (a *app) commandCmd() *cobra.Command {
	cmd := parentCmd("command", "Send queued commands to devices", "commands", "cmd")
	cmd.Long = commandHelp
	cmd.AddCommand(a.commandSendCmd(), a.commandGetCmd(), a.commandListCmd(), a.commandCancelCmd())
	return cmd
}

// commandDone reports whether a command reached a final status.
func commandDone(status string) bool {
	switch status {
	case wire.CommandQueued, wire.CommandDelivered:
		return false
	}
	return true
}

func (a *app) commandSendCmd() *cobra.Command {
	var (
		payload string
		ttl     time.Duration
		wait    time.Duration
	)
	cmd := &cobra.Command{
		Use:   "send THING NAME [--payload JSON] [--ttl 1h] [--wait 30s]",
		Short: "Queue a command for a device",
		Long: `Queue a command for a device and print it. With --wait, wait up to that long
for the outcome: exit code 0 if the device reported succeeded, 1 if it
failed, rejected it, or the command expired or was cancelled, 1 also if the
wait ended first (the command stays queued).`,
		Example: `  mote command send lamp-1 reboot --payload '{"delaySeconds": 5}'
  mote command send lamp-1 locate --wait 1m
  mote command send lamp-1 wipe --payload '{"confirm": true}' --ttl 24h`,
		Args: exactArgs("THING", "NAME"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			in := apiclient.CommandInput{Name: args[1]}
			if cmd.Flags().Changed("payload") {
				if !json.Valid([]byte(payload)) {
					return inputError("--payload: not JSON: %s", payload)
				}
				in.Payload = json.RawMessage(payload)
			}
			if cmd.Flags().Changed("ttl") {
				if ttl < time.Second || ttl > 30*24*time.Hour || ttl%time.Second != 0 {
					return usageErrorf("--ttl must be whole seconds from 1s to 720h, not %s", ttl)
				}
				in.TTLSeconds = int(ttl / time.Second)
			}
			if wait < 0 {
				return usageErrorf("--wait must not be negative")
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			out, err := c.SendCommand(cmd.Context(), args[0], in)
			if err != nil {
				return err
			}
			if wait == 0 {
				return a.printCommand(out)
			}
			deadline := time.Now().Add(wait)
			for !commandDone(out.Status) && time.Now().Before(deadline) {
				select {
				case <-cmd.Context().Done():
					return cmd.Context().Err()
				case <-time.After(min(250*time.Millisecond, time.Until(deadline))):
				}
				if out, err = c.GetCommand(cmd.Context(), args[0], out.ID); err != nil {
					return err
				}
			}
			if err := a.printCommand(out); err != nil {
				return err
			}
			switch {
			case out.Status == wire.CommandSucceeded:
				return nil
			case !commandDone(out.Status):
				return fmt.Errorf("command %s is still %s after %s", out.ID, out.Status, wait)
			}
			return fmt.Errorf("command %s %s", out.ID, out.Status)
		}),
	}
	cmd.Flags().StringVar(&payload, "payload", "", "payload (JSON)")
	cmd.Flags().DurationVar(&ttl, "ttl", time.Hour, "time to live: not delivered by then, the command expires (1s to 720h)")
	cmd.Flags().DurationVar(&wait, "wait", 0, "wait up to this long for the device's outcome")
	return cmd
}

func (a *app) commandGetCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "get THING ID",
		Short: "Show a command, its status and the device's result",
		Args:  exactArgs("THING", "ID"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			out, err := c.GetCommand(cmd.Context(), args[0], args[1])
			if err != nil {
				return err
			}
			return a.printCommand(out)
		}),
	}
}

func (a *app) commandCancelCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "cancel THING ID",
		Short: "Cancel a command not yet delivered (exit code 4 once delivered)",
		Args:  exactArgs("THING", "ID"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			out, err := c.CancelCommand(cmd.Context(), args[0], args[1])
			if err != nil {
				return err
			}
			return a.printCommand(out)
		}),
	}
}

func (a *app) commandListCmd() *cobra.Command {
	var (
		lf     listFlags
		status string
	)
	cmd := &cobra.Command{
		Use:     "list THING [--status STATUS]",
		Aliases: []string{"ls"},
		Short:   "List a device's commands, newest first",
		Args:    exactArgs("THING"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			if err := lf.check(); err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			list, next, err := fetch(cmd, &lf, func(cur string) ([]wire.Command, string, error) {
				return c.ListCommands(cmd.Context(), args[0], status, apiclient.ListOptions{Limit: lf.limit, Cursor: cur})
			})
			if err != nil {
				return err
			}
			if a.jsonOut() {
				err = a.printJSON(list)
			} else {
				t := newTable(a.stdout, "ID", "NAME", "STATUS", "CREATED", "EXPIRES", "RESULT")
				for _, x := range list {
					t.row(x.ID, x.Name, x.Status, fmtTime(x.CreatedAt), fmtTime(x.ExpiresAt), resultText(x.Result))
				}
				err = t.flush()
			}
			a.moreHint("commands", next)
			return err
		}),
	}
	lf.register(cmd, "commands")
	cmd.Flags().StringVar(&status, "status", "", "only commands in this status (queued, delivered, succeeded, failed, rejected, expired, cancelled)")
	return cmd
}

func resultText(r *wire.CommandResult) string {
	if r == nil {
		return ""
	}
	if len(r.Output) == 0 {
		return r.Status
	}
	return r.Status + " " + truncate(string(r.Output), 60)
}

func (a *app) printCommand(x wire.Command) error {
	if a.jsonOut() {
		return a.printJSON(x)
	}
	d := newDetails(a.stdout)
	d.add("ID", x.ID)
	d.add("Thing", x.Thing)
	d.add("Name", x.Name)
	d.add("Payload", string(x.Payload))
	d.add("Status", x.Status)
	d.add("Created", fmtTime(x.CreatedAt))
	d.add("Expires", fmtTime(x.ExpiresAt))
	d.add("Delivered", fmtTimePtr(x.DeliveredAt))
	d.add("Completed", fmtTimePtr(x.CompletedAt))
	if x.Result != nil {
		d.add("Result", x.Result.Status)
		d.add("Output", string(x.Result.Output))
	}
	return d.flush()
}
