package loadgen

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// subscriber is one receiving connection. Its fields other than the
// atomics are owned by its reader goroutine until that goroutine ends.
type subscriber struct {
	c    *conn
	hist Hist
	// seen[p] is a bitmap of the sequence numbers received from publisher p.
	seen     [][]uint64
	maxSeq   int // sequence numbers above are not this run's
	distinct int64
	dup      int64
	foreign  int64
	lastNs   int64 // run time of the last delivery
	total    *atomic.Int64
}

// publisher is one sending connection.
type publisher struct {
	c     *conn
	topic string
	count int // messages to send
	sent  int64
	acked atomic.Int64
	sem   chan struct{} // QoS 1: one token per unacknowledged PUBLISH
	err   error
}

func (s *runState) load(ctx context.Context, r *Result) error {
	o := &s.o
	cl := &closer{}
	defer cl.closeAll()
	stop := context.AfterFunc(ctx, cl.closeAll)
	defer stop()

	var total atomic.Int64
	subs := make([]*subscriber, o.Subs)
	for i := range subs {
		c, err := dial(ctx, o, i+1, s.clientID("s", i))
		if err != nil {
			return fmt.Errorf("loadgen: subscriber %d: %w", i, err)
		}
		cl.add(c)
		filter := s.topic("in", "+")
		switch o.Topology {
		case FanOut:
			filter = s.topic("out")
		case Pairs:
			filter = s.topic("p", strconv.Itoa(i))
		}
		if err := c.subscribe(filter, o.QoS, o.DialTimeout); err != nil {
			return fmt.Errorf("loadgen: subscriber %d: %w", i, err)
		}
		subs[i] = &subscriber{c: c, seen: make([][]uint64, o.Pubs), maxSeq: (o.Count + o.Pubs - 1) / o.Pubs, total: &total}
	}
	pubs := make([]*publisher, o.Pubs)
	for i := range pubs {
		c, err := dial(ctx, o, i, s.clientID("p", i))
		if err != nil {
			return fmt.Errorf("loadgen: publisher %d: %w", i, err)
		}
		cl.add(c)
		t := s.topic("in", strconv.Itoa(i))
		switch o.Topology {
		case FanOut:
			t = s.topic("out")
		case Pairs:
			t = s.topic("p", strconv.Itoa(i))
		}
		n := o.Count / o.Pubs
		if i < o.Count%o.Pubs {
			n++
		}
		pubs[i] = &publisher{c: c, topic: t, count: n}
		if o.QoS == 1 {
			pubs[i].sem = make(chan struct{}, o.Inflight)
		}
	}

	cpu := startCPU(o.BrokerPID)
	s.start = time.Now()
	var readers sync.WaitGroup
	for i, sub := range subs {
		readers.Go(func() { sub.read(s, i == 0) })
	}
	for _, p := range pubs {
		if p.sem != nil {
			readers.Go(func() { p.readAcks() })
		}
	}

	// Publish.
	pubCtx, cancel := context.WithTimeout(ctx, o.Duration)
	var writers sync.WaitGroup
	for i, p := range pubs {
		writers.Go(func() { p.publish(pubCtx, s, i) })
	}
	writers.Wait()
	cancel()
	pubEnd := s.now()
	r.PubSeconds = float64(pubEnd) / 1e9

	var expected int64
	for _, p := range pubs {
		r.Sent += p.sent
		if p.err != nil && r.Error == "" {
			r.Error = p.err.Error()
		}
	}
	switch o.Topology {
	case Pairs:
		expected = r.Sent
	default:
		expected = r.Sent * int64(o.Subs)
	}
	r.Expected = expected

	// Drain: until everything arrived, nothing arrived for Drain, or
	// MaxDrain passed; QoS 1 publishers also wait for their PUBACKs.
	allAcked := func() bool {
		for _, p := range pubs {
			if p.sem != nil && p.acked.Load() < p.sent {
				return false
			}
		}
		return true
	}
	maxEnd := time.Now().Add(o.MaxDrain)
	last, lastChange := total.Load(), time.Now()
	tick := time.NewTicker(5 * time.Millisecond)
	for ctx.Err() == nil {
		n := total.Load()
		if n >= expected && allAcked() {
			break
		}
		now := time.Now()
		if n != last {
			last, lastChange = n, now
		}
		if now.Sub(lastChange) >= o.Drain || now.After(maxEnd) {
			break
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
		}
	}
	tick.Stop()
	r.Seconds = float64(s.now()) / 1e9
	r.LoadgenCPU, r.BrokerCPU = cpu.pct()
	cl.closeAll()
	readers.Wait()
	if ctx.Err() != nil && r.Error == "" {
		r.Error = "interrupted: " + ctx.Err().Error()
	}

	var h Hist
	var lastNs int64
	for _, sub := range subs {
		r.Received += sub.distinct
		r.Dup += sub.dup
		r.Foreign += sub.foreign
		h.Merge(&sub.hist)
		lastNs = max(lastNs, sub.lastNs)
	}
	for _, p := range pubs {
		r.Acked += p.acked.Load()
	}
	r.Lost = max(expected-r.Received, 0)
	if expected > 0 {
		r.LostPct = 100 * float64(r.Lost) / float64(expected)
	}
	if r.PubSeconds > 0 {
		r.PubPerSec = float64(r.Sent) / r.PubSeconds
	}
	if lastNs > 0 {
		r.MsgsPerSec = float64(r.Received) / (float64(lastNs) / 1e9)
	}
	us := func(v uint64) float64 { return float64(v) / 1e3 }
	r.P50, r.P90, r.P99, r.Max = us(h.Quantile(0.50)), us(h.Quantile(0.90)), us(h.Quantile(0.99)), us(h.Max())
	r.Mean = h.Mean() / 1e3
	return nil
}

// publish sends p.count messages (or until ctx ends), paced at the
// publisher's share of Rate when Rate is set.
func (p *publisher) publish(ctx context.Context, s *runState, idx int) {
	o := &s.o
	pkt, pidOff, payOff := publishTemplate(p.topic, o.QoS, o.Size)
	binary.BigEndian.PutUint32(pkt[payOff+8:], uint32(idx))
	var interval time.Duration
	if o.Rate > 0 {
		interval = time.Duration(float64(time.Second) * float64(o.Pubs) / o.Rate)
	}
	// Each write is bounded: a broker that stops reading cannot hold a
	// publisher past the end of the run.
	_ = p.c.nc.SetWriteDeadline(time.Now().Add(o.Duration + o.MaxDrain))
	var pid uint16
	// Publishers start staggered over one interval, so that a fixed rate
	// is offered evenly rather than in bursts of Pubs messages.
	begin := time.Now().Add(interval * time.Duration(idx) / time.Duration(o.Pubs))
	for seq := 0; seq < p.count; seq++ {
		if ctx.Err() != nil {
			return
		}
		if interval > 0 {
			// Open loop on a fixed schedule: catch up without sleeping when late.
			if wait := time.Until(begin.Add(time.Duration(seq) * interval)); wait > 0 {
				if !sleepCtx(ctx, wait) {
					return
				}
			}
		}
		if p.sem != nil {
			select {
			case p.sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			pid++
			if pid == 0 {
				pid = 1
			}
			binary.BigEndian.PutUint16(pkt[pidOff:], pid)
		}
		binary.BigEndian.PutUint32(pkt[payOff+12:], uint32(seq))
		binary.BigEndian.PutUint64(pkt[payOff:], uint64(s.now()))
		if _, err := p.c.nc.Write(pkt); err != nil {
			if !errors.Is(err, net.ErrClosed) {
				p.err = fmt.Errorf("publisher %d: write PUBLISH: %w", idx, err)
			}
			return
		}
		p.sent++
	}
}

// readAcks reads PUBACKs on a QoS 1 publisher's connection.
func (p *publisher) readAcks() {
	for {
		typ, _, _, err := p.c.readPacket()
		if err != nil {
			return
		}
		if typ == pktPuback {
			p.acked.Add(1)
			select {
			case <-p.sem:
			default:
			}
		}
	}
}

// read is a subscriber's reader: it records each PUBLISH and sends the
// PUBACKs for QoS 1 in one write whenever its read buffer runs dry.
func (sub *subscriber) read(s *runState, first bool) {
	o := &s.o
	acks := make([]byte, 0, 4*256)
	for {
		typ, flags, body, err := sub.c.readPacket()
		if err != nil {
			return
		}
		if typ != pktPublish {
			continue
		}
		now := s.now()
		pid, payload, ok := parsePublish(flags, body)
		if !ok {
			return // malformed: the rest counts as lost
		}
		if pid != nil {
			acks = append(acks, pktPuback<<4, 2, pid[0], pid[1])
		}
		sub.record(payload, now, o.Pubs)
		if first && o.killSubAfter > 0 && sub.distinct >= o.killSubAfter {
			sub.c.nc.Close()
			return
		}
		if len(acks) > 0 && (sub.c.br.Buffered() == 0 || len(acks) >= cap(acks)) {
			if _, err := sub.c.nc.Write(acks); err != nil {
				return
			}
			acks = acks[:0]
		}
	}
}

func (sub *subscriber) record(pay []byte, now int64, pubs int) {
	if len(pay) < HeaderSize {
		sub.foreign++
		return
	}
	sent := int64(binary.BigEndian.Uint64(pay))
	p := int(binary.BigEndian.Uint32(pay[8:]))
	seq := int(binary.BigEndian.Uint32(pay[12:]))
	if p >= pubs || seq >= sub.maxSeq || sent > now || sent < 0 {
		sub.foreign++
		return
	}
	w := seq / 64
	bm := sub.seen[p]
	if w >= len(bm) {
		bm = slices.Grow(bm, max(w+1, 2*len(bm))-len(bm))[:w+1]
		sub.seen[p] = bm
	}
	bit := uint64(1) << (seq % 64)
	if bm[w]&bit != 0 {
		sub.dup++
		return
	}
	bm[w] |= bit
	sub.distinct++
	sub.total.Add(1)
	sub.lastNs = now
	sub.hist.Record(uint64(now - sent))
}

// parsePublish splits a PUBLISH body into its packet id (nil for QoS 0)
// and payload; ok is false when the body is malformed.
func parsePublish(flags byte, body []byte) (pid, payload []byte, ok bool) {
	if len(body) < 2 {
		return nil, nil, false
	}
	off := 2 + int(binary.BigEndian.Uint16(body))
	if flags>>1&3 > 0 {
		if off+2 > len(body) {
			return nil, nil, false
		}
		pid = body[off : off+2]
		off += 2
	}
	if off > len(body) {
		return nil, nil, false
	}
	return pid, body[off:], true
}
