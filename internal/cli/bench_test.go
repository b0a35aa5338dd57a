package cli_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moteiot/mote/internal/cli"
	"github.com/moteiot/mote/internal/daemontest"
)

func benchLine(t *testing.T, stdout string) map[string]any {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if len(lines) != 1 {
		t.Fatalf("stdout has %d lines; want one JSON line:\n%s", len(lines), stdout)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &m); err != nil {
		t.Fatalf("stdout is not a JSON line: %v\n%s", err, stdout)
	}
	return m
}

func TestBench(t *testing.T) {
	s := daemontest.Start(t)
	secret := s.Device(t, "bench")

	t.Run("preset with overrides", func(t *testing.T) {
		stdout, stderr, code := run(t, "bench", "--addr", s.MQTT, "--user", "bench", "--pass", secret,
			"--root", "things/bench", "--scenario", "b-fanin-qos1@small", "--pubs", "4", "--count", "800", "--broker", "mote")
		if code != cli.ExitOK {
			t.Fatalf("exit %d; want 0\n%s", code, stderr)
		}
		m := benchLine(t, stdout)
		for k, want := range map[string]any{"scenario": "b-fanin-qos1@small", "topology": "fanin", "broker": "mote",
			"qos": 1.0, "pubs": 4.0, "subs": 1.0, "sent": 800.0, "acked": 800.0, "received": 800.0, "lost": 0.0, "dup": 0.0} {
			if m[k] != want {
				t.Errorf("%s = %v; want %v", k, m[k], want)
			}
		}
		if v, _ := m["p99_us"].(float64); v <= 0 {
			t.Errorf("p99_us = %v; want positive", m["p99_us"])
		}
		if !strings.Contains(stderr, "received 800 of 800") || !strings.Contains(stderr, "lost 0") {
			t.Errorf("summary on stderr = %q; want received 800 of 800, lost 0", stderr)
		}
	})

	t.Run("TLS with a CA file and the password from the environment", func(t *testing.T) {
		ca := filepath.Join(t.TempDir(), "ca.crt")
		if err := os.WriteFile(ca, s.CACertPEM(), 0o600); err != nil {
			t.Fatal(err)
		}
		t.Setenv(cli.EnvBenchPassword, secret)
		out := filepath.Join(t.TempDir(), "runs.jsonl")
		stdout, stderr, code := run(t, "bench", "--addr", s.MQTTS, "--cacert", ca, "--user", "bench",
			"--root", "things/bench", "--topology", "connect", "--conns", "20", "--runs", "2", "--out", out)
		if code != cli.ExitOK {
			t.Fatalf("exit %d; want 0\n%s", code, stderr)
		}
		if n := strings.Count(stdout, "\n"); n != 2 {
			t.Fatalf("stdout has %d lines; want 2 (--runs 2)", n)
		}
		b, err := os.ReadFile(out)
		if err != nil || string(b) != stdout {
			t.Fatalf("--out file = %q, %v; want the stdout lines", b, err)
		}
		m := benchLine(t, strings.SplitN(stdout, "\n", 2)[0])
		if m["tls"] != true || m["conns"] != 20.0 || m["connect_errors"] != nil {
			t.Errorf("tls %v conns %v connect_errors %v; want TLS, 20 connections, no errors", m["tls"], m["conns"], m["connect_errors"])
		}
		if v, _ := m["connects_per_sec"].(float64); v <= 0 {
			t.Errorf("connects_per_sec = %v; want positive", m["connects_per_sec"])
		}
	})

	t.Run("report", func(t *testing.T) {
		f := filepath.Join(t.TempDir(), "r.jsonl")
		lines := `{"broker":"mote","scenario":"a","msgs_per_sec":100,"p99_us":5}
{"broker":"mote","scenario":"a","msgs_per_sec":300,"p99_us":7}

{"broker":"mote","scenario":"a","msgs_per_sec":200,"p99_us":6}
`
		if err := os.WriteFile(f, []byte(lines), 0o600); err != nil {
			t.Fatal(err)
		}
		stdout, stderr, code := run(t, "bench", "report", f)
		if code != cli.ExitOK {
			t.Fatalf("exit %d; want 0\n%s", code, stderr)
		}
		row := strings.Fields(strings.Split(strings.TrimSpace(stdout), "\n")[1])
		// scenario broker runs msgs/s min-max lost dup p50 p99 ...
		if row[0] != "a" || row[2] != "3" || row[3] != "200" || row[4] != "100-300" || row[8] != "6" {
			t.Errorf("report row = %q; want 3 runs, median 200 msgs/s (100-300), median p99 6", row)
		}
		if _, _, code := run(t, "bench", "report", filepath.Join(t.TempDir(), "missing")); code != cli.ExitUsage {
			t.Errorf("report of a missing file: exit %d; want %d", code, cli.ExitUsage)
		}
	})

	t.Run("refused", func(t *testing.T) {
		_, stderr, code := run(t, "bench", "--addr", s.MQTT, "--user", "bench", "--pass", "wrong", "--pubs", "1", "--count", "1")
		if code != cli.ExitError || !strings.Contains(stderr, "CONNACK return code 4") {
			t.Errorf("wrong password: exit %d, %q; want 1 and CONNACK return code 4", code, stderr)
		}
	})

	t.Run("usage", func(t *testing.T) {
		for _, args := range [][]string{
			{"--scenario", "z-nope"},
			{"--qos", "2"},
			{"--topology", "pairs", "--pubs", "3", "--subs", "2"},
			{"--size", "8"},
		} {
			_, stderr, code := run(t, append([]string{"bench"}, args...)...)
			if code != cli.ExitUsage {
				t.Errorf("bench %v: exit %d (%s); want %d", args, code, stderr, cli.ExitUsage)
			}
		}
	})
}
