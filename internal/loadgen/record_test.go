package loadgen

import (
	"encoding/binary"
	"sync/atomic"
	"testing"
)

func TestRecordCountsDuplicatesAndForeign(t *testing.T) {
	var total atomic.Int64
	sub := &subscriber{seen: make([][]uint64, 2), maxSeq: 2000, total: &total}
	pay := func(sent int64, pub, seq uint32) []byte {
		b := make([]byte, HeaderSize)
		binary.BigEndian.PutUint64(b, uint64(sent))
		binary.BigEndian.PutUint32(b[8:], pub)
		binary.BigEndian.PutUint32(b[12:], seq)
		return b
	}
	sub.record(pay(10, 0, 0), 20, 2)
	sub.record(pay(10, 0, 1000), 20, 2) // grows the bitmap
	sub.record(pay(10, 1, 0), 20, 2)
	sub.record(pay(10, 0, 1000), 30, 2) // duplicate
	sub.record(pay(10, 5, 0), 30, 2)    // no such publisher
	sub.record([]byte("short"), 30, 2)  // not ours
	sub.record(pay(10, 0, 2000), 30, 2) // beyond the run's sequences
	if sub.distinct != 3 || total.Load() != 3 || sub.dup != 1 || sub.foreign != 3 {
		t.Errorf("distinct %d total %d dup %d foreign %d; want 3, 3, 1, 3", sub.distinct, total.Load(), sub.dup, sub.foreign)
	}
	if sub.hist.Count() != 3 || sub.hist.Max() != 10 {
		t.Errorf("latency count %d max %d; want 3 values, max 10", sub.hist.Count(), sub.hist.Max())
	}
}
