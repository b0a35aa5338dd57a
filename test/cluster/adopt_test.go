package cluster_test

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/daemontest"
	"github.com/moteiot/mote/internal/pgtest"
)

// TestIngestAdoptedAfterKill: a Mote node killed with SIGKILL under QoS 1
// load and NOT restarted. Its acknowledged messages that it had not
// stored wait on its JetStream subject; once the lease (a short
// --cluster-lease-timeout here) finds it lost, one survivor adopts the
// subject and stores them under the lost node's replay point. At the end
// every message a device got a PUBACK for is stored exactly once, and a
// survivor reports a drained adoption (mote_cluster_ingest_adoptions_total).
func TestIngestAdoptedAfterKill(t *testing.T) {
	if testing.Short() {
		t.Skip("builds mote and nats-server; not with -short")
	}
	pg := pgtest.DB(t) // skips with a message when PostgreSQL is absent
	bin := buildBinaries(t)
	dir := t.TempDir()

	ports := freePorts(t, 6)
	var routes, clients []string
	for i := range 3 {
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", ports[3+i]))
		clients = append(clients, fmt.Sprintf("nats://127.0.0.1:%d", ports[i]))
	}
	for i := range 3 {
		startProcess(t, filepath.Join(dir, fmt.Sprintf("nats-%d.log", i)), bin.nats,
			"-n", fmt.Sprintf("nats-%d", i), "-a", "127.0.0.1", "-p", fmt.Sprint(ports[i]),
			"--cluster_name", "mote-adopt", "--cluster", routes[i], "--routes", strings.Join(routes, ","),
			"-js", "-sd", filepath.Join(dir, fmt.Sprintf("nats-%d", i)))
	}
	nodeArgs := func(i int) []string {
		urls := []string{clients[i], clients[(i+1)%3], clients[(i+2)%3]}
		return []string{"serve", "--data-dir", filepath.Join(dir, fmt.Sprintf("node-%d", i)),
			"--store", pg, "--cluster", strings.Join(urls, ","), "--node-id", fmt.Sprintf("node-%d", i),
			"--mqtt-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--mqtts-addr", "", "--https-addr", "",
			"--coap-addr", "", "--coaps-addr", "", "--device-rate-limit", "0", "--cluster-ingest-timeout", "3s",
			"--cluster-lease-interval", "250ms", "--cluster-lease-timeout", "2s"}
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
		name := fmt.Sprintf("ad-%d", i)
		api(t, nodes[i%3].api, token, "POST", "/api/v1/things", map[string]any{"name": name}, nil)
		var cred struct {
			Secret string `json:"secret"`
		}
		api(t, nodes[i%3].api, token, "POST", "/api/v1/things/"+name+"/credentials", map[string]any{"type": "secret"}, &cred)
		secrets[i] = cred.Secret
	}

	// Devices as in TestKill9; after the kill they connect only to the
	// survivors (node-1 does not come back).
	var (
		mu     sync.Mutex
		acked  = make([]map[int]bool, devices)
		total  atomic.Int64
		moved  atomic.Int64
		killed atomic.Bool
		stop   = make(chan struct{})
		wg     sync.WaitGroup
	)
	for i := range devices {
		acked[i] = map[int]bool{}
		name := fmt.Sprintf("ad-%d", i)
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
				node := (i + attempt) % 3
				if node == 1 && killed.Load() {
					continue
				}
				cl := dialDevice(nodes[node].mqtt, name, secrets[i])
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
	waitTotal(600, "before the kill")
	killed.Store(true)
	if err := nodes[1].cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-nodes[1].exited
	t.Logf("node-1 killed with SIGKILL after %d acknowledged messages; not restarted", total.Load())
	waitTotal(total.Load()+300, "after node-1 was killed")
	close(stop)
	wg.Wait()
	if moved.Load() == 0 {
		t.Error("no device reconnected to another node: the kill proved nothing")
	}

	// A survivor adopts node-1's subject once the lease finds it lost.
	survivors := []*moteProc{nodes[0], nodes[2]}
	sum := func(name string) float64 {
		s := 0.0
		for _, p := range survivors {
			s += processMetric(p.api, name)
		}
		return s
	}
	daemontest.WaitFor(t, 30*time.Second, func() error {
		if got := sum(`mote_cluster_ingest_adoptions_total{result="drained"}`); got < 1 {
			return fmt.Errorf("no survivor drained node-1's subject yet (%v)", got)
		}
		return nil
	})
	t.Logf("messages adopted from node-1: %v", sum("mote_cluster_ingest_adopted_total"))

	mu.Lock()
	defer mu.Unlock()
	seen := make([]map[int]int, devices)
	missing := make([][]int, devices)
	_ = pollFor(30*time.Second, func() bool {
		all := 0
		for i := range devices {
			seen[i] = storedValues(t, nodes[0].api, token, fmt.Sprintf("ad-%d", i), "n")
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
	n := 0
	for i := range devices {
		name := fmt.Sprintf("ad-%d", i)
		n += len(acked[i])
		if len(missing[i]) > 0 {
			slices.Sort(missing[i])
			t.Errorf("%s: %d of %d acknowledged messages are not stored: n = %v", name, len(missing[i]), len(acked[i]), missing[i])
		}
		for k, times := range seen[i] {
			if times > 1 {
				t.Errorf("%s: message n=%d is stored %d times", name, k, times)
			}
		}
	}
	t.Logf("%d messages acknowledged, %d reconnections", n, moved.Load())
	stopMote(t, nodes[0])
	stopMote(t, nodes[2])
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
