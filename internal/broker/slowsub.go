package broker

import (
	"sync/atomic"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
)

// A subscriber that stops reading (but keeps its connection alive with
// PINGREQs) would hold every publisher of its topics BackpressureWait per
// message for as long as it lives. So a subscriber may stay full while
// publishers wait for it for Options.SlowSubscriberBudget: counted from
// the first wait for it that ended without it draining, and restarted
// whenever it is seen with room in its queue. Wall-clock time, not the
// sum of the waits: many publishers held at once by one subscriber that
// is merely slow do not use its budget up faster. Once over budget it is
// disconnected — MQTT 5: DISCONNECT 0x97 "quota exceeded", MQTT 3.1.1:
// the connection is closed — and publishers stop waiting for it at once.
// A persistent session lives on: its messages go to its session queue
// (up to MaxOfflineQueue) until it comes back.

// slowState is the slow-subscriber bookkeeping of a session.
type slowState struct {
	since atomic.Int64 // unix ns of the first wait in vain since it last had room; 0: none
	cut   atomic.Bool  // over budget: being disconnected; nobody waits for it
}

// hadRoom notes that the subscriber had room in its queue.
func (st *slowState) hadRoom() {
	if st.since.Load() != 0 {
		st.since.Store(0)
	}
}

// heldInVain notes a wait for s that ended without it draining and
// disconnects it once it has been full for longer than the budget.
func (b *Broker) heldInVain(s *session) {
	budget := b.opts.SlowSubscriberBudget
	if budget <= 0 {
		return
	}
	now := time.Now().UnixNano()
	since := s.slow.since.Load()
	if since == 0 {
		s.slow.since.CompareAndSwap(0, now)
		return
	}
	if time.Duration(now-since) < budget || !s.slow.cut.CompareAndSwap(false, true) {
		return
	}
	b.metrics.slowDisconnected.Inc()
	b.dropLog.Warn("slow subscriber disconnected: it held publishers longer than slow-subscriber-budget without draining",
		"client", s.cl.ID, "thing", s.id.Thing, "full_for", time.Duration(now-since).String(), "budget", budget.String())
	s.wake() // release the publishers waiting for it now
	cl := s.cl
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		// Its socket is full: writes to it (mochi's writer, the DISCONNECT)
		// would block for good. A deadline makes them fail soon.
		if c := cl.Net.Conn; c != nil {
			_ = c.SetWriteDeadline(time.Now().Add(time.Second))
		}
		if cl.Properties.ProtocolVersion >= 5 {
			_ = b.server.DisconnectClient(cl, packets.ErrQuotaExceeded)
			return
		}
		cl.Stop(packets.ErrQuotaExceeded) // 3.1.1 has no server DISCONNECT
	}()
}
