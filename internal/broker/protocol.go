package broker

import (
	"bytes"
	"errors"
	"strings"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// MQTT 5 protocol details mochi leaves to the embedder:
//
//   - Acknowledgements (PUBACK, PUBREC, PUBREL, PUBCOMP) carry no
//     properties of the packet they answer: mochi copies them unless
//     Compatibilities.NoInheritedPropertiesOnAck is set (broker.go), and a
//     PUBACK echoing a PUBLISH's user properties made MQTT.js v5 drop the
//     connection. mochi also fills a PUBACK's reason code with the "granted
//     QoS" code 0x01, which is not a PUBACK reason code; OnPacketEncode
//     sends 0x00 (Success) instead.
//   - CONNACK advertises what the server enforces: Receive Maximum (mochi
//     does), Topic Alias Maximum and Maximum Packet Size (OnPacketEncode),
//     and Server Keep Alive when a client asked for a keep-alive longer than
//     MaxKeepalive or for none (capKeepalive).
//   - A QoS 1/2 PUBLISH to a topic the server does not route ($SYS/...),
//     which mochi drops without an acknowledgement (the client would wait
//     for it forever and send it again on every reconnect), is answered:
//     MQTT 5 PUBACK/PUBREC 0x90 (Topic Name invalid: "not malformed, but
//     not accepted by this Server"), MQTT 3.1.1 a plain PUBACK/PUBREC (it
//     has no negative one), as for a publish refused by policy.
//   - A packet over MaxPacketSize gets DISCONNECT 0x95 (MQTT 5) before the
//     connection closes, and every connection the server closes is
//     half-closed and drained briefly so that the client reads the
//     DISCONNECT instead of a reset (lingerConn, listener.go).

// OnPacketEncode completes packets mochi writes.
func (h *hook) OnPacketEncode(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	switch pk.FixedHeader.Type {
	case packets.Puback, packets.Pubrec:
		// Valid success codes: 0x00, and 0x10 No matching subscribers.
		if pk.ReasonCode < packets.ErrUnspecifiedError.Code && pk.ReasonCode != packets.CodeNoMatchingSubscribers.Code {
			pk.ReasonCode = packets.CodeSuccess.Code
		}
	case packets.Pubrel, packets.Pubcomp:
		if pk.ReasonCode < packets.ErrUnspecifiedError.Code {
			pk.ReasonCode = packets.CodeSuccess.Code
		}
	case packets.Connack:
		if pk.ReasonCode == packets.CodeSuccess.Code {
			caps := h.b.server.Options.Capabilities
			pk.Properties.TopicAliasMaximum = caps.TopicAliasMaximum
			pk.Properties.MaximumPacketSize = caps.MaximumPacketSize
		}
	}
	return pk
}

// capKeepalive grants a client at most MaxKeepalive: a longer keep-alive,
// or none (0), is replaced by it. mochi's read deadline then uses the
// granted one (1.5 times it), and an MQTT 5 client is told in CONNACK's
// Server Keep Alive (MQTT 3.1.1 has no way to tell; the deadline applies
// all the same, as AWS IoT does). It runs in OnSessionEstablish, before
// the CONNACK.
func (b *Broker) capKeepalive(cl *mqtt.Client) {
	limit := uint16(min(b.opts.MaxKeepalive/time.Second, 65535))
	asked := cl.State.Keepalive
	if asked != 0 && asked <= limit {
		return
	}
	cl.State.Keepalive = limit
	cl.State.ServerKeepalive = cl.Properties.ProtocolVersion == 5
	b.metrics.keepaliveCapped.Inc()
	b.connLog.Debug("keep-alive capped", "client", clip(cl.ID), "asked_s", asked, "granted_s", limit)
}

// notRouted reports whether mochi drops a publish to topic without an
// acknowledgement: a topic in the server's $SYS namespace (mochi compares
// the prefix without case). Topic names with wildcards are protocol errors
// that mochi answers itself.
func notRouted(topic string) bool {
	return len(topic) >= len(mqtt.SysPrefix) && strings.EqualFold(topic[:len(mqtt.SysPrefix)], mqtt.SysPrefix) &&
		!strings.ContainsAny(topic, "+#")
}

// OnPacketRead answers a QoS 1/2 PUBLISH that mochi will drop unanswered
// (notRouted). It runs on the client's read goroutine just before mochi
// processes the packet, so the acknowledgement keeps its place in order.
func (h *hook) OnPacketRead(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if pk.FixedHeader.Type != packets.Publish || cl.Net.Inline || !notRouted(pk.TopicName) {
		return pk, nil
	}
	b := h.b
	b.metrics.publishRefused.WithLabelValues(refusedTopic).Inc()
	b.dropLog.Info("publish refused: topic not accepted", "client", clip(cl.ID), "topic", clip(pk.TopicName), "qos", pk.FixedHeader.Qos)
	if pk.FixedHeader.Qos == 0 || refuse(cl, pk, packets.ErrTopicNameInvalid) {
		return pk, nil
	}
	// MQTT 3.1.1: acknowledged, not delivered.
	typ := packets.Puback
	if pk.FixedHeader.Qos == 2 {
		typ = packets.Pubrec
	}
	_ = cl.WritePacket(packets.Packet{FixedHeader: packets.FixedHeader{Type: typ}, PacketID: pk.PacketID})
	return pk, nil
}

// refusedTopic is the publishRefused reason of notRouted publishes.
const refusedTopic = "topic_not_accepted"

// disconnectPacket returns the bytes of an MQTT 5 DISCONNECT with code.
func disconnectPacket(code packets.Code) []byte {
	pk := packets.Packet{
		FixedHeader:     packets.FixedHeader{Type: packets.Disconnect},
		ProtocolVersion: 5,
		ReasonCode:      code.Code,
		Properties:      packets.Properties{ReasonString: code.Reason},
	}
	var buf bytes.Buffer
	_ = pk.DisconnectEncode(&buf)
	return buf.Bytes()
}

// tooLarge handles a connection that ended because the client sent a
// packet over MaxPacketSize: mochi closes it without a word, so an MQTT 5
// client is sent DISCONNECT 0x95 before the close (MQTT 3.1.1 has no
// DISCONNECT from the server: the connection is only closed). It runs in
// OnDisconnect, after mochi closed the connection: lingerConn holds the
// real close back until the packet is written.
func (b *Broker) tooLarge(cl *mqtt.Client, err error) {
	if !errors.Is(err, packets.ErrPacketTooLarge) {
		return
	}
	b.metrics.closed.WithLabelValues("packet_too_large").Inc()
	b.connLog.Info("connection closed: packet too large", "client", clip(cl.ID), "remote", cl.Net.Remote,
		"listener", cl.Net.Listener, "max_bytes", b.opts.MaxPacketSize)
	if cl.Properties.ProtocolVersion != 5 {
		return
	}
	if lc := lingerOf(cl.Net.Conn); lc != nil {
		lc.last(disconnectPacket(packets.ErrPacketTooLarge))
	}
}
