package broker

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// safeHandler keeps packet contents out of the log. mochi logs whole
// packets: a second CONNECT on a live connection with its password ("error
// processing packet", at WARN), a malformed or rejected PUBLISH with its
// payload, a will with its message. Every record of the broker and of
// mochi passes through here: a packet is replaced by a summary (type,
// packet id, QoS, topic, payload size), a will likewise; attributes named
// like a secret or a payload are redacted, byte slices are reduced to
// their length, values of types not known to be safe to their type name,
// and long strings (a 65,535-byte client id) are clipped.
type safeHandler struct{ next slog.Handler }

func newSafeHandler(next slog.Handler) slog.Handler {
	if _, ok := next.(safeHandler); ok {
		return next
	}
	return safeHandler{next: next}
}

func (h safeHandler) Enabled(ctx context.Context, l slog.Level) bool { return h.next.Enabled(ctx, l) }

func (h safeHandler) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, clip(r.Message), r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(safeAttr(a))
		return true
	})
	return h.next.Handle(ctx, out)
}

func (h safeHandler) WithAttrs(as []slog.Attr) slog.Handler {
	safe := make([]slog.Attr, len(as))
	for i, a := range as {
		safe[i] = safeAttr(a)
	}
	return safeHandler{next: h.next.WithAttrs(safe)}
}

func (h safeHandler) WithGroup(name string) slog.Handler {
	return safeHandler{next: h.next.WithGroup(name)}
}

// secretKeys are attribute names whose values are never logged as given.
var secretKeys = map[string]bool{
	"password": true, "secret": true, "token": true, "payload": true, "authenticationdata": true,
}

func safeAttr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	if secretKeys[strings.ToLower(a.Key)] {
		return slog.String(a.Key, "[redacted]")
	}
	switch v.Kind() {
	case slog.KindString:
		return slog.String(a.Key, clip(v.String()))
	case slog.KindGroup:
		g := v.Group()
		safe := make([]any, len(g))
		for i, ga := range g {
			safe[i] = safeAttr(ga)
		}
		return slog.Group(a.Key, safe...)
	case slog.KindAny:
		return slog.Attr{Key: a.Key, Value: safeAny(v.Any())}
	default: // numbers, bools, times, durations
		return slog.Attr{Key: a.Key, Value: v}
	}
}

func safeAny(x any) slog.Value {
	switch x := x.(type) {
	case nil:
		return slog.StringValue("<nil>")
	case packets.Packet:
		return packetSummary(&x)
	case *packets.Packet:
		if x == nil {
			return slog.StringValue("<nil>")
		}
		return packetSummary(x)
	case mqtt.Will:
		return slog.GroupValue(slog.String("topic", clip(x.TopicName)), slog.Int("qos", int(x.Qos)),
			slog.Bool("retain", x.Retain), slog.Int("payload_bytes", len(x.Payload)))
	case []byte:
		return slog.StringValue(fmt.Sprintf("[%d bytes]", len(x)))
	case packets.Code:
		return slog.StringValue(x.Error())
	case error:
		return slog.StringValue(clip(x.Error()))
	default:
		return slog.StringValue(fmt.Sprintf("[%T]", x))
	}
}

// packetSummary describes a packet without its contents.
func packetSummary(pk *packets.Packet) slog.Value {
	attrs := []slog.Attr{slog.String("type", packetName(pk.FixedHeader.Type))}
	if pk.PacketID != 0 {
		attrs = append(attrs, slog.Int("id", int(pk.PacketID)))
	}
	switch pk.FixedHeader.Type {
	case packets.Publish:
		attrs = append(attrs, slog.Int("qos", int(pk.FixedHeader.Qos)), slog.String("topic", clip(pk.TopicName)),
			slog.Int("payload_bytes", len(pk.Payload)))
	case packets.Connect:
		attrs = append(attrs, slog.Int("protocol_version", int(pk.ProtocolVersion)))
	case packets.Subscribe, packets.Unsubscribe:
		attrs = append(attrs, slog.Int("filters", len(pk.Filters)))
	}
	return slog.GroupValue(attrs...)
}

func packetName(t byte) string {
	if n, ok := packets.PacketNames[t]; ok {
		return n
	}
	return fmt.Sprintf("type %d", t)
}

// maxLogString is the longest string value logged whole.
const maxLogString = 256

// clip shortens a long string for the log.
func clip(s string) string {
	if len(s) <= maxLogString {
		return s
	}
	return fmt.Sprintf("%s…(%d bytes)", strings.ToValidUTF8(s[:64], ""), len(s))
}
