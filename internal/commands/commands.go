// Package commands is queued cloud-to-device commands: an application asks
// for a command (reboot, lock, wipe, locate, configure or its own) with a
// time to live; the command is stored, delivered to the device over MQTT
// at QoS 1 as soon as a connection of the device is subscribed to its
// commands topic (or taken by the device over the HTTP device API), in
// creation order and never after its TTL, and the device reports the
// outcome. Every change of status is recorded with its time and published
// as a platform event. See docs/commands.md.
//
// Work never happens on a device's goroutine: the broker and bus callbacks
// only enqueue. Delivery runs on a few workers, one thing at a time each;
// acknowledgements and results are applied by one goroutine; a sweeper
// expires queued commands whose TTL passed.
package commands

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/moteiot/mote/internal/bus"
	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/store"
)

// Limits and defaults.
const (
	DefaultTTL = time.Hour
	MaxTTL     = 30 * 24 * time.Hour
	// MaxPayload bounds a command's payload (its JSON text).
	MaxPayload = 64 * 1024
	// MaxOutput bounds the output a device reports with a result.
	MaxOutput = 64 * 1024
	// MaxWait bounds an HTTP long poll.
	MaxWait = 60 * time.Second
)

// ResultFilter is the bus filter of device results.
const ResultFilter = "$mote/things/+/commands/+/result"

// Topic is where a device receives a command.
func Topic(thing, id string) string { return "$mote/things/" + thing + "/commands/" + id }

// ResultTopic is where a device reports a command's outcome.
func ResultTopic(thing, id string) string { return Topic(thing, id) + "/result" }

// EventTopic is where the platform announces a command's changes.
func EventTopic(thing, id string) string { return "$mote/events/commands/" + thing + "/" + id }

// Sender delivers to devices and publishes platform events; *broker.Broker
// satisfies it.
type Sender interface {
	// Deliver sends a tracked QoS 1 message to the connections of thing
	// subscribed to topic and returns how many took it (or already have
	// it unacknowledged). A core.KindUnavailable error means the
	// connections were too busy: try again later.
	Deliver(thing, topic string, payload []byte, expires time.Time) (int, error)
	Publish(topic string, payload []byte, retain bool, qos byte) error
}

// Options configure a Service.
type Options struct {
	Store store.CommandStore // required
	// Workers deliver commands, one thing at a time each (default 32). A
	// delivery writes to the device's connection; a device that stopped
	// reading holds its worker until mochi's keep-alive deadline (1.5 ×
	// keep-alive) closes the connection, so there are enough workers for
	// a few such devices not to hold up the others.
	Workers int
	// SweepInterval is how often expired commands are looked for
	// (default 1s).
	SweepInterval time.Duration
	Logger        *slog.Logger
	Metrics       prometheus.Registerer // may be nil
	// Peers, if set, is told of every command created here once it is
	// stored: in a cluster, the other nodes then schedule its thing
	// (QueuedElsewhere) and the one its device is connected to delivers
	// it, without waiting for the relayed queued event
	// (*cluster.Node). It must not block.
	Peers Peers
}

// Peers are the other nodes of a cluster.
type Peers interface {
	CommandQueued(thing string)
}

// Request is what an application asks for.
type Request struct {
	Name    string
	Payload json.RawMessage // any JSON value; nil for none
	TTL     time.Duration   // 0: DefaultTTL
}

// Message is the JSON body a device receives, over MQTT or HTTP.
type Message struct {
	ID        string          `json:"id"`
	Name      string          `json:"name"`
	Payload   json.RawMessage `json:"payload,omitempty"`
	ExpiresAt time.Time       `json:"expiresAt"`
}

// MessageOf returns what the device receives for c.
func MessageOf(c store.Command) Message {
	return Message{ID: c.ID, Name: c.Name, Payload: c.Payload, ExpiresAt: c.ExpiresAt}
}

// Event is the body of a platform event on EventTopic.
type Event struct {
	Event   string        `json:"event"` // the new status
	Time    time.Time     `json:"time"`
	Command store.Command `json:"command"`
}

// Service owns commands.
type Service struct {
	st     store.CommandStore
	sender Sender
	log    *slog.Logger

	sched   *scheduler
	inbox   *inbox
	waiters sync.Map // thing → *waiter (HTTP long polls)
	acked   sync.Map // command id → time.Time: acknowledged (kept ackedFor after it is recorded)
	sentMu  sync.Mutex
	sent    map[string]map[string]time.Time // thing → command id → when deliver sent it to a connection here (resendAfter)

	stalledMu sync.Mutex
	stalled   map[string]struct{} // things whose connections were busy

	transitions *prometheus.CounterVec
	ignored     *prometheus.CounterVec

	opts    Options
	stop    chan struct{}
	stopped sync.Once
	wg      sync.WaitGroup
}

// New returns a Service; Start runs it.
func New(o Options) *Service {
	if o.Workers <= 0 {
		o.Workers = 32
	}
	if o.SweepInterval <= 0 {
		o.SweepInterval = time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	s := &Service{
		st: o.Store, log: o.Logger,
		sched: newScheduler(), inbox: newInbox(100_000), opts: o, stalled: map[string]struct{}{},
		stop: make(chan struct{}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mote_commands_total",
			Help: "Commands that reached a status (queued, delivered, succeeded, failed, rejected, expired, cancelled).",
		}, []string{"status"}),
		ignored: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mote_command_reports_ignored_total",
			Help: "Device results and acknowledgements of commands that were not applied, by reason (bad_result, unknown_command, wrong_thing, not_pending, queue_full, error).",
		}, []string{"reason"}),
	}
	for _, st := range []string{store.CommandQueued, store.CommandDelivered, store.CommandSucceeded, store.CommandFailed,
		store.CommandRejected, store.CommandExpired, store.CommandCancelled} {
		s.transitions.WithLabelValues(st)
	}
	for _, r := range []string{"bad_result", "unknown_command", "wrong_thing", "not_pending", "queue_full", "error"} {
		s.ignored.WithLabelValues(r)
	}
	if o.Metrics != nil {
		o.Metrics.MustRegister(s.transitions, s.ignored)
	}
	return s
}

// Attach subscribes the service to device results on the bus.
func (s *Service) Attach(b bus.Bus) (detach func()) {
	return b.Subscribe(ResultFilter, s.HandleMessage)
}

// AttachRemote subscribes the service to the device results other nodes
// of a cluster accepted (their messages relayed to this node). The
// accepting node applies a result after its PUBACK; a node killed in
// between would lose a result its device was told is delivered. So every
// node applies it: the store's transition is a compare-and-set, the
// second finds the command ended and drops the result quietly. A result
// costs one store transaction per node.
func (s *Service) AttachRemote(b bus.Bus) (detach func()) {
	return b.Subscribe(ResultFilter, s.HandleRemoteResult)
}

// Start runs the delivery workers, the acknowledgement and result
// applier, and the expiry sweeper. sender (the broker) delivers commands
// over MQTT and publishes the events; nil leaves only the HTTP device API.
// The broker is built with the service as its DeliveryTracker, hence
// this late binding; call Start before serving requests.
func (s *Service) Start(sender Sender) {
	s.sender = sender
	for range s.opts.Workers {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.deliverLoop()
		}()
	}
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		s.applyLoop()
	}()
	go func() {
		defer s.wg.Done()
		s.sweepLoop()
	}()
}

// Close stops the service after the acknowledgements and results it has
// queued are applied. Commands not yet delivered stay queued in the store.
func (s *Service) Close() error {
	s.stopped.Do(func() {
		close(s.stop)
		s.sched.close()
		s.inbox.close()
		s.wg.Wait()
	})
	return nil
}

func newID() string {
	var b [10]byte
	rand.Read(b[:])
	return "cmd_" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
}

// ValidateTTL checks a TTL; 0 means DefaultTTL.
func ValidateTTL(d time.Duration) (time.Duration, error) {
	switch {
	case d == 0:
		return DefaultTTL, nil
	case d < time.Second || d > MaxTTL:
		return 0, core.Invalid("ttlSeconds", "ttlSeconds must be from 1 to %d", int(MaxTTL/time.Second))
	}
	return d, nil
}

// Create queues a command for a thing and starts delivering it. An unknown
// thing is core.NotFound.
func (s *Service) Create(ctx context.Context, thing string, r Request) (store.Command, error) {
	if err := core.ValidateName("name", r.Name); err != nil {
		return store.Command{}, err
	}
	if err := ValidatePayload(r.Name, r.Payload, MaxPayload); err != nil {
		return store.Command{}, err
	}
	ttl, err := ValidateTTL(r.TTL)
	if err != nil {
		return store.Command{}, err
	}
	var payload json.RawMessage
	if p := strings.TrimSpace(string(r.Payload)); p != "" && p != "null" {
		payload = json.RawMessage(p)
	}
	now := time.Now().UTC().Truncate(time.Millisecond)
	c, err := s.st.Create(ctx, store.Command{
		ID: newID(), Thing: thing, Name: r.Name, Payload: payload, Status: store.CommandQueued,
		CreatedAt: now, ExpiresAt: now.Add(ttl),
	})
	if err != nil {
		return store.Command{}, err
	}
	s.changed(c)
	s.sched.add(thing)
	s.wake(thing)
	if s.opts.Peers != nil {
		s.opts.Peers.CommandQueued(thing)
	}
	return c, nil
}

// QueuedElsewhere is told that another node queued a command for thing:
// if a connection of thing here is subscribed, this node delivers it. It
// only enqueues.
func (s *Service) QueuedElsewhere(thing string) {
	s.sched.add(thing)
	s.wake(thing) // its HTTP long polls here
}

// Get returns a command of a thing.
func (s *Service) Get(ctx context.Context, thing, id string) (store.Command, error) {
	return s.st.Get(ctx, thing, id)
}

// List returns a thing's commands, newest first.
func (s *Service) List(ctx context.Context, f store.CommandFilter) ([]store.Command, error) {
	if f.Status != "" && !validStatus(f.Status) {
		return nil, core.Invalid("status", "status must be one of queued, delivered, succeeded, failed, rejected, expired, cancelled")
	}
	return s.st.List(ctx, f)
}

func validStatus(st string) bool {
	switch st {
	case store.CommandQueued, store.CommandDelivered, store.CommandSucceeded, store.CommandFailed,
		store.CommandRejected, store.CommandExpired, store.CommandCancelled:
		return true
	}
	return false
}

// Cancel cancels a command not yet delivered. A command in another status
// is a core.Conflict naming it.
func (s *Service) Cancel(ctx context.Context, thing, id string) (store.Command, error) {
	c, err := s.st.Transition(ctx, thing, id, []string{store.CommandQueued}, store.CommandCancelled, time.Now(), nil)
	if err != nil {
		if core.KindOf(err) == core.KindConflict {
			return c, core.Conflict("command %q is %s; only a queued command can be cancelled", id, c.Status)
		}
		return c, err
	}
	s.changed(c)
	return c, nil
}

// Report applies the outcome a device reported (over HTTP, or MQTT via the
// bus). A command already completed, expired or cancelled is a
// core.Conflict naming its status.
func (s *Service) Report(ctx context.Context, thing, id string, r store.CommandResult) (store.Command, error) {
	switch r.Status {
	case store.CommandSucceeded, store.CommandFailed, store.CommandRejected:
	default:
		return store.Command{}, core.Invalid("status", "status must be succeeded, failed or rejected")
	}
	if len(r.Output) > MaxOutput {
		return store.Command{}, core.Invalid("output", "output is larger than %d bytes", MaxOutput)
	}
	if o := strings.TrimSpace(string(r.Output)); o == "" || o == "null" {
		r.Output = nil
	}
	c, err := s.st.Transition(ctx, thing, id, []string{store.CommandQueued, store.CommandDelivered}, r.Status, time.Now(), &r)
	if err != nil {
		if core.KindOf(err) == core.KindConflict {
			return c, core.Conflict("command %q is already %s", id, c.Status)
		}
		return c, err
	}
	s.changed(c)
	return c, nil
}

// Poll returns the pending commands of a thing, oldest first, and marks
// them delivered (the HTTP device API). With none pending it waits up to
// wait (at most MaxWait) for one; it returns an empty list if none came.
func (s *Service) Poll(ctx context.Context, thing string, wait time.Duration) ([]store.Command, error) {
	wait = min(max(wait, 0), MaxWait)
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		ch, release := s.waitFor(thing)
		out, err := s.take(ctx, thing)
		if err != nil || len(out) > 0 {
			release()
			return out, err
		}
		select {
		case <-ch:
			release()
		case <-t.C:
			release()
			return []store.Command{}, nil
		case <-ctx.Done():
			release()
			return []store.Command{}, nil
		case <-s.stop:
			release()
			return []store.Command{}, nil
		}
	}
}

// take marks the pending commands of a thing delivered and returns them.
func (s *Service) take(ctx context.Context, thing string) ([]store.Command, error) {
	pending, err := s.st.Pending(ctx, thing, time.Now(), 100)
	if err != nil {
		return nil, err
	}
	out := []store.Command{}
	for _, c := range pending {
		c, err := s.st.Transition(ctx, thing, c.ID, []string{store.CommandQueued}, store.CommandDelivered, time.Now(), nil)
		if err != nil {
			if core.KindOf(err) == core.KindConflict || core.IsNotFound(err) {
				continue // cancelled, expired or delivered meanwhile
			}
			return out, err
		}
		s.changed(c)
		out = append(out, c)
	}
	return out, nil
}

// waiter is the long polls of one thing.
type waiter struct {
	mu sync.Mutex
	ch chan struct{}
	n  int
}

// waitFor returns a channel closed when a command is created for thing.
func (s *Service) waitFor(thing string) (<-chan struct{}, func()) {
	for {
		v, _ := s.waiters.LoadOrStore(thing, &waiter{ch: make(chan struct{})})
		w := v.(*waiter)
		w.mu.Lock()
		if w.n < 0 { // being removed
			w.mu.Unlock()
			continue
		}
		w.n++
		ch := w.ch
		w.mu.Unlock()
		return ch, func() {
			w.mu.Lock()
			w.n--
			if w.n == 0 {
				w.n = -1
				s.waiters.CompareAndDelete(thing, w)
			}
			w.mu.Unlock()
		}
	}
}

// wake releases the long polls of thing.
func (s *Service) wake(thing string) {
	v, ok := s.waiters.Load(thing)
	if !ok {
		return
	}
	w := v.(*waiter)
	w.mu.Lock()
	if w.n > 0 {
		close(w.ch)
		w.ch = make(chan struct{})
	}
	w.mu.Unlock()
}

// changed records a new status: the metric and the platform event.
func (s *Service) changed(c store.Command) {
	s.transitions.WithLabelValues(c.Status).Inc()
	if s.sender == nil {
		return
	}
	at := c.CreatedAt
	switch {
	case c.CompletedAt != nil:
		at = *c.CompletedAt
	case c.DeliveredAt != nil:
		at = *c.DeliveredAt
	}
	body, err := json.Marshal(Event{Event: c.Status, Time: at, Command: c})
	if err != nil {
		s.log.Error("encode command event", "error", err)
		return
	}
	if err := s.sender.Publish(EventTopic(c.Thing, c.ID), body, false, 1); err != nil && core.KindOf(err) != core.KindUnavailable {
		s.log.Warn("publish command event", "thing", c.Thing, "command", c.ID, "error", err)
	}
}

// commandsFilterOverlaps reports whether an MQTT filter can match a
// command topic of thing.
func commandsFilterOverlaps(thing, filter string) bool {
	return core.FiltersOverlap(core.StripShare(filter), Topic(thing, "+"))
}
