package shadow_test

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"

	"github.com/moteiot/mote/internal/daemontest"
)

// BenchmarkShadowUpdatesMQTT measures accepted shadow updates per second
// over MQTT at QoS 1 with durability on (SQLite synchronous=FULL: an
// update is answered only after its commit). A real server is started;
// benchDevices devices connect with their own credentials, and each
// updates its own classic shadow as fast as the answers come, keeping
// benchInflight updates outstanding (AWS allows 10 per connection).
// Clients and server share the machine.
//
//	go test -run XXX -bench BenchmarkShadowUpdatesMQTT -benchtime 100000x ./internal/shadow/
func BenchmarkShadowUpdatesMQTT(b *testing.B) {
	for _, inflight := range []int{1, 4} {
		b.Run(fmt.Sprintf("devices=%d/inflight=%d", benchDevices, inflight), func(b *testing.B) {
			benchUpdates(b, benchDevices, inflight)
		})
	}
}

const benchDevices = 100

func benchUpdates(b *testing.B, devices, inflight int) {
	s := daemontest.Start(b)
	type dev struct {
		name     string
		c        *paho.Client
		accepted chan struct{}
	}
	var rejected atomic.Int64
	devs := make([]*dev, devices)
	for i := range devs {
		name := fmt.Sprintf("bench-%03d", i)
		secret := s.Device(b, name)
		d := &dev{name: name, accepted: make(chan struct{}, inflight)}
		conn, err := net.Dial("tcp", s.MQTT)
		if err != nil {
			b.Fatal(err)
		}
		acceptedTopic := "$aws/things/" + name + "/shadow/update/accepted"
		d.c = paho.NewClient(paho.ClientConfig{
			Conn: packets.NewThreadSafeConn(conn),
			OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
				if pr.Packet.Topic == acceptedTopic {
					d.accepted <- struct{}{}
				} else {
					rejected.Add(1)
					d.accepted <- struct{}{} // keep going; counted as a failure below
				}
				return true, nil
			}},
			OnClientError: func(error) {},
		})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if _, err := d.c.Connect(ctx, &paho.Connect{ClientID: name, CleanStart: true, KeepAlive: 60,
			Username: name, UsernameFlag: true, Password: []byte(secret), PasswordFlag: true}); err != nil {
			b.Fatalf("connect %s: %v", name, err)
		}
		if _, err := d.c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{
			{Topic: acceptedTopic, QoS: 1}, {Topic: "$aws/things/" + name + "/shadow/update/rejected", QoS: 1}}}); err != nil {
			b.Fatalf("subscribe %s: %v", name, err)
		}
		cancel()
		devs[i] = d
		b.Cleanup(func() { _ = d.c.Disconnect(&paho.Disconnect{}) })
	}

	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for _, d := range devs {
		for range inflight {
			wg.Go(func() {
				topic := "$aws/things/" + d.name + "/shadow/update"
				ctx := context.Background()
				for {
					n := next.Add(1)
					if n > int64(b.N) {
						return
					}
					payload := `{"state":{"reported":{"temp":` + strconv.FormatInt(n%400, 10) + `,"seq":` +
						strconv.FormatInt(n, 10) + `}},"clientToken":"` + strconv.FormatInt(n, 10) + `"}`
					if _, err := d.c.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: []byte(payload)}); err != nil {
						b.Errorf("publish: %v", err)
						return
					}
					select {
					case <-d.accepted:
					case <-time.After(30 * time.Second):
						b.Errorf("%s: no answer within 30s", d.name)
						return
					}
				}
			})
		}
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if r := rejected.Load(); r > 0 {
		b.Errorf("%d updates rejected", r)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "updates/s")
}
