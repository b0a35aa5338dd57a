package cli

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/moteiot/mote/internal/apiclient"
	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/registry"
	"github.com/moteiot/mote/internal/store"
)

func (a *app) credCmd() *cobra.Command {
	cmd := parentCmd("cred", "Manage the credentials things connect with", "creds", "credential", "credentials")
	cmd.AddCommand(a.credCreateCmd(), a.credListCmd(), a.credGetCmd(), a.credRevokeCmd(), a.credRotateCmd(), a.credDeleteCmd(), a.credPSKCmd())
	return cmd
}

func (a *app) credCreateCmd() *cobra.Command {
	var (
		typ, csrFile, outDir, expires string
		validityDays                  int
	)
	cmd := &cobra.Command{
		Use:   "create THING --type secret|x509|symmetricKey",
		Short: "Create a credential for a thing",
		Long: `Create a credential for a thing.

--type secret: a random secret; the device connects with user name = thing
name and password = secret. The secret is shown only once.

--type x509: a client certificate from Mote's CA. Without --csr the server
makes the key pair and returns the private key once; with --csr FILE the CA
signs the device's certificate signing request and the key never leaves the
device. --out-dir DIR writes THING.crt, THING.key (mode 0600; not with
--csr) and ca.crt into DIR instead of printing them (with -o json the
private key is then left out of the output).

--type symmetricKey: a random 256-bit key (base64) for devices running an
Azure IoT Hub device SDK, which sign SAS tokens with it; shown only once,
kept sealed with the data directory's seal.key (docs/azure.md).`,
		Example: `  mote cred create sensor-1 --type secret
  mote cred create sensor-1 --type x509 --out-dir ./certs
  mote cred create sensor-1 --type x509 --csr sensor-1.csr --validity-days 90
  mote cred create sensor-1 --type symmetricKey`,
		Args: exactArgs("THING"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			thing := args[0]
			f := cmd.Flags()
			var exp *time.Time
			switch typ {
			case store.CredentialSecret, store.CredentialSymmetricKey:
				for _, fl := range []string{"csr", "validity-days", "out-dir"} {
					if f.Changed(fl) {
						return usageErrorf("--%s is for --type x509 only", fl)
					}
				}
				var err error
				if exp, err = parseExpiry("expires", expires); err != nil {
					return err
				}
			case store.CredentialX509:
				if f.Changed("expires") {
					return usageErrorf("--expires is for --type secret only; use --validity-days for x509")
				}
				if validityDays < 0 {
					return usageErrorf("--validity-days must be positive")
				}
			default:
				return usageErrorf("--type must be secret, x509 or symmetricKey, not %q", typ)
			}

			var csr []byte
			if csrFile != "" {
				var err error
				if csr, err = a.readInput("csr", csrFile); err != nil {
					return err
				}
			}
			var files *certFiles
			if outDir != "" {
				files = newCertFiles(outDir, thing, csr == nil)
				if err := files.check(); err != nil {
					return err
				}
			}

			c, err := a.client()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			var nc registry.NewCredential
			switch {
			case typ == store.CredentialSecret:
				nc, err = c.CreateSecret(ctx, thing, exp)
			case typ == store.CredentialSymmetricKey:
				nc, err = c.CreateSymmetricKey(ctx, thing, exp)
			case csr != nil:
				nc, err = c.SignCSR(ctx, thing, csr, validityDays)
			default:
				nc, err = c.IssueCertificate(ctx, thing, validityDays)
			}
			if err != nil {
				return err
			}
			if files != nil {
				if err := files.write(nc); err != nil {
					return fmt.Errorf("%w\ncredential %s was created but not saved; delete it with `mote cred delete %s %s`", err, nc.ID, thing, nc.ID)
				}
			}
			if a.jsonOut() {
				if files != nil {
					nc.PrivateKey = ""
				}
				return a.printJSON(nc)
			}
			if typ == store.CredentialSecret {
				a.printSecret(thing, nc)
				return nil
			}
			if typ == store.CredentialSymmetricKey {
				a.printf("Created symmetricKey credential %s for thing %q.\nKey: %s\n", nc.ID, thing, nc.Key)
				a.printf("The key is shown only this once: store it now.\n")
				a.printf("Azure IoT device SDK connection string (trust Mote's CA): HostName=%s;DeviceId=%s;SharedAccessKey=%s;GatewayHostName=%s:%s\n",
					a.serverHost(), thing, nc.Key, a.serverHost(), a.devicePort(true))
				return nil
			}
			a.printCert(thing, nc, files)
			return nil
		}),
	}
	f := cmd.Flags()
	f.StringVar(&typ, "type", "", "credential type: secret, x509 or symmetricKey (required)")
	f.StringVar(&csrFile, "csr", "", "x509: sign this certificate signing request (PEM file, - for stdin)")
	f.IntVar(&validityDays, "validity-days", 0, "x509: certificate validity in days (default: the server's, 365)")
	f.StringVar(&outDir, "out-dir", "", "x509: write THING.crt, THING.key and ca.crt into this directory")
	f.StringVar(&expires, "expires", "", "secret: expiry, an RFC 3339 time or a duration like 720h or 90d (default: never)")
	_ = cmd.MarkFlagRequired("type")
	return cmd
}

func (a *app) printSecret(thing string, nc registry.NewCredential) {
	a.printf("Created secret credential %s for thing %q", nc.ID, thing)
	if nc.NotAfter != nil {
		a.printf(" (expires %s)", fmtTime(*nc.NotAfter))
	}
	a.printf(".\nSecret: %s\n", nc.Secret)
	a.printf("The secret is shown only this once: store it now.\n")
	a.printf("Try: mosquitto_pub -h %s -p %s -u %s -P %s -t things/%s/telemetry -m '{\"temp\":21}'\n",
		a.serverHost(), a.devicePort(false), thing, nc.Secret, thing)
}

func (a *app) printCert(thing string, nc registry.NewCredential, files *certFiles) {
	a.printf("Created x509 credential %s for thing %q", nc.ID, thing)
	if nc.NotAfter != nil {
		a.printf(" (valid until %s)", fmtTime(*nc.NotAfter))
	}
	a.printf(".\nFingerprint: %s\n", nc.Fingerprint)
	if files != nil {
		a.printf("Wrote %s\n", strings.Join(files.written, ", "))
		key := "KEY"
		if files.key != "" {
			key = files.key
		}
		a.printf("Try: mosquitto_pub -h %s -p %s --cafile %s --cert %s --key %s -t things/%s/telemetry -m '{\"temp\":21}'\n",
			a.serverHost(), a.devicePort(true), files.ca, files.cert, key, thing)
		return
	}
	if nc.PrivateKey != "" {
		a.printf("The private key is shown only this once: store it now (or use --out-dir).\n")
	}
	a.printf("\n# %s.crt\n%s", thing, ensureNL(nc.CertPEM))
	if nc.PrivateKey != "" {
		a.printf("\n# %s.key\n%s", thing, ensureNL(nc.PrivateKey))
	}
	if nc.CACert != "" {
		a.printf("\n# ca.crt\n%s", ensureNL(nc.CACert))
	}
}

func ensureNL(s string) string {
	if s != "" && !strings.HasSuffix(s, "\n") {
		s += "\n"
	}
	return s
}

// certFiles are the files --out-dir writes.
type certFiles struct {
	dir, cert, key, ca string // key is "" with --csr
	written            []string
}

func newCertFiles(dir, thing string, withKey bool) *certFiles {
	f := &certFiles{dir: dir, cert: filepath.Join(dir, thing+".crt"), ca: filepath.Join(dir, "ca.crt")}
	if withKey {
		f.key = filepath.Join(dir, thing+".key")
	}
	return f
}

// check refuses to overwrite a certificate or key before the credential is
// created.
func (f *certFiles) check() error {
	for _, p := range []string{f.cert, f.key} {
		if p == "" {
			continue
		}
		if _, err := os.Lstat(p); err == nil {
			return core.Conflict("%s exists; remove it or choose another --out-dir", p)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

func (f *certFiles) write(nc registry.NewCredential) error {
	if err := os.MkdirAll(f.dir, 0o700); err != nil {
		return err
	}
	if f.key != "" {
		if nc.PrivateKey == "" {
			return errors.New("the server returned no private key")
		}
		if err := writeNew(f.key, nc.PrivateKey, 0o600); err != nil {
			return err
		}
		f.written = append(f.written, f.key)
	}
	if err := writeNew(f.cert, nc.CertPEM, 0o644); err != nil {
		return err
	}
	f.written = append(f.written, f.cert)
	if nc.CACert != "" {
		// The CA certificate is the same for every thing: replace it.
		if err := os.WriteFile(f.ca, []byte(ensureNL(nc.CACert)), 0o644); err != nil {
			return err
		}
		f.written = append(f.written, f.ca)
	}
	return nil
}

// writeNew creates path (which must not exist) with exactly perm.
func writeNew(path, data string, perm os.FileMode) error {
	fh, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	if err := fh.Chmod(perm); err != nil { // whatever the umask
		fh.Close()
		return err
	}
	if _, err := fh.WriteString(ensureNL(data)); err != nil {
		fh.Close()
		return err
	}
	return fh.Close()
}

func (a *app) credListCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "list THING",
		Aliases: []string{"ls"},
		Short:   "List a thing's credentials (never secrets or keys)",
		Args:    exactArgs("THING"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			creds, err := c.ListCredentials(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if a.jsonOut() {
				return a.printJSON(creds)
			}
			t := newTable(a.stdout, "ID", "TYPE", "STATUS", "EXPIRES", "CREATED", "FINGERPRINT")
			for _, cr := range creds {
				fp := cr.Fingerprint
				if len(fp) > 16 {
					fp = fp[:16] + "…"
				}
				t.row(cr.ID, cr.Type, credStatus(cr), fmtTimePtr(cr.NotAfter), fmtTime(cr.CreatedAt), fp)
			}
			return t.flush()
		}),
	}
}

func credStatus(c store.Credential) string {
	switch {
	case c.Revoked:
		return "revoked"
	case c.NotAfter != nil && !c.NotAfter.After(time.Now()):
		return "expired"
	}
	return "active"
}

func (a *app) printCred(c store.Credential) error {
	if a.jsonOut() {
		return a.printJSON(c)
	}
	d := newDetails(a.stdout)
	d.add("ID", c.ID)
	d.add("Thing", c.Thing)
	d.add("Type", c.Type)
	d.add("Status", credStatus(c))
	d.add("Expires", fmtTimePtr(c.NotAfter))
	d.add("Revoked at", fmtTimePtr(c.RevokedAt))
	d.add("Created", fmtTime(c.CreatedAt))
	if c.Fingerprint != "" {
		d.add("Fingerprint", c.Fingerprint)
	}
	if err := d.flush(); err != nil {
		return err
	}
	if c.CertPEM != "" {
		a.printf("\n%s", ensureNL(c.CertPEM))
	}
	return nil
}

func (a *app) credGetCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "get THING ID",
		Short: "Show one credential",
		Args:  exactArgs("THING", "ID"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			cr, err := c.GetCredential(cmd.Context(), args[0], args[1])
			if err != nil {
				return err
			}
			return a.printCred(cr)
		}),
	}
}

func (a *app) credRevokeCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "revoke THING ID",
		Short: "Revoke a credential (a live connection using it is closed)",
		Args:  exactArgs("THING", "ID"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			cr, err := c.RevokeCredential(cmd.Context(), args[0], args[1])
			if err != nil {
				return err
			}
			if a.jsonOut() {
				return a.printJSON(cr)
			}
			a.printf("Revoked credential %s of thing %q.\n", args[1], args[0])
			return nil
		}),
	}
}

func (a *app) credRotateCmd() *cobra.Command {
	var (
		window, csrFile string
		validityDays    int
	)
	cmd := &cobra.Command{
		Use:   "rotate THING ID",
		Short: "Replace a credential; the old one stays valid for a window",
		Long: `Replace a credential by a new one of the same type. The old one stays
valid for --window (default: the server's --credential-rotation-window,
24h), then it is refused and connections still using it are closed
(docs/credentials.md). The new secret, key or private key is shown once.`,
		Example: `  mote cred rotate sensor-1 cred_abc --window 1h
  mote cred rotate sensor-1 cred_def --csr sensor-1.csr`,
		Args: exactArgs("THING", "ID"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			r := apiclient.Rotation{Window: window, ValidityDays: validityDays}
			if csrFile != "" {
				csr, err := a.readInput("csr", csrFile)
				if err != nil {
					return err
				}
				r.CSR = string(csr)
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			rc, err := c.RotateCredential(cmd.Context(), args[0], args[1], r)
			if err != nil {
				return err
			}
			if a.jsonOut() {
				return a.printJSON(rc)
			}
			a.printf("Rotated credential %s of thing %q: the new one is %s.\n", args[1], args[0], rc.ID)
			if rc.Previous.NotAfter != nil {
				a.printf("The old one is valid until %s.\n", rc.Previous.NotAfter.Format(time.RFC3339))
			}
			switch {
			case rc.Secret != "":
				a.printf("Secret: %s\nThe secret is shown only this once: store it now.\n", rc.Secret)
			case rc.Key != "":
				a.printf("Key: %s\nThe key is shown only this once: store it now.\n", rc.Key)
			case rc.CertPEM != "":
				a.printf("%s", rc.CertPEM)
				if rc.PrivateKey != "" {
					a.printf("%s", rc.PrivateKey)
					a.printf("The private key is shown only this once: store it now.\n")
				}
			}
			return nil
		}),
	}
	f := cmd.Flags()
	f.StringVar(&window, "window", "", "how long the old credential stays valid, e.g. 1h (default: the server's --credential-rotation-window)")
	f.StringVar(&csrFile, "csr", "", "x509: sign this certificate signing request (PEM file, - for stdin)")
	f.IntVar(&validityDays, "validity-days", 0, "x509: validity of the new certificate in days (default: the server's, 365)")
	return cmd
}

func (a *app) credPSKCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "psk THING ID",
		Short: "Show the CoAP DTLS pre-shared key of a secret credential (admin; identity = the thing name)",
		Args:  exactArgs("THING", "ID"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			p, err := c.GetCredentialPSK(cmd.Context(), args[0], args[1])
			if err != nil {
				return err
			}
			if a.jsonOut() {
				return a.printJSON(p)
			}
			d := newDetails(a.stdout)
			d.add("Identity", p.Identity)
			d.add("PSK (hex)", p.PSK)
			return d.flush()
		}),
	}
}

func (a *app) credDeleteCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "delete THING ID",
		Aliases: []string{"rm"},
		Short:   "Delete a credential (a live connection using it is closed)",
		Args:    exactArgs("THING", "ID"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			if err := c.DeleteCredential(cmd.Context(), args[0], args[1]); err != nil {
				return err
			}
			if !a.jsonOut() {
				a.printf("Deleted credential %s of thing %q.\n", args[1], args[0])
			}
			return nil
		}),
	}
}

// devicePort returns the server's MQTT (or MQTTS) port for the hints
// printed after creating a credential, asking the server; the standard
// port if it cannot say.
func (a *app) devicePort(tls bool) string {
	port := "1883"
	if tls {
		port = "8883"
	}
	c, err := a.client()
	if err != nil {
		return port
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	info, err := c.Server(ctx)
	if err != nil {
		return port
	}
	addr := info.MQTT
	if tls {
		addr = info.MQTTS
	}
	if _, p, err := net.SplitHostPort(addr); err == nil && p != "" {
		return p
	}
	return port
}
