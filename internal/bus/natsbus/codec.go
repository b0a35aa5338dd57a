package natsbus

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/moteiot/mote/internal/core"
)

// The wire form of a core.Message on NATS, version 1:
//
//	byte     version (1)
//	byte     flags: bits 0–1 QoS, bit 2 retain, bit 3 Received is set
//	string   node id      (each string: uvarint length, then the bytes)
//	string   topic
//	string   client id
//	string   thing
//	string   protocol
//	varint   Received, Unix nanoseconds (only when flag bit 3 is set)
//	uvarint  Seq
//	...      payload: the rest of the message
//
// Version 2 is version 1 with the message's user properties after Seq: a
// uvarint count (at least 1), then that many key and value strings. A
// message without properties is written as version 1. Decode refuses
// unknown versions and flag bits rather than guess.
const (
	codecVersion      = 1
	codecVersionProps = 2
)

const (
	flagQoS      = 0x03
	flagRetain   = 0x04
	flagReceived = 0x08
	knownFlags   = flagQoS | flagRetain | flagReceived
)

// AppendMessage appends m's wire form, with node as its node id, to dst.
func AppendMessage(dst []byte, node string, m core.Message) []byte {
	flags := m.QoS & flagQoS
	if m.Retain {
		flags |= flagRetain
	}
	if !m.Received.IsZero() {
		flags |= flagReceived
	}
	version := byte(codecVersion)
	if len(m.Properties) > 0 {
		version = codecVersionProps
	}
	dst = append(dst, version, flags)
	for _, s := range [...]string{node, m.Topic, m.ClientID, m.Thing, m.Protocol} {
		dst = binary.AppendUvarint(dst, uint64(len(s)))
		dst = append(dst, s...)
	}
	if flags&flagReceived != 0 {
		dst = binary.AppendVarint(dst, m.Received.UnixNano())
	}
	dst = binary.AppendUvarint(dst, m.Seq)
	if version == codecVersionProps {
		dst = binary.AppendUvarint(dst, uint64(len(m.Properties)))
		for _, p := range m.Properties {
			dst = binary.AppendUvarint(dst, uint64(len(p.Key)))
			dst = append(dst, p.Key...)
			dst = binary.AppendUvarint(dst, uint64(len(p.Value)))
			dst = append(dst, p.Value...)
		}
	}
	return append(dst, m.Payload...)
}

var errShort = errors.New("truncated")

// DecodeMessage decodes a message written by AppendMessage. Node is set
// from the node id. The payload is a copy: data may be reused.
func DecodeMessage(data []byte) (core.Message, error) {
	var m core.Message
	if len(data) < 2 {
		return m, fmt.Errorf("natsbus: decode header: %w", errShort)
	}
	if data[0] != codecVersion && data[0] != codecVersionProps {
		return m, fmt.Errorf("natsbus: decode: unknown version %d", data[0])
	}
	flags := data[1]
	if flags&^knownFlags != 0 {
		return m, fmt.Errorf("natsbus: decode: unknown flags %#x", flags)
	}
	if flags&flagQoS > 2 {
		return m, fmt.Errorf("natsbus: decode: QoS %d", flags&flagQoS)
	}
	m.QoS = flags & flagQoS
	m.Retain = flags&flagRetain != 0
	rest := data[2:]
	for i, dst := range [...]*string{&m.Node, &m.Topic, &m.ClientID, &m.Thing, &m.Protocol} {
		n, k := binary.Uvarint(rest)
		if k <= 0 || n > uint64(len(rest)-k) {
			return core.Message{}, fmt.Errorf("natsbus: decode string %d: %w", i, errShort)
		}
		*dst = string(rest[k : k+int(n)])
		rest = rest[k+int(n):]
	}
	if flags&flagReceived != 0 {
		ns, k := binary.Varint(rest)
		if k <= 0 {
			return core.Message{}, fmt.Errorf("natsbus: decode received: %w", errShort)
		}
		m.Received = time.Unix(0, ns).UTC()
		rest = rest[k:]
	}
	seq, k := binary.Uvarint(rest)
	if k <= 0 {
		return core.Message{}, fmt.Errorf("natsbus: decode seq: %w", errShort)
	}
	m.Seq = seq
	rest = rest[k:]
	if data[0] == codecVersionProps {
		count, k := binary.Uvarint(rest)
		// Each property takes at least two bytes: a larger count is a
		// damaged message, not an allocation to make.
		if k <= 0 || count == 0 || count > uint64(len(rest)-k)/2 {
			return core.Message{}, fmt.Errorf("natsbus: decode properties: bad count")
		}
		rest = rest[k:]
		m.Properties = make([]core.Property, count)
		for i := range m.Properties {
			for _, dst := range [...]*string{&m.Properties[i].Key, &m.Properties[i].Value} {
				n, k := binary.Uvarint(rest)
				if k <= 0 || n > uint64(len(rest)-k) {
					return core.Message{}, fmt.Errorf("natsbus: decode property %d: %w", i, errShort)
				}
				*dst = string(rest[k : k+int(n)])
				rest = rest[k+int(n):]
			}
		}
	}
	if len(rest) > 0 {
		m.Payload = append([]byte(nil), rest...)
	}
	return m, nil
}
