package broker

import (
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"

	"github.com/moteiot/mote/internal/auth"
	"github.com/moteiot/mote/internal/policy"
	"github.com/moteiot/mote/internal/store"
)

// session is Mote's state for one live device connection.
type session struct {
	cl          *mqtt.Client
	id          auth.Identity
	ev          atomic.Pointer[policy.Evaluator]
	evMu        sync.Mutex // orders swaps of ev (setEvaluator)
	evGen       uint64     // the policy generation ev was compiled at
	listener    string
	connectedAt time.Time

	// Publishes being made durable in the journal before their PUBACK.
	durable durableQueue

	kicked    atomic.Bool // we closed it (disabled, revoked, policy error)
	takenOver atomic.Bool // a new connection with its client id was accepted
	expired   atomic.Bool // we closed it: its credential expired (expiry.go)
	expiry    *time.Timer // closes it when its credential expires; nil: never
	// rotation closes it when its credential's rotation window ends
	// (ExpireCredential); guarded by rotMu.
	rotMu    sync.Mutex
	rotation *time.Timer
	willSent atomic.Bool

	// Its last will (wills.go): the record in a cluster (0: none), and
	// the topic (nil: none).
	willConn  atomic.Uint64
	willTopic atomic.Pointer[string]

	// Backpressure: pending estimates the PUBLISH packets queued for this
	// client and not yet written. Publishers wait on drained while it is at
	// the high-water mark.
	pending atomic.Int32
	waiting atomic.Bool
	mu      sync.Mutex
	drained chan struct{}
	slow    slowState // slowsub.go
	feed    feedState // retainfeed.go

	// subscribing holds the filters of the SUBSCRIBE being processed
	// (hooks.go, markSubscribe).
	subscribing atomic.Pointer[[]string]

	// azure is set for a connection that speaks the Azure IoT Hub device
	// protocol (azure.go).
	azure *azureConn

	// prov is set for a provisioning-only connection (provisioning.go).
	prov *provConn

	// stored is the stored session another cluster node held under this
	// connection's client id, to resume (handover.go).
	stored    *store.StoredSession
	storedRec *sessionRecord
	// holder is the node whose live connection under this client id
	// has a persistent session the store does not know yet (a lookup's
	// answer, owners_cluster.go): it is handed over as a stored one.
	holder string
}

// drainCh returns the channel closed when the queue falls below the
// low-water mark.
func (s *session) drainCh() chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.drained == nil {
		s.drained = make(chan struct{})
	}
	s.waiting.Store(true)
	return s.drained
}

// wake releases every publisher waiting on this session.
func (s *session) wake() {
	s.mu.Lock()
	if s.drained != nil {
		close(s.drained)
		s.drained = nil
	}
	s.waiting.Store(false)
	s.mu.Unlock()
}

// sent records that one PUBLISH was written (or dropped) for this client.
func (s *session) sent(lowWater int32) {
	n := s.pending.Add(-1)
	if n < 0 {
		// Retained messages and resends are written without passing
		// through OnPublish; the estimate never goes below zero.
		s.pending.CompareAndSwap(n, 0)
		n = 0
	}
	if n <= lowWater && s.waiting.Load() {
		s.wake()
	}
}

// current returns the session of a live client, or nil.
func (b *Broker) current(cl *mqtt.Client) *session {
	v, ok := b.clients.Load(cl)
	if !ok {
		return nil
	}
	return v.(*session)
}

// offlineSession returns the session of a disconnected client whose
// persistent session mochi keeps, or nil.
func (b *Broker) offlineSession(cl *mqtt.Client) *session {
	v, ok := b.offline.Load(cl.ID)
	if !ok || v.(*session).cl != cl {
		return nil
	}
	return v.(*session)
}

func (b *Broker) addSession(s *session) {
	b.clients.Store(s.cl, s)
	b.offline.Delete(s.cl.ID)
	b.sessions.Store(s.cl.ID, s)
	b.mu.Lock()
	set := b.byThing[s.id.Thing]
	if set == nil {
		set = make(map[*session]struct{})
		b.byThing[s.id.Thing] = set
	}
	set[s] = struct{}{}
	first := len(set) == 1
	// Policies changed after this session's evaluator was compiled: a
	// refresh then could not see it yet (lock order: b.mu, then s.evMu).
	stale := s.evaluatorGen() < b.docsGen
	b.mu.Unlock()
	if stale {
		b.recompile([]*session{s})
	}
	if first {
		b.presence.record(s.id.Thing, true)
	}
}

func (b *Broker) removeSession(s *session) {
	b.clients.Delete(s.cl)
	b.sessions.CompareAndDelete(s.cl.ID, s)
	b.mu.Lock()
	set := b.byThing[s.id.Thing]
	delete(set, s)
	last := len(set) == 0
	if last {
		delete(b.byThing, s.id.Thing)
	}
	b.mu.Unlock()
	s.wake() // release publishers waiting on a client that is gone
	if s.expiry != nil {
		s.expiry.Stop()
	}
	s.rotMu.Lock()
	if s.rotation != nil {
		s.rotation.Stop()
	}
	s.rotMu.Unlock()
	if last {
		b.presence.record(s.id.Thing, false)
	}
	b.clusterDisconnected(s) // owners_cluster.go
}
