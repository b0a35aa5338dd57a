package broker_test

import (
	"sync"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/daemontest"
)

// BenchmarkQoS1ToSubscriber: one publisher with 16 publishes in flight,
// one connected QoS 1 subscriber that acknowledges at once; clean session
// against persistent session (whose messages in flight are recorded for
// the store, sessions.go). Reports delivered messages/s.
//
//	go test -run XXX -bench QoS1ToSubscriber -benchtime 100000x ./internal/broker/
func BenchmarkQoS1ToSubscriber(b *testing.B) {
	for _, tc := range []struct {
		name   string
		expiry uint32
	}{{"clean", 0}, {"persistent", 3600}} {
		b.Run(tc.name, func(b *testing.B) {
			s := daemontest.Start(b)
			sec := s.Device(b, "dev")
			sub, err := s.DialV5(b, daemontest.V5Options{ClientID: "sub", Username: "dev", Password: sec, SessionExpiry: tc.expiry, CleanStart: true})
			if err != nil {
				b.Fatal(err)
			}
			sub.Sub(b, "things/dev/b")
			pub := s.V5(b, "dev", sec)
			const workers = 16
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			for w := range workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := w; i < b.N; i += workers {
						if rc := pub.Pub(b, "things/dev/b", 1, false, "0123456789abcdef"); rc != 0 {
							b.Errorf("PUBACK %#x", rc)
							return
						}
					}
				}()
			}
			wg.Wait()
			for deadline := time.Now().Add(30 * time.Second); sub.Inbox.Len() < b.N; time.Sleep(time.Millisecond) {
				if time.Now().After(deadline) {
					b.Fatalf("subscriber received %d of %d", sub.Inbox.Len(), b.N)
				}
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
		})
	}
}
