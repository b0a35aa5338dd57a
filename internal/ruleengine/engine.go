// Package ruleengine runs the rules of the rules engine (the SQL dialect of
// package rules) on the messages of the bus and carries out their actions:
// republish, store as telemetry, HTTP webhook and log, with an error action
// and per-rule metrics. It also keeps the rules (store.RuleStore): every
// change is stored first and then swapped into the running rule set, so
// rules take effect without a restart.
//
// The bus handler only enqueues into a bounded queue; when the queue is
// full the message is dropped, counted (mote_rules_dropped_total) and
// logged (rate-limited), so a slow action never blocks a publisher.
// Workers take messages from the queue; for each message every enabled
// rule whose FROM filter matches is evaluated on one shared rules.Message.
// Workers run the in-process actions (republish, telemetry, log) and only
// queue webhooks and error actions, which their own destinations deliver
// with bounded queues, concurrency, retries and a circuit breaker
// (dispatch.go), so an endpoint that never answers holds no worker, no
// other rule and not the journal's consumer.
//
// Loops: messages the platform publishes (republish actions, shadow
// answers) go out through the broker's inline client and do not come back
// through the bus, so a rule never sees what a rule republished.
package ruleengine

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/moteiot/mote/internal/bus"
	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/ingest"
	"github.com/moteiot/mote/internal/rules"
	"github.com/moteiot/mote/internal/seal"
	"github.com/moteiot/mote/internal/store"
	"github.com/moteiot/mote/internal/telemetry"
)

// Publisher publishes platform messages; *broker.Broker satisfies it.
type Publisher interface {
	Publish(topic string, payload []byte, retain bool, qos byte) error
}

// TelemetryWriter stores points; *telemetry.Writer satisfies it.
type TelemetryWriter interface {
	Add(ctx context.Context, points []telemetry.Point, seq uint64) error
}

// Options configure an Engine. Zero values take the defaults.
type Options struct {
	Store     store.RuleStore // required
	Publisher Publisher       // republish actions; nil: they fail
	Telemetry TelemetryWriter // telemetry actions; nil: they fail
	Alarms    AlarmSink       // raiseAlarm and clearAlarm actions; nil: they fail
	Workers   int             // default GOMAXPROCS, at least 2
	QueueSize int             // default 10,000 messages
	// HTTPClient sends webhooks (default: a client without a total
	// timeout; each attempt has the action's timeout).
	HTTPClient *http.Client
	// WebhookBackoff is the pause before the first webhook retry, doubled
	// for each further one (default 200ms, at most 5s).
	WebhookBackoff time.Duration
	// Delivery of webhook actions and error actions (dispatch.go), per
	// destination (one rule's one action): ActionQueue jobs queued
	// (default 1,000), ActionConcurrency deliveries at once (default 4).
	ActionQueue       int
	ActionConcurrency int
	// ActionBatch is how many queued deliveries of a kafka, nats,
	// postgres or mqtt action go in one attempt (default 100).
	ActionBatch int
	// WebhookTimeout is the time of one attempt of a webhook that sets no
	// timeoutMs (default 5s); WebhookRetries the attempts after the first
	// of one that sets no retries (default 2; negative: none).
	WebhookTimeout time.Duration
	WebhookRetries int
	// BreakerFailures consecutive failed attempts open a destination's
	// circuit breaker (default 5); it stays open BreakerCooldown (default
	// 30s), then lets one probe through.
	BreakerFailures int
	BreakerCooldown time.Duration
	Metrics         prometheus.Registerer // nil: not registered
	Logger          *slog.Logger
	// Sealer seals the secrets of webhook actions (header values, the
	// URL's password) before they are stored and opens them to run and
	// for the API (secrets.go). nil: stored as given.
	Sealer *seal.Box
	// Windowed rules (windows.go): WindowMaxGroups open (rule, group)
	// windows at most (default 100,000); a window is emitted WindowGrace
	// after it ends (default 1s), for messages still queued.
	WindowMaxGroups int
	WindowGrace     time.Duration
	// WindowStore keeps the open windows across restarts: saved every
	// WindowSaveInterval (default 30s) and at Close, restored at Start.
	// nil: windows open at a restart are lost.
	WindowStore        store.RuleWindowStore
	WindowSaveInterval time.Duration
}

// DefaultRule is the rule created on the first start: it stores every
// message on things/{thing}/telemetry as telemetry of the thing.
var DefaultRule = store.Rule{
	Name:        "telemetry",
	SQL:         "SELECT * FROM 'things/+/telemetry'",
	Description: "Store what devices publish on things/{thing}/telemetry as telemetry (built-in; may be edited or deleted)",
	Enabled:     true,
	Actions:     json.RawMessage(`[{"type":"telemetry"}]`),
}

// compiledRule is a rule ready to run.
type compiledRule struct {
	rule        store.Rule
	stmt        *rules.Statement
	actions     []compiledAction
	errorAction *compiledAction
	durable     bool // has a telemetry action: QoS 1/2 messages it matches go through the journal

	// Set by Engine.prepare for a running rule.
	win     *ruleWindows // a windowed rule's windows (windows.go)
	stats   *ruleStats
	dests   []*destination // per action: nil for an action run by the workers
	errDest *destination
}

// Engine runs rules. Create it with New, load the rules with Start,
// attach it to a bus with Attach, close it with Close.
type Engine struct {
	opts Options
	log  *slog.Logger

	mu    sync.Mutex // serializes changes of the rule set
	rules atomic.Pointer[[]*compiledRule]

	queue  chan core.Message
	done   chan struct{}
	wg     sync.WaitGroup
	closed atomic.Bool
	unsub  []func()
	once   sync.Once
	ctx    context.Context
	cancel context.CancelFunc

	dropLog dropLogger
	m       metrics

	statsMu sync.Mutex
	stats   map[string]*ruleStats

	// Action delivery (dispatch.go).
	dmu     sync.RWMutex
	dclosed bool
	dwg     sync.WaitGroup

	// Windowed rules (windows.go).
	winGroups  atomic.Int64 // open groups of all windowed rules
	wm         windowMetrics
	windowLog  windowLogger
	windowWake chan struct{}
}

type metrics struct {
	dropped prometheus.Counter
	matched *prometheus.CounterVec
	errors  *prometheus.CounterVec
	action  *prometheus.CounterVec

	actionDropped *prometheus.CounterVec
	breakers      *prometheus.GaugeVec
}

// New returns an Engine with no rules; Start loads them.
func New(opts Options) *Engine {
	if opts.Workers <= 0 {
		opts.Workers = max(2, runtime.GOMAXPROCS(0))
	}
	if opts.QueueSize <= 0 {
		opts.QueueSize = 10_000
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{}
	}
	if opts.WebhookBackoff <= 0 {
		opts.WebhookBackoff = 200 * time.Millisecond
	}
	if opts.ActionQueue <= 0 {
		opts.ActionQueue = 1000
	}
	if opts.ActionConcurrency <= 0 {
		opts.ActionConcurrency = 4
	}
	if opts.ActionBatch <= 0 {
		opts.ActionBatch = 100
	}
	if opts.WebhookTimeout <= 0 {
		opts.WebhookTimeout = DefaultWebhookTimeoutMs * time.Millisecond
	}
	if opts.WebhookRetries == 0 {
		opts.WebhookRetries = DefaultWebhookRetries
	}
	if opts.BreakerFailures <= 0 {
		opts.BreakerFailures = 5
	}
	if opts.BreakerCooldown <= 0 {
		opts.BreakerCooldown = 30 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.WindowMaxGroups <= 0 {
		opts.WindowMaxGroups = 100_000
	}
	if opts.WindowGrace <= 0 {
		opts.WindowGrace = time.Second
	}
	if opts.WindowSaveInterval <= 0 {
		opts.WindowSaveInterval = 30 * time.Second
	}
	e := &Engine{
		opts:  opts,
		log:   opts.Logger,
		queue: make(chan core.Message, opts.QueueSize),
		done:  make(chan struct{}),
		stats: map[string]*ruleStats{},
		wm:    newWindowMetrics(),

		windowWake: make(chan struct{}, 1),
	}
	e.ctx, e.cancel = context.WithCancel(context.Background())
	e.rules.Store(&[]*compiledRule{})
	e.m = metrics{
		dropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "mote_rules_dropped_total",
			Help: "Messages the rules engine dropped because its queue was full."}),
		matched: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mote_rule_matched_total",
			Help: "Messages a rule matched (FROM and WHERE)."}, []string{"rule"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mote_rule_errors_total",
			Help: "Evaluation and action failures of a rule."}, []string{"rule"}),
		action: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mote_rule_action_total",
			Help: "Actions run by a rule, by type and result."}, []string{"rule", "action", "result"}),
		actionDropped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mote_rule_actions_dropped_total",
			Help: "Actions of a rule not delivered: queue_full, breaker_open or retries_exhausted."}, []string{"rule", "reason"}),
		breakers: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "mote_rule_breakers_open",
			Help: "Actions of a rule whose circuit breaker is open."}, []string{"rule"}),
	}
	if opts.Metrics != nil {
		opts.Metrics.MustRegister(e.m.dropped, e.m.matched, e.m.errors, e.m.action, e.m.actionDropped, e.m.breakers)
		opts.Metrics.MustRegister(e.wm.collectors()...)
	}
	return e
}

// Start seeds the default rule (once per store), loads the rules and starts
// the workers. A stored rule that no longer compiles is logged and skipped.
func (e *Engine) Start(ctx context.Context) error {
	seed, _ := e.sealRule(DefaultRule)
	if _, err := e.opts.Store.Seed(ctx, seed); err != nil {
		return err
	}
	var all []*compiledRule
	after := ""
	for {
		page, err := e.opts.Store.List(ctx, after, 1000)
		if err != nil {
			return err
		}
		for _, r := range page {
			// Secrets stored in plain text (before sealing existed) are
			// sealed now.
			if sealed, plain := e.sealRule(r); plain {
				if out, err := e.opts.Store.Update(ctx, sealed); err != nil {
					e.log.Error("rule secrets not sealed; kept as they are", "rule", r.Name, "error", err)
				} else {
					r = out
					e.log.Info("rule webhook secrets sealed", "rule", r.Name)
				}
			}
			c, err := compileRule(r)
			if err != nil {
				e.log.Error("rule does not compile; skipped", "rule", r.Name, "error", err)
				continue
			}
			e.prepare(c)
			all = append(all, c)
		}
		if len(page) < 1000 {
			break
		}
		after = page[len(page)-1].Name
	}
	e.rules.Store(&all)
	e.restoreWindows(ctx)
	for range e.opts.Workers {
		e.wg.Add(1)
		go e.work()
	}
	e.wg.Add(1)
	go e.windowLoop()
	return nil
}

// Attach subscribes the engine to every message of the bus ("#").
func (e *Engine) Attach(b bus.Bus) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.unsub = append(e.unsub, b.Subscribe("#", e.enqueue))
	// "#" does not match '$' topics: platform events that rules may read
	// (file-uploaded, docs/files.md) come on $mote/events/...; only rules
	// whose FROM names such a topic see them (wanted).
	e.unsub = append(e.unsub, b.Subscribe("$mote/events/#", e.enqueue))
}

// enqueue is the bus handler: it never blocks. Messages made durable in
// the journal (Seq set) are skipped: they come through ApplyDurable.
func (e *Engine) enqueue(m core.Message) {
	if m.Seq != 0 || e.closed.Load() || !e.wanted(m.Topic) {
		return
	}
	e.push(m)
}

// push queues a message for the workers, or drops and counts it.
func (e *Engine) push(m core.Message) {
	select {
	case e.queue <- m:
	default:
		e.m.dropped.Inc()
		e.dropLog.log(e.log, m.Topic)
	}
}

// Close stops taking messages, lets the workers finish what is queued
// and the destinations deliver what is queued for them (actions in flight
// are cancelled after a grace period of 5s) and returns.
func (e *Engine) Close() error {
	e.once.Do(func() {
		e.closed.Store(true)
		e.mu.Lock()
		for _, u := range e.unsub {
			u()
		}
		e.mu.Unlock()
		close(e.done)
		t := time.AfterFunc(5*time.Second, e.cancel)
		e.wg.Wait()
		e.saveWindows(e.ctx) // after the workers: nothing changes them any more
		e.closeDelivery()
		t.Stop()
		e.cancel()
		for _, r := range *e.rules.Load() {
			for _, d := range r.allDests() {
				d.sink.shut()
			}
		}
	})
	return nil
}

// wanted reports whether some enabled rule's filter matches topic. It runs
// on the publisher's goroutine, so messages no rule wants never reach the
// queue or a worker.
func (e *Engine) wanted(topic string) bool {
	rs := e.rules.Load()
	if rs == nil {
		return false
	}
	for _, r := range *rs {
		if r.rule.Enabled && r.stmt.Matches(topic) {
			return true
		}
	}
	return false
}

// Durable reports whether a QoS 1/2 message on topic must be made durable
// before it is acknowledged: some enabled rule that stores telemetry
// matches it. It runs on the publisher's goroutine.
func (e *Engine) Durable(topic string) bool {
	if e.opts.Telemetry == nil {
		return false
	}
	for _, r := range *e.rules.Load() {
		if r.durable && r.rule.Enabled && r.stmt.Matches(topic) {
			return true
		}
	}
	return false
}

// ApplyDurable is the ingest journal's consumer: it gets the durable
// messages (Seq set) on one goroutine in sequence order, new and replayed.
// It runs the telemetry actions of the matching rules and adds all their
// points in one Writer.Add with the message's sequence number — so the
// telemetry store records, in the same transaction, how far it got, and a
// replay skips what it has — then queues the message for the workers,
// which run the rules' other actions. Adding waits, retrying, while the
// writer's backlog is full: that holds back the journal and so the
// publishers' acknowledgements, rather than losing an acknowledged message.
func (e *Engine) ApplyDurable(msg core.Message) {
	e.applyDurable(e.opts.Telemetry, msg)
}

// DurableTo returns a consumer of durable messages that is the Engine's
// durable pass with its telemetry going to w instead: the writer of
// another node's journal, whose backlog this node adopts
// (ingest/jsjournal Adopt, docs/cluster.md). The other actions of those
// messages run on this Engine's workers, as for its own.
func (e *Engine) DurableTo(w TelemetryWriter) ingest.Consumer {
	return durableTo{e, w}
}

type durableTo struct {
	e *Engine
	w TelemetryWriter
}

func (d durableTo) Durable(topic string) bool     { return d.e.Durable(topic) }
func (d durableTo) ApplyDurable(msg core.Message) { d.e.applyDurable(d.w, msg) }

func (e *Engine) applyDurable(w TelemetryWriter, msg core.Message) {
	var points []telemetry.Point
	var m *rules.Message
	for _, r := range *e.rules.Load() {
		if !r.durable || !r.rule.Enabled || !r.stmt.Matches(msg.Topic) {
			continue
		}
		if m == nil {
			m = rules.NewMessage(rules.InputOf(msg))
		}
		out, ok, err := r.stmt.EvalMessage(m)
		if err != nil || !ok {
			continue // the workers' pass counts it and runs the error action
		}
		var body []byte
		for i := range r.actions {
			a := &r.actions[i]
			if a.Type != ActionTelemetry {
				continue
			}
			if body == nil {
				body = out.AppendJSON(nil)
			}
			p, err := telemetryPoints(msg, body)
			if err == nil {
				err = telemetry.ValidatePoints(p)
			}
			if err != nil {
				err = fmt.Errorf("telemetry: %w", err)
				e.m.action.WithLabelValues(r.rule.Name, a.Type, "failure").Inc()
				e.m.errors.WithLabelValues(r.rule.Name).Inc()
				r.stats.failed.Add(1)
				r.stats.errors.Add(1)
				e.onError(r, msg, body, err) // only queues the error action
				continue
			}
			points = append(points, p...)
			e.m.action.WithLabelValues(r.rule.Name, a.Type, "success").Inc()
		}
	}
	e.addDurable(w, points, msg.Seq)
	if !e.closed.Load() && e.wanted(msg.Topic) {
		e.push(msg)
	}
}

// addDurable adds the points of journal message seq, retrying until the
// writer takes them. Only a shutdown stops it: the message is then
// replayed at the next start.
func (e *Engine) addDurable(w TelemetryWriter, points []telemetry.Point, seq uint64) {
	if w == nil {
		return
	}
	pause := 10 * time.Millisecond
	for {
		err := w.Add(e.ctx, points, seq)
		if err == nil {
			return
		}
		if e.ctx.Err() != nil {
			e.log.Warn("durable telemetry not added: shutting down; it is replayed at the next start", "seq", seq)
			return
		}
		switch {
		case errors.Is(err, telemetry.ErrWriterClosed):
			e.log.Warn("durable telemetry not added: the writer is closed; it is replayed at the next start", "seq", seq)
			return
		case core.KindOf(err) == core.KindInternal:
			e.log.Error("durable telemetry refused", "seq", seq, "error", err) // out of order: a bug
			return
		case core.KindOf(err) == core.KindInvalid:
			// The points were validated one action at a time, so this
			// cannot happen; record the sequence number without them.
			e.log.Error("durable telemetry refused", "seq", seq, "error", err)
			points = nil
			continue
		}
		e.dropLog.logError(e.log, "telemetry", "", err)
		select {
		case <-time.After(pause):
		case <-e.ctx.Done():
		}
		pause = min(2*pause, time.Second)
	}
}

func (e *Engine) work() {
	defer e.wg.Done()
	for {
		select {
		case m := <-e.queue:
			e.process(m)
		case <-e.done:
			for {
				select {
				case m := <-e.queue:
					e.process(m)
				default:
					return
				}
			}
		}
	}
}

// process runs the rules on one message.
func (e *Engine) process(msg core.Message) {
	set := *e.rules.Load()
	var m *rules.Message
	for _, r := range set {
		if !r.rule.Enabled || !r.stmt.Matches(msg.Topic) {
			continue
		}
		if m == nil {
			m = rules.NewMessage(rules.InputOf(msg))
		}
		if r.win != nil {
			e.addToWindow(r, m, msg)
			continue
		}
		out, ok, err := r.stmt.EvalMessage(m)
		if err != nil {
			e.m.errors.WithLabelValues(r.rule.Name).Inc()
			r.stats.errors.Add(1)
			e.onError(r, msg, nil, err)
			continue
		}
		if !ok {
			continue
		}
		e.m.matched.WithLabelValues(r.rule.Name).Inc()
		r.stats.matched.Add(1)
		e.runActions(r, msg, out)
	}
}

// runActions runs the actions of rule r on its output out for msg: the
// in-process ones here, the others queued on their destinations.
func (e *Engine) runActions(r *compiledRule, msg core.Message, out rules.Object) {
	body := out.AppendJSON(nil)
	lookup := objectLookup(out)
	for i := range r.actions {
		a := &r.actions[i]
		if msg.Seq != 0 && a.Type == ActionTelemetry {
			continue // done by ApplyDurable
		}
		if d := r.dests[i]; d != nil {
			d.enqueue(job{msg: msg, body: body}) // never waits
			continue
		}
		err := e.run(a, r.rule.Name, msg, body, lookup)
		if err != nil {
			e.m.action.WithLabelValues(r.rule.Name, a.Type, "failure").Inc()
			e.m.errors.WithLabelValues(r.rule.Name).Inc()
			r.stats.failed.Add(1)
			r.stats.errors.Add(1)
			e.onError(r, msg, body, err)
			continue
		}
		e.m.action.WithLabelValues(r.rule.Name, a.Type, "success").Inc()
	}
}

// errorDoc is what an error action receives.
type errorDoc struct {
	Rule     string          `json:"rule"`
	Error    string          `json:"error"`
	Topic    string          `json:"topic"`
	Payload  string          `json:"payload"` // base64
	ClientID string          `json:"clientId"`
	Thing    string          `json:"thing"`
	Output   json.RawMessage `json:"output,omitempty"`
}

// onError logs (rate-limited) and queues the rule's error action, if it
// has one, on its destination: it never waits for it, so it may run on
// the journal's consumer and the evaluation workers.
func (e *Engine) onError(r *compiledRule, msg core.Message, output []byte, cause error) {
	e.dropLog.logError(e.log, r.rule.Name, msg.Topic, cause)
	if r.errDest == nil {
		return
	}
	doc := errorDoc{Rule: r.rule.Name, Error: cause.Error(), Topic: msg.Topic,
		Payload: base64.StdEncoding.EncodeToString(msg.Payload), ClientID: msg.ClientID, Thing: msg.Thing}
	if len(output) > 0 {
		doc.Output = output
	}
	body, _ := json.Marshal(doc)
	var fields map[string]any
	_ = json.Unmarshal(body, &fields)
	r.errDest.enqueue(job{msg: msg, body: body, lookup: mapLookup(fields)})
}

// ---- rule management ----

// compileRule checks a rule and compiles it.
func compileRule(r store.Rule) (*compiledRule, error) {
	if err := core.ValidateName("name", r.Name); err != nil {
		return nil, err
	}
	if len(r.Description) > 1024 {
		return nil, core.Invalid("description", "description is longer than 1024 bytes")
	}
	stmt, err := rules.Parse(r.SQL)
	if err != nil {
		return nil, core.Invalid("sql", "sql %v", err)
	}
	actions, err := parseActions(r.Actions)
	if err != nil {
		return nil, err
	}
	ea, err := parseErrorAction(r.ErrorAction)
	if err != nil {
		return nil, err
	}
	c := &compiledRule{rule: r, stmt: stmt, actions: actions, errorAction: ea}
	_, windowed := stmt.Window()
	for _, a := range actions {
		// A windowed rule's telemetry action stores its windows' outputs
		// (windows.go), not the messages: they need no journal.
		c.durable = c.durable || a.Type == ActionTelemetry && !windowed
	}
	return c, nil
}

// Validate checks a rule as Create would, without storing it.
func Validate(r store.Rule) error {
	_, err := compileRule(r)
	return err
}

// normalize gives a rule its canonical stored form: Actions re-encoded from
// the decoded actions, so that what is stored is what runs.
func normalize(r store.Rule) (store.Rule, error) {
	c, err := compileRule(r)
	if err != nil {
		return store.Rule{}, err
	}
	list := make([]Action, len(c.actions))
	for i, a := range c.actions {
		list[i] = a.Action
	}
	r.Actions, _ = json.Marshal(list)
	if c.errorAction != nil {
		r.ErrorAction, _ = json.Marshal(c.errorAction.Action)
	} else {
		r.ErrorAction = nil
	}
	return r, nil
}

// swap replaces (c != nil) or removes (c == nil) the rule name in the
// running set. e.mu must be held. The destinations of a replaced rule
// deliver what is queued for them; those of a removed rule stop.
func (e *Engine) swap(name string, c *compiledRule) {
	old := *e.rules.Load()
	next := make([]*compiledRule, 0, len(old)+1)
	for _, r := range old {
		if r.rule.Name != name {
			next = append(next, r)
		} else if c == nil {
			r.retire()
			e.dropWindows(r)
		} else {
			r.replaced()
			if r.win != nil && c.win != nil && r.rule.SQL == c.rule.SQL {
				c.win = r.win // same statement (enabled, actions changed): its windows go on
			} else {
				e.dropWindows(r)
			}
		}
	}
	if c != nil {
		next = append(next, c)
		sort.Slice(next, func(i, j int) bool { return next[i].rule.Name < next[j].rule.Name })
	}
	e.rules.Store(&next)
}

// Create checks, stores and starts a rule. A secret given as the
// placeholder Redacted is refused: there is no stored value to keep.
func (e *Engine) Create(ctx context.Context, r store.Rule) (store.Rule, error) {
	r, err := keepSecrets(r, nil)
	if err != nil {
		return store.Rule{}, err
	}
	r, err = normalize(r)
	if err != nil {
		return store.Rule{}, err
	}
	r, _ = e.sealRule(r)
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.storeAndSwap(e.opts.Store.Create(ctx, r))
}

// storeAndSwap swaps a rule the store just returned into the running set
// and returns it with its secrets opened. e.mu is held.
func (e *Engine) storeAndSwap(out store.Rule, err error) (store.Rule, error) {
	if err != nil {
		return store.Rule{}, err
	}
	c, err := compileRule(out)
	if err != nil {
		return store.Rule{}, err
	}
	e.prepare(c)
	e.swap(out.Name, c)
	return e.openRule(out), nil
}

// Get returns a stored rule, its secrets opened.
func (e *Engine) Get(ctx context.Context, name string) (store.Rule, error) {
	r, err := e.opts.Store.Get(ctx, name)
	if err != nil {
		return store.Rule{}, err
	}
	return e.openRule(r), nil
}

// List returns stored rules ordered by name, their secrets opened.
func (e *Engine) List(ctx context.Context, after string, limit int) ([]store.Rule, error) {
	list, err := e.opts.Store.List(ctx, after, limit)
	if err != nil {
		return nil, err
	}
	for i := range list {
		list[i] = e.openRule(list[i])
	}
	return list, nil
}

// Update replaces a rule (all of SQL, Description, Enabled, Actions,
// ErrorAction) and swaps it into the running set. A secret of a webhook
// action given as the placeholder Redacted keeps the stored value of the
// stored webhook action with the same URL (see Redact).
func (e *Engine) Update(ctx context.Context, r store.Rule) (store.Rule, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	old, err := e.opts.Store.Get(ctx, r.Name)
	if err != nil {
		return store.Rule{}, err
	}
	old = e.openRule(old) // a value that does not open is kept sealed
	if r, err = keepSecrets(r, &old); err != nil {
		return store.Rule{}, err
	}
	if r, err = normalize(r); err != nil {
		return store.Rule{}, err
	}
	r, _ = e.sealRule(r)
	return e.storeAndSwap(e.opts.Store.Update(ctx, r))
}

// SetEnabled enables or disables a rule.
func (e *Engine) SetEnabled(ctx context.Context, name string, enabled bool) (store.Rule, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	r, err := e.opts.Store.Get(ctx, name)
	if err != nil {
		return store.Rule{}, err
	}
	r.Enabled = enabled
	r, _ = e.sealRule(r) // plain values stored before sealing are sealed now
	return e.storeAndSwap(e.opts.Store.Update(ctx, r))
}

// Delete removes a rule, stops it and removes its metric series.
func (e *Engine) Delete(ctx context.Context, name string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.opts.Store.Delete(ctx, name); err != nil {
		return err
	}
	e.swap(name, nil)
	e.m.matched.DeleteLabelValues(name)
	e.m.errors.DeleteLabelValues(name)
	e.m.action.DeletePartialMatch(prometheus.Labels{"rule": name})
	e.m.actionDropped.DeletePartialMatch(prometheus.Labels{"rule": name})
	e.m.breakers.DeleteLabelValues(name)
	e.wm.forget(name)
	e.statsMu.Lock()
	delete(e.stats, name)
	e.statsMu.Unlock()
	return nil
}

// TestInput is a message to try a statement on.
type TestInput struct {
	SQL      string
	Topic    string
	Payload  []byte
	ClientID string
	Thing    string
	// Properties are the message's user properties (properties.NAME).
	Properties []core.Property
	// Messages are the messages a windowed statement is tried on, each
	// with its receive time (empty: the one message above, received now).
	Messages []TestMessage
}

// TestMessage is one of the messages a windowed statement is tried on.
type TestMessage struct {
	Topic    string
	Payload  []byte
	ClientID string
	Thing    string
	At       time.Time
}

// MaxTestMessages is the most messages Test takes.
const MaxTestMessages = 1000

// TestResult is the outcome of Test.
type TestResult struct {
	Matched bool            `json:"matched"`
	Output  json.RawMessage `json:"output,omitempty"`
	// Windows are the outputs of a windowed statement: every window
	// that held a message, closed, in order of end then group.
	Windows []TestWindow `json:"windows,omitempty"`
	// Late counts messages whose window had been emitted when they came
	// (messages are taken in the order given); Skipped the values that
	// aggregates skipped because they were not numbers.
	Late    int `json:"late,omitempty"`
	Skipped int `json:"skipped,omitempty"`
}

// TestWindow is one emitted window of a windowed statement.
type TestWindow struct {
	Group  string          `json:"group"`
	Start  time.Time       `json:"start"`
	End    time.Time       `json:"end"`
	Output json.RawMessage `json:"output"`
}

// Test evaluates a statement on one message without running any action. A
// parse error is a KindInvalid error on field "sql"; an evaluation error a
// KindInvalid error on field "payload". A message whose topic the FROM
// filter does not match is not matched.
func Test(in TestInput) (TestResult, error) {
	stmt, err := rules.Parse(in.SQL)
	if err != nil {
		return TestResult{}, core.Invalid("sql", "sql %v", err)
	}
	if _, ok := stmt.Window(); ok {
		return testWindowed(stmt, in)
	}
	if len(in.Messages) > 0 {
		return TestResult{}, core.Invalid("messages", "messages are for windowed statements (GROUP BY ..., TUMBLING or SLIDING); give one message as topic and payload")
	}
	if in.Topic == "" {
		return TestResult{}, core.Invalid("topic", "topic is required")
	}
	if !stmt.Matches(in.Topic) {
		return TestResult{Matched: false}, nil
	}
	out, ok, err := stmt.Eval(rules.Input{Topic: in.Topic, Payload: in.Payload, ClientID: in.ClientID, Thing: in.Thing,
		Received: time.Now(), Properties: in.Properties})
	if err != nil {
		var ee *rules.EvalError
		if errors.As(err, &ee) {
			return TestResult{}, core.Invalid("payload", "evaluation failed %v", err)
		}
		return TestResult{}, err
	}
	if !ok {
		return TestResult{Matched: false}, nil
	}
	return TestResult{Matched: true, Output: out.AppendJSON(nil)}, nil
}
