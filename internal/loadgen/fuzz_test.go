package loadgen

import (
	"bufio"
	"bytes"
	"sync/atomic"
	"testing"
)

// FuzzReceive feeds arbitrary bytes from a "broker" through the packet
// reader, the PUBLISH parser and the accounting: nothing may panic and
// every delivery is counted exactly once as distinct, dup or foreign.
func FuzzReceive(f *testing.F) {
	pkt, pidOff, payOff := publishTemplate("bench/x/in/0", 1, HeaderSize)
	pkt[pidOff+1] = 7
	pkt[payOff+7] = 1
	f.Add(append(append([]byte{}, pkt...), pkt...))
	q0, _, _ := publishTemplate("t", 0, 20)
	f.Add(q0)
	f.Add([]byte{0x30, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0x32, 0x03, 0x00, 0x05, 0x61})
	f.Fuzz(func(t *testing.T, data []byte) {
		var total atomic.Int64
		sub := &subscriber{seen: make([][]uint64, 4), maxSeq: 1 << 16, total: &total}
		c := &conn{br: bufio.NewReader(bytes.NewReader(data))}
		var publishes int64
		for {
			typ, flags, body, err := c.readPacket()
			if err != nil {
				break
			}
			if typ != pktPublish {
				continue
			}
			pid, payload, ok := parsePublish(flags, body)
			if !ok {
				break
			}
			if flags>>1&3 > 0 && len(pid) != 2 {
				t.Fatalf("QoS %d PUBLISH: packet id %x; want 2 bytes", flags>>1&3, pid)
			}
			publishes++
			sub.record(payload, 1<<62, 4)
		}
		if got := sub.distinct + sub.dup + sub.foreign; got != publishes {
			t.Fatalf("distinct %d + dup %d + foreign %d = %d; want %d publishes", sub.distinct, sub.dup, sub.foreign, got, publishes)
		}
	})
}
