package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/moteiot/mote/internal/apiclient"
	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/sim"
)

const simLong = `Simulate a fleet of devices: things PREFIX-0001..PREFIX-N of type
simulated-sensor are created through the API (or reused), each gets a fresh
secret (the secrets earlier runs gave them are deleted), and each connects
over MQTT 5 to publish telemetry on things/{thing}/telemetry: temperature,
humidity, battery, lat/lon moving along a path, speed, rssi.

Every device keeps its reported shadow, applies desired state from the
shadow delta (rate, locked, firmware; other keys are echoed), executes the
standard commands (reboot, lock, unlock, wipe, locate, configure) and
answers the direct methods ping, locate, getTelemetry, getState and
getConfig.

The MQTT address is --mqtt, else the server's host (from --server) with
the MQTT port the server reports. Ctrl-C disconnects every device cleanly
and prints a summary. See docs/simulator.md.`

func (a *app) simCmd() *cobra.Command {
	var (
		devices, parallel    int
		rate, otaFailureRate float64
		qos                  int
		mqttAddr             string
		prefix, typ, grp     string
		useTLS               bool
		duration             time.Duration
		scenario             string
		scenarioSpeed        float64
	)
	cmd := &cobra.Command{
		Use:   "sim [--devices N] [--rate R]",
		Short: "Simulate devices: telemetry, shadows, commands and methods over MQTT",
		Long:  simLong,
		Example: `  mote sim --devices 20
  mote sim --devices 1000 --rate 0.2 --parallel 64
  mote sim --devices 5 --mqtt mqtt.example.com:1883 --duration 10m
  mote sim --devices 5 --scenario geofence   # an alarm within a minute`,
		Args: exactArgs(),
		RunE: run(func(cmd *cobra.Command, _ []string) error {
			if devices < 1 {
				return usageErrorf("--devices must be at least 1, not %d", devices)
			}
			if rate < sim.MinRate || rate > sim.MaxRate {
				return usageErrorf("--rate must be between %g and %g messages per second per device, not %g", sim.MinRate, sim.MaxRate, rate)
			}
			if qos != 0 && qos != 1 {
				return usageErrorf("--qos must be 0 or 1, not %d", qos)
			}
			if parallel < 1 {
				return usageErrorf("--parallel must be at least 1, not %d", parallel)
			}
			if duration < 0 {
				return usageErrorf("--duration must not be negative")
			}
			if scenario != "" && !slices.Contains(sim.Scenarios, scenario) {
				return usageErrorf("--scenario must be one of %s, not %q", strings.Join(sim.Scenarios, ", "), scenario)
			}
			if scenarioSpeed < 1 || scenarioSpeed > 1000 {
				return usageErrorf("--scenario-speed must be from 1 to 1000, not %g", scenarioSpeed)
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			return a.runSim(cmd.Context(), c, simRun{
				prov:     sim.ProvisionOptions{Devices: devices, Prefix: prefix, Type: typ, Group: grp, Parallel: parallel, Rate: rate},
				opts:     sim.Options{Rate: rate, QoS: byte(qos), Parallel: parallel, OTAFailureRate: otaFailureRate},
				mqtt:     mqttAddr,
				tls:      useTLS,
				duration: duration,
				scenario: scenario,
				speed:    scenarioSpeed,
			})
		}),
	}
	fl := cmd.Flags()
	fl.IntVarP(&devices, "devices", "n", 10, "number of simulated devices")
	fl.Float64VarP(&rate, "rate", "r", sim.DefaultRate, "telemetry messages per second per device")
	fl.StringVar(&mqttAddr, "mqtt", "", "MQTT address host:port (default: the --server host and the server's MQTT port)")
	fl.BoolVar(&useTLS, "tls", false, "connect over MQTTS, trusting the server's CA")
	fl.StringVar(&prefix, "prefix", sim.DefaultPrefix, "thing names are PREFIX-0001, PREFIX-0002, ...")
	fl.StringVar(&typ, "type", sim.DefaultType, "thing type of the devices (created if missing)")
	fl.StringVar(&grp, "group", sim.DefaultGroup, "group of the devices (created if missing)")
	fl.IntVar(&parallel, "parallel", sim.DefaultParallel, "API calls and MQTT connects in flight at once")
	fl.Float64Var(&otaFailureRate, "ota-failure-rate", 0, "fraction (0 to 1) of job executions the devices fail on purpose (jobs, OTA)")
	fl.IntVar(&qos, "qos", 1, "QoS of telemetry messages (0 or 1)")
	fl.DurationVar(&duration, "duration", 0, "stop after this long (default: run until Ctrl-C)")
	fl.StringVar(&scenario, "scenario", "", "drive the first device into tripping a detector, creating its analytics rule if absent: "+strings.Join(sim.Scenarios, ", "))
	fl.Float64Var(&scenarioSpeed, "scenario-speed", 1, "run the scenario (and its rule's durations) this many times faster than real time")
	return cmd
}

type simRun struct {
	prov     sim.ProvisionOptions
	opts     sim.Options
	mqtt     string
	tls      bool
	duration time.Duration
	scenario string
	speed    float64
}

// simSummary is the --output json answer of mote sim.
type simSummary struct {
	Created            int     `json:"created"`
	Reused             int     `json:"reused"`
	CredentialsDeleted int     `json:"credentialsDeleted"`
	MQTT               string  `json:"mqtt"`
	Seconds            float64 `json:"seconds"`
	MessagesPerSecond  float64 `json:"messagesPerSecond"`
	// AllConnectedSeconds is how long after the start every device was
	// connected (absent if that never happened).
	AllConnectedSeconds float64 `json:"allConnectedSeconds,omitempty"`
	sim.Stats
}

func (a *app) runSim(ctx context.Context, c *apiclient.Client, r simRun) error {
	// Status goes to stdout, unless stdout is for the JSON summary.
	status := a.stdout
	if a.jsonOut() {
		status = a.stderr
	}
	term := isTerminal(status)

	addr, tlsConf, err := a.simMQTT(ctx, c, r.mqtt, r.tls)
	if err != nil {
		return interrupted(ctx, status, err)
	}
	r.opts.MQTTAddr, r.opts.TLS = addr, tlsConf
	r.opts.APIBase = c.BaseURL // relative download URLs in job documents

	first, last := sim.ThingName(orDefault(r.prov.Prefix, sim.DefaultPrefix), 1), sim.ThingName(orDefault(r.prov.Prefix, sim.DefaultPrefix), r.prov.Devices)
	fmt.Fprintf(status, "Provisioning %d devices (%s .. %s) on %s ...\n", r.prov.Devices, first, last, c.BaseURL)
	if term {
		r.prov.Progress = func(done, total int) {
			if done%50 == 0 || done == total {
				fmt.Fprintf(status, "\r%d/%d ready\x1b[K", done, total)
			}
		}
	}
	provStart := time.Now()
	ids, rep, err := sim.Provision(ctx, c, r.prov)
	if term {
		fmt.Fprint(status, "\r\x1b[K")
	}
	if err != nil {
		return interrupted(ctx, status, err)
	}
	fmt.Fprintf(status, "%d created, %d reused (%d old secrets deleted) in %s. Connecting to %s; Ctrl-C stops.\n",
		rep.Created, rep.Reused, rep.CredentialsDeleted, time.Since(provStart).Round(time.Millisecond), addr)

	if r.scenario != "" {
		sc, err := sim.NewScenario(r.scenario, r.speed, r.opts.Rate, ids[0])
		if err != nil {
			return err
		}
		created, err := sc.EnsureRule(ctx, c, orDefault(r.prov.Type, sim.DefaultType))
		if err != nil {
			return interrupted(ctx, status, err)
		}
		verb := "Using the existing"
		if created {
			verb = "Created"
		}
		fmt.Fprintf(status, "Scenario %s: %s analytics rule %s; %s will raise a %q alarm.\n", sc.Name, strings.ToLower(verb[:1])+verb[1:], sc.RuleName(), ids[0].Thing, sc.AlarmType())
		r.opts.Scenario = sc
	}
	fleet, err := sim.NewFleet(ids, r.opts)
	if err != nil {
		return err
	}
	runCtx, cancel := ctx, context.CancelFunc(func() {})
	if r.duration > 0 {
		runCtx, cancel = context.WithTimeout(ctx, r.duration)
	}
	defer cancel()
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- fleet.Run(runCtx) }()

	// Wake every second; without a terminal, print a status line every
	// 10 s only.
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	ticks := 0
	prev, prevAt := fleet.Stats(), start
	var runErr error
loop:
	for {
		select {
		case runErr = <-done:
			break loop
		case now := <-tick.C:
			ticks++
			st := fleet.Stats()
			if st.AllConnected > 0 && prev.AllConnected == 0 {
				if term {
					fmt.Fprint(status, "\r\x1b[K")
				}
				fmt.Fprintf(status, "All %d devices connected in %s.\n", st.Devices, st.AllConnected.Round(time.Millisecond))
			}
			if !term && ticks%10 != 0 {
				prev.AllConnected = st.AllConnected
				continue
			}
			rate := float64(st.Sent-prev.Sent) / now.Sub(prevAt).Seconds()
			if st.Errors > prev.Errors && st.LastError != "" {
				if term {
					fmt.Fprint(status, "\r\x1b[K")
				}
				fmt.Fprintf(status, "error: %s\n", st.LastError)
			}
			line := statusLine(st, rate)
			if term {
				fmt.Fprintf(status, "\r%s\x1b[K", line)
			} else {
				fmt.Fprintf(status, "%s %s\n", time.Now().UTC().Format(time.TimeOnly), line)
			}
			prev, prevAt = st, now
		}
	}
	if term {
		fmt.Fprintln(status)
	}
	if runErr != nil {
		return runErr
	}
	st := fleet.Stats()
	secs := time.Since(start).Seconds()
	sum := simSummary{Created: rep.Created, Reused: rep.Reused, CredentialsDeleted: rep.CredentialsDeleted,
		MQTT: addr, Seconds: secs, MessagesPerSecond: float64(st.Sent) / secs, AllConnectedSeconds: st.AllConnected.Seconds(), Stats: st}
	if a.jsonOut() {
		return a.printJSON(sum)
	}
	fmt.Fprintf(status, "Stopped after %s: %s sent %s (%.1f/s); %s, %s, %s, %s, %s.\n",
		time.Since(start).Round(time.Second), plural(int64(st.Devices), "device"), plural(st.Sent, "message"), sum.MessagesPerSecond,
		plural(st.Commands, "command"), plural(st.Methods, "method"), plural(st.Deltas, "delta"), plural(st.Reconnects, "reconnect"), plural(st.Errors, "error"))
	if st.LastError != "" {
		fmt.Fprintf(status, "Last error: %s\n", st.LastError)
	}
	return nil
}

// statusLine is the one-line live status.
func statusLine(st sim.Stats, rate float64) string {
	return fmt.Sprintf("connected %d/%d  sent %d  cmds %d  methods %d  deltas %d  jobs %d (%d failed)  reconnects %d  errors %d  %.1f msg/s",
		st.Connected, st.Devices, st.Sent, st.Commands, st.Methods, st.Deltas, st.Jobs, st.JobsFailed, st.Reconnects, st.Errors, rate)
}

// interrupted turns an error caused by Ctrl-C into a clean stop.
func interrupted(ctx context.Context, w io.Writer, err error) error {
	if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		fmt.Fprintln(w, "Interrupted.")
		return nil
	}
	return err
}

// plural is "1 thing" or "n things".
func plural(n int64, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// simMQTT returns the MQTT address the devices connect to: --mqtt, else
// the --server host with the port the server reports; and the TLS
// configuration for --tls (trusting the server's CA).
func (a *app) simMQTT(ctx context.Context, c *apiclient.Client, flag string, useTLS bool) (string, *tls.Config, error) {
	u, err := url.Parse(c.BaseURL)
	if err != nil {
		return "", nil, usageErrorf("bad --server %q: %v", c.BaseURL, err)
	}
	host := u.Hostname()
	addr := flag
	if addr != "" {
		h, p, err := net.SplitHostPort(addr)
		if err != nil {
			var ae *net.AddrError
			if !errors.As(err, &ae) || ae.Err != "missing port in address" {
				return "", nil, usageErrorf("--mqtt must be host:port, not %q", flag)
			}
			// A host alone: the standard port.
			h, p = strings.Trim(addr, "[]"), "1883"
			if useTLS {
				p = "8883"
			}
		}
		if h == "" {
			h = host
		}
		addr, host = net.JoinHostPort(h, p), h
	} else {
		info, err := c.Server(ctx)
		if err != nil {
			return "", nil, fmt.Errorf("ask the server for its MQTT port (or pass --mqtt): %w", err)
		}
		listen, name := info.MQTT, "MQTT"
		if useTLS {
			listen, name = info.MQTTS, "MQTTS"
		}
		_, p, err := net.SplitHostPort(listen)
		if err != nil || p == "" {
			return "", nil, &core.Error{Kind: core.KindUnavailable, Msg: fmt.Sprintf("the server at %s has no %s listener: pass --mqtt HOST:PORT", c.BaseURL, name)}
		}
		addr = net.JoinHostPort(host, p)
	}
	if !useTLS {
		return addr, nil, nil
	}
	pem, err := c.CACert(ctx)
	if err != nil {
		return "", nil, fmt.Errorf("get the server's CA certificate: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return "", nil, fmt.Errorf("the server's CA certificate (%s/api/v1/ca.pem) is not PEM", c.BaseURL)
	}
	return addr, &tls.Config{RootCAs: pool, ServerName: host, MinVersion: tls.VersionTLS12}, nil
}
