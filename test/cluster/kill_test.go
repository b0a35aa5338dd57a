package cluster_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/moteiot/mote/internal/daemontest"
	"github.com/moteiot/mote/internal/pgtest"
)

// TestKill9 is issue 12's durability promise the hard way, with real
// processes: three nats-server processes (JetStream, replicas 3), three
// `mote serve` processes on one PostgreSQL, and six devices (paho, MQTT
// 3.1.1, QoS 1) spread over the nodes. Under load one Mote node is killed
// with SIGKILL — its devices reconnect to the survivors and go on — a
// survivor adopts its ingest backlog once the lease finds it lost, and it
// is restarted as systemd would (its JetStream subject is consumed again);
// then one NATS server is killed with SIGKILL. At the end every message a
// device got a PUBACK for is stored in PostgreSQL exactly once (the
// accounting of test/e2e's TestCrashKeepsAcknowledgedTelemetry).
func TestKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("builds mote and nats-server; not with -short")
	}
	pg := pgtest.DB(t) // skips with a message when PostgreSQL is absent
	bin := buildBinaries(t)
	dir := t.TempDir()

	// NATS: three processes in one cluster.
	ports := freePorts(t, 6)
	var routes, clients []string
	for i := range 3 {
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", ports[3+i]))
		clients = append(clients, fmt.Sprintf("nats://127.0.0.1:%d", ports[i]))
	}
	natsProcs := make([]*exec.Cmd, 3)
	for i := range 3 {
		natsProcs[i] = startProcess(t, filepath.Join(dir, fmt.Sprintf("nats-%d.log", i)), bin.nats,
			"-n", fmt.Sprintf("nats-%d", i), "-a", "127.0.0.1", "-p", fmt.Sprint(ports[i]),
			"--cluster_name", "mote-kill", "--cluster", routes[i], "--routes", strings.Join(routes, ","),
			"-js", "-sd", filepath.Join(dir, fmt.Sprintf("nats-%d", i)))
	}

	// Mote: node 0 first (its keys are copied to the others).
	nodeArgs := func(i int) []string {
		// Each node lists its own NATS server first.
		urls := []string{clients[i], clients[(i+1)%3], clients[(i+2)%3]}
		return []string{"serve", "--data-dir", filepath.Join(dir, fmt.Sprintf("node-%d", i)),
			"--store", pg, "--cluster", strings.Join(urls, ","), "--node-id", fmt.Sprintf("node-%d", i),
			"--mqtt-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--mqtts-addr", "", "--https-addr", "",
			"--coap-addr", "", "--coaps-addr", "", "--device-rate-limit", "0", "--cluster-ingest-timeout", "3s",
			// A short lease: the survivors find node-1 lost and adopt its
			// ingest backlog before it is restarted.
			"--cluster-lease-interval", "500ms", "--cluster-lease-timeout", "4s"}
	}
	nodes := make([]*moteProc, 3)
	nodes[0] = startMote(t, dir, 0, bin.mote, nodeArgs(0), true)
	for i := 1; i < 3; i++ {
		copyKeys(t, filepath.Join(dir, "node-0"), filepath.Join(dir, fmt.Sprintf("node-%d", i)))
		nodes[i] = startMote(t, dir, i, bin.mote, nodeArgs(i), false)
	}
	token := nodes[0].token
	defer func() {
		if t.Failed() {
			for i := range 3 {
				b, _ := os.ReadFile(filepath.Join(dir, fmt.Sprintf("node-%d.log", i)))
				t.Logf("node-%d log (tail):\n%s", i, tail(b, 3000))
			}
		}
	}()

	const devices = 6
	secrets := make([]string, devices)
	for i := range devices {
		name := fmt.Sprintf("k9-%d", i)
		api(t, nodes[i%3].api, token, "POST", "/api/v1/things", map[string]any{"name": name}, nil)
		var cred struct {
			Secret string `json:"secret"`
		}
		api(t, nodes[i%3].api, token, "POST", "/api/v1/things/"+name+"/credentials", map[string]any{"type": "secret"}, &cred)
		secrets[i] = cred.Secret
	}

	// Devices: each publishes {"n": k}, k = 0, 1, ..., up to 20 in flight,
	// and records what was acknowledged; when its connection breaks it
	// connects to the next node that answers.
	var (
		mu      sync.Mutex
		acked   = make([]map[int]bool, devices)
		total   atomic.Int64
		moved   atomic.Int64
		stop    = make(chan struct{})
		wg      sync.WaitGroup
		addrsMu sync.Mutex
	)
	mqttAddrs := func() []string {
		addrsMu.Lock()
		defer addrsMu.Unlock()
		return []string{nodes[0].mqtt, nodes[1].mqtt, nodes[2].mqtt}
	}
	for i := range devices {
		acked[i] = map[int]bool{}
		name := fmt.Sprintf("k9-%d", i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			k := 0
			for attempt := 0; ; attempt++ {
				select {
				case <-stop:
					return
				default:
				}
				addrs := mqttAddrs()
				cl := dialDevice(addrs[(i+attempt)%3], name, secrets[i])
				if cl == nil {
					continue
				}
				if attempt > 0 {
					moved.Add(1)
				}
				k = publishUntilBroken(cl, name, k, stop, func(n int) {
					mu.Lock()
					acked[i][n] = true
					mu.Unlock()
					total.Add(1)
				})
				cl.Disconnect(0)
			}
		}()
	}
	waitTotal := func(n int64, what string) {
		t.Helper()
		daemontest.WaitFor(t, 60*time.Second, func() error {
			if got := total.Load(); got < n {
				return fmt.Errorf("%s: %d messages acknowledged; want %d", what, got, n)
			}
			return nil
		})
	}

	// Shadows and commands from every node beside the telemetry (killwork_test.go).
	work := startKillWork(t, func() []*moteProc {
		addrsMu.Lock()
		defer addrsMu.Unlock()
		return slices.Clone(nodes)
	}, token)
	waitTotal(1000, "before the first kill")
	ks := startKillSessions(t, dir, nodes, token, mqttAddrs, 1) // killsessions_test.go: persistent sessions on node-1
	// kill -9 a Mote node under load.
	if err := nodes[1].cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-nodes[1].exited
	t.Logf("node-1 killed with SIGKILL after %d acknowledged messages", total.Load())
	ks.nodeKilled(t) // their messages while away, then they resume on node-0 and node-2
	waitTotal(total.Load()+600, "after node-1 was killed")
	// A survivor adopts node-1's ingest subject once the lease finds it
	// lost: what node-1 acknowledged and had not stored is stored without
	// waiting for it to come back.
	survivors := []*moteProc{nodes[0], nodes[2]}
	sum := func(series string) float64 {
		s := 0.0
		for _, p := range survivors {
			s += processMetric(p.api, series)
		}
		return s
	}
	daemontest.WaitFor(t, 30*time.Second, func() error {
		if got := sum(`mote_cluster_ingest_adoptions_total{result="drained"}`); got < 1 {
			return fmt.Errorf("no survivor drained node-1's ingest subject yet (%v)", got)
		}
		return nil
	})
	t.Logf("messages a survivor adopted from node-1's subject: %v", sum("mote_cluster_ingest_adopted_total"))
	// systemd restarts it: its subject on JetStream is consumed again
	// (from its replay point, which the adoption moved on).
	restarted := startMote(t, dir, 1, bin.mote, nodeArgs(1), false)
	addrsMu.Lock()
	nodes[1] = restarted
	addrsMu.Unlock()
	waitTotal(total.Load()+600, "after node-1 restarted")
	t.Logf("node-1 after its restart (what it read back from its subject):\n%s", ingestMetrics(nodes[1].api))

	// kill -9 a NATS server under load (the stream keeps a quorum of 2).
	if err := natsProcs[2].Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = natsProcs[2].Wait()
	t.Logf("nats-2 killed with SIGKILL after %d acknowledged messages", total.Load())
	waitTotal(total.Load()+600, "after nats-2 was killed")
	close(stop)
	work.halt()
	wg.Wait()
	ks.check(t) // every acknowledged message to them received
	if moved.Load() == 0 {
		t.Error("no device reconnected to another node: the kill proved nothing")
	}

	// Every acknowledged message stored exactly once.
	mu.Lock()
	defer mu.Unlock()
	n := 0
	for i := range devices {
		n += len(acked[i])
	}
	t.Logf("%d messages acknowledged; %d reconnections", n, moved.Load())
	// The nodes apply their subjects asynchronously: wait (30 s at most)
	// until every acknowledged message is there.
	seen := make([]map[int]int, devices)
	missing := make([][]int, devices)
	err := pollFor(30*time.Second, func() bool {
		all := 0
		for i := range devices {
			seen[i] = storedValues(t, nodes[0].api, token, fmt.Sprintf("k9-%d", i), "n")
			missing[i] = missing[i][:0]
			for k := range acked[i] {
				if seen[i][k] == 0 {
					missing[i] = append(missing[i], k)
				}
			}
			all += len(missing[i])
		}
		return all == 0
	})
	if err != nil {
		for i := range 3 {
			t.Logf("node-%d ingest metrics:\n%s", i, ingestMetrics(nodes[i].api))
		}
	}
	for i := range devices {
		name := fmt.Sprintf("k9-%d", i)
		if len(missing[i]) > 0 {
			slices.Sort(missing[i])
			t.Errorf("%s: %d of %d acknowledged messages are not stored: n = %v", name, len(missing[i]), len(acked[i]), missing[i])
		}
		for k, times := range seen[i] {
			if times > 1 {
				t.Errorf("%s: message n=%d is stored %d times", name, k, times)
			}
		}
		t.Logf("%s: %d acknowledged, %d stored", name, len(acked[i]), len(seen[i]))
	}
	work.check(t)
	for i := range 3 {
		stopMote(t, nodes[i])
	}
}

// dialDevice connects a device (MQTT 3.1.1, no automatic reconnect), or returns
// nil.
func dialDevice(addr, name, secret string) paho.Client {
	opts := paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(name).
		SetUsername(name).SetPassword(secret).SetAutoReconnect(false).SetConnectRetry(false).
		SetMaxResumePubInFlight(20).SetOrderMatters(false).SetConnectTimeout(3 * time.Second)
	cl := paho.NewClient(opts)
	if tok := cl.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		return nil
	}
	return cl
}

// publishUntilBroken publishes {"n": k} from k on, up to 20 in flight,
// until stop or the connection breaks, and returns the next k.
func publishUntilBroken(cl paho.Client, name string, k int, stop <-chan struct{}, ok func(n int)) int {
	window := make(chan struct{}, 20)
	var inflight sync.WaitGroup
	defer inflight.Wait()
	for ; ; k++ {
		select {
		case <-stop:
			return k
		case window <- struct{}{}:
		}
		if !cl.IsConnectionOpen() {
			return k
		}
		tok := cl.Publish("things/"+name+"/telemetry", 1, false, fmt.Sprintf(`{"n":%d}`, k))
		inflight.Add(1)
		go func(n int) {
			defer inflight.Done()
			defer func() { <-window }()
			if tok.WaitTimeout(10*time.Second) && tok.Error() == nil {
				ok(n)
			}
		}(k)
	}
}

// ingestMetrics returns the mote_ingest_jetstream lines of a node's /metrics.
func ingestMetrics(base string) string {
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	var out []string
	for _, l := range strings.Split(b.String(), "\n") {
		if strings.HasPrefix(l, "mote_ingest_jetstream") || strings.HasPrefix(l, "mote_mqtt_messages_dropped") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func pollFor(timeout time.Duration, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %s", timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil
}

type binaries struct{ mote, nats string }

// buildBinaries builds cmd/mote and nats-server (from the module go.mod
// pins, as scripts/cluster.sh does) into a temporary directory.
func buildBinaries(t *testing.T) binaries {
	t.Helper()
	dir := t.TempDir()
	b := binaries{mote: filepath.Join(dir, "mote"), nats: filepath.Join(dir, "nats-server")}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range [][]string{{"build", "-o", b.mote, "./cmd/mote"}, {"build", "-o", b.nats, "github.com/nats-io/nats-server/v2"}} {
		cmd := exec.Command("go", c...)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go %s: %v\n%s", strings.Join(c, " "), err, out)
		}
	}
	return b
}

// startProcess starts a process with its output in logFile; it is killed
// when the test ends.
func startProcess(t *testing.T, logFile, name string, args ...string) *exec.Cmd {
	t.Helper()
	f, err := os.Create(logFile)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = cleanEnv()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
		f.Close()
	})
	return cmd
}

// cleanEnv is the environment without MOTE_* variables.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "MOTE_") {
			env = append(env, kv)
		}
	}
	return env
}

type moteProc struct {
	cmd       *exec.Cmd
	exited    chan struct{} // closed once the process has ended (Wait returned)
	mqtt, api string
	token     string
}

var (
	reMQTT  = regexp.MustCompile(`(?m)^\s+MQTT\s+mqtt://(\S+)\s*$`)
	reAPI   = regexp.MustCompile(`(?m)^\s+REST API\s+(https?://\S+)/api/v1\s`)
	reToken = regexp.MustCompile(`(?m)^\s+(mote\.tok_\S+)\s*$`)
)

// startMote runs `mote serve` and waits for its banner (and the admin token
// on the first start of the database).
func startMote(t *testing.T, dir string, i int, bin string, args []string, first bool) *moteProc {
	t.Helper()
	logFile := filepath.Join(dir, fmt.Sprintf("node-%d.log", i))
	out := filepath.Join(dir, fmt.Sprintf("node-%d.out", i))
	f, err := os.OpenFile(out, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	lf, err := os.OpenFile(logFile, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr, cmd.Env = f, lf, cleanEnv()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	p := &moteProc{cmd: cmd, exited: exited}
	t.Cleanup(func() {
		select {
		case <-exited:
		default:
			_ = cmd.Process.Kill()
			<-exited
		}
		f.Close()
		lf.Close()
	})
	daemontest.WaitFor(t, 60*time.Second, func() error {
		select {
		case <-exited:
			b, _ := os.ReadFile(logFile)
			t.Fatalf("node-%d exited before its banner:\n%s", i, tail(b, 3000))
		default:
		}
		b, _ := os.ReadFile(out)
		s := string(b)
		if !reMQTT.MatchString(s) || !reAPI.MatchString(s) || (first && !reToken.MatchString(s)) {
			return fmt.Errorf("node-%d: no banner yet", i)
		}
		p.mqtt = reMQTT.FindStringSubmatch(s)[1]
		p.api = reAPI.FindStringSubmatch(s)[1]
		if first {
			p.token = reToken.FindStringSubmatch(s)[1]
		}
		return nil
	})
	return p
}

// stopMote stops a node with SIGTERM and waits (20 s).
func stopMote(t *testing.T, p *moteProc) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(20 * time.Second):
		t.Error("a node did not stop within 20 s of SIGTERM")
	}
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// api calls the REST API and decodes the answer into out (if not nil).
func api(t *testing.T, base, token, method, path string, body, out any) {
	t.Helper()
	var rd *bytes.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	} else {
		rd = bytes.NewReader(nil)
	}
	req, _ := http.NewRequest(method, base+path, rd)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		var b bytes.Buffer
		_, _ = b.ReadFrom(resp.Body)
		t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, b.String())
	}
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
	}
}

// storedValues reads every raw point of thing's key over the API (all
// pages) and counts how often each integer value is stored.
func storedValues(t *testing.T, base, token, thing, key string) map[int]int {
	t.Helper()
	seen := map[int]int{}
	cursor := ""
	for {
		q := url.Values{"keys": {key}, "limit": {"10000"}}
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		var page struct {
			Items []struct {
				Value float64 `json:"value"`
			} `json:"items"`
			NextCursor string `json:"nextCursor"`
		}
		api(t, base, token, "GET", "/api/v1/things/"+thing+"/telemetry?"+q.Encode(), nil, &page)
		for _, it := range page.Items {
			seen[int(it.Value)]++
		}
		if page.NextCursor == "" {
			return seen
		}
		cursor = page.NextCursor
	}
}

// processMetric returns the value of the sample line of a node's /metrics
// that starts with series (a name, with its labels if any), or 0.
func processMetric(base, series string) float64 {
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	for _, l := range strings.Split(b.String(), "\n") {
		if rest, ok := strings.CutPrefix(l, series+" "); ok {
			v, _ := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			return v
		}
	}
	return 0
}
