package ingest

import (
	"encoding/binary"
	"errors"
	"time"

	"github.com/moteiot/mote/internal/core"
)

// recordVersion is the first byte of every record; a new layout gets a
// new number and decode keeps reading the old ones.
const recordVersion = 1

// errCorrupt is returned for a record that does not decode. The WAL checks
// every record's CRC, so this means a bug or a record of a newer Mote.
var errCorrupt = errors.New("ingest: corrupt or unknown journal record")

// encode lays a message out as a journal record:
//
//	version(1) | flags(1: qos<<1 | retain) | received unix ns (varint)
//	| topic | payload | client id | thing | protocol   (each uvarint length + bytes)
func encode(m core.Message) []byte {
	n := 2 + binary.MaxVarintLen64 + 5*binary.MaxVarintLen32 +
		len(m.Topic) + len(m.Payload) + len(m.ClientID) + len(m.Thing) + len(m.Protocol)
	b := make([]byte, 0, n)
	flags := m.QoS << 1
	if m.Retain {
		flags |= 1
	}
	b = append(b, recordVersion, flags)
	b = binary.AppendVarint(b, m.Received.UnixNano())
	for _, f := range [...][]byte{[]byte(m.Topic), m.Payload, []byte(m.ClientID), []byte(m.Thing), []byte(m.Protocol)} {
		b = binary.AppendUvarint(b, uint64(len(f)))
		b = append(b, f...)
	}
	return b
}

// decode reads a record made by encode. The message's strings and payload
// are copies: rec may be reused afterwards.
func decode(rec []byte) (core.Message, error) {
	var m core.Message
	if len(rec) < 2 || rec[0] != recordVersion || rec[1] > 5 {
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
		l, k := binary.Uvarint(rest)
		if k <= 0 || l > uint64(len(rest)-k) {
			return core.Message{}, errCorrupt
		}
		fields[i] = rest[k : k+int(l)]
		rest = rest[k+int(l):]
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
