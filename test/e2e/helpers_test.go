package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Time limits. Every subprocess runs under a context with one of these, so
// nothing can hang the package.
const (
	buildTimeout    = 5 * time.Minute  // go build of cmd/mote (cold cache, -race)
	cmdTimeout      = 20 * time.Second // one CLI or mosquitto command
	serverLifetime  = 2 * time.Minute  // a mote serve process, whatever happens
	bannerTimeout   = 20 * time.Second // from exec to a complete banner
	shutdownTimeout = 10 * time.Second // SIGTERM to exit
	waitDelay       = 5 * time.Second  // output copying after a kill
)

// moteBin is the binary TestMain builds.
var moteBin string

// TestMain builds cmd/mote once, from the module root, into a temporary
// directory.
func TestMain(m *testing.M) {
	os.Exit(buildAndRun(m))
}

func buildAndRun(m *testing.M) int {
	root, err := moduleRoot()
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 1
	}
	tmp, err := os.MkdirTemp("", "mote-e2e-bin-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 1
	}
	defer os.RemoveAll(tmp)
	moteBin = filepath.Join(tmp, "mote")

	args := []string{"build", "-o", moteBin}
	if raceEnabled {
		args = append(args, "-race")
	}
	args = append(args, "./cmd/mote")
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	cmd.WaitDelay = waitDelay
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: FAILED to build the mote binary: go %s (in %s): %v\n%s\n",
			strings.Join(args, " "), root, err, out)
		return 1
	}
	return m.Run()
}

// moduleRoot walks up from the working directory to the directory holding
// go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

// baseEnv is the test's environment without MOTE_* variables, so that a
// developer's own MOTE_SERVER, MOTE_TOKEN or MOTE_CONFIG cannot leak in.
//
// With -race it also sets atexit_sleep_ms=0 in GORACE: a race-enabled
// binary otherwise sleeps a second before every successful exit.
func baseEnv(extra ...string) []string {
	var env []string
	gorace := ""
	for _, kv := range os.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(k, "MOTE_"):
		case k == "GORACE":
			gorace = v
		default:
			env = append(env, kv)
		}
	}
	if raceEnabled {
		gorace = strings.TrimSpace(gorace + " atexit_sleep_ms=0")
	}
	if gorace != "" {
		env = append(env, "GORACE="+gorace)
	}
	return append(env, extra...)
}

// ---- output capture ----

// outBuf collects a subprocess's output and signals every write.
type outBuf struct {
	mu     sync.Mutex
	b      bytes.Buffer
	notify chan struct{}
}

func newOutBuf() *outBuf { return &outBuf{notify: make(chan struct{}, 1)} }

func (o *outBuf) Write(p []byte) (int, error) {
	o.mu.Lock()
	o.b.Write(p)
	o.mu.Unlock()
	select {
	case o.notify <- struct{}{}:
	default:
	}
	return len(p), nil
}

func (o *outBuf) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.String()
}

// proc is a subprocess running in the background.
type proc struct {
	name           string
	cmd            *exec.Cmd
	cancel         context.CancelFunc
	stdout, stderr *outBuf
	exited         chan struct{} // closed once Wait returned
	err            error         // Wait's error, valid after exited
}

// startProc starts a background process that is killed when lifetime ends
// or the test finishes.
func startProc(t *testing.T, lifetime time.Duration, env []string, name string, args ...string) *proc {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), lifetime)
	p := &proc{name: name, cancel: cancel, stdout: newOutBuf(), stderr: newOutBuf(), exited: make(chan struct{})}
	p.cmd = exec.CommandContext(ctx, name, args...)
	p.cmd.Env = env
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	p.cmd.WaitDelay = waitDelay
	if err := p.cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		cancel()
		<-p.exited // bounded: the context kill plus WaitDelay
	})
	return p
}

// waitOutput waits until cond holds for stdout, the process exits or
// timeout passes, and returns stdout and whether cond held.
func (p *proc) waitOutput(timeout time.Duration, cond func(stdout string) bool) (string, bool) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		out := p.stdout.String()
		if cond(out) {
			return out, true
		}
		select {
		case <-p.stdout.notify:
		case <-p.exited:
			out = p.stdout.String()
			return out, cond(out)
		case <-timer.C:
			return p.stdout.String(), false
		}
	}
}

// wait waits up to timeout for the process to exit and returns its exit
// code; it fails the test if the process does not exit in time.
func (p *proc) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.exited:
	case <-time.After(timeout):
		p.cancel()
		<-p.exited
		t.Fatalf("%s did not exit within %v; stdout:\n%s\nstderr:\n%s", p.name, timeout, p.stdout, p.stderr)
	}
	return exitCode(t, p.name, p.err)
}

func exitCode(t *testing.T, name string, err error) int {
	t.Helper()
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.Exited() {
		return ee.ExitCode()
	}
	t.Fatalf("%s: %v", name, err)
	return -1
}

// result is a finished command.
type result struct {
	code           int
	stdout, stderr string
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// run runs a command to completion within cmdTimeout.
func run(t *testing.T, env []string, name string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = waitDelay
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("%s %s: timed out after %v\nstdout:\n%s\nstderr:\n%s", name, strings.Join(args, " "), cmdTimeout, &stdout, &stderr)
	}
	return result{code: exitCode(t, name, err), stdout: stdout.String(), stderr: stderr.String()}
}

// ---- the CLI ----

// cli runs the mote binary as an API client with MOTE_SERVER and
// MOTE_TOKEN in its environment.
type cli struct{ server, token string }

func (c cli) run(t *testing.T, args ...string) result {
	t.Helper()
	return run(t, baseEnv("MOTE_SERVER="+c.server, "MOTE_TOKEN="+c.token), moteBin, args...)
}

// ok runs a command that must succeed.
func (c cli) ok(t *testing.T, args ...string) result {
	t.Helper()
	r := c.run(t, args...)
	if r.code != 0 {
		t.Fatalf("mote %s: %v", strings.Join(args, " "), r)
	}
	return r
}

// okJSON runs a command with -o json that must succeed and decodes stdout.
func (c cli) okJSON(t *testing.T, v any, args ...string) {
	t.Helper()
	r := c.ok(t, append(args, "-o", "json")...)
	if err := json.Unmarshal([]byte(r.stdout), v); err != nil {
		t.Fatalf("mote %s -o json: stdout is not the expected JSON: %v\n%s", strings.Join(args, " "), err, r.stdout)
	}
}

// ---- the server ----

// server is a running `mote serve`.
type server struct {
	*proc
	mqtt, mqtts string // host:port
	api         string // http://host:port
	caURL       string // as the banner names it
	token       string // first-start admin token ("" on a later start)
}

var (
	reMQTT  = regexp.MustCompile(`(?m)^\s+MQTT\s+mqtt://(\S+)\s*$`)
	reMQTTS = regexp.MustCompile(`(?m)^\s+MQTTS\s+mqtts://(\S+)\s+\(CA certificate: (\S+)\)\s*$`)
	reAPI   = regexp.MustCompile(`(?m)^\s+REST API\s+(https?://\S+)/api/v1\s`)
	reToken = regexp.MustCompile(`(?m)^\s+(mote\.tok_\S+)\s*$`)
)

// startServer runs `mote serve` on dataDir (with extra flags) with every
// listener on 127.0.0.1 port 0 and parses the banner. On a first start it waits for
// the admin token too.
func startServer(t *testing.T, dataDir string, firstStart bool, extra ...string) *server {
	t.Helper()
	return startServerVia(t, nil, dataDir, firstStart, extra...)
}

// startServerVia is startServer with mote run through a wrapper command
// (e.g. prlimit --nofile=N:N) that execs it.
func startServerVia(t *testing.T, wrapper []string, dataDir string, firstStart bool, extra ...string) *server {
	t.Helper()
	args := append([]string{"serve", "--data-dir", dataDir}, extra...)
	args = append(args,
		"--mqtt-addr", "127.0.0.1:0",
		"--mqtts-addr", "127.0.0.1:0",
		"--http-addr", "127.0.0.1:0",
		"--https-addr", "127.0.0.1:0",
		"--coap-addr", "127.0.0.1:0",
		"--coaps-addr", "127.0.0.1:0")
	name := moteBin
	if len(wrapper) > 0 {
		name, args = wrapper[0], append(append(slices.Clone(wrapper[1:]), moteBin), args...)
	}
	p := startProc(t, serverLifetime, baseEnv(), name, args...)
	complete := func(out string) bool {
		if !reMQTT.MatchString(out) || !reMQTTS.MatchString(out) || !reAPI.MatchString(out) {
			return false
		}
		return !firstStart || reToken.MatchString(out)
	}
	out, ok := p.waitOutput(bannerTimeout, complete)
	if !ok {
		select {
		case <-p.exited:
			t.Fatalf("mote serve exited before printing its banner (%v)\nstdout:\n%s\nstderr:\n%s", p.err, out, p.stderr)
		default:
			t.Fatalf("mote serve printed no complete banner within %v\nstdout:\n%s\nstderr:\n%s", bannerTimeout, out, p.stderr)
		}
	}
	s := &server{proc: p}
	s.mqtt = reMQTT.FindStringSubmatch(out)[1]
	m := reMQTTS.FindStringSubmatch(out)
	s.mqtts, s.caURL = m[1], m[2]
	s.api = reAPI.FindStringSubmatch(out)[1]
	if firstStart {
		s.token = reToken.FindStringSubmatch(out)[1]
	}
	for _, a := range []string{s.mqtt, s.mqtts, strings.TrimPrefix(s.api, "http://")} {
		if !strings.HasPrefix(a, "127.0.0.1:") {
			t.Errorf("banner address %q is not on 127.0.0.1 as asked; banner:\n%s", a, out)
		}
	}
	if want := s.api + "/api/v1/ca.pem"; s.caURL != want {
		t.Errorf("banner CA URL = %q, want %q", s.caURL, want)
	}
	return s
}

// port is the port of a host:port.
func port(hostPort string) string {
	_, p, _ := strings.Cut(hostPort, ":")
	return p
}

// stop sends SIGTERM and requires a clean exit (status 0) within
// shutdownTimeout, then checks the log on stderr: JSON lines only, the
// shutdown logged, and none of the secrets.
func (s *server) stop(t *testing.T, secrets []string) {
	t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	start := time.Now()
	code := s.wait(t, shutdownTimeout)
	if code != 0 {
		t.Errorf("mote serve exited with status %d after SIGTERM, want 0\nstderr:\n%s", code, s.stderr)
	}
	t.Logf("mote serve stopped %v after SIGTERM", time.Since(start).Round(time.Millisecond))

	logs := s.stderr.String()
	var msgs []string
	for i, line := range strings.Split(logs, "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Errorf("stderr line %d is not JSON (stderr is not a terminal, so the log should be JSON): %v\n%s", i+1, err, line)
			continue
		}
		msg, _ := rec["msg"].(string)
		if _, ok := rec["level"].(string); !ok || msg == "" {
			t.Errorf("stderr line %d is JSON but not a log record with level and msg: %s", i+1, line)
		}
		msgs = append(msgs, msg)
	}
	for _, want := range []string{"mote started", "shutting down", "stopped"} {
		if !slices.Contains(msgs, want) {
			t.Errorf("log has no %q record; messages: %q", want, msgs)
		}
	}
	for _, sec := range secrets {
		if sec != "" && strings.Contains(logs, sec) {
			t.Errorf("the server log contains a secret (%.12s...)", sec)
		}
	}
}
