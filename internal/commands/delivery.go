package commands

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"sync"
	"time"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/store"
)

// scheduler is the set of things whose pending commands should be
// (re)sent, handed to workers so that one thing is never served by two
// workers at once (which keeps its commands in order).
type scheduler struct {
	mu      sync.Mutex
	cond    *sync.Cond
	queue   []string
	queued  map[string]bool
	running map[string]bool
	closed  bool
}

func newScheduler() *scheduler {
	q := &scheduler{queued: map[string]bool{}, running: map[string]bool{}}
	q.cond = sync.NewCond(&q.mu)
	return q
}

// add asks for thing to be served; it never blocks.
func (q *scheduler) add(thing string) {
	q.mu.Lock()
	if !q.queued[thing] && !q.closed {
		q.queued[thing] = true
		q.queue = append(q.queue, thing)
		q.cond.Signal()
	}
	q.mu.Unlock()
}

// take waits for a thing no other worker serves.
func (q *scheduler) take() (string, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for {
		if q.closed {
			return "", false
		}
		for i, t := range q.queue {
			if !q.running[t] {
				q.queue = append(q.queue[:i], q.queue[i+1:]...)
				delete(q.queued, t)
				q.running[t] = true
				return t, true
			}
		}
		q.cond.Wait()
	}
}

func (q *scheduler) done(thing string) {
	q.mu.Lock()
	delete(q.running, thing)
	q.cond.Broadcast()
	q.mu.Unlock()
}

func (q *scheduler) close() {
	q.mu.Lock()
	q.closed = true
	q.cond.Broadcast()
	q.mu.Unlock()
}

// report is an acknowledgement or a result waiting to be applied.
type report struct {
	thing, id string
	result    *store.CommandResult // nil: delivered (PUBACK)
	// remote: a result another node accepted (and applies itself); this
	// node applies it too, quietly when it finds the command ended.
	remote bool
}

// inbox is a bounded FIFO of reports that never blocks its producers.
type inbox struct {
	mu     sync.Mutex
	items  []report
	max    int
	signal chan struct{}
	closed bool
}

func newInbox(max int) *inbox { return &inbox{max: max, signal: make(chan struct{}, 1)} }

func (b *inbox) put(r report) bool {
	b.mu.Lock()
	if b.closed || len(b.items) >= b.max {
		b.mu.Unlock()
		return false
	}
	b.items = append(b.items, r)
	b.mu.Unlock()
	select {
	case b.signal <- struct{}{}:
	default:
	}
	return true
}

// get returns what is queued, waiting for something; nil once closed and
// empty.
func (b *inbox) get() []report {
	for {
		b.mu.Lock()
		items, closed := b.items, b.closed
		b.items = nil
		b.mu.Unlock()
		if len(items) > 0 || closed {
			return items
		}
		<-b.signal
	}
}

func (b *inbox) close() {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	select {
	case b.signal <- struct{}{}:
	default:
	}
}

// Subscribed is called by the broker when a connection of thing
// subscribed (or resumed a session); it only enqueues.
func (s *Service) Subscribed(thing string, filters []string) {
	for _, f := range filters {
		if commandsFilterOverlaps(thing, f) {
			s.forgetSent(thing) // a new subscription gets every pending command
			s.sched.add(thing)
			return
		}
	}
}

// Delivered is called by the broker when a device acknowledged a command;
// it only enqueues.
func (s *Service) Delivered(thing, topic string) {
	id, ok := strings.CutPrefix(topic, Topic(thing, ""))
	if !ok || id == "" || strings.Contains(id, "/") {
		return
	}
	// Until the acknowledgement is in the store, deliver must not send the
	// command again (the broker has already forgotten it).
	s.acked.Store(id, time.Now())
	if !s.inbox.put(report{thing: thing, id: id}) {
		s.acked.Delete(id)
		s.ignored.WithLabelValues("queue_full").Inc()
		s.log.Warn("command acknowledgement not recorded: queue full", "thing", thing, "command", id)
	}
}

// ParseResultTopic splits $mote/things/{thing}/commands/{id}/result.
func ParseResultTopic(topic string) (thing, id string, ok bool) {
	rest, found := strings.CutPrefix(topic, "$mote/things/")
	if !found {
		return "", "", false
	}
	thing, rest, found = strings.Cut(rest, "/")
	if !found || thing == "" {
		return "", "", false
	}
	rest, found = strings.CutPrefix(rest, "commands/")
	if !found {
		return "", "", false
	}
	id, found = strings.CutSuffix(rest, "/result")
	if !found || id == "" || strings.Contains(id, "/") {
		return "", "", false
	}
	return thing, id, true
}

// ParseResult decodes a result a device reported:
// {"status": "succeeded"|"failed"|"rejected", "output"?: any JSON}.
func ParseResult(body []byte) (store.CommandResult, error) {
	var r struct {
		Status string          `json:"status"`
		Output json.RawMessage `json:"output"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return store.CommandResult{}, core.Invalid("body", "result must be a JSON object {\"status\", \"output\"}: %v", err)
	}
	if dec.More() {
		return store.CommandResult{}, core.Invalid("body", "result has data after the JSON object")
	}
	switch r.Status {
	case store.CommandSucceeded, store.CommandFailed, store.CommandRejected:
	default:
		return store.CommandResult{}, core.Invalid("status", "status must be succeeded, failed or rejected")
	}
	if len(r.Output) > MaxOutput {
		return store.CommandResult{}, core.Invalid("output", "output is larger than %d bytes", MaxOutput)
	}
	if string(r.Output) == "null" {
		r.Output = nil
	}
	return store.CommandResult{Status: r.Status, Output: r.Output}, nil
}

// HandleMessage takes a device's result from the bus. It runs on the
// publisher's goroutine and only enqueues.
func (s *Service) HandleMessage(m core.Message) {
	thing, id, ok := ParseResultTopic(m.Topic)
	if !ok {
		return
	}
	if m.Thing != thing {
		s.ignored.WithLabelValues("wrong_thing").Inc()
		return
	}
	r, err := ParseResult(m.Payload)
	if err != nil {
		s.ignored.WithLabelValues("bad_result").Inc()
		s.log.Warn("command result ignored", "thing", thing, "command", id, "error", err)
		return
	}
	if !s.inbox.put(report{thing: thing, id: id, result: &r}) {
		s.ignored.WithLabelValues("queue_full").Inc()
		s.log.Warn("command result not recorded: queue full", "thing", thing, "command", id)
	}
}

// HandleRemoteResult takes a device's result that another node of a
// cluster accepted, relayed to this node. It runs on the relay's delivery
// goroutine and only enqueues.
func (s *Service) HandleRemoteResult(m core.Message) {
	thing, id, ok := ParseResultTopic(m.Topic)
	if !ok || m.Thing != thing {
		return // the accepting node counted it
	}
	r, err := ParseResult(m.Payload)
	if err != nil {
		return
	}
	if !s.inbox.put(report{thing: thing, id: id, result: &r, remote: true}) {
		s.ignored.WithLabelValues("queue_full").Inc()
		s.log.Warn("relayed command result not recorded: queue full", "thing", thing, "command", id)
	}
}

func (s *Service) applyLoop() {
	for {
		items := s.inbox.get()
		if items == nil {
			return
		}
		for _, r := range items {
			s.apply(r)
		}
	}
}

func (s *Service) apply(r report) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if r.result == nil {
		c, err := s.st.Transition(ctx, r.thing, r.id, []string{store.CommandQueued}, store.CommandDelivered, time.Now(), nil)
		// The acknowledgement stays marked for a while (ackedFor): a
		// deliver that read the pending list before this transition must
		// still see it, or it sends the command a second time.
		switch {
		case err == nil:
			s.changed(c)
			s.sched.add(r.thing) // the connection has room for the next one
		case core.KindOf(err) == core.KindConflict, core.IsNotFound(err):
			// a result came first, or cancelled, expired or deleted meanwhile
			s.sched.add(r.thing)
		default:
			s.acked.Delete(r.id) // not recorded: the command is sent again
			s.ignored.WithLabelValues("error").Inc()
			s.log.Error("record command delivery", "thing", r.thing, "command", r.id, "error", err)
		}
		return
	}
	_, err := s.Report(ctx, r.thing, r.id, *r.result)
	switch {
	case err == nil:
	case r.remote && (core.IsNotFound(err) || core.KindOf(err) == core.KindConflict):
		// The accepting node applied it first (or counted it): the usual case.
	case core.IsNotFound(err):
		s.ignored.WithLabelValues("unknown_command").Inc()
		s.log.Warn("result for an unknown command ignored", "thing", r.thing, "command", r.id)
	case core.KindOf(err) == core.KindConflict:
		s.ignored.WithLabelValues("not_pending").Inc()
		s.log.Warn("command result ignored", "thing", r.thing, "command", r.id, "error", err)
	default:
		s.ignored.WithLabelValues("error").Inc()
		s.log.Error("record command result", "thing", r.thing, "command", r.id, "error", err)
	}
}

func (s *Service) deliverLoop() {
	for {
		thing, ok := s.sched.take()
		if !ok {
			return
		}
		s.deliver(thing)
		s.sched.done(thing)
	}
}

// ackedFor is how long an acknowledged command stays marked after its
// acknowledgement: longer than a deliver (whose deadline is 30 s) can
// work from a pending list read before the acknowledgement was recorded.
const ackedFor = time.Minute

// deliver sends the pending commands of a thing, oldest first, stopping at
// the first one no connection could take (so none overtakes it).
func (s *Service) deliver(thing string) {
	if s.sender == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pending, err := s.st.Pending(ctx, thing, time.Now(), 100)
	if err != nil {
		s.log.Error("load pending commands", "thing", thing, "error", err)
		return
	}
	for _, c := range pending {
		if _, ok := s.acked.Load(c.ID); ok {
			continue // acknowledged; the store is being updated
		}
		if s.sentRecently(thing, c.ID) {
			continue // on its way to the connection: its PUBACK will come
		}
		body, err := json.Marshal(MessageOf(c))
		if err != nil {
			s.log.Error("encode command", "thing", thing, "command", c.ID, "error", err)
			return
		}
		n, err := s.sender.Deliver(thing, Topic(thing, c.ID), body, c.ExpiresAt)
		if err != nil && core.KindOf(err) == core.KindUnavailable {
			s.stall(thing) // busy connections: try again at the next sweep
		}
		if err != nil || n == 0 {
			return
		}
		s.noteSent(thing, c.ID)
	}
}

// resendAfter is how long deliver leaves a command it sent to a
// connection here: the broker forgets a delivery when its PUBACK comes,
// a moment before Delivered marks it acked, and a pass of deliver in
// between (another command created or announced by a node, a sweep)
// found it neither tracked nor acked and sent it a second time on one
// connection (TestKill9 saw it). A new subscription of the thing (a
// reconnect) gets it at once; the sweep sends it again after.
const resendAfter = 10 * time.Second

func (s *Service) sentRecently(thing, id string) bool {
	s.sentMu.Lock()
	defer s.sentMu.Unlock()
	at, ok := s.sent[thing][id]
	return ok && time.Since(at) < resendAfter
}

func (s *Service) noteSent(thing, id string) {
	s.sentMu.Lock()
	defer s.sentMu.Unlock()
	if s.sent == nil {
		s.sent = map[string]map[string]time.Time{}
	}
	if s.sent[thing] == nil {
		s.sent[thing] = map[string]time.Time{}
	}
	s.sent[thing][id] = time.Now()
}

func (s *Service) forgetSent(thing string) {
	s.sentMu.Lock()
	delete(s.sent, thing)
	s.sentMu.Unlock()
}

// stall remembers a thing whose connections were too busy to take a
// command; the sweeper schedules it again.
func (s *Service) stall(thing string) {
	s.stalledMu.Lock()
	if len(s.stalled) < 100_000 {
		s.stalled[thing] = struct{}{}
	}
	s.stalledMu.Unlock()
}

func (s *Service) retryStalled() {
	s.stalledMu.Lock()
	list := s.stalled
	s.stalled = map[string]struct{}{}
	s.stalledMu.Unlock()
	for thing := range list {
		s.sched.add(thing)
	}
}

func (s *Service) sweepLoop() {
	t := time.NewTicker(s.opts.SweepInterval)
	defer t.Stop()
	for {
		s.sweep()
		s.retryStalled()
		select {
		case <-t.C:
		case <-s.stop:
			return
		}
	}
}

// sweep marks queued commands whose TTL passed expired.
func (s *Service) sweep() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Forget acknowledgements recorded long enough ago that no deliver
	// still works from a pending list read before them.
	old := time.Now().Add(-ackedFor)
	s.acked.Range(func(id, at any) bool {
		if t, ok := at.(time.Time); ok && t.Before(old) {
			s.acked.Delete(id)
		}
		return true
	})
	// And sends whose PUBACK never came (the connection went away).
	s.sentMu.Lock()
	for thing, ids := range s.sent {
		for id, at := range ids {
			if time.Since(at) >= resendAfter {
				delete(ids, id)
			}
		}
		if len(ids) == 0 {
			delete(s.sent, thing)
		}
	}
	s.sentMu.Unlock()
	for {
		list, err := s.st.Expire(ctx, time.Now(), 100)
		if err != nil {
			s.log.Error("expire commands", "error", err)
			return
		}
		for _, c := range list {
			s.changed(c)
		}
		if len(list) < 100 {
			return
		}
	}
}
