// Package bench holds end-to-end load benchmarks of a whole Mote server:
// real MQTT connections on loopback, the real data directory on disk,
// durability on. See docs/benchmarks.md for the commands and results.
package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"

	"github.com/moteiot/mote/internal/daemontest"
	"github.com/moteiot/mote/internal/store"
	"github.com/moteiot/mote/internal/telemetry"
)

// device is a minimal MQTT 5 publisher: paho.golang's packet codec on a
// plain connection, with a window of unacknowledged QoS 1 publishes. A
// full client library costs several times the broker's CPU per message,
// and client and server share the machine's two cores.
type device struct {
	name   string
	conn   net.Conn
	w      *bufio.Writer
	window chan struct{}
	acked  atomic.Int64
	failed atomic.Int64
	done   chan struct{}
}

func dial(tb testing.TB, addr, name, secret string, inflight int) *device {
	tb.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	cp := packets.NewControlPacket(packets.CONNECT)
	cn := cp.Content.(*packets.Connect)
	cn.ProtocolName, cn.ProtocolVersion, cn.ClientID, cn.KeepAlive, cn.CleanStart = "MQTT", 5, name, 300, true
	cn.UsernameFlag, cn.Username, cn.PasswordFlag, cn.Password = true, name, true, []byte(secret)
	if _, err := cp.WriteTo(c); err != nil {
		tb.Fatal(err)
	}
	ack, err := packets.ReadPacket(c)
	if err != nil {
		tb.Fatal(err)
	}
	if ca, ok := ack.Content.(*packets.Connack); !ok || ca.ReasonCode != 0 {
		tb.Fatalf("%s: CONNACK %v", name, ack)
	}
	d := &device{name: name, conn: c, w: bufio.NewWriterSize(c, 4096), window: make(chan struct{}, inflight), done: make(chan struct{})}
	go d.read()
	return d
}

// read counts PUBACKs and frees the window.
func (d *device) read() {
	defer close(d.done)
	r := bufio.NewReaderSize(d.conn, 16<<10)
	for {
		p, err := packets.ReadPacket(r)
		if err != nil {
			return
		}
		if pa, ok := p.Content.(*packets.Puback); ok {
			if pa.ReasonCode >= 0x80 {
				d.failed.Add(1)
			} else {
				d.acked.Add(1)
			}
			<-d.window
		}
	}
}

// publish sends n QoS 1 telemetry messages, each its own write as a real
// device would, keeping at most the window unacknowledged.
func (d *device) publish(tb testing.TB, n int) {
	topic := "things/" + d.name + "/telemetry"
	var payload []byte
	for i := range n {
		d.window <- struct{}{}
		payload = payload[:0]
		payload = append(payload, `{"temp":`...)
		payload = strconv.AppendFloat(payload, 20+float64(i%100)/10, 'f', 1, 64)
		payload = append(payload, `,"hum":`...)
		payload = strconv.AppendInt(payload, int64(40+i%20), 10)
		payload = append(payload, `,"n":`...)
		payload = strconv.AppendInt(payload, int64(i), 10)
		payload = append(payload, '}')
		cp := packets.NewControlPacket(packets.PUBLISH)
		pb := cp.Content.(*packets.Publish)
		pb.Topic, pb.QoS, pb.PacketID, pb.Payload = topic, 1, uint16(i%65535)+1, payload
		if _, err := cp.WriteTo(d.w); err == nil {
			err = d.w.Flush()
		}
	}
}

// BenchmarkIngestQoS1 is the end-to-end ingest path: 100 devices publish
// QoS 1 JSON telemetry (3 keys) on things/{thing}/telemetry with up to 16
// publishes in flight each; the built-in telemetry rule stores it. Each
// PUBACK comes after the message is fsynced in the ingest journal; the
// clock stops when the last message is stored in telemetry.db (the
// writer's flush). b.N is the total number of messages.
//
//	go test -run XXX -bench BenchmarkIngestQoS1 -benchtime 300000x ./test/bench/
func BenchmarkIngestQoS1(b *testing.B) {
	ingestQoS1(b, daemontest.Start(b))
}

// BenchmarkIngestQoS1BlackholedWebhook is BenchmarkIngestQoS1 with one
// more rule on the same messages whose webhook goes to an address that
// accepts connections and never answers: its deliveries fill their queue
// and are dropped (checked), and the telemetry rule's durable ingest must
// stay within 10% of BenchmarkIngestQoS1.
//
//	go test -run XXX -bench 'BenchmarkIngestQoS1(BlackholedWebhook)?$' -benchtime 300000x ./test/bench/
func BenchmarkIngestQoS1BlackholedWebhook(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	s := daemontest.Start(b)
	b.Cleanup(func() { // before the server's close, which would wait for the attempts
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	if _, err := s.Rules().Create(context.Background(), store.Rule{Name: "blackholed", Enabled: true,
		SQL:     "SELECT temp FROM 'things/+/telemetry'",
		Actions: json.RawMessage(`[{"type":"webhook","url":"http://` + ln.Addr().String() + `/hook"}]`)}); err != nil {
		b.Fatal(err)
	}
	total := ingestQoS1(b, s)
	// The queue (1,000) and the 4 in flight hold the first ones; with
	// more the rest are dropped, or the benchmark proved nothing.
	st := s.Rules().Stats("blackholed")
	for deadline := time.Now().Add(30 * time.Second); st.Matched < int64(total) && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond) // the workers' pass follows the durable one
		st = s.Rules().Stats("blackholed")
	}
	if st.Matched != int64(total) || (total > 2000 && st.ActionsDropped() == 0) {
		b.Fatalf("blackholed rule: %+v after %d messages; want every one matched and webhooks dropped", st, total)
	}
	b.ReportMetric(float64(st.ActionsDropped())/float64(st.Matched), "webhooks_dropped/msg")
}

// ingestQoS1 runs the ingest benchmark on s and returns how many
// messages it published.
func ingestQoS1(b *testing.B, s *daemontest.Server) int {
	const devices = 100
	devs := make([]*device, devices)
	for i := range devs {
		name := fmt.Sprintf("dev-%03d", i)
		devs[i] = dial(b, s.MQTT, name, s.Device(b, name), 16)
	}
	per := max(1, b.N/devices)
	total := per * devices

	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for _, d := range devs {
		wg.Add(1)
		go func() { defer wg.Done(); d.publish(b, per) }()
	}
	wg.Wait()
	// Wait for the last PUBACKs (the window drains), then for storage.
	for _, d := range devs {
		for range cap(d.window) {
			d.window <- struct{}{}
		}
	}
	ackedAt := time.Since(start)
	if err := waitStored(b, s, total); err != nil {
		b.Fatal(err)
	}
	elapsed := time.Since(start)
	b.StopTimer()

	var acked, failed int64
	for _, d := range devs {
		acked += d.acked.Load()
		failed += d.failed.Load()
		d.conn.Close()
	}
	if failed != 0 || acked != int64(total) {
		b.Fatalf("%d acknowledged, %d refused, of %d published", acked, failed, total)
	}
	// Zero loss: every device's every message is stored, once.
	for _, d := range devs {
		buckets, err := s.Telemetry().Aggregate(context.Background(), telemetry.AggQuery{
			Things: []string{d.name}, Keys: []string{"n"}, From: start.Add(-time.Minute).UnixMilli(),
			To: time.Now().Add(time.Minute).UnixMilli(), Interval: time.Hour, Func: telemetry.AggCount})
		if err != nil {
			b.Fatal(err)
		}
		var n float64
		for _, bk := range buckets {
			n += bk.Value
		}
		if int(n) != per {
			b.Fatalf("%s: %v messages stored, want %d", d.name, n, per)
		}
	}
	b.ReportMetric(float64(total)/elapsed.Seconds(), "stored_msgs/s")
	b.ReportMetric(float64(3*total)/elapsed.Seconds(), "points/s")
	b.ReportMetric(float64(total)/ackedAt.Seconds(), "acked_msgs/s")
	return total
}

// waitStored waits until the telemetry writer has committed every durable
// message (the journal is fully applied) and flushes it.
func waitStored(b *testing.B, s *daemontest.Server, total int) error {
	daemontest.WaitFor(b, 5*time.Minute, func() error {
		if c := s.TelemetryWriter().Committed(); c < uint64(total) {
			return fmt.Errorf("stored up to journal seq %d of %d", c, total)
		}
		return nil
	})
	return s.TelemetryWriter().Flush(context.Background())
}
