package broker

import (
	"sync/atomic"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
)

// A subscriber that stops reading (but keeps its connection alive with
// PINGREQs) would hold every publisher of its topics BackpressureWait per
// message for as long as it lives. So each subscriber has a budget
// (Options.SlowSubscriberBudget): the time publishers spent in waits for
// it that ended without it draining, counted since it was last seen with
// room in its queue. Once over budget it is disconnected — MQTT 5:
// DISCONNECT 0x97 "quota exceeded", MQTT 3.1.1: the connection is closed
// — and publishers stop waiting for it at once. A persistent session
// lives on: its messages go to its session queue (up to MaxOfflineQueue)
// until it comes back.

// slowState is the slow-subscriber bookkeeping of a session.
type slowState struct {
	held atomic.Int64 // nanoseconds publishers were held in vain since it last had room
	cut  atomic.Bool  // over budget: being disconnected; nobody waits for it
}

// hadRoom notes that the subscriber had room in its queue.
func (st *slowState) hadRoom() {
	if st.held.Load() != 0 {
		st.held.Store(0)
	}
}

// heldInVain charges a wait that ended without the subscriber draining
// and disconnects it once over budget.
func (b *Broker) heldInVain(s *session, d time.Duration) {
	budget := b.opts.SlowSubscriberBudget
	if budget <= 0 {
		return
	}
	if time.Duration(s.slow.held.Add(int64(d))) < budget || !s.slow.cut.CompareAndSwap(false, true) {
		return
	}
	b.metrics.slowDisconnected.Inc()
	b.dropLog.Warn("slow subscriber disconnected: it held publishers longer than slow-subscriber-budget without draining",
		"client", s.cl.ID, "thing", s.id.Thing, "held", time.Duration(s.slow.held.Load()).String(), "budget", budget.String())
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
