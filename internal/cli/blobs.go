package cli

import (
	"fmt"
	"os"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/moteiot/mote/internal/apiclient"
)

// ---- mote artifact ----

func (a *app) artifactCmd() *cobra.Command {
	cmd := parentCmd("artifact", "Manage firmware artifacts for OTA updates (docs/artifacts.md)", "artifacts")
	cmd.AddCommand(a.artifactUploadCmd(), a.artifactListCmd(), a.artifactGetCmd(), a.artifactDeleteCmd(), a.artifactURLCmd(), a.artifactFirmwareCmd())
	return cmd
}

func (a *app) printArtifact(x apiclient.Artifact) error {
	if a.jsonOut() {
		return a.printJSON(x)
	}
	d := newDetails(a.stdout)
	d.add("Name", x.Name)
	d.add("Version", x.Version)
	d.add("Content type", x.ContentType)
	d.add("Size", strconv.FormatInt(x.Size, 10))
	d.add("SHA-256", x.SHA256)
	d.add("Signed", yesNo(x.Signed))
	if x.SigningKey != "" {
		d.add("Signing key", x.SigningKey)
	}
	d.add("Created", fmtTime(x.CreatedAt))
	return d.flush()
}

func (a *app) artifactUploadCmd() *cobra.Command {
	var u apiclient.ArtifactUpload
	cmd := &cobra.Command{
		Use:   "upload NAME VERSION FILE [--sha256 HEX] [--signature BASE64] [--content-type TYPE]",
		Short: "Upload a firmware artifact (streamed)",
		Long: `Upload FILE as version VERSION of artifact NAME. With --sha256 the server
refuses content with another digest; --signature is the base64 ed25519
signature of the file's 32-byte SHA-256, required when the server has
--artifact-signing-keys.`,
		Example: `  mote artifact upload thermo-fw 1.4.0 build/fw.bin
  sig=$(openssl dgst -sha256 -binary fw.bin | openssl pkeyutl -sign -inkey key.pem -rawin | base64 -w0)
  mote artifact upload thermo-fw 1.4.0 fw.bin --signature "$sig"`,
		Args: exactArgs("NAME", "VERSION", "FILE"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			f, err := os.Open(args[2])
			if err != nil {
				return inputError("%v", err)
			}
			defer f.Close()
			c, err := a.client()
			if err != nil {
				return err
			}
			u.Name, u.Version = args[0], args[1]
			out, err := c.UploadArtifact(cmd.Context(), u, f)
			if err != nil {
				return err
			}
			return a.printArtifact(out)
		}),
	}
	cmd.Flags().StringVar(&u.SHA256, "sha256", "", "expected SHA-256 of the file (hex)")
	cmd.Flags().StringVar(&u.Signature, "signature", "", "base64 ed25519 signature of the file's SHA-256")
	cmd.Flags().StringVar(&u.ContentType, "content-type", "application/octet-stream", "content type devices get")
	return cmd
}

func (a *app) artifactListCmd() *cobra.Command {
	var (
		lf   listFlags
		name string
	)
	cmd := &cobra.Command{
		Use:     "list [--name NAME]",
		Aliases: []string{"ls"},
		Short:   "List artifacts",
		Args:    exactArgs(),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			if err := lf.check(); err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			list, next, err := fetch(cmd, &lf, func(cur string) ([]apiclient.Artifact, string, error) {
				return c.ListArtifacts(cmd.Context(), name, apiclient.ListOptions{Limit: lf.limit, Cursor: cur})
			})
			if err != nil {
				return err
			}
			if a.jsonOut() {
				err = a.printJSON(list)
			} else {
				t := newTable(a.stdout, "NAME", "VERSION", "SIZE", "SHA256", "SIGNED", "CREATED")
				for _, x := range list {
					t.row(x.Name, x.Version, strconv.FormatInt(x.Size, 10), truncate(x.SHA256, 16), yesNo(x.Signed), fmtTime(x.CreatedAt))
				}
				err = t.flush()
			}
			a.moreHint("artifacts", next)
			return err
		}),
	}
	lf.register(cmd, "artifacts")
	cmd.Flags().StringVar(&name, "name", "", "only versions of this artifact")
	return cmd
}

func (a *app) artifactGetCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "get NAME VERSION",
		Short: "Show an artifact version (VERSION latest: the newest)",
		Args:  exactArgs("NAME", "VERSION"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			out, err := c.GetArtifact(cmd.Context(), args[0], args[1])
			if err != nil {
				return err
			}
			return a.printArtifact(out)
		}),
	}
}

func (a *app) artifactDeleteCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "delete NAME VERSION",
		Short: "Delete an artifact version (refused while a job uses it)",
		Args:  exactArgs("NAME", "VERSION"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			if err := c.DeleteArtifact(cmd.Context(), args[0], args[1]); err != nil {
				return err
			}
			a.printf("deleted artifact %s %s\n", args[0], args[1])
			return nil
		}),
	}
}

func (a *app) artifactURLCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "url NAME VERSION",
		Short: "Print a short-lived signed download URL",
		Args:  exactArgs("NAME", "VERSION"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			out, err := c.ArtifactURL(cmd.Context(), args[0], args[1])
			if err != nil {
				return err
			}
			if a.jsonOut() {
				return a.printJSON(out)
			}
			a.printf("%s\n", out.URL)
			return nil
		}),
	}
}

func (a *app) artifactFirmwareCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "firmware",
		Short: "Show the fleet's firmware distribution (reported shadow state)",
		Args:  exactArgs(),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			out, err := c.FleetFirmware(cmd.Context())
			if err != nil {
				return err
			}
			if a.jsonOut() {
				return a.printJSON(out)
			}
			t := newTable(a.stdout, "VERSION", "THINGS")
			for _, v := range out.Versions {
				name := v.Version
				if name == "" {
					name = "(none reported)"
				}
				t.row(name, strconv.Itoa(v.Things))
			}
			return t.flush()
		}),
	}
}

// ---- mote file ----

func (a *app) fileCmd() *cobra.Command {
	cmd := parentCmd("file", "Files uploaded by devices (docs/files.md)", "files")
	cmd.AddCommand(a.fileListCmd(), a.fileGetCmd(), a.fileDownloadCmd(), a.fileDeleteCmd())
	return cmd
}

func (a *app) fileListCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "list THING",
		Aliases: []string{"ls"},
		Short:   "List a thing's files",
		Args:    exactArgs("THING"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			list, err := c.ListFiles(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if a.jsonOut() {
				return a.printJSON(list)
			}
			t := newTable(a.stdout, "NAME", "SIZE", "SHA256", "UPLOADING", "UPDATED")
			for _, f := range list {
				up := ""
				if f.Upload != nil {
					up = strconv.FormatInt(f.Upload.Received, 10) + " bytes"
				}
				t.row(f.Name, strconv.FormatInt(f.Size, 10), truncate(f.SHA256, 16), up, fmtTime(f.UpdatedAt))
			}
			return t.flush()
		}),
	}
}

func (a *app) fileGetCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "get THING NAME",
		Short: "Show a file's metadata",
		Args:  exactArgs("THING", "NAME"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			f, err := c.GetFile(cmd.Context(), args[0], args[1])
			if err != nil {
				return err
			}
			if a.jsonOut() {
				return a.printJSON(f)
			}
			d := newDetails(a.stdout)
			d.add("Thing", f.Thing)
			d.add("Name", f.Name)
			d.add("Content type", f.ContentType)
			d.add("Complete", yesNo(f.Complete))
			d.add("Size", strconv.FormatInt(f.Size, 10))
			d.add("SHA-256", f.SHA256)
			if f.Upload != nil {
				d.add("Uploading", fmt.Sprintf("%d bytes received", f.Upload.Received))
			}
			d.add("Updated", fmtTime(f.UpdatedAt))
			return d.flush()
		}),
	}
}

func (a *app) fileDownloadCmd() *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "download THING NAME [-f FILE]",
		Short: "Download a file (to stdout, or to FILE with -f)",
		Args:  exactArgs("THING", "NAME"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			w := a.stdout
			if out != "" {
				f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
				if err != nil {
					return inputError("%v", err)
				}
				defer f.Close()
				w = f
			}
			n, err := c.DownloadFile(cmd.Context(), args[0], args[1], w)
			if err != nil {
				return err
			}
			if out != "" {
				a.printf("wrote %d bytes to %s\n", n, out)
			}
			return nil
		}),
	}
	cmd.Flags().StringVarP(&out, "file", "f", "", "write to this new file instead of stdout")
	return cmd
}

func (a *app) fileDeleteCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "delete THING NAME",
		Short: "Delete a file",
		Args:  exactArgs("THING", "NAME"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			if err := c.DeleteFile(cmd.Context(), args[0], args[1]); err != nil {
				return err
			}
			a.printf("deleted file %s of %s\n", args[1], args[0])
			return nil
		}),
	}
}
