package cli

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/spf13/cobra"
)

const methodHelp = `Direct methods are synchronous calls to a connected device: the request is
published on $mote/things/THING/methods/METHOD/REQUEST-ID and the device
answers on $mote/things/THING/methods/res/STATUS/REQUEST-ID. A device that is
not connected fails at once (exit code 3); one that does not answer within
--timeout fails with exit code 1. See docs/methods.md.`

func (a *app) methodCmd() *cobra.Command {
	cmd := parentCmd("method", "Call direct methods on connected devices", "methods")
	cmd.Long = methodHelp
	cmd.AddCommand(a.methodInvokeCmd())
	return cmd
}

func (a *app) methodInvokeCmd() *cobra.Command {
	var (
		payload string
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "invoke THING METHOD",
		Short: "Call a method on a device and print its answer",
		Example: `  mote method invoke lamp-1 reboot
  mote method invoke lamp-1 setLevel --payload '{"level": 7}' --timeout 10s`,
		Args: exactArgs("THING", "METHOD"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			var raw json.RawMessage
			if cmd.Flags().Changed("payload") {
				if !json.Valid([]byte(payload)) {
					return inputError("--payload: not JSON: %s", payload)
				}
				raw = json.RawMessage(payload)
			}
			if timeout != 0 && (timeout < time.Second || timeout > 300*time.Second) {
				return usageErrorf("--timeout must be from 1s to 5m, not %s", timeout)
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			res, err := c.InvokeMethod(cmd.Context(), args[0], args[1], raw, timeout)
			if err != nil {
				return err
			}
			if a.output == "json" {
				b, _ := json.Marshal(res)
				return a.printRaw(b)
			}
			if _, err := fmt.Fprintf(a.stdout, "status: %d\n", res.Status); err != nil {
				return err
			}
			return a.printRaw(res.Payload)
		}),
	}
	cmd.Flags().StringVar(&payload, "payload", "", "request payload (JSON)")
	cmd.Flags().DurationVar(&timeout, "timeout", 30*time.Second, "how long to wait for the answer (1s to 5m)")
	return cmd
}
