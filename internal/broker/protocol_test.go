package broker_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/moteiot/mote/internal/config"
	"github.com/moteiot/mote/internal/daemontest"
)

// rawPkt is an MQTT packet read off the wire.
type rawPkt struct {
	typ  byte // high nibble of the first byte
	body []byte
}

// rawClient is an MQTT client on a plain socket, to see exactly what the
// server sends.
type rawClient struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

// dialRaw connects and sends CONNECT (version 4 or 5, clean start, the
// given keep-alive) and returns the client with the CONNACK.
func dialRaw(t *testing.T, s *daemontest.Server, version byte, clientID, user, pass string, keepalive uint16) (*rawClient, rawPkt) {
	t.Helper()
	conn, err := net.Dial("tcp", s.MQTT)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c := &rawClient{t: t, conn: conn, r: bufio.NewReader(conn)}
	body := append(mqttString("MQTT"), version, 0xC2, byte(keepalive>>8), byte(keepalive))
	if version == 5 {
		body = append(body, 0)
	}
	body = append(body, mqttString(clientID)...)
	body = append(body, mqttString(user)...)
	body = append(body, mqttString(pass)...)
	c.write(mqttPacket(0x10, body))
	ack, err := c.read(5 * time.Second)
	if err != nil {
		t.Fatalf("read CONNACK: %v", err)
	}
	if ack.typ != 2 || len(ack.body) < 2 || ack.body[1] != 0 {
		t.Fatalf("CONNACK = %x %x; want accepted", ack.typ, ack.body)
	}
	return c, ack
}

func (c *rawClient) write(b []byte) {
	c.t.Helper()
	if _, err := c.conn.Write(b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// read reads one packet, waiting up to d.
func (c *rawClient) read(d time.Duration) (rawPkt, error) {
	_ = c.conn.SetReadDeadline(time.Now().Add(d))
	h, err := c.r.ReadByte()
	if err != nil {
		return rawPkt{}, err
	}
	n, mul := 0, 1
	for {
		b, err := c.r.ReadByte()
		if err != nil {
			return rawPkt{}, err
		}
		n += int(b&0x7f) * mul
		if b&0x80 == 0 {
			break
		}
		mul *= 128
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(c.r, body); err != nil {
		return rawPkt{}, err
	}
	return rawPkt{typ: h >> 4, body: body}, nil
}

// next reads packets until one of type typ comes.
func (c *rawClient) next(typ byte) rawPkt {
	c.t.Helper()
	for {
		p, err := c.read(5 * time.Second)
		if err != nil {
			c.t.Fatalf("waiting for packet type %d: %v", typ, err)
		}
		if p.typ == typ {
			return p
		}
	}
}

// userProp is an MQTT 5 property block holding one user property.
func userProp(k, v string) []byte {
	p := append([]byte{0x26}, mqttString(k)...)
	p = append(p, mqttString(v)...)
	return append([]byte{byte(len(p))}, p...)
}

// publishV5 is a PUBLISH with packet id id and the property block props.
func publishV5(qos byte, id uint16, topic string, props, payload []byte) []byte {
	body := mqttString(topic)
	if qos > 0 {
		body = append(body, byte(id>>8), byte(id))
	}
	body = append(body, props...)
	return mqttPacket(0x30|qos<<1, append(body, payload...))
}

// props returns the properties of a CONNACK body by identifier (values
// of the two-byte and four-byte integer properties only).
func connackProps(t *testing.T, body []byte) map[byte]uint32 {
	t.Helper()
	out := map[byte]uint32{}
	if len(body) < 3 {
		return out
	}
	n, i := int(body[2]), 3 // property length (short in these tests)
	end := i + n
	for i < end {
		id := body[i]
		i++
		switch id {
		case 0x13, 0x21, 0x22: // server keep alive, receive maximum, topic alias maximum
			out[id] = uint32(body[i])<<8 | uint32(body[i+1])
			i += 2
		case 0x27, 0x11: // maximum packet size, session expiry
			out[id] = uint32(body[i])<<24 | uint32(body[i+1])<<16 | uint32(body[i+2])<<8 | uint32(body[i+3])
			i += 4
		case 0x24, 0x25, 0x28, 0x29, 0x2A: // one-byte properties
			out[id] = uint32(body[i])
			i++
		case 0x12, 0x1F, 0x1A, 0x1C, 0x15: // strings
			l := int(body[i])<<8 | int(body[i+1])
			i += 2 + l
		case 0x26:
			l := int(body[i])<<8 | int(body[i+1])
			i += 2 + l
			l = int(body[i])<<8 | int(body[i+1])
			i += 2 + l
		default:
			t.Fatalf("unexpected CONNACK property %#x in %x", id, body)
		}
	}
	return out
}

// An acknowledgement carries nothing of the packet it answers: a PUBLISH
// with user properties got them back on its PUBACK, with the reason code
// 0x01 (not a PUBACK code), and MQTT.js v5 dropped the connection.
func TestAckCarriesNoPublishProperties(t *testing.T) {
	s := daemontest.Start(t)
	secret := s.Device(t, "dev")
	c, _ := dialRaw(t, s, 5, "dev", "dev", secret, 30)

	props := userProp("trace", "abc")
	c.write(publishV5(1, 7, "things/dev/data", props, []byte("1")))
	if ack := c.next(4); !bytes.Equal(ack.body, []byte{0, 7}) {
		t.Errorf("PUBACK body = %x; want 0007 (packet id only: success, no properties)", ack.body)
	}
	c.write(publishV5(2, 8, "things/dev/data", props, []byte("2")))
	if rec := c.next(5); !bytes.Equal(rec.body, []byte{0, 8}) {
		t.Errorf("PUBREC body = %x; want 0008", rec.body)
	}
	pubrel := append([]byte{0, 8, 0}, props...) // reason 0 and a user property
	c.write(mqttPacket(0x62, pubrel))
	if comp := c.next(7); !bytes.Equal(comp.body, []byte{0, 8}) {
		t.Errorf("PUBCOMP body = %x; want 0008", comp.body)
	}

	// paho.golang sees a plain success.
	v5 := s.V5(t, "dev2", s.Device(t, "dev2"))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := v5.Publish(ctx, &paho.Publish{Topic: "things/dev2/data", QoS: 1, Payload: []byte("x"),
		Properties: &paho.PublishProperties{User: paho.UserProperties{{Key: "trace", Value: "abc"}}}})
	if err != nil {
		t.Fatal(err)
	}
	if r.ReasonCode != 0 || (r.Properties != nil && len(r.Properties.User) > 0) {
		t.Fatalf("PUBACK = reason %#x, properties %+v; want 0 and no user properties", r.ReasonCode, r.Properties)
	}
}

// CONNACK tells an MQTT 5 client what the server enforces, and a
// keep-alive over --max-keepalive is capped: the client is told (Server
// Keep Alive) and the server's timeout uses the capped value.
func TestConnackAdvertisesLimits(t *testing.T) {
	s := daemontest.Start(t, func(c *config.Config) { c.MaxPacketSize = 64 * 1024; c.MaxOfflineQueue = 100 })
	secret := s.Device(t, "dev")
	c, err := s.DialV5(t, daemontest.V5Options{ClientID: "dev", Username: "dev", Password: secret, CleanStart: true, KeepAlive: 3600})
	if err != nil {
		t.Fatal(err)
	}
	p := c.Connack.Properties
	check := func(name string, got *uint16, want uint16) {
		t.Helper()
		if got == nil || *got != want {
			t.Errorf("CONNACK %s = %v; want %d", name, deref(got), want)
		}
	}
	check("Topic Alias Maximum", p.TopicAliasMaximum, 1024)
	check("Receive Maximum", p.ReceiveMaximum, 100)
	check("Server Keep Alive", p.ServerKeepAlive, 1200)
	if p.MaximumPacketSize == nil || *p.MaximumPacketSize != 64*1024 {
		t.Errorf("CONNACK Maximum Packet Size = %v; want %d", p.MaximumPacketSize, 64*1024)
	}

	// A keep-alive within the limit is left alone.
	c2, err := s.DialV5(t, daemontest.V5Options{ClientID: "dev-2", Username: "dev", Password: secret, CleanStart: true, KeepAlive: 60})
	if err != nil {
		t.Fatal(err)
	}
	if ka := c2.Connack.Properties.ServerKeepAlive; ka != nil {
		t.Errorf("Server Keep Alive = %d for a keep-alive within the limit; want none", *ka)
	}
	if m := getMetrics(t, s); !containsLine(m, "mote_mqtt_keepalive_capped_total") {
		t.Error("mote_mqtt_keepalive_capped_total did not move")
	}
}

func deref(p *uint16) any {
	if p == nil {
		return nil
	}
	return *p
}

// The capped keep-alive is enforced: a silent client is disconnected after
// 1.5 times --max-keepalive, not after 1.5 times what it asked for.
func TestMaxKeepaliveEnforced(t *testing.T) {
	s := daemontest.Start(t, func(c *config.Config) { c.MaxKeepalive = time.Second })
	secret := s.Device(t, "dev")
	for _, v := range []byte{5, 4} {
		t.Run(fmt.Sprintf("v%d", v), func(t *testing.T) {
			c, ack := dialRaw(t, s, v, fmt.Sprintf("dev-%d", v), "dev", secret, 600)
			if v == 5 {
				if ka, ok := connackProps(t, ack.body)[0x13]; !ok || ka != 1 {
					t.Fatalf("Server Keep Alive = %d (present %v); want 1", ka, ok)
				}
			}
			start := time.Now()
			for {
				_, err := c.read(10 * time.Second) // asked for 600 s: 900 s without the cap
				if err == nil {
					continue
				}
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					t.Fatalf("still connected after %v; want closed after about 1.5 s", time.Since(start))
				}
				break
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Fatalf("closed after %v; want about 1.5 s", d)
			}
		})
	}
}

// readAllPackets reads until the server closes the connection and returns
// what came, failing on a reset (the bytes before it may be lost).
func (c *rawClient) readAll() []rawPkt {
	c.t.Helper()
	var out []rawPkt
	for {
		p, err := c.read(5 * time.Second)
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			c.t.Fatalf("after %d packets: %v; want the server to close cleanly (EOF)", len(out), err)
		}
		out = append(out, p)
	}
}

// A packet over --max-packet-size gets DISCONNECT 0x95 (MQTT 5) before the
// close, and the close is clean (no reset), although the server did not
// read the rest of the packet.
func TestOversizePacketDisconnect(t *testing.T) {
	s := daemontest.Start(t, func(c *config.Config) { c.MaxPacketSize = 1024 })
	secret := s.Device(t, "dev")
	big := publishV5(1, 1, "things/dev/data", []byte{0}, bytes.Repeat([]byte("x"), 64*1024))

	c, _ := dialRaw(t, s, 5, "dev", "dev", secret, 30)
	c.write(big)
	got := c.readAll()
	if len(got) != 1 || got[0].typ != 14 || len(got[0].body) < 1 || got[0].body[0] != 0x95 {
		t.Fatalf("after an oversize packet got %v; want one DISCONNECT 0x95", got)
	}

	// MQTT 3.1.1 has no DISCONNECT from the server: the connection closes.
	c3, _ := dialRaw(t, s, 4, "dev-3", "dev", secret, 30)
	c3.write(mqttPacket(0x32, append(append(mqttString("things/dev/data"), 0, 1), bytes.Repeat([]byte("x"), 64*1024)...)))
	if got := c3.readAll(); len(got) != 0 {
		t.Fatalf("MQTT 3.1.1 after an oversize packet got %v; want the connection closed", got)
	}
	if m := getMetrics(t, s); !containsLine(m, `mote_mqtt_server_disconnects_total{reason="packet_too_large"}`) {
		t.Error(`mote_mqtt_server_disconnects_total{reason="packet_too_large"} did not move`)
	}
}

// After a server DISCONNECT (here 0x93 Receive Maximum exceeded) the
// client reads the reason, although it had sent more than the server read:
// the server half-closes and drains instead of resetting the connection.
func TestDisconnectIsReadBeforeClose(t *testing.T) {
	s := daemontest.Start(t, func(c *config.Config) { c.MaxOfflineQueue = 2 }) // Receive Maximum 2
	secret := s.Device(t, "dev")
	c, _ := dialRaw(t, s, 5, "dev", "dev", secret, 30)
	var burst []byte
	for id := uint16(1); id <= 200; id++ { // QoS 2 without PUBREL: the third is one too many
		burst = append(burst, publishV5(2, id, "things/dev/data", []byte{0}, bytes.Repeat([]byte("x"), 200))...)
	}
	c.write(burst)
	got := c.readAll()
	if len(got) == 0 || got[len(got)-1].typ != 14 || got[len(got)-1].body[0] != 0x93 {
		t.Fatalf("got %d packets ending %v; want DISCONNECT 0x93 last", len(got), got[max(len(got)-1, 0):])
	}
}

// A QoS 1/2 publish to a topic the server does not route ($SYS/...) is
// answered — MQTT 5 with 0x90 Topic Name invalid, 3.1.1 with a plain
// acknowledgement — instead of never, and counted.
func TestUnroutedPublishAcknowledged(t *testing.T) {
	s := daemontest.Start(t)
	secret := s.Device(t, "dev")
	c, _ := dialRaw(t, s, 5, "dev", "dev", secret, 30)
	c.write(publishV5(1, 3, "$SYS/broker/x", []byte{0}, []byte("1")))
	if ack := c.next(4); len(ack.body) < 3 || ack.body[0] != 0 || ack.body[1] != 3 || ack.body[2] != 0x90 {
		t.Fatalf("PUBACK body = %x; want 0003 90...", ack.body)
	}
	c.write(publishV5(2, 4, "$sys/x", []byte{0}, []byte("1")))
	if rec := c.next(5); len(rec.body) < 3 || rec.body[2] != 0x90 {
		t.Fatalf("PUBREC body = %x; want 0004 90...", rec.body)
	}

	c3, _ := dialRaw(t, s, 4, "dev-3", "dev", secret, 30)
	c3.write(mqttPacket(0x32, append(append(mqttString("$SYS/x"), 0, 5), '1')))
	if ack := c3.next(4); !bytes.Equal(ack.body, []byte{0, 5}) {
		t.Fatalf("MQTT 3.1.1 PUBACK body = %x; want 0005", ack.body)
	}
	// The connections still work.
	c.write(publishV5(1, 6, "things/dev/data", []byte{0}, []byte("1")))
	if ack := c.next(4); !bytes.Equal(ack.body, []byte{0, 6}) {
		t.Fatalf("PUBACK after = %x", ack.body)
	}
	if m := getMetrics(t, s); !containsLine(m, `mote_mqtt_publishes_refused_total{reason="topic_not_accepted"}`) {
		t.Error("mote_mqtt_publishes_refused_total did not move")
	}
}
