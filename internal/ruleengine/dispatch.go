package ruleengine

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/moteiot/mote/internal/core"
)

// Action delivery off the evaluation path.
//
// A webhook action and every error action is a destination: one per rule
// version and action, with a bounded queue (Options.ActionQueue), at most
// Options.ActionConcurrency deliveries at once, a timeout per attempt,
// bounded retries with exponential backoff, and a circuit breaker. The
// evaluation workers and the journal's consumer (ApplyDurable) only
// enqueue, never wait: a full queue or an open breaker drops the action at
// once, counted per rule (Engine.Stats, mote_rule_actions_dropped_total)
// and logged (rate-limited). So an endpoint that never answers holds only
// its own destination's goroutines, never another rule, another device's
// telemetry or the publishers.
//
// Delivery goroutines are started when a job is queued and end when their
// queue is empty, so an idle destination costs no goroutine.

// Drop reasons, the reason label of mote_rule_actions_dropped_total.
const (
	dropQueueFull        = "queue_full"
	dropBreakerOpen      = "breaker_open"
	dropRetriesExhausted = "retries_exhausted"
)

// job is one action to deliver: the message and the JSON it acts on
// (lookup resolves a republish error action's topic template).
type job struct {
	msg    core.Message
	body   []byte
	lookup func(string) (string, bool)
}

// ruleStats are a rule's counters since the engine started, kept across
// updates of the rule and removed with it.
type ruleStats struct {
	matched          atomic.Int64
	errors           atomic.Int64
	failed           atomic.Int64
	queueFull        atomic.Int64
	breakerOpen      atomic.Int64
	retriesExhausted atomic.Int64
	breakersOpen     atomic.Int32 // destinations of the rule whose breaker is open
}

// RuleStats are a rule's counters since the server started.
type RuleStats struct {
	Matched       int64 // messages the rule matched (FROM and WHERE)
	Errors        int64 // evaluation and action failures
	ActionsFailed int64 // actions (error actions included) that failed after their retries
	// Actions not delivered: their destination's queue was full, its
	// breaker was open, or every attempt failed.
	DroppedQueueFull        int64
	DroppedBreakerOpen      int64
	DroppedRetriesExhausted int64
	BreakerOpen             bool // the breaker of some action of the rule is open
}

// ActionsDropped is the sum of the drops of every reason.
func (s RuleStats) ActionsDropped() int64 {
	return s.DroppedQueueFull + s.DroppedBreakerOpen + s.DroppedRetriesExhausted
}

// Stats returns the counters of the rule name (zero for an unknown rule).
func (e *Engine) Stats(name string) RuleStats {
	e.statsMu.Lock()
	s := e.stats[name]
	e.statsMu.Unlock()
	if s == nil {
		return RuleStats{}
	}
	return RuleStats{
		Matched:                 s.matched.Load(),
		Errors:                  s.errors.Load(),
		ActionsFailed:           s.failed.Load(),
		DroppedQueueFull:        s.queueFull.Load(),
		DroppedBreakerOpen:      s.breakerOpen.Load(),
		DroppedRetriesExhausted: s.retriesExhausted.Load(),
		BreakerOpen:             s.breakersOpen.Load() > 0,
	}
}

// statsFor returns the counters of rule name, created on first use.
func (e *Engine) statsFor(name string) *ruleStats {
	e.statsMu.Lock()
	defer e.statsMu.Unlock()
	s := e.stats[name]
	if s == nil {
		s = &ruleStats{}
		e.stats[name] = s
	}
	return s
}

// prepare gives a compiled rule its counters and its destinations: one
// per webhook action and one for the error action. e.mu is held (or the
// engine is not started yet).
func (e *Engine) prepare(c *compiledRule) {
	c.stats = e.statsFor(c.rule.Name)
	if w, ok := c.stmt.Window(); ok {
		c.win = &ruleWindows{hop: w.Hop, ws: c.stmt.NewWindows(0)}
		select {
		case e.windowWake <- struct{}{}: // a new hop for windowLoop to wait for
		default:
		}
	}
	c.dests = make([]*destination, len(c.actions))
	for i := range c.actions {
		e.openAction(c.rule.Name, &c.actions[i])
		if external(c.actions[i].Type) {
			c.dests[i] = e.newDestination(c, &c.actions[i], false)
		}
	}
	if c.errorAction != nil {
		e.openAction(c.rule.Name, c.errorAction)
		c.errDest = e.newDestination(c, c.errorAction, true)
	}
}

// retire stops the destinations of a deleted rule: what is queued is
// discarded, an attempt in flight ends at its timeout (or when its sink
// is closed, at once).
func (c *compiledRule) retire() {
	for _, d := range c.allDests() {
		d.retired.Store(true)
		go d.sink.shut() // not under e.mu: closing a client may wait on a dead peer
	}
}

// replaced lets the destinations of a replaced rule version deliver what
// is queued and then close their sinks.
func (c *compiledRule) replaced() {
	for _, d := range c.allDests() {
		d.sink.mu.Lock()
		d.sink.closing = true
		d.sink.mu.Unlock()
		d.idle()
	}
}

// allDests returns the rule's destinations.
func (c *compiledRule) allDests() []*destination {
	var out []*destination
	for _, d := range c.dests {
		if d != nil {
			out = append(out, d)
		}
	}
	if c.errDest != nil {
		out = append(out, c.errDest)
	}
	return out
}

// spawn runs f on a new goroutine unless the engine's delivery has been
// closed; Close waits for it.
func (e *Engine) spawn(f func()) bool {
	e.dmu.RLock()
	defer e.dmu.RUnlock()
	if e.dclosed {
		return false
	}
	e.dwg.Add(1)
	go func() {
		defer e.dwg.Done()
		f()
	}()
	return true
}

// closeDelivery lets the running deliveries finish what is queued (until
// e.ctx is cancelled) and waits for them; later jobs are not delivered.
func (e *Engine) closeDelivery() {
	e.dmu.Lock()
	e.dclosed = true
	e.dmu.Unlock()
	e.dwg.Wait()
}

// destination delivers one action of one rule version.
type destination struct {
	e       *Engine
	rule    *compiledRule
	a       *compiledAction
	label   string // action label of the metrics: "webhook", "error:log", ...
	isError bool   // the rule's error action
	timeout time.Duration
	retries int

	q       chan job
	active  atomic.Int32
	retired atomic.Bool
	br      breaker
	batch   int        // jobs handed to the sink at once
	sink    sinkHolder // kafka, nats, postgres, mqtt (actions_sink.go)

	// The rule's series, looked up once: a drop costs no label lookup.
	success, failure                        prometheus.Counter
	dropQueueFull, dropBreaker, dropRetries prometheus.Counter
}

func (e *Engine) newDestination(r *compiledRule, a *compiledAction, isError bool) *destination {
	d := &destination{e: e, rule: r, a: a, label: a.Type, isError: isError,
		q:  make(chan job, e.opts.ActionQueue),
		br: breaker{threshold: e.opts.BreakerFailures, cooldown: e.opts.BreakerCooldown}}
	if isError {
		d.label = "error:" + a.Type
	}
	name := r.rule.Name
	d.success = e.m.action.WithLabelValues(name, d.label, "success")
	d.failure = e.m.action.WithLabelValues(name, d.label, "failure")
	d.dropQueueFull = e.m.actionDropped.WithLabelValues(name, dropQueueFull)
	d.dropBreaker = e.m.actionDropped.WithLabelValues(name, dropBreakerOpen)
	d.dropRetries = e.m.actionDropped.WithLabelValues(name, dropRetriesExhausted)
	d.batch = batchSize(a, e.opts.ActionBatch)
	if external(a.Type) {
		d.timeout = e.opts.WebhookTimeout
		if a.TimeoutMs > 0 {
			d.timeout = time.Duration(a.TimeoutMs) * time.Millisecond
		}
		d.retries = max(0, e.opts.WebhookRetries)
		if a.Retries != nil {
			d.retries = *a.Retries
		}
	}
	return d
}

// enqueue queues a job without ever waiting: a full queue or an open
// breaker drops it (counted and logged).
func (d *destination) enqueue(j job) {
	if d.retired.Load() {
		return
	}
	if d.br.blocked(time.Now()) {
		d.drop(dropBreakerOpen, j.msg.Topic)
		return
	}
	select {
	case d.q <- j:
	default:
		d.drop(dropQueueFull, j.msg.Topic)
		return
	}
	d.wake()
}

// wake starts a delivery goroutine if fewer than the concurrency run.
func (d *destination) wake() {
	for {
		n := d.active.Load()
		if int(n) >= d.e.opts.ActionConcurrency {
			return
		}
		if d.active.CompareAndSwap(n, n+1) {
			if !d.e.spawn(d.loop) {
				d.active.Add(-1)
			}
			return
		}
	}
}

// loop delivers queued jobs until the queue is empty.
func (d *destination) loop() {
	for {
		select {
		case j := <-d.q:
			jobs := []job{j}
		more:
			for len(jobs) < d.batch {
				select {
				case j := <-d.q:
					jobs = append(jobs, j)
				default:
					break more
				}
			}
			d.deliver(jobs)
			continue
		default:
		}
		d.active.Add(-1)
		// A job queued between the empty check and the decrement saw
		// this goroutine as running: take it unless another one runs.
		if len(d.q) == 0 {
			d.idle()
			return
		}
		n := d.active.Load()
		if int(n) >= d.e.opts.ActionConcurrency || !d.active.CompareAndSwap(n, n+1) {
			return
		}
	}
}

// idle closes the sink of a replaced rule version once nothing is queued
// or in delivery.
func (d *destination) idle() {
	d.sink.mu.Lock()
	closing := d.sink.closing
	d.sink.mu.Unlock()
	if closing && d.active.Load() == 0 && len(d.q) == 0 {
		d.sink.shut()
	}
}

// deliver runs one job (or a batch, for a batching sink): attempts while
// the breaker lets it, with exponential backoff between them.
func (d *destination) deliver(jobs []job) {
	e := d.e
	pause := e.opts.WebhookBackoff
	var err error
	for attempt := 0; ; attempt++ {
		if d.retired.Load() || e.ctx.Err() != nil {
			return // deleted rule or shutdown: not delivered, not counted
		}
		if !d.br.allow(time.Now()) {
			for _, j := range jobs {
				d.drop(dropBreakerOpen, j.msg.Topic)
			}
			return
		}
		err = d.attempt(jobs)
		if len(jobs) > 1 && errors.As(err, new(*rowError)) {
			// One row of the batch is refused: the others go alone, so
			// only the bad one fails.
			for _, j := range jobs {
				d.deliver([]job{j})
			}
			return
		}
		d.record(err == nil)
		if err == nil {
			d.success.Add(float64(len(jobs)))
			return
		}
		if attempt >= d.retries {
			break
		}
		t := time.NewTimer(pause)
		select {
		case <-t.C:
		case <-e.ctx.Done():
			t.Stop()
		}
		pause = min(2*pause, 5*time.Second)
	}
	if d.retired.Load() || e.ctx.Err() != nil {
		return
	}
	r := d.rule
	for _, j := range jobs {
		d.failure.Inc()
		r.stats.failed.Add(1)
		d.drop(dropRetriesExhausted, j.msg.Topic)
		if d.isError {
			e.dropLog.logError(e.log, r.rule.Name+" (error action)", j.msg.Topic, err)
			continue
		}
		e.m.errors.WithLabelValues(r.rule.Name).Inc()
		r.stats.errors.Add(1)
		e.onError(r, j.msg, j.body, err)
	}
}

func (d *destination) attempt(jobs []job) error {
	switch d.a.Type {
	case ActionWebhook:
		return d.e.post(d.a, jobs[0].body, d.timeout)
	case ActionKafka, ActionNATS, ActionPostgres, ActionMQTT:
		ctx, cancel := context.WithTimeout(d.e.ctx, d.timeout)
		defer cancel()
		s, err := d.sink.get(ctx, d.e, d)
		if err != nil {
			return err
		}
		return s.send(ctx, jobs)
	}
	j := jobs[0]
	return d.e.run(d.a, d.rule.rule.Name, j.msg, j.body, j.lookup)
}

// record feeds an attempt's result to the breaker and keeps the rule's
// open-breaker gauge.
func (d *destination) record(ok bool) {
	if d.retired.Load() {
		return // the rule is deleted, and its series with it
	}
	switch d.br.record(ok, time.Now()) {
	case breakerOpened:
		d.rule.stats.breakersOpen.Add(1)
		d.e.m.breakers.WithLabelValues(d.rule.rule.Name).Inc()
		d.e.log.Warn("rule action breaker open: deliveries dropped until a probe succeeds",
			"rule", d.rule.rule.Name, "action", d.label, "cooldown", d.br.cooldown)
	case breakerClosed:
		d.rule.stats.breakersOpen.Add(-1)
		d.e.m.breakers.WithLabelValues(d.rule.rule.Name).Dec()
		d.e.log.Info("rule action breaker closed", "rule", d.rule.rule.Name, "action", d.label)
	}
}

// drop counts and logs (rate-limited) an action that is not delivered.
func (d *destination) drop(reason, topic string) {
	s := d.rule.stats
	switch reason {
	case dropQueueFull:
		s.queueFull.Add(1)
		d.dropQueueFull.Inc()
	case dropBreakerOpen:
		s.breakerOpen.Add(1)
		d.dropBreaker.Inc()
	case dropRetriesExhausted:
		s.retriesExhausted.Add(1)
		d.dropRetries.Inc()
	}
	d.e.dropLog.logActionDrop(d.e.log, d.rule.rule.Name, d.label, reason, topic)
}

// Breaker transitions reported by record.
const (
	breakerSame = iota
	breakerOpened
	breakerClosed
)

// breaker is a circuit breaker: closed, it lets every attempt through;
// after threshold consecutive failures it opens and refuses attempts for
// the cool-down; then it lets one probe through (half-open): success
// closes it, failure opens it for another cool-down.
type breaker struct {
	threshold int
	cooldown  time.Duration

	mu        sync.Mutex
	failures  int
	open      bool // open or half-open
	openUntil time.Time
	probing   bool // half-open: the probe is in flight

	coolUntil atomic.Int64 // Unix ns: openUntil while open, else 0 (read without mu)
}

// blocked reports whether the breaker is open and still cooling down:
// enqueue drops at once instead of filling the queue.
func (b *breaker) blocked(now time.Time) bool {
	u := b.coolUntil.Load()
	return u != 0 && now.UnixNano() < u
}

// allow reports whether an attempt may go now.
func (b *breaker) allow(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case !b.open:
		return true
	case now.Before(b.openUntil) || b.probing:
		return false
	default:
		b.probing = true // half-open: this attempt is the probe
		return true
	}
}

// record notes an attempt's result and reports a transition.
func (b *breaker) record(ok bool, now time.Time) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	if ok {
		b.failures = 0
		b.probing = false
		if b.open {
			b.open = false
			b.coolUntil.Store(0)
			return breakerClosed
		}
		return breakerSame
	}
	b.failures++
	if b.open {
		if b.probing { // the probe failed: another cool-down
			b.probing = false
			b.openUntil = now.Add(b.cooldown)
			b.coolUntil.Store(b.openUntil.UnixNano())
		}
		return breakerSame
	}
	if b.failures >= b.threshold {
		b.open = true
		b.openUntil = now.Add(b.cooldown)
		b.coolUntil.Store(b.openUntil.UnixNano())
		return breakerOpened
	}
	return breakerSame
}
