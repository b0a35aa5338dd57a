package broker_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/moteiot/mote/internal/config"
	"github.com/moteiot/mote/internal/daemontest"
)

// readPacket reads one MQTT packet and returns its type and body.
func readPacket(r *bufio.Reader) (byte, []byte, error) {
	h, err := r.ReadByte()
	if err != nil {
		return 0, nil, err
	}
	n, mul := 0, 1
	for {
		b, err := r.ReadByte()
		if err != nil {
			return 0, nil, err
		}
		n += int(b&127) * mul
		if b&128 == 0 {
			break
		}
		mul *= 128
	}
	body := make([]byte, n)
	_, err = io.ReadFull(r, body)
	return h >> 4, body, err
}

func subscribePacket(filter string, qos byte) []byte {
	body := []byte{0, 1, byte(len(filter) >> 8), byte(len(filter))}
	body = append(body, filter...)
	body = append(body, qos)
	return append([]byte{0x82, byte(len(body))}, body...)
}

// A subscriber that stops reading for a while must not lose what QoS 1
// publishers sent meanwhile: the publishers are held instead.
func TestSlowSubscriberBackpressure(t *testing.T) {
	s := daemontest.Start(t, func(c *config.Config) {
		c.OutboundQueue = 32
		c.BackpressureWait = 10 * time.Second
	})
	sec := s.Device(t, "dev")

	conn, err := net.Dial("tcp", s.MQTT)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	r := bufio.NewReader(conn)
	conn.Write(connectPacket("slow", "dev", sec, 60))
	if typ, _, err := readPacket(r); err != nil || typ != 2 {
		t.Fatalf("CONNACK: type %d, %v", typ, err)
	}
	conn.Write(subscribePacket("things/dev/burst", 0))
	if typ, _, err := readPacket(r); err != nil || typ != 9 {
		t.Fatalf("SUBACK: type %d, %v", typ, err)
	}

	const n = 8000 // 8 MB: more than the kernel buffers between server and client hold
	pub := s.V3(t, "dev", sec)
	payload := strings.Repeat("x", 1000)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range n {
			tok := pub.Publish("things/dev/burst", 1, false, fmt.Sprintf("%06d%s", i, payload))
			if !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
				t.Errorf("publish %d: %v", i, tok.Error())
				return
			}
		}
	}()
	waitHeld(t, s) // the subscriber reads nothing until the publisher is held
	got := 0
	_ = conn.SetReadDeadline(time.Now().Add(60 * time.Second))
	for got < n {
		typ, body, err := readPacket(r)
		if err != nil {
			t.Fatalf("after %d of %d messages: %v\n%s", got, n, err, grep(getMetrics(t, s), "mote_mqtt"))
		}
		if typ != 3 {
			continue
		}
		tl := int(body[0])<<8 | int(body[1])
		if want := fmt.Sprintf("%06d", got); string(body[2+tl:2+tl+6]) != want {
			t.Fatalf("message %d out of order: got %s", got, body[2+tl:2+tl+6])
		}
		got++
	}
	<-done
	body := getMetrics(t, s)
	if containsLine(body, `mote_mqtt_messages_dropped_total{reason="slow_subscriber"}`) {
		t.Fatalf("messages were dropped:\n%s", grep(body, "mote_mqtt"))
	}
	// The publisher must actually have been held, or this test proved nothing.
	if !containsLine(body, "mote_mqtt_backpressure_wait_seconds_count") {
		t.Fatalf("publisher was never held back:\n%s", grep(body, "backpressure"))
	}
}

// A persistent session keeps QoS 1 messages while offline, up to
// max-offline-queue; the rest are dropped and counted.
func TestOfflineQueueBound(t *testing.T) {
	s := daemontest.Start(t, func(c *config.Config) { c.MaxOfflineQueue = 100 })
	sec := s.Device(t, "dev")
	sub, err := s.DialV5(t, daemontest.V5Options{ClientID: "persist", Username: "dev", Password: sec, SessionExpiry: 3600})
	if err != nil {
		t.Fatal(err)
	}
	if rc := sub.Sub(t, "things/dev/q"); rc != 1 {
		t.Fatalf("subscribe = %#x", rc)
	}
	_ = sub.Disconnect(&paho.Disconnect{})
	daemontest.WaitFor(t, 2*time.Second, func() error {
		if s.Broker().Connected("dev") {
			return fmt.Errorf("still connected")
		}
		return nil
	})
	pub, _ := s.DialV5(t, daemontest.V5Options{ClientID: "pub", Username: "dev", Password: sec})
	for i := range 150 {
		pub.Pub(t, "things/dev/q", 1, false, fmt.Sprint(i))
	}
	// mochi acknowledges a publish before it delivers it: wait until every
	// message was queued or dropped before the session comes back, or the
	// last ones may be delivered live to it.
	dropped := func() int {
		var n int
		for _, l := range strings.Split(getMetrics(t, s), "\n") {
			if v, ok := strings.CutPrefix(l, "mote_mqtt_queue_full_dropped_total "); ok {
				fmt.Sscan(v, &n)
			}
		}
		return n
	}
	daemontest.WaitFor(t, 5*time.Second, func() error {
		if d := dropped(); d < 50 {
			return fmt.Errorf("%d of 150 counted as dropped; want 50", d)
		}
		return nil
	})
	back, err := s.DialV5(t, daemontest.V5Options{ClientID: "persist", Username: "dev", Password: sec, SessionExpiry: 3600})
	if err != nil {
		t.Fatal(err)
	}
	if !back.Connack.SessionPresent {
		t.Fatal("session not present on reconnect")
	}
	// QoS 1 is at least once: a resent message may arrive twice, so count
	// distinct messages. Every one of the 150 must be either delivered or
	// counted as dropped, and exactly max-offline-queue are delivered.
	distinct := func() map[string]bool { return back.Inbox.Distinct("") }
	daemontest.WaitFor(t, 5*time.Second, func() error {
		if n := len(distinct()); n < 100 {
			return fmt.Errorf("received %d distinct queued messages; want 100", n)
		}
		return nil
	})
	back.Inbox.None(t, "never", 300*time.Millisecond)
	got := distinct()
	if d := dropped(); len(got) != 100 || d != 50 {
		var missing []int
		for i := range 150 {
			if !got[fmt.Sprint(i)] {
				missing = append(missing, i)
			}
		}
		t.Fatalf("delivered %d distinct (%d in all), %d counted as dropped; want 100 and 50. Not delivered: %v", len(got), len(back.Inbox.All()), d, missing)
	}
}

// waitHeld waits until a publisher is being held for a slow subscriber.
func waitHeld(t *testing.T, s *daemontest.Server) {
	t.Helper()
	daemontest.WaitFor(t, 30*time.Second, func() error {
		if !containsLine(getMetrics(t, s), "mote_mqtt_backpressure_held") {
			return errorf("no publisher is held")
		}
		return nil
	})
}

func grep(body, word string) string {
	var out []string
	for _, l := range strings.Split(body, "\n") {
		if strings.Contains(l, word) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// A QoS 1 subscriber that is slow to acknowledge must not lose messages
// either: mochi drops deliveries once a client has max-offline-queue of
// them unacknowledged, so publishers are held before that.
func TestSlowAcknowledgerBackpressure(t *testing.T) {
	s := daemontest.Start(t, func(c *config.Config) {
		c.MaxOfflineQueue = 100
		c.BackpressureWait = 10 * time.Second
	})
	sec := s.Device(t, "dev")
	conn, err := net.Dial("tcp", s.MQTT)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	r := bufio.NewReader(conn)
	conn.Write(connectPacket("acker", "dev", sec, 60))
	if typ, _, err := readPacket(r); err != nil || typ != 2 {
		t.Fatalf("CONNACK: type %d, %v", typ, err)
	}
	conn.Write(subscribePacket("things/dev/q1", 1))
	if typ, _, err := readPacket(r); err != nil || typ != 9 {
		t.Fatalf("SUBACK: type %d, %v", typ, err)
	}

	const n = 500
	pub := s.V3(t, "dev", sec)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range n {
			tok := pub.Publish("things/dev/q1", 1, false, fmt.Sprintf("%06d", i))
			if !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
				t.Errorf("publish %d: %v", i, tok.Error())
				return
			}
		}
	}()
	waitHeld(t, s) // read (and acknowledge) nothing until the publisher is held
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	for got := 0; got < n; {
		typ, body, err := readPacket(r)
		if err != nil {
			t.Fatalf("after %d of %d: %v\n%s", got, n, err, grep(getMetrics(t, s), "drop"))
		}
		if typ != 3 {
			continue
		}
		tl := int(body[0])<<8 | int(body[1])
		id := body[2+tl : 4+tl]
		if want := fmt.Sprintf("%06d", got); string(body[4+tl:]) != want {
			t.Fatalf("message %d: got %s", got, body[4+tl:])
		}
		conn.Write([]byte{0x40, 2, id[0], id[1]}) // PUBACK
		got++
	}
	<-done
	if body := getMetrics(t, s); !strings.Contains(body, "mote_mqtt_queue_full_dropped_total 0") {
		t.Fatalf("deliveries were dropped:\n%s", grep(body, "drop"))
	}
}
