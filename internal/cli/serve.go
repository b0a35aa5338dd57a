package cli

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/moteiot/mote/internal/config"
	"github.com/moteiot/mote/internal/daemon"
)

const serveLong = `Run the Mote server: MQTT on :1883 (TCP) and :8883 (TLS), and HTTP on
:8080 with the REST API under /api/v1, MQTT over WebSocket at /mqtt, and
/metrics, /healthz, /readyz; the same over HTTPS on :8443, where devices
may also authenticate with their client certificate. Data lives in ./mote-data unless --data-dir
says otherwise.

On first start Mote creates a certificate authority and a server
certificate in the data directory and prints an admin API token once.

Every setting is a flag, an environment variable (MOTE_ and the flag name in
upper snake case, e.g. MOTE_MQTT_ADDR) or a key of the YAML file given by
--config (the flag name, e.g. "mqtt-addr: :1884"). A flag beats the
environment, which beats the file. An address set to "" disables that
listener (MQTT, MQTTS and HTTPS only).

SIGINT or SIGTERM shuts down gracefully: clients are disconnected, presence
is written and the store is closed.`

func newServeCmd() *cobra.Command {
	cfg := config.Default()
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the Mote server",
		Long:  serveLong,
		Args:  cobra.NoArgs,
	}
	cfg.Flags(cmd.Flags())
	cmd.RunE = run(func(cmd *cobra.Command, _ []string) error {
		if err := cfg.Load(cmd.Flags(), os.LookupEnv); err != nil {
			return usageError{err}
		}
		log := newLogger(cmd.ErrOrStderr(), cfg.LogLevel, cfg.LogFormat)
		// Every connection is a file descriptor: use all the system allows.
		if soft, hard, err := daemon.RaiseFileLimit(); err != nil {
			log.Warn("cannot raise the open-file limit", "soft", soft, "hard", hard, "error", err)
		} else {
			log.Info("open-file limit", "soft", soft, "hard", hard)
		}
		d := daemon.New(cfg, log)
		if err := d.Start(cmd.Context()); err != nil {
			return err
		}
		printBanner(cmd.OutOrStdout(), d, progName(os.Args[0]))
		<-cmd.Context().Done()
		log.Info("shutting down")
		if err := d.Close(); err != nil {
			return fmt.Errorf("shutdown: %w", err)
		}
		log.Info("stopped")
		return nil
	})
	return cmd
}

// newLogger returns the server's structured logger: JSON unless format is
// text, or auto and w is a terminal.
func newLogger(w io.Writer, level, format string) *slog.Logger {
	var lv slog.Level
	_ = lv.UnmarshalText([]byte(level))
	opts := &slog.HandlerOptions{Level: lv}
	if format == "text" || (format == "auto" && isTerminal(w)) {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// progName is how to run this binary again in the banner's hints: the path
// it was started with ("./mote"), or "mote" when it was found on $PATH.
func progName(arg0 string) string {
	if arg0 == "" || !strings.ContainsRune(arg0, os.PathSeparator) && !strings.ContainsRune(arg0, '/') {
		return "mote"
	}
	return arg0
}

// printBanner tells a new user where things are and, on first start, the
// admin token; its hints run the binary as prog.
func printBanner(w io.Writer, d *daemon.Daemon, prog string) {
	a := d.Addrs()
	api := "http://" + hostPort(a.HTTP)
	fmt.Fprintf(w, "Mote is running.\n")
	if a.MQTT != "" {
		fmt.Fprintf(w, "  MQTT       mqtt://%s\n", hostPort(a.MQTT))
	}
	if a.MQTTS != "" {
		fmt.Fprintf(w, "  MQTTS      mqtts://%s  (CA certificate: %s/api/v1/ca.pem)\n", hostPort(a.MQTTS), api)
	}
	fmt.Fprintf(w, "  WebSocket  ws://%s/mqtt\n", hostPort(a.HTTP))
	fmt.Fprintf(w, "  REST API   %s/api/v1  (OpenAPI: %s/api/v1/openapi.json)\n", api, api)
	if a.HTTPS != "" {
		fmt.Fprintf(w, "  HTTPS      https://%s/api/v1  (the API over TLS; devices may use client certificates)\n", hostPort(a.HTTPS))
	}
	fmt.Fprintf(w, "  Console    %s/\n", api)
	if pw := d.InitialPassword(); pw != "" {
		fmt.Fprintf(w, "\nFirst start: sign in to the console at %s/ as user admin with this password (shown only this once):\n\n  %s\n\n", api, pw)
		fmt.Fprintf(w, "Lost it? `%s admin password --data-dir %s` sets a new one.\n", prog, d.DataDir())
	}
	if tok := d.InitialToken(); tok != "" {
		fmt.Fprintf(w, "\nFirst start: an admin API token was created. It is shown only this once:\n\n  %s\n\n", tok)
		fmt.Fprintf(w, "Try it:\n  export MOTE_SERVER=%s MOTE_TOKEN=%s\n  %s thing create my-device && %s cred create my-device --type secret\n\n", api, tok, prog, prog)
		fmt.Fprintf(w, "Lost it? `%s admin token --data-dir %s` prints a new one.\n", prog, d.DataDir())
	}
}

// hostPort turns a listen address like [::]:8080 into one a client can use.
func hostPort(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if host == "" || host == "::" || host == "0.0.0.0" || strings.HasPrefix(host, "::") {
		host = "localhost"
	}
	return net.JoinHostPort(host, port)
}
