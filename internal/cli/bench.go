package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/moteiot/mote/internal/loadgen"
)

// EnvBenchPassword is read when --pass is not given, so that a secret
// need not appear in the process list.
const EnvBenchPassword = "MOTE_BENCH_PASSWORD"

const benchLong = `Generate MQTT load against any broker (MQTT 3.1.1, clean sessions) and
measure throughput, loss, duplicates and latency, or connection rate and
memory per idle connection. Every run prints one JSON line on stdout and a
human summary on stderr.

Topologies (--topology):
  fanin    --pubs publishers, each on its own topic, to --subs subscribers on a + wildcard
  fanout   --pubs publishers to --subs subscribers, all on one topic
  pairs    publisher i to subscriber i, each pair on its own topic
  idle     --conns connections held open, then one subscription each
  connect  --conns connections opened and closed by --dialers: connects/s

Saturation runs publish as fast as the broker takes it (msgs/s, loss);
fixed-rate runs (--rate, total msgs/s) measure latency. Every payload
carries the send time, the publisher index and a sequence number, so each
subscriber knows what it missed (lost) or got twice (dup); latency runs from
the publisher's write to the subscriber's parse (one process, one clock)
and is kept in a log-linear histogram (<1% error).

Every run is bounded: --count and --duration bound publishing, --drain and
--maxdrain the wait for deliveries, --timeout the whole run (exit 1 when
hit). --scenario names one of the scenarios of docs/benchmarks.md and sets
its defaults; flags given explicitly win (a-fanin-qos0@5k: the same, with
the label kept in the output). scripts/bench.sh runs them all.

Mote refuses anonymous clients and keeps a device under things/{thing}/:
give one thing's credentials and that topic root, e.g.
  --user bench --pass SECRET --root things/bench
(or the password in ` + EnvBenchPassword + `).`

// benchPreset is one scenario of docs/benchmarks.md.
type benchPreset struct {
	topology        string
	pubs, subs, qos int
	size, count     int
	duration        time.Duration
	maxDrain        time.Duration
	conns           int
}

var benchPresets = map[string]benchPreset{
	"a-fanin-qos0":  {topology: loadgen.FanIn, pubs: 50, subs: 1, qos: 0, size: 64, count: 500_000, duration: 8 * time.Second},
	"b-fanin-qos1":  {topology: loadgen.FanIn, pubs: 50, subs: 1, qos: 1, size: 64, count: 500_000, duration: 8 * time.Second},
	"c-fanout-qos0": {topology: loadgen.FanOut, pubs: 1, subs: 50, qos: 0, size: 64, count: 20_000, duration: 8 * time.Second, maxDrain: 30 * time.Second},
	"d-pairs-qos1":  {topology: loadgen.Pairs, pubs: 100, subs: 100, qos: 1, size: 256, count: 500_000, duration: 8 * time.Second},
	"e-idle-10k":    {topology: loadgen.Idle, qos: 1, conns: 10_000},
	"f-connect":     {topology: loadgen.Connect, conns: 10_000},
}

func benchPresetNames() string {
	names := make([]string, 0, len(benchPresets))
	for n := range benchPresets {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

func (a *app) benchCmd() *cobra.Command {
	o := loadgen.DefaultOptions()
	var (
		qos, runs        int
		timeout          time.Duration
		useTLS, insecure bool
		caFile, sni, out string
	)
	cmd := &cobra.Command{
		Use:   "bench [--scenario NAME] [flags]",
		Short: "Generate MQTT load against any broker: throughput, loss, latency, connects/s",
		Long:  benchLong,
		Example: `  mote bench --scenario a-fanin-qos0 --user bench --root things/bench
  mote bench --scenario a-fanin-qos0 --rate 5000 --duration 5s --count 10000000
  mote bench --topology pairs --pubs 10 --subs 10 --qos 1 --count 100000
  mote bench --addr 127.0.0.1:8883 --tls --cacert ca.pem --scenario f-connect`,
		Args: exactArgs(),
		RunE: run(func(cmd *cobra.Command, _ []string) error {
			fl := cmd.Flags()
			if o.Scenario != "" {
				// NAME@LABEL (a-fanin-qos0@5k) takes NAME's defaults and keeps
				// the whole label in the output.
				name, _, _ := strings.Cut(o.Scenario, "@")
				p, ok := benchPresets[name]
				if !ok {
					return usageErrorf("--scenario %q: want one of %s, optionally with an @label (or set --topology and leave --scenario empty)", o.Scenario, benchPresetNames())
				}
				set := func(name string, apply func()) {
					if !fl.Changed(name) {
						apply()
					}
				}
				set("topology", func() { o.Topology = p.topology })
				set("qos", func() { qos = p.qos })
				if p.pubs > 0 {
					set("pubs", func() { o.Pubs = p.pubs })
					set("subs", func() { o.Subs = p.subs })
					set("size", func() { o.Size = p.size })
					set("count", func() { o.Count = p.count })
					set("duration", func() { o.Duration = p.duration })
				}
				if p.maxDrain > 0 {
					set("maxdrain", func() { o.MaxDrain = p.maxDrain })
				}
				if p.conns > 0 {
					set("conns", func() { o.Conns = p.conns })
				}
			}
			if qos != 0 && qos != 1 {
				return usageErrorf("--qos must be 0 or 1, not %d", qos)
			}
			o.QoS = byte(qos)
			if runs < 1 {
				return usageErrorf("--runs must be at least 1, not %d", runs)
			}
			if timeout <= 0 {
				return usageErrorf("--timeout must be positive")
			}
			if !fl.Changed("pass") {
				if v, ok := a.env(EnvBenchPassword); ok {
					o.Password = v
				}
			}
			if err := o.Validate(); err != nil {
				return usageErrorf("--%s", err)
			}
			if useTLS || caFile != "" || insecure {
				c, err := benchTLS(o.Addr, caFile, sni, insecure)
				if err != nil {
					return err
				}
				o.TLS = c
			}
			var w io.Writer = a.stdout
			if out != "" {
				f, err := os.OpenFile(out, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
				if err != nil {
					return fmt.Errorf("bench: open --out: %w", err)
				}
				defer f.Close()
				w = io.MultiWriter(a.stdout, f)
			}
			for i := range runs {
				if err := a.benchRun(cmd.Context(), o, timeout, w, i+1, runs); err != nil {
					return err
				}
			}
			return nil
		}),
	}
	cmd.AddCommand(a.benchReportCmd())
	fl := cmd.Flags()
	fl.StringVar(&o.Addr, "addr", o.Addr, "broker address host:port; a comma-separated list spreads the connections over a cluster's nodes (subscriber i on the node after publisher i's)")
	fl.StringVar(&o.Scenario, "scenario", "", "a scenario of docs/benchmarks.md, setting its defaults: "+benchPresetNames())
	fl.StringVar(&o.Topology, "topology", o.Topology, "fanin, fanout, pairs, idle or connect")
	fl.StringVar(&o.Broker, "broker", o.Broker, "broker label for the output")
	fl.StringVar(&o.Username, "user", "", "MQTT username for every connection (none by default)")
	fl.StringVar(&o.Password, "pass", "", "MQTT password for every connection (default $"+EnvBenchPassword+")")
	fl.StringVar(&o.Root, "root", o.Root, "first topic level(s) of every topic, e.g. things/bench for Mote")
	fl.IntVar(&o.Pubs, "pubs", o.Pubs, "publisher connections")
	fl.IntVar(&o.Subs, "subs", o.Subs, "subscriber connections (pairs: as many as --pubs)")
	fl.IntVar(&qos, "qos", 0, "QoS of publishes and subscriptions: 0 or 1")
	fl.IntVar(&o.Size, "size", o.Size, fmt.Sprintf("payload bytes (at least %d: send time, publisher, sequence)", loadgen.HeaderSize))
	fl.IntVar(&o.Count, "count", o.Count, "messages to publish in total, split across publishers")
	fl.DurationVar(&o.Duration, "duration", o.Duration, "stop publishing after this long even if --count is not reached")
	fl.Float64Var(&o.Rate, "rate", 0, "total publish rate in msgs/s, spread over the publishers (0: as fast as possible)")
	fl.IntVar(&o.Inflight, "inflight", o.Inflight, "QoS 1: unacknowledged PUBLISHes allowed per publisher")
	fl.DurationVar(&o.Drain, "drain", o.Drain, "after publishing, stop waiting once no delivery arrived for this long")
	fl.DurationVar(&o.MaxDrain, "maxdrain", o.MaxDrain, "after publishing, stop waiting for deliveries after this long in any case")
	fl.DurationVar(&timeout, "timeout", 2*time.Minute, "hard limit for each run; exits 1 when hit")
	fl.IntVar(&runs, "runs", 1, "repeat the run this many times (one JSON line each)")
	fl.StringVar(&out, "out", "", "also append the JSON lines to this file")
	fl.IntVar(&o.Conns, "conns", o.Conns, "idle, connect: connections to open")
	fl.IntVar(&o.Dialers, "dialers", o.Dialers, "idle, connect: concurrent connection attempts")
	fl.BoolVar(&o.IdleSubscribe, "idle-subscribe", o.IdleSubscribe, "idle: then subscribe each connection to its own topic at --qos")
	fl.DurationVar(&o.Settle, "settle", o.Settle, "idle: wait this long before reading the broker's RSS (with --pid)")
	fl.IntVar(&o.BrokerPID, "pid", 0, "broker process id, to read its RSS from /proc (idle; 0: skip)")
	fl.Uint16Var(&o.Keepalive, "keepalive", o.Keepalive, "MQTT keepalive seconds (no PINGREQs are sent: keep runs shorter)")
	fl.DurationVar(&o.DialTimeout, "dial-timeout", o.DialTimeout, "limit for each connect (TCP, TLS, CONNACK) and SUBACK")
	fl.BoolVar(&useTLS, "tls", false, "connect over TLS (with the system roots unless --cacert)")
	fl.StringVar(&caFile, "cacert", "", "PEM file of the CA to trust (implies --tls); Mote's is DATA_DIR/pki/ca.crt")
	fl.BoolVar(&insecure, "insecure", false, "do not verify the server's certificate (implies --tls)")
	fl.StringVar(&sni, "server-name", "", "TLS server name to verify (default: the host of --addr)")
	return cmd
}

func benchTLS(addr, caFile, serverName string, insecure bool) (*tls.Config, error) {
	c := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: serverName, InsecureSkipVerify: insecure} //nolint:gosec // --insecure is the user's explicit choice
	if c.ServerName == "" {
		host := addr
		if i := strings.LastIndexByte(addr, ':'); i >= 0 {
			host = strings.Trim(addr[:i], "[]")
		}
		c.ServerName = host
	}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, usageErrorf("--cacert: %v", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, usageErrorf("--cacert %s: no PEM certificate in it", caFile)
		}
		c.RootCAs = pool
	}
	return c, nil
}

func (a *app) benchRun(ctx context.Context, o loadgen.Options, timeout time.Duration, w io.Writer, n, of int) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	r, err := loadgen.Run(ctx, o)
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("bench: encode result: %w", err)
	}
	if _, err := fmt.Fprintf(w, "%s\n", b); err != nil {
		return fmt.Errorf("bench: write result: %w", err)
	}
	fmt.Fprint(a.stderr, benchSummary(r, n, of))
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("bench: run %d hit --timeout %s", n, timeout)
	}
	return nil
}

// benchSummary is the human reading of a result.
func benchSummary(r loadgen.Result, n, of int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s (%s, qos %d, run %d/%d) against %s", r.Scenario, r.Topology, r.QoS, n, of, r.Addr)
	if r.TLS {
		b.WriteString(" over TLS")
	}
	b.WriteString("\n")
	switch r.Topology {
	case loadgen.Idle, loadgen.Connect:
		fmt.Fprintf(&b, "  %d connections, %d failed, %.0f connects/s", r.Conns, r.ConnectErrors, r.ConnectsPerSec)
		if r.SubscribesPerS > 0 {
			fmt.Fprintf(&b, ", %.0f subscribes/s", r.SubscribesPerS)
		}
		fmt.Fprintf(&b, "; CPU %% of one core: load generator %.0f", r.LoadgenCPU)
		if r.BrokerCPU >= 0 {
			fmt.Fprintf(&b, ", broker %.0f", r.BrokerCPU)
		}
		b.WriteString("\n")
		if r.RSSConnMB > 0 {
			fmt.Fprintf(&b, "  broker RSS %.1f MB before, %.1f MB connected (%.1f KB per connection), %.1f MB subscribed\n",
				r.RSSBeforeMB, r.RSSConnMB, r.KBPerConn, r.RSSSubMB)
		}
	default:
		rate := "saturation"
		if r.Rate > 0 {
			rate = fmt.Sprintf("offered %.0f msgs/s", r.Rate)
		}
		fmt.Fprintf(&b, "  %d publishers -> %d subscribers, %d B, %s\n", r.Pubs, r.Subs, r.Size, rate)
		fmt.Fprintf(&b, "  sent %d (acked %d) in %.2fs; received %d of %d: %.0f msgs/s; lost %d (%.2f%%), dup %d\n",
			r.Sent, r.Acked, r.PubSeconds, r.Received, r.Expected, r.MsgsPerSec, r.Lost, r.LostPct, r.Dup)
		fmt.Fprintf(&b, "  latency µs: p50 %.0f  p90 %.0f  p99 %.0f  max %.0f\n", r.P50, r.P90, r.P99, r.Max)
		fmt.Fprintf(&b, "  CPU %% of one core: load generator %.0f", r.LoadgenCPU)
		if r.BrokerCPU >= 0 {
			fmt.Fprintf(&b, ", broker %.0f", r.BrokerCPU)
		}
		b.WriteString("\n")
	}
	if r.Error != "" {
		fmt.Fprintf(&b, "  stopped early: %s\n", r.Error)
	}
	return b.String()
}
