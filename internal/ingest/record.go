package ingest

import (
	"encoding/binary"
	"errors"
	"time"

	"github.com/moteiot/mote/internal/core"
)

// Record versions: the first byte of every record. A new layout gets a new
// number and decode keeps reading the old ones. A message without user
// properties is still written as version 1, so that the common record
// stays as it was.
const (
	recordVersion      = 1
	recordVersionProps = 2 // version 1, then the user properties
)

// errCorrupt is returned for a record that does not decode. The WAL checks
// every record's CRC, so this means a bug or a record of a newer Mote.
var errCorrupt = errors.New("ingest: corrupt or unknown journal record")

// encode lays a message out as a journal record:
//
//	version(1) | flags(1: qos<<1 | retain) | received unix ns (varint)
//	| topic | payload | client id | thing | protocol   (each uvarint length + bytes)
//	[version 2: | count (uvarint) | count × (key | value)]
func encode(m core.Message) []byte {
	n := 2 + binary.MaxVarintLen64 + 5*binary.MaxVarintLen32 +
		len(m.Topic) + len(m.Payload) + len(m.ClientID) + len(m.Thing) + len(m.Protocol)
	version := byte(recordVersion)
	if len(m.Properties) > 0 {
		version = recordVersionProps
		n += binary.MaxVarintLen32
		for _, p := range m.Properties {
			n += 2*binary.MaxVarintLen32 + len(p.Key) + len(p.Value)
		}
	}
	b := make([]byte, 0, n)
	flags := m.QoS << 1
	if m.Retain {
		flags |= 1
	}
	b = append(b, version, flags)
	b = binary.AppendVarint(b, m.Received.UnixNano())
	for _, f := range [...][]byte{[]byte(m.Topic), m.Payload, []byte(m.ClientID), []byte(m.Thing), []byte(m.Protocol)} {
		b = binary.AppendUvarint(b, uint64(len(f)))
		b = append(b, f...)
	}
	if version == recordVersionProps {
		b = binary.AppendUvarint(b, uint64(len(m.Properties)))
		for _, p := range m.Properties {
			b = binary.AppendUvarint(b, uint64(len(p.Key)))
			b = append(b, p.Key...)
			b = binary.AppendUvarint(b, uint64(len(p.Value)))
			b = append(b, p.Value...)
		}
	}
	return b
}

// field reads one uvarint-length-prefixed field from rest.
func field(rest []byte) (f, after []byte, ok bool) {
	l, k := binary.Uvarint(rest)
	if k <= 0 || l > uint64(len(rest)-k) {
		return nil, nil, false
	}
	return rest[k : k+int(l)], rest[k+int(l):], true
}

// decode reads a record made by encode. The message's strings and payload
// are copies: rec may be reused afterwards.
func decode(rec []byte) (core.Message, error) {
	var m core.Message
	if len(rec) < 2 || (rec[0] != recordVersion && rec[0] != recordVersionProps) || rec[1] > 5 {
		return m, errCorrupt
	}
	m.QoS, m.Retain = rec[1]>>1, rec[1]&1 == 1
	if m.QoS > 2 {
		return m, errCorrupt
	}
	ns, k := binary.Varint(rec[2:])
	if k <= 0 {
		return m, errCorrupt
	}
	m.Received = time.Unix(0, ns)
	rest := rec[2+k:]
	var fields [5][]byte
	for i := range fields {
		var ok bool
		if fields[i], rest, ok = field(rest); !ok {
			return core.Message{}, errCorrupt
		}
	}
	if rec[0] == recordVersionProps {
		count, k := binary.Uvarint(rest)
		// Each property takes at least two bytes: a count beyond that is
		// a damaged record, not an allocation to make.
		if k <= 0 || count == 0 || count > uint64(len(rest)-k)/2 {
			return core.Message{}, errCorrupt
		}
		rest = rest[k:]
		m.Properties = make([]core.Property, count)
		for i := range m.Properties {
			key, after, ok := field(rest)
			if !ok {
				return core.Message{}, errCorrupt
			}
			val, after, ok := field(after)
			if !ok {
				return core.Message{}, errCorrupt
			}
			m.Properties[i] = core.Property{Key: string(key), Value: string(val)}
			rest = after
		}
	}
	if len(rest) != 0 {
		return core.Message{}, errCorrupt
	}
	m.Topic = string(fields[0])
	m.Payload = append([]byte(nil), fields[1]...)
	m.ClientID = string(fields[2])
	m.Thing = string(fields[3])
	m.Protocol = string(fields[4])
	return m, nil
}
