package cluster_test

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/moteiot/mote/internal/config"
	"github.com/moteiot/mote/internal/daemontest"
	"github.com/moteiot/mote/internal/policy"
)

// TestRelayQoS1: QoS 1 messages cross nodes through JetStream. A
// saturated QoS 1 fan-in from two nodes to one slow subscriber on a
// third delivers every acknowledged message exactly once, JetStream
// holding what the slow node had not read yet (its consumer's pending
// count seen above zero); a node restarted delivers what was published
// while it was away to a persistent session it holds.
func TestRelayQoS1(t *testing.T) {
	c := startCluster(t, func(cfg *config.Config) { cfg.ClusterRelayBatch = 16 })
	a, b, sub := c.nodes[0], c.nodes[1], c.nodes[2]
	allowPolicy(t, a, "relay-topics", []string{"relay/#"}, policy.Publish, policy.Subscribe, policy.Receive)
	nc, err := nats.Connect(c.nats[0].ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	const wait = 60 * time.Second // a deadline for a loaded CI machine (three JetStream servers under -race); a normal run takes seconds

	t.Run("slow subscriber, saturated fan-in", func(t *testing.T) {
		secret := a.Device(t, "relay-slow", "relay-topics")
		var (
			mu       sync.Mutex
			got      = map[string]int{}
			lastRecv time.Time
			longest  time.Duration // the longest wait between two deliveries (a stall shows here)
		)
		slow := dialSlow(t, sub, "relay-slow", secret, func(p *paho.Publish) {
			time.Sleep(2 * time.Millisecond) // a slow device
			mu.Lock()
			if now := time.Now(); !lastRecv.IsZero() && now.Sub(lastRecv) > longest {
				longest = now.Sub(lastRecv)
			}
			lastRecv = time.Now()
			got[string(p.Payload)]++
			mu.Unlock()
		})
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := slow.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "relay/in/#", QoS: 1}}}); err != nil {
			t.Fatal(err)
		}

		// The mechanism: the slow node's consumer falls behind and
		// JetStream holds the rest.
		var maxPending atomic.Uint64
		stop := make(chan struct{})
		watched := make(chan struct{})
		go func() {
			defer close(watched)
			for {
				select {
				case <-stop:
					return
				case <-time.After(20 * time.Millisecond):
				}
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				cons, err := js.Consumer(ctx, "MOTE_RELAY", "relay-node-2")
				if err == nil {
					if info, err := cons.Info(ctx); err == nil && info.NumPending > maxPending.Load() {
						maxPending.Store(info.NumPending)
					}
				}
				cancel()
			}
		}()

		const publishers, each = 4, 250
		var acked atomic.Int64
		var wg sync.WaitGroup
		for p := range publishers {
			node := []*daemontest.Server{a, b}[p%2]
			name := fmt.Sprintf("relay-pub-%d", p)
			cl := node.V5(t, name, a.Device(t, name, "relay-topics"))
			wg.Add(1)
			go func() {
				defer wg.Done()
				for k := range each {
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					r, err := cl.Publish(ctx, &paho.Publish{Topic: "relay/in/" + name, QoS: 1, Payload: fmt.Appendf(nil, "%s-%d", name, k)})
					cancel()
					if err != nil || r == nil || r.ReasonCode != 0 {
						t.Errorf("%s #%d: PUBACK %v, %v", name, k, r, err)
						return
					}
					acked.Add(1)
				}
			}()
		}
		began := time.Now()
		wg.Wait()
		published := time.Since(began)
		daemontest.WaitFor(t, wait, func() error {
			mu.Lock()
			defer mu.Unlock()
			if len(got) < int(acked.Load()) {
				return fmt.Errorf("%d of %d acknowledged messages delivered", len(got), acked.Load())
			}
			return nil
		})
		close(stop)
		<-watched
		mu.Lock()
		defer mu.Unlock()
		if acked.Load() != publishers*each {
			t.Errorf("%d acknowledged; want %d", acked.Load(), publishers*each)
		}
		for id, n := range got {
			if n != 1 {
				t.Errorf("%s delivered %d times; want once", id, n)
			}
		}
		if maxPending.Load() == 0 {
			t.Errorf("the slow node's relay consumer never had messages pending in JetStream: the test proved nothing")
		}
		if v := metricValue(t, sub, `mote_cluster_relay_dropped_total{reason="expired"}`); v != 0 {
			t.Errorf("expired = %v; want 0", v)
		}
		if v := metricValue(t, sub, "mote_cluster_relay_jetstream_delivered_total"); v < publishers*each {
			t.Errorf("mote_cluster_relay_jetstream_delivered_total = %v; want ≥ %d", v, publishers*each)
		}
		t.Logf("%d messages, the slow node's consumer at most %d behind; published in %s, delivered %s later; longest wait between two deliveries %s",
			len(got), maxPending.Load(), published.Round(time.Millisecond), (time.Since(began) - published).Round(time.Millisecond), longest.Round(time.Millisecond))
	})

	t.Run("restarted node resumes", func(t *testing.T) {
		secret := a.Device(t, "relay-sess", "relay-topics")
		dev, err := persistentV5(t, b, "relay-sess", secret)
		if err != nil {
			t.Fatal(err)
		}
		if rc := dev.Sub(t, "relay/sess"); rc != 1 {
			t.Fatalf("subscribe = %#x; want 1", rc)
		}
		if err := dev.Disconnect(&paho.Disconnect{}); err != nil {
			t.Fatal(err)
		}
		daemontest.WaitFor(t, wait, func() error {
			if node, _, ok := storedSession(t, a, "relay-sess"); !ok || node != "node-1" {
				return fmt.Errorf("stored session on %q (stored %v); want node-1", node, ok)
			}
			return nil
		})
		if err := b.Daemon.Close(); err != nil {
			t.Fatal(err)
		}
		pub := a.V5(t, "relay-sess-pub", a.Device(t, "relay-sess-pub", "relay-topics"))
		const away = 10
		for k := range away {
			if rc := pub.Pub(t, "relay/sess", 1, false, fmt.Sprintf("away-%d", k)); rc != 0 {
				t.Fatalf("PUBACK %#x", rc)
			}
		}
		b.Restart(t)
		dev, err = persistentV5(t, b, "relay-sess", secret)
		if err != nil {
			t.Fatal(err)
		}
		daemontest.WaitFor(t, wait, func() error {
			if n := len(dev.Inbox.Distinct("relay/sess")); n < away {
				return fmt.Errorf("%d of %d messages published while node-1 was away", n, away)
			}
			return nil
		})
		if n := dev.Inbox.Len(); n != away {
			t.Errorf("%d deliveries; want %d (each once)", n, away)
		}
	})
}

// dialSlow connects an MQTT 5 client whose handler runs on paho's read
// loop: a slow handler is a slow device.
func dialSlow(t *testing.T, s *daemontest.Server, thing, secret string, h func(*paho.Publish)) *paho.Client {
	t.Helper()
	conn, err := net.Dial("tcp", s.MQTT)
	if err != nil {
		t.Fatal(err)
	}
	cl := paho.NewClient(paho.ClientConfig{
		Conn: packets.NewThreadSafeConn(conn),
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			h(pr.Packet)
			return true, nil
		}},
		OnClientError: func(error) {},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := cl.Connect(ctx, &paho.Connect{ClientID: thing, Username: thing, UsernameFlag: true,
		Password: []byte(secret), PasswordFlag: true, CleanStart: true, KeepAlive: 30}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cl.Disconnect(&paho.Disconnect{}) })
	return cl
}
