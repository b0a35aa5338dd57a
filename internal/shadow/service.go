package shadow

import (
	"context"
	"errors"
	"hash/fnv"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moteiot/mote/internal/bus"
	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/store"
)

// Publisher sends a platform message to MQTT subscribers;
// *broker.Broker satisfies it.
type Publisher interface {
	Publish(topic string, payload []byte, retain bool, qos byte) error
}

// Options configure a Service. Zero values take the defaults.
type Options struct {
	Store     store.ShadowStore // required
	Publisher Publisher         // nil: responses are not published (API only)
	// MaxSize bounds a shadow's state, desired plus reported JSON
	// (default DefaultMaxSize, 8 KiB).
	MaxSize int
	// Workers is the number of goroutines shadows are sharded on (by
	// thing); default 2 × GOMAXPROCS.
	Workers int
	// QueueSize is each worker's request queue; a request that finds it
	// full is refused with 429 (default 1024).
	QueueSize int
	// MaxBatch is the most writes committed in one transaction (default 1024).
	MaxBatch int
	// CacheSize bounds the shadows kept in memory (default 100,000).
	CacheSize int
	Logger    *slog.Logger
	Now       func() time.Time // for tests
	// OnChange, if set, is told of every committed change of a shadow:
	// its stored document (see ParseDocument), nil when it was deleted.
	// It runs on a shadow worker: it must only enqueue (the fleet index).
	OnChange func(thing, name string, stored []byte)
	// Shared: other nodes write the same store (a cluster). The cached
	// copy of a shadow is then stale when a change another node made
	// never reached this node (that node died before relaying its
	// answer): gets, deletes and updates whose version differs from the
	// cached one read the store again when nothing of the shadow is
	// pending. Other updates are checked by the store's compare-and-set.
	Shared bool
}

// maxInflight bounds a worker's requests waiting for a commit; past it
// the worker stops taking requests and its queue fills (then 429).
const maxInflight = 4096

// Service owns device shadows: it serializes the requests of each shadow,
// commits changes to the store in groups (a response means the change is
// durable), and answers over MQTT and to direct calls from the REST API.
type Service struct {
	opts    Options
	log     *slog.Logger
	now     func() time.Time
	workers []*worker
	commit  *committer
	rejects chan rejection

	mu     sync.RWMutex // closed vs. enqueueing
	closed bool
	unsubs []func()
	wg     sync.WaitGroup
	rejWG  sync.WaitGroup

	dropped atomic.Int64 // MQTT requests dropped: rejection queue full, or after Close
	// conflicts counts writes that lost the store's compare-and-set to
	// another node and were run again (Conflicts).
	conflicts atomic.Int64
}

// Conflicts returns how many shadow writes found the stored version
// changed by another cluster node and were run again on a fresh read.
func (s *Service) Conflicts() int64 { return s.conflicts.Load() }

// rejection is a 429 to publish off the publisher's goroutine.
type rejection struct {
	topic string
	body  []byte
}

// New starts a Service.
func New(o Options) *Service {
	if o.MaxSize <= 0 {
		o.MaxSize = DefaultMaxSize
	}
	if o.Workers <= 0 {
		o.Workers = 2 * runtime.GOMAXPROCS(0)
	}
	if o.QueueSize <= 0 {
		o.QueueSize = 1024
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = 1024
	}
	if o.CacheSize <= 0 {
		o.CacheSize = 100_000
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	s := &Service{opts: o, log: o.Logger, now: o.Now, rejects: make(chan rejection, 1024)}
	s.commit = &committer{s: s, wake: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{})}
	perWorker := max(o.CacheSize/o.Workers, 16)
	for range o.Workers {
		w := &worker{
			s:      s,
			reqs:   make(chan *request, o.QueueSize),
			wake:   make(chan struct{}, 1),
			quit:   make(chan struct{}),
			things: make(map[string]map[string]*entry),
			limit:  perWorker,
		}
		s.workers = append(s.workers, w)
		s.wg.Go(w.run)
	}
	go s.commit.run()
	s.rejWG.Go(func() {
		for r := range s.rejects {
			s.publish(r.topic, r.body)
		}
	})
	return s
}

// Attach subscribes the service to shadow requests on the bus, under
// both topic prefixes. Close detaches it.
func (s *Service) Attach(b bus.Bus) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range Filters {
		s.unsubs = append(s.unsubs, b.Subscribe(f, s.HandleMessage))
	}
}

// Close stops taking requests, finishes those queued, commits what is
// pending and publishes the last responses. It is safe to call twice.
func (s *Service) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	unsubs := s.unsubs
	s.unsubs = nil
	s.mu.Unlock()
	for _, u := range unsubs {
		u()
	}
	for _, w := range s.workers {
		close(w.quit)
	}
	s.wg.Wait()
	close(s.commit.quit)
	<-s.commit.done
	close(s.rejects)
	s.rejWG.Wait()
	return nil
}

// HandleMessage takes one MQTT message from the bus: a shadow request is
// queued for its shadow's worker; anything else (responses, other topics)
// is ignored. It never blocks. The publishing thing must be the thing of
// the topic (the default policy already enforces it).
func (s *Service) HandleMessage(m core.Message) {
	prefix, thing, name, o, ok := parseTopic(m.Topic)
	if !ok {
		return
	}
	if m.Thing != thing {
		s.dropped.Add(1)
		s.log.Debug("shadow request for another thing ignored", "thing", m.Thing, "topic", m.Topic)
		return
	}
	r := &request{op: o, thing: thing, name: name, prefix: prefix, payload: m.Payload}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		s.dropped.Add(1)
		return
	}
	select {
	case s.workerFor(thing).reqs <- r:
	default:
		// Queue full: refuse with 429, published off this goroutine.
		tok, has := tokenOf(r)
		select {
		case s.rejects <- rejection{responseTopic(prefix, thing, name, o, "rejected"), ErrorBody(ErrTooManyRequests, tok, has, s.now())}:
		default:
			s.dropped.Add(1)
		}
	}
}

// tokenOf reads the clientToken of a request, for a rejection made before
// the request was parsed.
func tokenOf(r *request) (string, bool) {
	var (
		req *Request
		err *Error
	)
	if r.op == opUpdate {
		req, err = ParseUpdate(r.payload, 0)
	} else {
		req, err = ParseRequest(r.payload)
	}
	if req == nil || (err != nil && !req.HasToken) {
		return "", false
	}
	return req.ClientToken, req.HasToken
}

// Get returns the body of get/accepted for a shadow (name "" is the
// classic shadow), or a *Error.
func (s *Service) Get(ctx context.Context, thing, name string) ([]byte, error) {
	return s.call(ctx, &request{op: opGet, thing: thing, name: name})
}

// Update applies an update document (the same JSON as over MQTT) and
// returns the body of update/accepted, or a *Error. It publishes
// update/accepted, /documents and, if the delta is not empty, /delta, as
// an MQTT update does.
func (s *Service) Update(ctx context.Context, thing, name string, payload []byte) ([]byte, error) {
	return s.call(ctx, &request{op: opUpdate, thing: thing, name: name, payload: payload})
}

// Delete deletes a shadow and returns the body of delete/accepted, or a
// *Error. The version counter is kept for a shadow created again.
func (s *Service) Delete(ctx context.Context, thing, name string) ([]byte, error) {
	return s.call(ctx, &request{op: opDelete, thing: thing, name: name})
}

// List returns the live shadows of a thing, classic ("") first.
func (s *Service) List(ctx context.Context, thing string) ([]store.ShadowInfo, error) {
	return s.opts.Store.List(ctx, thing)
}

// ForgetThing drops the cached shadows of a deleted thing (the store
// deletes their rows with the thing). It does not block.
func (s *Service) ForgetThing(thing string) {
	w := s.workerFor(thing)
	w.mu.Lock()
	w.forget = append(w.forget, thing)
	w.mu.Unlock()
	w.signal()
}

func (s *Service) call(ctx context.Context, r *request) ([]byte, error) {
	if err := ValidateName(r.name); err != nil {
		return nil, err
	}
	r.reply = make(chan reply, 1)
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return nil, ErrUnavailable
	}
	select {
	case s.workerFor(r.thing).reqs <- r:
	default:
		s.mu.RUnlock()
		return nil, ErrTooManyRequests
	}
	s.mu.RUnlock()
	select {
	case rp := <-r.reply:
		if rp.err != nil {
			return nil, rp.err
		}
		return rp.body, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (s *Service) workerFor(thing string) *worker {
	h := fnv.New32a()
	h.Write([]byte(thing))
	return s.workers[h.Sum32()%uint32(len(s.workers))]
}

// publish sends a response at QoS 1.
func (s *Service) publish(topic string, body []byte) {
	if s.opts.Publisher == nil {
		return
	}
	if err := s.opts.Publisher.Publish(topic, body, false, 1); err != nil && !errors.Is(err, context.Canceled) {
		s.log.Debug("publish shadow response", "topic", topic, "error", err)
	}
}

// Dropped returns how many MQTT requests were dropped without an answer
// (shutdown, or the rejection queue was full too) or ignored because
// they named another thing.
func (s *Service) Dropped() int64 { return s.dropped.Load() }
