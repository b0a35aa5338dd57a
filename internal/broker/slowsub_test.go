package broker_test

import (
	"bufio"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/config"
	"github.com/moteiot/mote/internal/daemontest"
)

// connectPacketV5 is connectPacket for MQTT 5 (no properties).
func connectPacketV5(clientID, user, pass string, keepalive uint16) []byte {
	str := func(s string) []byte { return append([]byte{byte(len(s) >> 8), byte(len(s))}, s...) }
	var body []byte
	body = append(body, str("MQTT")...)
	body = append(body, 5, 0xC2, byte(keepalive>>8), byte(keepalive), 0) // user+password+clean, no properties
	body = append(body, str(clientID)...)
	body = append(body, str(user)...)
	body = append(body, str(pass)...)
	return append([]byte{0x10, byte(len(body))}, body...)
}

// subscribePacketV5 is subscribePacket for MQTT 5 (no properties).
func subscribePacketV5(filter string, qos byte) []byte {
	body := []byte{0, 1, 0, byte(len(filter) >> 8), byte(len(filter))}
	body = append(body, filter...)
	body = append(body, qos)
	return append([]byte{0x82, byte(len(body))}, body...)
}

// A subscriber that never reads its socket but keeps its connection alive
// with PINGREQs is disconnected once it has held publishers for
// --slow-subscriber-budget; then publishers are not held any more.
func TestStuckSubscriberIsDisconnected(t *testing.T) {
	t.Run("v3", func(t *testing.T) { testStuckSubscriber(t, 4) })
	t.Run("v5", func(t *testing.T) { testStuckSubscriber(t, 5) })
}

func testStuckSubscriber(t *testing.T, version byte) {
	s := daemontest.Start(t, func(c *config.Config) {
		c.OutboundQueue = 32
		c.MaxOfflineQueue = 100
		c.BackpressureWait = 100 * time.Millisecond
		c.SlowSubscriberBudget = time.Second
	})
	sec := s.Device(t, "dev")

	conn, err := net.Dial("tcp", s.MQTT)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	r := bufio.NewReader(conn)
	if version == 5 {
		conn.Write(connectPacketV5("stuck", "dev", sec, 2)) // keepalive 2 s
	} else {
		conn.Write(connectPacket("stuck", "dev", sec, 2))
	}
	if typ, _, err := readPacket(r); err != nil || typ != 2 {
		t.Fatalf("CONNACK: type %d, %v", typ, err)
	}
	if version == 5 {
		conn.Write(subscribePacketV5("things/dev/t", 1))
	} else {
		conn.Write(subscribePacket("things/dev/t", 1))
	}
	if typ, _, err := readPacket(r); err != nil || typ != 9 {
		t.Fatalf("SUBACK: type %d, %v", typ, err)
	}
	// From now on it reads nothing, but pings: the server never sees it idle.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(500 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				if _, err := conn.Write([]byte{0xC0, 0}); err != nil { // PINGREQ
					return
				}
			}
		}
	}()
	defer func() { close(stop); wg.Wait() }()

	pub := s.V3(t, "dev", sec)
	payload := strings.Repeat("x", 8<<10)
	publish := func(i int) {
		t.Helper()
		tok := pub.Publish("things/dev/t", 1, false, payload)
		if !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
			t.Fatalf("publish %d: %v", i, tok.Error())
		}
	}
	const disconnected = "mote_mqtt_slow_subscribers_disconnected_total"
	deadline := time.Now().Add(60 * time.Second)
	for i := 0; metricValue(t, s, disconnected) < 1; i++ {
		if time.Now().After(deadline) {
			t.Fatalf("the stuck subscriber was not disconnected after %d publishes:\n%s", i, grep(getMetrics(t, s), "mote_mqtt"))
		}
		for range 10 {
			publish(i)
		}
	}
	daemontest.WaitFor(t, 5*time.Second, func() error {
		if s.Broker().ClientConnected("stuck") {
			return errorf("the stuck subscriber is still connected")
		}
		return nil
	})
	// The server closed the connection, without a DISCONNECT for MQTT
	// 3.1.1 (MQTT 5 gets one, 0x97, if its socket could still take it).
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		typ, body, err := readPacket(r)
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatalf("the connection of the stuck subscriber is still open: %v", err)
			}
			break
		}
		if typ == 14 && version < 5 {
			t.Fatal("a DISCONNECT was sent to an MQTT 3.1.1 client")
		}
		if typ == 14 && (len(body) == 0 || body[0] != 0x97) {
			t.Fatalf("DISCONNECT %x; want reason 0x97", body)
		}
	}

	// Publishers recovered: none of these is held for the bound.
	stalls := metricValue(t, s, "mote_mqtt_backpressure_timeouts_total")
	for i := range 200 {
		publish(i)
	}
	if after := metricValue(t, s, "mote_mqtt_backpressure_timeouts_total"); after != stalls {
		t.Fatalf("after the disconnect publishers were still held: %v more timed-out waits", after-stalls)
	}
	if stalls < 1 {
		t.Fatal("no publisher was ever held: this test proved nothing")
	}
}
