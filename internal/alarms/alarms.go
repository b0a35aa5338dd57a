// Package alarms owns alarms: what is wrong with a thing, how bad it is,
// and where an operator is with it. An alarm has a type ("overheat",
// "device-silent"), a severity, the thing it is about and JSON details; it
// is raised active, acknowledged by an operator and cleared by its source
// or an operator (acknowledged or not). There is at most one open alarm
// per (thing, type): raising it again bumps its count and last time
// instead of creating another, so the history shows one row per episode.
// See docs/alarms.md.
//
// Sources (the rules engine's raiseAlarm/clearAlarm actions, the analytics
// detectors) never wait for the store: RaiseAsync and ClearAsync put the
// request on a bounded queue that one goroutine applies; a full queue
// drops it (counted in mote_alarm_requests_dropped_total, logged
// rate-limited). That goroutine commits what is queued together (group
// commit): up to Options.Batch requests, in queue order, in one store
// transaction (AlarmStore.Apply), so one durable write serves a burst;
// the events of a batch are published only after its commit. Every change is published as a platform event on
// $mote/events/alarms/{thing}/{type}/{raised|acknowledged|cleared} and
// handed to subscribers (Subscribe: the notifier), each on a bounded
// channel.
package alarms

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/store"
)

// Limits.
const (
	// MaxDetails bounds an alarm's details (its JSON text).
	MaxDetails = 16 * 1024
	// DefaultMaxOpen is the default of Options.MaxOpen.
	DefaultMaxOpen = 10_000
	// DefaultQueue is the default of Options.Queue.
	DefaultQueue = 10_000
	// DefaultBatch is the default of Options.Batch.
	DefaultBatch = 256
)

// Events, the last level of an event topic.
const (
	EventRaised       = "raised"
	EventAcknowledged = "acknowledged"
	EventCleared      = "cleared"
)

// EventTopic is where the platform announces a change of an alarm.
func EventTopic(thing, typ, event string) string {
	return "$mote/events/alarms/" + thing + "/" + typ + "/" + event
}

// Severities in order, most severe first.
var Severities = []string{store.SeverityCritical, store.SeverityMajor, store.SeverityMinor, store.SeverityWarning}

// Statuses an alarm can have.
var Statuses = []string{store.AlarmActive, store.AlarmAcknowledged, store.AlarmCleared}

// ValidSeverity reports whether s is a severity.
func ValidSeverity(s string) bool {
	for _, v := range Severities {
		if s == v {
			return true
		}
	}
	return false
}

// ValidateType checks an alarm type: a name (it is a topic level).
func ValidateType(field, typ string) error { return core.ValidateName(field, typ) }

// Publisher publishes platform events; *broker.Broker satisfies it.
type Publisher interface {
	Publish(topic string, payload []byte, retain bool, qos byte) error
}

// Options configure a Service.
type Options struct {
	Store     store.AlarmStore // required
	Publisher Publisher        // events; nil: none
	// MaxOpen bounds the open alarms of the whole platform (default
	// DefaultMaxOpen): a new one beyond it is refused (core.KindQuota)
	// and counted in mote_alarms_refused_total.
	MaxOpen int
	// Queue bounds the requests of RaiseAsync and ClearAsync waiting to
	// be applied (default DefaultQueue).
	Queue int
	// Batch bounds the queued requests stored in one transaction
	// (default DefaultBatch; 1: one transaction each).
	Batch   int
	Logger  *slog.Logger
	Metrics prometheus.Registerer // may be nil
	// Now is the clock (default time.Now); tests set it.
	Now func() time.Time
}

// Alarm is an alarm as the API, the events and the notifications show it.
type Alarm struct {
	ID        string          `json:"id"`
	Type      string          `json:"type"`
	Thing     string          `json:"thing"`
	Severity  string          `json:"severity"`
	Status    string          `json:"status"`
	Details   json.RawMessage `json:"details,omitempty"`
	Count     int64           `json:"count"`
	CreatedAt time.Time       `json:"createdAt"`
	LastAt    time.Time       `json:"lastAt"`
	AckedAt   *time.Time      `json:"acknowledgedAt,omitempty"`
	ClearedAt *time.Time      `json:"clearedAt,omitempty"`
}

// View returns the shown form of a stored alarm.
func View(a store.Alarm) Alarm {
	return Alarm{ID: a.ID, Type: a.Type, Thing: a.Thing, Severity: a.Severity, Status: a.Status, Details: a.Details,
		Count: a.Count, CreatedAt: a.CreatedAt, LastAt: a.LastAt, AckedAt: a.AckedAt, ClearedAt: a.ClearedAt}
}

// Event is a change of an alarm: the body of an event message and what
// subscribers receive.
type Event struct {
	Event string    `json:"event"` // EventRaised, EventAcknowledged, EventCleared
	Time  time.Time `json:"time"`
	Alarm Alarm     `json:"alarm"`
}

// request is one queued RaiseAsync or ClearAsync.
type request struct {
	clear                bool
	thing, typ, severity string
	details              json.RawMessage
	at                   time.Time
}

type subscriber struct {
	ch      chan Event
	dropped atomic.Int64
}

// Service owns alarms.
type Service struct {
	opts Options
	st   store.AlarmStore
	log  *slog.Logger
	now  func() time.Time

	q      chan request
	stop   chan struct{}
	wg     sync.WaitGroup
	once   sync.Once
	closed atomic.Bool

	subMu sync.RWMutex
	subs  []*subscriber

	logMu    sync.Mutex
	lastLog  time.Time
	unlogged int

	m struct {
		transitions *prometheus.CounterVec
		refused     prometheus.Counter
		dropped     *prometheus.CounterVec
		failed      prometheus.Counter
		batches     prometheus.Histogram
	}
}

// New returns a Service; Start runs its queue.
func New(o Options) *Service {
	if o.MaxOpen <= 0 {
		o.MaxOpen = DefaultMaxOpen
	}
	if o.Queue <= 0 {
		o.Queue = DefaultQueue
	}
	if o.Batch <= 0 {
		o.Batch = DefaultBatch
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	s := &Service{opts: o, st: o.Store, log: o.Logger, now: o.Now,
		q: make(chan request, o.Queue), stop: make(chan struct{})}
	s.m.transitions = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mote_alarm_events_total",
		Help: "Alarm changes: raised (a new alarm), repeated, acknowledged, cleared."}, []string{"event"})
	s.m.refused = prometheus.NewCounter(prometheus.CounterOpts{Name: "mote_alarms_refused_total",
		Help: "New alarms refused because --alarm-max-open alarms were open."})
	s.m.dropped = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mote_alarm_requests_dropped_total",
		Help: "Alarm requests of rules and detectors not applied: queue_full, or event_subscriber (a subscriber's queue was full)."}, []string{"reason"})
	s.m.failed = prometheus.NewCounter(prometheus.CounterOpts{Name: "mote_alarm_requests_failed_total",
		Help: "Alarm requests of rules and detectors that failed (unknown thing, store error)."})
	s.m.batches = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "mote_alarm_batch_size",
		Help:    "Queued alarm requests stored per transaction (group commit, at most --alarm-batch).",
		Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 1024}})
	if o.Metrics != nil {
		o.Metrics.MustRegister(s.m.transitions, s.m.refused, s.m.dropped, s.m.failed, s.m.batches)
	}
	return s
}

// Start runs the goroutine that applies queued requests.
func (s *Service) Start(ctx context.Context) error {
	s.wg.Add(1)
	go s.loop()
	return nil
}

// Close applies what is queued (for at most 5 seconds) and stops.
func (s *Service) Close() error {
	s.once.Do(func() {
		s.closed.Store(true)
		close(s.stop)
		s.wg.Wait()
		s.subMu.Lock()
		for _, sub := range s.subs {
			close(sub.ch)
		}
		s.subs = nil
		s.subMu.Unlock()
	})
	return nil
}

func (s *Service) loop() {
	defer s.wg.Done()
	batch := make([]request, 0, s.opts.Batch)
	for {
		select {
		case r := <-s.q:
			s.applyBatch(s.drain(append(batch[:0], r)))
		case <-s.stop:
			deadline := time.Now().Add(5 * time.Second)
			for time.Now().Before(deadline) {
				select {
				case r := <-s.q:
					s.applyBatch(s.drain(append(batch[:0], r)))
				default:
					return
				}
			}
			return
		}
	}
}

// drain adds what else is queued, up to Options.Batch requests, without
// waiting: a lone request is stored at once, a burst together.
func (s *Service) drain(batch []request) []request {
	for len(batch) < s.opts.Batch {
		select {
		case r := <-s.q:
			batch = append(batch, r)
		default:
			return batch
		}
	}
	return batch
}

// applyBatch stores a batch of requests in one transaction and then, in
// order, counts and announces what each did.
func (s *Service) applyBatch(batch []request) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s.m.batches.Observe(float64(len(batch)))
	ops := make([]store.AlarmOp, 0, len(batch))
	idx := make([]int, 0, len(batch)) // ops[i] is batch[idx[i]]
	now := s.now()
	for i, r := range batch {
		at := r.at
		if at.IsZero() {
			at = now // one clock reading for the batch: its changes keep their order in time too
		}
		if r.clear {
			ops = append(ops, store.AlarmOp{Thing: r.thing, Type: r.typ, At: at})
		} else {
			if err := CheckRaise(r.typ, r.severity, r.details); err != nil {
				s.failed(r, err)
				continue
			}
			ops = append(ops, store.AlarmOp{Raise: &store.Alarm{ID: newID(), Thing: r.thing, Type: r.typ, Severity: r.severity, Details: r.details, LastAt: at}})
		}
		idx = append(idx, i)
	}
	if len(ops) == 0 {
		return
	}
	res, err := s.st.Apply(ctx, ops, s.opts.MaxOpen)
	if err != nil {
		for _, i := range idx {
			s.failed(batch[i], err)
		}
		return
	}
	for k, out := range res {
		r := batch[idx[k]]
		switch {
		case r.clear && core.IsNotFound(out.Err):
			// nothing open: a clear is idempotent
		case out.Err != nil:
			if !r.clear && core.KindOf(out.Err) == core.KindQuota {
				s.m.refused.Inc()
				s.logLimited("alarm refused: too many open alarms", "thing", r.thing, "type", r.typ, "max", s.opts.MaxOpen)
			}
			s.failed(r, out.Err)
		case r.clear:
			s.m.transitions.WithLabelValues(EventCleared).Inc()
			s.announce(EventCleared, out.Alarm)
		case !out.Created:
			s.m.transitions.WithLabelValues("repeated").Inc()
		default:
			s.m.transitions.WithLabelValues(EventRaised).Inc()
			s.announce(EventRaised, out.Alarm)
		}
	}
}

func (s *Service) failed(r request, err error) {
	s.m.failed.Inc()
	s.logLimited("alarm request failed", "thing", r.thing, "type", r.typ, "clear", r.clear, "err", err)
}

// logLimited logs at most one line a second; the others are counted in
// the next line.
func (s *Service) logLimited(msg string, args ...any) {
	s.logMu.Lock()
	now := time.Now()
	if now.Sub(s.lastLog) < time.Second {
		s.unlogged++
		s.logMu.Unlock()
		return
	}
	n := s.unlogged
	s.lastLog, s.unlogged = now, 0
	s.logMu.Unlock()
	s.log.Warn(msg, append(args, "suppressed", n)...)
}

func (s *Service) enqueue(r request) bool {
	if s.closed.Load() {
		return false
	}
	select {
	case s.q <- r:
		return true
	default:
		s.m.dropped.WithLabelValues("queue_full").Inc()
		s.logLimited("alarm request dropped: queue full", "thing", r.thing, "type", r.typ)
		return false
	}
}

// RaiseAsync queues a raise without waiting; false if it was dropped (the
// queue is full or the service closed). at zero means when applied.
func (s *Service) RaiseAsync(thing, typ, severity string, details json.RawMessage, at time.Time) bool {
	return s.enqueue(request{thing: thing, typ: typ, severity: severity, details: details, at: at})
}

// ClearAsync queues the clear of the open alarm of type typ of thing (if
// any) without waiting; false if it was dropped.
func (s *Service) ClearAsync(thing, typ string, at time.Time) bool {
	return s.enqueue(request{clear: true, thing: thing, typ: typ, at: at})
}

// CheckRaise validates the arguments of a raise.
func CheckRaise(typ, severity string, details json.RawMessage) error {
	if err := ValidateType("alarmType", typ); err != nil {
		return err
	}
	if !ValidSeverity(severity) {
		return core.Invalid("severity", "severity must be one of %s", strings.Join(Severities, ", "))
	}
	if len(details) > MaxDetails {
		return core.Errorf(core.KindTooLarge, "details are larger than %d bytes", MaxDetails)
	}
	if len(details) > 0 {
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(details, &obj); err != nil || obj == nil {
			return core.Invalid("details", "details must be a JSON object")
		}
	}
	return nil
}

// Raise raises (or repeats) an alarm now and returns it.
func (s *Service) Raise(ctx context.Context, thing, typ, severity string, details json.RawMessage) (Alarm, error) {
	a, err := s.raise(ctx, thing, typ, severity, details, time.Time{})
	return View(a), err
}

func (s *Service) raise(ctx context.Context, thing, typ, severity string, details json.RawMessage, at time.Time) (store.Alarm, error) {
	if err := CheckRaise(typ, severity, details); err != nil {
		return store.Alarm{}, err
	}
	if at.IsZero() {
		at = s.now()
	}
	a, created, err := s.st.Raise(ctx, store.Alarm{ID: newID(), Thing: thing, Type: typ, Severity: severity, Details: details, LastAt: at}, s.opts.MaxOpen)
	if err != nil {
		if core.KindOf(err) == core.KindQuota {
			s.m.refused.Inc()
			s.logLimited("alarm refused: too many open alarms", "thing", thing, "type", typ, "max", s.opts.MaxOpen)
		}
		return a, err
	}
	if !created {
		s.m.transitions.WithLabelValues("repeated").Inc()
		return a, nil
	}
	s.m.transitions.WithLabelValues(EventRaised).Inc()
	s.announce(EventRaised, a)
	return a, nil
}

func (s *Service) clearOpen(ctx context.Context, thing, typ string, at time.Time) (store.Alarm, error) {
	open, err := s.st.Open(ctx, thing, typ)
	if err != nil {
		return open, err
	}
	return s.transition(ctx, open.ID, EventCleared, at)
}

// ClearOpen clears the open alarm of type typ of thing, if there is one
// (core.NotFound if not).
func (s *Service) ClearOpen(ctx context.Context, thing, typ string) (Alarm, error) {
	a, err := s.clearOpen(ctx, thing, typ, time.Time{})
	return View(a), err
}

func (s *Service) transition(ctx context.Context, id, event string, at time.Time) (store.Alarm, error) {
	if at.IsZero() {
		at = s.now()
	}
	var (
		a   store.Alarm
		err error
	)
	if event == EventAcknowledged {
		a, err = s.st.Ack(ctx, id, at)
	} else {
		a, err = s.st.Clear(ctx, id, at)
	}
	if err != nil {
		return a, err
	}
	s.m.transitions.WithLabelValues(event).Inc()
	s.announce(event, a)
	return a, nil
}

// Get returns an alarm.
func (s *Service) Get(ctx context.Context, id string) (Alarm, error) {
	a, err := s.st.Get(ctx, id)
	return View(a), err
}

// List returns alarms newest first.
func (s *Service) List(ctx context.Context, f store.AlarmFilter) ([]Alarm, error) {
	list, err := s.st.List(ctx, f)
	if err != nil {
		return nil, err
	}
	out := make([]Alarm, len(list))
	for i, a := range list {
		out[i] = View(a)
	}
	return out, nil
}

// Ack acknowledges an active alarm; another status is a core.Conflict.
func (s *Service) Ack(ctx context.Context, id string) (Alarm, error) {
	a, err := s.transition(ctx, id, EventAcknowledged, time.Time{})
	return View(a), err
}

// Clear clears an open alarm; a cleared one is a core.Conflict.
func (s *Service) Clear(ctx context.Context, id string) (Alarm, error) {
	a, err := s.transition(ctx, id, EventCleared, time.Time{})
	return View(a), err
}

// CountOpen returns how many alarms are open.
func (s *Service) CountOpen(ctx context.Context) (int, error) { return s.st.CountOpen(ctx) }

// Subscribe returns a channel that receives every event, buffered to n
// (at least 1); an event that finds it full is dropped for this
// subscriber (counted). cancel ends the subscription; Close closes the
// channel.
func (s *Service) Subscribe(n int) (<-chan Event, func()) {
	sub := &subscriber{ch: make(chan Event, max(1, n))}
	s.subMu.Lock()
	if s.closed.Load() {
		s.subMu.Unlock()
		close(sub.ch)
		return sub.ch, func() {}
	}
	s.subs = append(s.subs, sub)
	s.subMu.Unlock()
	return sub.ch, func() {
		s.subMu.Lock()
		defer s.subMu.Unlock()
		for i, x := range s.subs {
			if x == sub {
				s.subs = append(s.subs[:i:i], s.subs[i+1:]...)
				close(sub.ch)
				return
			}
		}
	}
}

// announce publishes an event and hands it to the subscribers, never
// waiting for either.
func (s *Service) announce(event string, a store.Alarm) {
	ev := Event{Event: event, Time: s.now().UTC(), Alarm: View(a)}
	if s.opts.Publisher != nil {
		body, _ := json.Marshal(ev)
		if err := s.opts.Publisher.Publish(EventTopic(a.Thing, a.Type, event), body, false, 1); err != nil {
			s.logLimited("alarm event not published", "thing", a.Thing, "type", a.Type, "err", err)
		}
	}
	s.subMu.RLock()
	defer s.subMu.RUnlock()
	for _, sub := range s.subs {
		select {
		case sub.ch <- ev:
		default:
			sub.dropped.Add(1)
			s.m.dropped.WithLabelValues("event_subscriber").Inc()
		}
	}
}

var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// newID returns a new alarm id: "alm_" and 16 random base32 characters.
func newID() string {
	var b [10]byte
	_, _ = rand.Read(b[:])
	return "alm_" + idEncoding.EncodeToString(b[:])
}
