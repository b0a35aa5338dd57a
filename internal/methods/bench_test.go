package methods_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/daemontest"
)

// benchDevices connects n devices that answer every method at once.
func benchDevices(b *testing.B, s *daemontest.Server, n int) []string {
	things := make([]string, n)
	for i := range things {
		things[i] = fmt.Sprintf("dev-%03d", i)
		respond(b, s, things[i], s.Device(b, things[i]), echo)
	}
	for _, th := range things {
		connected(b, s, th)
	}
	return things
}

// BenchmarkMethodRoundTrip measures direct method calls through the REST
// API to 100 MQTT 5 devices in parallel (16 callers per CPU): HTTP
// request, QoS 1 request to the device, its QoS 1 answer, HTTP response.
//
//	go test -run '^$' -bench BenchmarkMethodRoundTrip -benchtime 5s ./internal/methods
func BenchmarkMethodRoundTrip(b *testing.B) {
	s := daemontest.Start(b)
	things := benchDevices(b, s, 100)
	tr := &http.Transport{MaxIdleConnsPerHost: 256}
	client := &http.Client{Transport: tr}
	b.Cleanup(tr.CloseIdleConnections)
	var next atomic.Uint64
	b.SetParallelism(16)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			th := things[next.Add(1)%uint64(len(things))]
			req, _ := http.NewRequest("POST", s.API+"/api/v1/things/"+th+"/methods/ping", strings.NewReader(`{"payload": {"n": 1}, "timeoutSeconds": 30}`))
			req.Header.Set("Authorization", "Bearer "+s.Token)
			req.Header.Set("Content-Type", "application/json")
			res, err := client.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			res.Body.Close()
			if res.StatusCode != 200 {
				b.Errorf("status %d", res.StatusCode)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "calls/s")
}

// BenchmarkMethodInvoke is the same without HTTP: Service.Invoke from
// many goroutines.
func BenchmarkMethodInvoke(b *testing.B) {
	s := daemontest.Start(b)
	things := benchDevices(b, s, 100)
	svc := s.Methods()
	var next atomic.Uint64
	b.SetParallelism(16)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			th := things[next.Add(1)%uint64(len(things))]
			r, err := svc.Invoke(context.Background(), th, "ping", []byte(`{"n":1}`), 30*time.Second)
			if err != nil || r.Status != 200 {
				b.Errorf("Invoke = %+v, %v", r, err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "calls/s")
}
