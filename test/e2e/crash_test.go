package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// TestCrashKeepsAcknowledgedTelemetry is the durability promise, checked
// the hard way: devices publish QoS 1 telemetry, the server is killed with
// SIGKILL part-way through, and after a restart every message whose PUBACK
// a device received is stored — exactly once (a replay must not store
// again what was stored before the kill).
func TestCrashKeepsAcknowledgedTelemetry(t *testing.T) {
	const devices = 5
	dir := t.TempDir()
	// The devices publish far faster than the default per-device rate
	// limit allows (over the limit, MQTT 3.1.1 publishes are acknowledged
	// and dropped: 3.1.1 cannot refuse).
	s := startServer(t, dir, true, "--device-rate-limit", "0")
	c := cli{server: s.api, token: s.token}
	u := &user{dir: dir, srv: s, cli: c, secrets: map[string]string{}}
	for i := range devices {
		name := fmt.Sprintf("crash-%d", i)
		c.ok(t, "thing", "create", name)
		u.newSecret(t, name)
	}

	// Each device publishes {"n": k} for k = 0, 1, 2, ... with up to 20
	// publishes in flight and records which were acknowledged.
	acked := make([]map[int]bool, devices)
	var mu sync.Mutex
	var total atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range devices {
		name := fmt.Sprintf("crash-%d", i)
		acked[i] = map[int]bool{}
		cl := connectMQTT(t, s.mqtt, name, name, u.secrets[name], func(o *paho.ClientOptions) {
			o.SetMaxResumePubInFlight(20).SetOrderMatters(false)
		})
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer cl.Disconnect(0)
			window := make(chan struct{}, 20)
			var inflight sync.WaitGroup
			defer inflight.Wait()
			for k := 0; ; k++ {
				select {
				case <-stop:
					return
				case window <- struct{}{}:
				}
				tok := cl.Publish("things/"+name+"/telemetry", 1, false, fmt.Sprintf(`{"n":%d}`, k))
				inflight.Add(1)
				go func() {
					defer inflight.Done()
					defer func() { <-window }()
					if tok.WaitTimeout(20*time.Second) && tok.Error() == nil {
						mu.Lock()
						acked[i][k] = true
						mu.Unlock()
						total.Add(1)
					}
				}()
				if !cl.IsConnectionOpen() {
					return
				}
			}
		}()
	}

	// Kill the server once a few thousand messages were acknowledged,
	// while publishes are in flight.
	poll(60*time.Second, 10*time.Millisecond, func() bool { return total.Load() >= 3000 })
	if err := s.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-s.exited
	close(stop)
	wg.Wait()
	mu.Lock()
	n := 0
	for i := range acked {
		n += len(acked[i])
	}
	mu.Unlock()
	if n == 0 {
		t.Fatalf("no publish was acknowledged before the kill; server stderr:\n%s", s.stderr)
	}
	t.Logf("%d messages acknowledged before SIGKILL", n)

	s2 := startServer(t, dir, false, "--device-rate-limit", "0")
	defer s2.stop(t, nil)
	defer func() {
		if t.Failed() {
			t.Logf("restarted server's log:\n%s", s2.stderr)
		}
	}()
	for i := range devices {
		name := fmt.Sprintf("crash-%d", i)
		seen := storedValues(t, s2.api, s.token, name, "n")
		for k := range acked[i] {
			if seen[k] == 0 {
				t.Errorf("%s: message n=%d was acknowledged but is not stored after the restart", name, k)
			}
		}
		for k, times := range seen {
			if times > 1 {
				t.Errorf("%s: message n=%d is stored %d times", name, k, times)
			}
		}
		t.Logf("%s: %d acknowledged, %d stored", name, len(acked[i]), len(seen))
	}
}

// storedValues reads every raw point of thing's key over the API (all
// pages) and counts how often each integer value is stored.
func storedValues(t *testing.T, api, token, thing, key string) map[int]int {
	t.Helper()
	seen := map[int]int{}
	cursor := ""
	for {
		q := url.Values{"keys": {key}, "limit": {"10000"}}
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		req, _ := http.NewRequest("GET", api+"/api/v1/things/"+thing+"/telemetry?"+q.Encode(), nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var page struct {
			Items []struct {
				Value float64 `json:"value"`
			} `json:"items"`
			NextCursor string `json:"nextCursor"`
		}
		err = json.NewDecoder(resp.Body).Decode(&page)
		resp.Body.Close()
		if resp.StatusCode != 200 || err != nil {
			t.Fatalf("telemetry query of %s: status %d, %v", thing, resp.StatusCode, err)
		}
		for _, it := range page.Items {
			seen[int(it.Value)]++
		}
		if page.NextCursor == "" {
			return seen
		}
		cursor = page.NextCursor
	}
}

// connectMQTT connects an MQTT 3.1.1 client (no automatic reconnect) as
// user to addr; tune adds options.
func connectMQTT(t *testing.T, addr, clientID, user, secret string, tune func(*paho.ClientOptions)) paho.Client {
	t.Helper()
	opts := paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(clientID).
		SetUsername(user).SetPassword(secret).SetAutoReconnect(false).SetConnectRetry(false)
	if tune != nil {
		tune(opts)
	}
	cl := paho.NewClient(opts)
	if tok := cl.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("%s: connect: %v", clientID, tok.Error())
	}
	return cl
}

// eventually polls cond until it holds, and fails the test with what
// describe says if it does not within timeout.
func eventually(t *testing.T, timeout time.Duration, cond func() bool, describe func() string) {
	t.Helper()
	if !poll(timeout, 20*time.Millisecond, cond) {
		t.Fatal(describe())
	}
}

// poll checks cond every interval until it holds (true) or timeout
// passes (false).
func poll(timeout, interval time.Duration, cond func() bool) bool {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline.C:
			return cond()
		case <-tick.C:
		}
	}
	return true
}
