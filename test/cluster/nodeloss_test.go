package cluster_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"

	"github.com/moteiot/mote/internal/daemontest"
	"github.com/moteiot/mote/internal/telemetry"
)

// dial connects a paho MQTT 5 client, returning the error instead of
// failing the test (devices retry on another node).
func dial(addr, thing, secret string) (*paho.Client, error) {
	conn, err := (netDialer{}).dial(addr)
	if err != nil {
		return nil, err
	}
	c := paho.NewClient(paho.ClientConfig{Conn: packets.NewThreadSafeConn(conn), OnClientError: func(error) {}})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Connect(ctx, &paho.Connect{ClientID: thing, KeepAlive: 30, CleanStart: true,
		Username: thing, UsernameFlag: true, Password: []byte(secret), PasswordFlag: true}); err != nil {
		_ = conn.Close()
		return nil, err
	}
	return c, nil
}

// TestNodeLoss: devices on node B publish QoS 1 telemetry; node B is
// closed under that load (in-process: a shutdown, not kill -9 — see
// docs/cluster.md); the devices reconnect to the surviving nodes and go
// on. Every acknowledged message is stored; one is stored twice only if
// the device sent it again after losing its connection without a PUBACK
// (what QoS 1 allows).
func TestNodeLoss(t *testing.T) {
	c := startCluster(t)
	a, b, cc := c.nodes[0], c.nodes[1], c.nodes[2]
	const devices, perDevice = 3, 300
	secrets := map[string]string{}
	for i := range devices {
		name := fmt.Sprintf("loss-%d", i)
		secrets[name] = a.Device(t, name)
	}
	type record struct {
		acked   map[int]bool
		retried map[int]bool
	}
	var (
		mu      sync.Mutex
		records = map[string]*record{}
		ackedN  int
	)
	survivors := []string{a.MQTT, cc.MQTT}
	var wg sync.WaitGroup
	errs := make(chan error, devices)
	for i := range devices {
		name := fmt.Sprintf("loss-%d", i)
		rec := &record{acked: map[int]bool{}, retried: map[int]bool{}}
		records[name] = rec
		wg.Add(1)
		go func() {
			defer wg.Done()
			addrs := append([]string{b.MQTT}, survivors...)
			cl, err := dial(addrs[0], name, secrets[name])
			if err != nil {
				errs <- err
				return
			}
			defer func() { _ = cl.Disconnect(&paho.Disconnect{}) }()
			next, deadline := 1, time.Now().Add(60*time.Second)
			for k := 0; k < perDevice; {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				_, err := cl.Publish(ctx, &paho.Publish{Topic: "things/" + name + "/telemetry", QoS: 1, Payload: fmt.Appendf(nil, `{"n":%d}`, k)})
				cancel()
				if err == nil {
					mu.Lock()
					rec.acked[k] = true
					ackedN++
					mu.Unlock()
					k++
					continue
				}
				// No PUBACK: reconnect to a surviving node and send k again.
				mu.Lock()
				rec.retried[k] = true
				mu.Unlock()
				for {
					if time.Now().After(deadline) {
						errs <- fmt.Errorf("%s: no node took the connection back", name)
						return
					}
					addr := addrs[next%len(addrs)]
					next++
					if addr == b.MQTT {
						continue
					}
					if nc, err := dial(addr, name, secrets[name]); err == nil {
						cl = nc
						break
					}
				}
			}
		}()
	}
	// Close node B once its devices are under way.
	daemontest.WaitFor(t, 30*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if ackedN < devices*50 {
			return fmt.Errorf("%d acknowledged", ackedN)
		}
		return nil
	})
	if err := b.Daemon.Close(); err != nil {
		t.Errorf("close node B: %v", err)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	retried := 0
	for name, rec := range records {
		retried += len(rec.retried)
		daemontest.WaitFor(t, 10*time.Second, func() error {
			seen := storedN(t, a, name)
			for k := range rec.acked {
				if seen[telemetry.Number(float64(k))] == 0 {
					return fmt.Errorf("%s: n=%d acknowledged, not stored", name, k)
				}
			}
			return nil
		})
		for v, n := range storedN(t, a, name) {
			if n > 1 && !rec.retried[int(v.Float())] {
				t.Errorf("%s: n=%v stored %d times and was sent once", name, v, n)
			}
		}
	}
	if retried == 0 {
		t.Fatal("no device lost its connection: node B's loss was not tested")
	}
	t.Logf("%d devices × %d messages acknowledged across the loss of node B; %d resent after it", devices, perDevice, retried)
}
