package cli

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/moteiot/mote/internal/apiclient"
)

const enrollmentHelp = `An enrollment group lets devices register themselves (docs/provisioning.md):
with a symmetric key (the device proves HMAC-SHA256(group key, registration id),
over POST /api/v1/provisioning/register or MQTT) or an external X.509 CA
(verified by proof of possession; devices are registered on their first TLS
connect, or use the AWS fleet-provisioning topics with a claim certificate).`

func (a *app) enrollmentCmd() *cobra.Command {
	cmd := parentCmd("enrollment", "Manage enrollment groups (device self-registration)", "enrollments")
	cmd.Long = enrollmentHelp
	cmd.AddCommand(a.enrollmentCreateCmd(), a.enrollmentListCmd(), a.enrollmentGetCmd(), a.enrollmentEnableCmd(true), a.enrollmentEnableCmd(false),
		a.enrollmentDeleteCmd(), a.enrollmentCodeCmd(), a.enrollmentVerifyCmd())
	return cmd
}

func (a *app) enrollmentCreateCmd() *cobra.Command {
	var (
		e       apiclient.Enrollment
		caFile  string
		attrs   []string
		desired string
		disable bool
	)
	cmd := &cobra.Command{
		Use:   "create NAME (--symmetric-key | --ca-file FILE)",
		Short: "Create an enrollment group (a symmetric key is shown only this once)",
		Example: `  mote enrollment create plant-3 --symmetric-key --type sensor --attr site=lyon --max-devices 5000
  mote enrollment create maker --ca-file maker-ca.pem --name-template 'dev-{CN}'`,
		Args: exactArgs("NAME"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			e.Name = args[0]
			sym, _ := cmd.Flags().GetBool("symmetric-key")
			switch {
			case sym && caFile == "":
				e.Attestation.Type = "symmetricKey"
			case !sym && caFile != "":
				b, err := os.ReadFile(caFile)
				if err != nil {
					return usageError{err}
				}
				e.Attestation.Type, e.Attestation.CACertificate = "x509CA", string(b)
			default:
				return usageError{fmt.Errorf("give exactly one of --symmetric-key and --ca-file")}
			}
			if len(attrs) > 0 {
				e.Attributes = map[string]string{}
				for _, kv := range attrs {
					k, v, ok := strings.Cut(kv, "=")
					if !ok {
						return usageError{fmt.Errorf("--attr %q: want key=value", kv)}
					}
					e.Attributes[k] = v
				}
			}
			if desired != "" {
				if !json.Valid([]byte(desired)) {
					return usageError{fmt.Errorf("--desired: not JSON")}
				}
				e.Desired = json.RawMessage(desired)
			}
			if disable {
				f := false
				e.Enabled = &f
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			out, err := c.CreateEnrollment(cmd.Context(), e)
			if err != nil {
				return err
			}
			return a.printEnrollment(out)
		}),
	}
	f := cmd.Flags()
	f.Bool("symmetric-key", false, "the group holds a generated 256-bit key (shown once)")
	f.StringVar(&caFile, "ca-file", "", "the group trusts this external CA certificate (PEM), once verified")
	f.StringVar(&e.Attestation.Mode, "mode", "", "x509CA: jitr (register on first connect, default) or claim (claim certificates for the AWS flow)")
	f.StringVar(&e.Type, "type", "", "thing type of every device")
	f.StringSliceVar(&e.Groups, "group", nil, "static group of every device (repeatable)")
	f.StringSliceVar(&e.Policies, "policy", nil, "policy attached to every device (repeatable)")
	f.StringArrayVar(&attrs, "attr", nil, "attribute key=value of every device (repeatable)")
	f.StringVar(&desired, "desired", "", "initial desired shadow state (a JSON object)")
	f.IntVar(&e.MaxDevices, "max-devices", 0, "most devices the group registers (0: no limit)")
	f.StringVar(&e.NamePattern, "name-pattern", "", "thing names must match this glob (or regular expression starting with ^)")
	f.StringVar(&e.NameTemplate, "name-template", "", "JITR: thing name over the certificate subject, e.g. dev-{CN}; AWS: over the parameters")
	f.BoolVar(&disable, "disabled", false, "create the group disabled")
	return cmd
}

func (a *app) enrollmentListCmd() *cobra.Command {
	var lf listFlags
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List enrollment groups",
		Args:    exactArgs(),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			if err := lf.check(); err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			list, next, err := fetch(cmd, &lf, func(cur string) ([]apiclient.Enrollment, string, error) {
				return c.ListEnrollments(cmd.Context(), apiclient.ListOptions{Limit: lf.limit, Cursor: cur})
			})
			if err != nil {
				return err
			}
			if a.jsonOut() {
				err = a.printJSON(list)
			} else {
				t := newTable(a.stdout, "NAME", "ATTESTATION", "ENABLED", "REGISTERED", "MAX")
				for _, x := range list {
					t.row(x.Name, x.Attestation.Type, fmt.Sprint(x.Enabled != nil && *x.Enabled), fmt.Sprint(x.Registered), fmt.Sprint(x.MaxDevices))
				}
				err = t.flush()
			}
			a.moreHint("enrollments", next)
			return err
		}),
	}
	lf.register(cmd, "enrollment groups")
	return cmd
}

func (a *app) enrollmentGetCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "get NAME",
		Short: "Show an enrollment group",
		Args:  exactArgs("NAME"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			out, err := c.GetEnrollment(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return a.printEnrollment(out)
		}),
	}
}

func (a *app) enrollmentEnableCmd(on bool) *cobra.Command {
	use, short := "enable", "Let an enrollment group register devices again"
	if !on {
		use, short = "disable", "Stop an enrollment group from registering devices"
	}
	return &cobra.Command{
		Use:   use + " NAME",
		Short: short,
		Args:  exactArgs("NAME"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			out, err := c.UpdateEnrollment(cmd.Context(), args[0], map[string]any{"enabled": on})
			if err != nil {
				return err
			}
			return a.printEnrollment(out)
		}),
	}
}

func (a *app) enrollmentDeleteCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete an enrollment group (the things it registered stay)",
		Args:  exactArgs("NAME"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			return c.DeleteEnrollment(cmd.Context(), args[0])
		}),
	}
}

func (a *app) enrollmentCodeCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "verification-code NAME",
		Short: "Get a code for an x509CA group's proof of possession (sign a certificate with CN = the code)",
		Args:  exactArgs("NAME"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			out, err := c.EnrollmentVerificationCode(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if a.jsonOut() {
				return a.printJSON(out)
			}
			d := newDetails(a.stdout)
			d.add("Code", out.VerificationCode)
			d.add("Expires", fmtTime(out.ExpiresAt))
			return d.flush()
		}),
	}
}

func (a *app) enrollmentVerifyCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "verify NAME CERT-FILE",
		Short: "Prove possession of an x509CA group's CA with a verification certificate",
		Args:  exactArgs("NAME", "CERT-FILE"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			b, err := os.ReadFile(args[1])
			if err != nil {
				return usageError{err}
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			out, err := c.VerifyEnrollmentCA(cmd.Context(), args[0], string(b))
			if err != nil {
				return err
			}
			return a.printEnrollment(out)
		}),
	}
}

func (a *app) printEnrollment(x apiclient.Enrollment) error {
	if a.jsonOut() {
		return a.printJSON(x)
	}
	d := newDetails(a.stdout)
	d.add("Name", x.Name)
	d.add("Attestation", x.Attestation.Type)
	if x.Attestation.PrimaryKey != "" {
		d.add("Primary key", x.Attestation.PrimaryKey+" (shown only this once)")
	}
	if x.Attestation.Type == "x509CA" {
		d.add("CA fingerprint", x.Attestation.CAFingerprint)
		d.add("CA verified", fmt.Sprint(x.Attestation.Verified != nil && *x.Attestation.Verified))
		d.add("Mode", x.Attestation.Mode)
	}
	d.add("Enabled", fmt.Sprint(x.Enabled != nil && *x.Enabled))
	d.add("Registered", fmt.Sprint(x.Registered))
	d.add("Max devices", fmt.Sprint(x.MaxDevices))
	if x.Type != "" {
		d.add("Type", x.Type)
	}
	if x.ExpiresAt != nil {
		d.add("Expires", fmtTime(*x.ExpiresAt))
	}
	return d.flush()
}

const claimHelp = `A claim token lets one device (or a phone app acting for it) register itself
once with a CSR: POST /api/v1/provisioning/claim {"token", "csr"}. Its QR code
carries the endpoint, the token and Mote's CA fingerprint. Only a hash of the
token is kept: it is shown, with the QR code, only when created.`

func (a *app) claimCmd() *cobra.Command {
	cmd := parentCmd("claim", "Manage one-time claim tokens", "claims")
	cmd.Long = claimHelp
	cmd.AddCommand(a.claimCreateCmd(), a.claimListCmd(), a.claimGetCmd(), a.claimDeleteCmd())
	return cmd
}

func (a *app) claimCreateCmd() *cobra.Command {
	var (
		n      apiclient.NewClaim
		qrFile string
	)
	cmd := &cobra.Command{
		Use:     "create [--thing NAME] [--enrollment GROUP] [--ttl 24h] [--qr FILE.png]",
		Short:   "Create a claim token (shown only this once)",
		Example: `  mote claim create --thing kiosk-7 --ttl 72h --qr kiosk-7.png`,
		Args:    exactArgs(),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			out, err := c.CreateClaim(cmd.Context(), n)
			if err != nil {
				return err
			}
			if qrFile != "" && out.QR != nil {
				png, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(out.QR.PNG, "data:image/png;base64,"))
				if err != nil {
					return fmt.Errorf("decode the QR code: %w", err)
				}
				if err := os.WriteFile(qrFile, png, 0o600); err != nil {
					return err
				}
			}
			if a.jsonOut() {
				return a.printJSON(out)
			}
			d := newDetails(a.stdout)
			d.add("ID", out.ID)
			d.add("Token", out.Token+" (shown only this once)")
			d.add("Thing", out.Thing)
			d.add("Expires", fmtTime(out.ExpiresAt))
			if qrFile != "" {
				d.add("QR code", qrFile)
			}
			return d.flush()
		}),
	}
	f := cmd.Flags()
	f.StringVar(&n.Thing, "thing", "", "the thing the token registers (else the CSR's common name names it)")
	f.StringVar(&n.Enrollment, "enrollment", "", "the enrollment group whose type, groups, attributes and policies the thing gets")
	f.StringVar(&n.TTL, "ttl", "", "validity, e.g. 72h (default --provisioning-claim-ttl of the server)")
	f.StringVar(&qrFile, "qr", "", "write the QR code (PNG) to this file")
	return cmd
}

func (a *app) claimListCmd() *cobra.Command {
	var lf listFlags
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List claim tokens (never the tokens)",
		Args:    exactArgs(),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			if err := lf.check(); err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			list, next, err := fetch(cmd, &lf, func(cur string) ([]apiclient.Claim, string, error) {
				return c.ListClaims(cmd.Context(), apiclient.ListOptions{Limit: lf.limit, Cursor: cur})
			})
			if err != nil {
				return err
			}
			if a.jsonOut() {
				err = a.printJSON(list)
			} else {
				t := newTable(a.stdout, "ID", "THING", "EXPIRES", "REDEEMED")
				for _, x := range list {
					t.row(x.ID, x.Thing, fmtTime(x.ExpiresAt), fmtTimePtr(x.RedeemedAt))
				}
				err = t.flush()
			}
			a.moreHint("claims", next)
			return err
		}),
	}
	lf.register(cmd, "claim tokens")
	return cmd
}

func (a *app) claimGetCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "get ID",
		Short: "Show a claim token",
		Args:  exactArgs("ID"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			out, err := c.GetClaim(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if a.jsonOut() {
				return a.printJSON(out)
			}
			d := newDetails(a.stdout)
			d.add("ID", out.ID)
			d.add("Thing", out.Thing)
			d.add("Expires", fmtTime(out.ExpiresAt))
			d.add("Redeemed", fmtTimePtr(out.RedeemedAt))
			if out.RedeemedThing != "" {
				d.add("Redeemed by", out.RedeemedThing)
			}
			return d.flush()
		}),
	}
}

func (a *app) claimDeleteCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "delete ID",
		Short: "Delete a claim token (an unused token stops working)",
		Args:  exactArgs("ID"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			return c.DeleteClaim(cmd.Context(), args[0])
		}),
	}
}
