// Package analytics is the alarm sources that watch the live stream:
// detectors configured per thing type or group (analytics rules: a kind
// and its configuration, see Parse), evaluated off the publish path, with
// state per (rule, thing) saved periodically and restored at start. The
// detectors are pure (detectors.go, anomaly.go, geo.go); the Engine feeds
// them. See docs/alarms.md.
//
// The bus handler only enqueues (a bounded queue; a full one drops and
// counts). One goroutine owns every state: it evaluates telemetry
// (things/{thing}/telemetry, of the thing that published it — never a
// thing named in the payload) and presence ($mote/events/presence/...,
// from the broker itself), ticks the time-driven detectors (silence,
// flapping) and hands the alarm service raises and clears without
// waiting. Saving states to the store runs on its own goroutine.
package analytics

import (
	"context"
	"encoding/json"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/moteiot/mote/internal/bus"
	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/store"
)

// AlarmSink takes raises and clears without waiting; *alarms.Service
// satisfies it.
type AlarmSink interface {
	RaiseAsync(thing, typ, severity string, details json.RawMessage, at time.Time) bool
	ClearAsync(thing, typ string, at time.Time) bool
}

// IntervalSource gives the expected interval of a telemetry key in the
// device model of a thing type (key "": the largest of its keys; 0:
// none); *devicemodel.Models satisfies it. It is called on the engine's
// goroutine and must answer from a cache.
type IntervalSource interface {
	ExpectedInterval(ctx context.Context, thingType, key string) time.Duration
}

// Options configure an Engine.
type Options struct {
	Store  store.AnalyticsStore // required
	Things store.ThingStore     // required: the type and groups of a thing
	Alarms AlarmSink            // required
	// Intervals gives the expected telemetry intervals of the device
	// models, for silence rules without an interval of their own (nil:
	// such rules never raise).
	Intervals IntervalSource
	// Queue bounds the messages waiting for evaluation (default 10,000).
	Queue int
	// MaxStates bounds the (rule, thing) states kept (default 100,000);
	// a new one beyond it is not created (counted).
	MaxStates int
	// SaveInterval is how often changed states are saved (default 30s).
	SaveInterval time.Duration
	// TickInterval is how often silence and flapping look at the clock
	// (default 1s).
	TickInterval time.Duration
	// MembershipTTL is how long a thing's type and groups are cached
	// (default 30s).
	MembershipTTL time.Duration
	// PositionKeys are the telemetry keys of latitude and longitude that
	// geofence and speed rules naming no latKey/lonKey read (zero:
	// "lat", "lon"; --position-keys).
	PositionKeys [2]string
	Logger       *slog.Logger
	Metrics      prometheus.Registerer
	Now          func() time.Time
}

// Rule is an analytics rule as the API shows it.
type Rule struct {
	Name      string          `json:"name"`
	Kind      string          `json:"kind"`
	ThingType string          `json:"thingType,omitempty"`
	Group     string          `json:"group,omitempty"`
	Config    json.RawMessage `json:"config"`
	Enabled   bool            `json:"enabled"`
	CreatedAt time.Time       `json:"createdAt"`
	UpdatedAt time.Time       `json:"updatedAt"`
}

func ruleView(r store.AnalyticsRule) Rule {
	return Rule{Name: r.Name, Kind: r.Kind, ThingType: r.ThingType, Group: r.Group, Config: r.Config,
		Enabled: r.Enabled, CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt}
}

type compiled struct {
	rule store.AnalyticsRule
	det  Detector
	cfg  Config
	tick bool // silence, flapping
	pres bool // flapping
	tele bool // all but flapping
}

type entry struct {
	rule  string
	thing string
	st    State
	dirty bool
}

type membership struct {
	typ     string
	groups  []string
	exists  bool
	fetched time.Time
}

// input is one queued message, or a control request (reset != "").
type input struct {
	msg   core.Message
	reset string // drop the states of this rule
	done  chan struct{}
}

// Engine runs analytics rules on the live stream.
type Engine struct {
	o     Options
	log   *slog.Logger
	now   func() time.Time
	rules atomic.Pointer[[]*compiled]
	mu    sync.Mutex // serializes rule changes

	q      chan input
	stop   chan struct{}
	wg     sync.WaitGroup
	closed atomic.Bool
	once   sync.Once
	unsub  []func()

	// Owned by the worker.
	states  map[string]*entry
	members map[string]*membership

	save chan []store.DetectorState

	m struct {
		evals, dropped, refused, alarmsDropped prometheus.Counter
		states                                 prometheus.Gauge
	}
	lastLog  atomic.Int64
	unlogged atomic.Int64
}

// New returns an Engine; Start loads rules and states.
func New(o Options) *Engine {
	if o.Queue <= 0 {
		o.Queue = 10_000
	}
	if o.MaxStates <= 0 {
		o.MaxStates = 100_000
	}
	if o.SaveInterval <= 0 {
		o.SaveInterval = 30 * time.Second
	}
	if o.TickInterval <= 0 {
		o.TickInterval = time.Second
	}
	if o.PositionKeys[0] == "" || o.PositionKeys[1] == "" {
		o.PositionKeys = [2]string{"lat", "lon"}
	}
	if o.MembershipTTL <= 0 {
		o.MembershipTTL = 30 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	e := &Engine{o: o, log: o.Logger, now: o.Now, q: make(chan input, o.Queue), stop: make(chan struct{}),
		states: map[string]*entry{}, members: map[string]*membership{}, save: make(chan []store.DetectorState, 1)}
	e.rules.Store(&[]*compiled{})
	e.m.evals = prometheus.NewCounter(prometheus.CounterOpts{Name: "mote_analytics_evaluations_total",
		Help: "Detector evaluations (one rule, one message or tick)."})
	e.m.dropped = prometheus.NewCounter(prometheus.CounterOpts{Name: "mote_analytics_dropped_total",
		Help: "Messages the analytics dropped because their queue (--analytics-queue) was full."})
	e.m.refused = prometheus.NewCounter(prometheus.CounterOpts{Name: "mote_analytics_states_refused_total",
		Help: "Detector states not created because --analytics-max-states were kept."})
	e.m.alarmsDropped = prometheus.NewCounter(prometheus.CounterOpts{Name: "mote_analytics_alarms_dropped_total",
		Help: "Raises and clears of detectors the alarm service did not take (its queue was full)."})
	e.m.states = prometheus.NewGauge(prometheus.GaugeOpts{Name: "mote_analytics_states",
		Help: "Detector states kept, one per (rule, thing)."})
	if o.Metrics != nil {
		o.Metrics.MustRegister(e.m.evals, e.m.dropped, e.m.refused, e.m.alarmsDropped, e.m.states)
	}
	return e
}

func key(rule, thing string) string { return rule + "\x00" + thing }

// Start loads the rules and the saved states and runs the engine.
func (e *Engine) Start(ctx context.Context) error {
	var all []*compiled
	after := ""
	for {
		page, err := e.o.Store.ListRules(ctx, after, 1000)
		if err != nil {
			return err
		}
		for _, r := range page {
			c, err := e.compile(r)
			if err != nil {
				e.log.Error("analytics rule does not compile; skipped", "rule", r.Name, "err", err)
				continue
			}
			all = append(all, c)
		}
		if len(page) < 1000 {
			break
		}
		after = page[len(page)-1].Name
	}
	e.rules.Store(&all)
	saved, err := e.o.Store.States(ctx)
	if err != nil {
		return err
	}
	byName := map[string]*compiled{}
	for _, c := range all {
		byName[c.rule.Name] = c
	}
	for _, s := range saved {
		c := byName[s.Rule]
		if c == nil || len(e.states) >= e.o.MaxStates {
			continue
		}
		st := c.det.NewState()
		if err := json.Unmarshal(s.State, st); err != nil {
			e.log.Warn("saved detector state unreadable; starting afresh", "rule", s.Rule, "thing", s.Thing, "err", err)
			continue
		}
		e.states[key(s.Rule, s.Thing)] = &entry{rule: s.Rule, thing: s.Thing, st: st}
	}
	e.m.states.Set(float64(len(e.states)))
	e.wg.Add(2)
	go e.loop()
	go e.saver()
	return nil
}

// Attach subscribes the engine to telemetry and presence on the bus.
func (e *Engine) Attach(b bus.Bus) {
	e.unsub = append(e.unsub,
		b.Subscribe("things/+/telemetry", e.enqueue),
		b.Subscribe(core.PresenceConnected+"#", e.enqueue),
		b.Subscribe(core.PresenceDisconnected+"#", e.enqueue))
}

// enqueue is the bus handler: it never blocks.
func (e *Engine) enqueue(m core.Message) {
	if e.closed.Load() || len(*e.rules.Load()) == 0 {
		return
	}
	select {
	case e.q <- input{msg: m}:
	default:
		e.m.dropped.Inc()
		e.logLimited("analytics queue full: message dropped", "topic", m.Topic)
	}
}

// Close stops the engine and saves the changed states (at most 10s).
func (e *Engine) Close() error {
	e.once.Do(func() {
		e.closed.Store(true)
		for _, u := range e.unsub {
			u()
		}
		close(e.stop)
		e.wg.Wait()
	})
	return nil
}

func (e *Engine) logLimited(msg string, args ...any) {
	now := time.Now().UnixNano()
	last := e.lastLog.Load()
	if now-last < int64(time.Second) || !e.lastLog.CompareAndSwap(last, now) {
		e.unlogged.Add(1)
		return
	}
	e.log.Warn(msg, append(args, "suppressed", e.unlogged.Swap(0))...)
}

func (e *Engine) loop() {
	defer e.wg.Done()
	tick := time.NewTicker(e.o.TickInterval)
	defer tick.Stop()
	saveT := time.NewTicker(e.o.SaveInterval)
	defer saveT.Stop()
	for {
		select {
		case in := <-e.q:
			e.handle(in)
		case <-tick.C:
			e.tick(e.now())
		case <-saveT.C:
			e.flush(false)
		case <-e.stop:
			e.flush(true)
			close(e.save)
			return
		}
	}
}

func (e *Engine) handle(in input) {
	if in.done != nil {
		for k, en := range e.states {
			if en.rule == in.reset {
				delete(e.states, k)
			}
		}
		e.m.states.Set(float64(len(e.states)))
		close(in.done)
		return
	}
	m := in.msg
	switch {
	case strings.HasPrefix(m.Topic, "things/"):
		// things/{thing}/telemetry of the thing that published it.
		if m.Thing == "" || m.Topic != "things/"+m.Thing+"/telemetry" {
			return
		}
		v, ok := numbers(m.Payload)
		if !ok {
			return
		}
		at := m.Received
		if at.IsZero() {
			at = e.now()
		}
		e.Evaluate(m.Thing, at, v)
	case m.Thing == "" && (strings.HasPrefix(m.Topic, core.PresenceConnected) || strings.HasPrefix(m.Topic, core.PresenceDisconnected)):
		var ev struct {
			Event string    `json:"event"`
			Thing string    `json:"thing"`
			Time  time.Time `json:"time"`
		}
		if json.Unmarshal(m.Payload, &ev) != nil || ev.Thing == "" {
			return
		}
		if ev.Time.IsZero() {
			ev.Time = e.now()
		}
		e.presence(ev.Thing, ev.Event == "connected", ev.Time)
	}
}

// numbers returns the numeric top-level members of a JSON object.
func numbers(payload []byte) (Values, bool) {
	var obj map[string]json.RawMessage
	if json.Unmarshal(payload, &obj) != nil || obj == nil {
		return nil, false
	}
	v := make(Values, len(obj))
	for k, raw := range obj {
		if len(raw) == 0 || !(raw[0] == '-' || raw[0] >= '0' && raw[0] <= '9') {
			continue
		}
		var f float64
		if json.Unmarshal(raw, &f) == nil && finite(f) {
			v[k] = f
		}
	}
	return v, true
}

// member returns the type and groups of a thing, cached.
func (e *Engine) member(thing string, now time.Time) *membership {
	m := e.members[thing]
	if m != nil && now.Sub(m.fetched) < e.o.MembershipTTL {
		return m
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	t, err := e.o.Things.Get(ctx, thing)
	switch {
	case err == nil:
		m = &membership{typ: t.Type, groups: t.Groups, exists: true, fetched: now}
	case core.IsNotFound(err):
		m = &membership{fetched: now}
	case m != nil:
		return m // keep what we knew
	default:
		return &membership{}
	}
	if len(e.members) >= e.o.MaxStates {
		clear(e.members)
	}
	e.members[thing] = m
	return m
}

func (c *compiled) applies(m *membership) bool {
	switch {
	case !c.rule.Enabled || !m.exists:
		return false
	case c.rule.ThingType != "":
		return m.typ == c.rule.ThingType
	case c.rule.Group != "":
		return slices.Contains(m.groups, c.rule.Group)
	}
	return true
}

// state returns the state of (rule, thing), created on first use.
func (e *Engine) state(c *compiled, thing string) *entry {
	k := key(c.rule.Name, thing)
	en := e.states[k]
	if en == nil {
		if len(e.states) >= e.o.MaxStates {
			e.m.refused.Inc()
			e.logLimited("analytics state refused: --analytics-max-states reached", "rule", c.rule.Name, "thing", thing)
			return nil
		}
		en = &entry{rule: c.rule.Name, thing: thing, st: c.det.NewState()}
		e.states[k] = en
		e.m.states.Set(float64(len(e.states)))
	}
	return en
}

// Evaluate runs the telemetry detectors of the rules that apply to thing
// (on the engine's goroutine; exported for benchmarks).
func (e *Engine) Evaluate(thing string, at time.Time, v Values) {
	rules := *e.rules.Load()
	if len(rules) == 0 {
		return
	}
	m := e.member(thing, e.now())
	for _, c := range rules {
		if !c.tele || !c.applies(m) {
			continue
		}
		en := e.state(c, thing)
		if en == nil {
			continue
		}
		if s, ok := c.det.(*silence); ok {
			e.modelInterval(s, en.st.(*silenceState), m.typ)
		}
		e.m.evals.Inc()
		e.act(c, en, c.det.Telemetry(en.st, at, v), at)
	}
}

// modelInterval sets a silence state's interval from the device model of
// the thing's type when the rule has none of its own.
func (e *Engine) modelInterval(s *silence, st *silenceState, typ string) {
	key, ok := s.fromModel()
	if !ok || e.o.Intervals == nil || typ == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	st.Interval = Duration(e.o.Intervals.ExpectedInterval(ctx, typ, key))
}

func (e *Engine) presence(thing string, connected bool, at time.Time) {
	rules := *e.rules.Load()
	m := e.member(thing, e.now())
	for _, c := range rules {
		if !c.pres || !c.applies(m) {
			continue
		}
		en := e.state(c, thing)
		if en == nil {
			continue
		}
		e.m.evals.Inc()
		e.act(c, en, c.det.Presence(en.st, connected, at), at)
	}
}

func (e *Engine) tick(now time.Time) {
	byName := map[string]*compiled{}
	for _, c := range *e.rules.Load() {
		if c.tick && c.rule.Enabled {
			byName[c.rule.Name] = c
		}
	}
	if len(byName) == 0 {
		return
	}
	for _, en := range e.states {
		if c := byName[en.rule]; c != nil {
			e.m.evals.Inc()
			e.act(c, en, c.det.Tick(en.st, now), now)
		}
	}
}

// act marks the state changed and passes a raise or clear on.
func (e *Engine) act(c *compiled, en *entry, o Outcome, at time.Time) {
	en.dirty = true
	var ok bool
	switch {
	case o.Raise:
		details, _ := json.Marshal(mergeDetails(o.Details, c.rule.Name))
		ok = e.o.Alarms.RaiseAsync(en.thing, c.cfg.AlarmType, c.cfg.Severity, details, at)
	case o.Clear:
		ok = e.o.Alarms.ClearAsync(en.thing, c.cfg.AlarmType, at)
	default:
		return
	}
	if !ok {
		e.m.alarmsDropped.Inc()
	}
}

func mergeDetails(d map[string]any, rule string) map[string]any {
	if d == nil {
		d = map[string]any{}
	}
	d["rule"] = rule
	return d
}

// flush hands the changed states to the saver; if it is still busy with
// the last batch they stay changed for the next time (final: wait).
func (e *Engine) flush(final bool) {
	var batch []store.DetectorState
	now := e.now()
	for _, en := range e.states {
		if !en.dirty {
			continue
		}
		b, err := json.Marshal(en.st)
		if err != nil {
			continue
		}
		batch = append(batch, store.DetectorState{Rule: en.rule, Thing: en.thing, State: b, UpdatedAt: now})
	}
	if len(batch) == 0 {
		return
	}
	if final {
		e.save <- batch
	} else {
		select {
		case e.save <- batch:
		default:
			return
		}
	}
	for _, en := range e.states {
		en.dirty = false
	}
}

func (e *Engine) saver() {
	defer e.wg.Done()
	for batch := range e.save {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := e.o.Store.PutStates(ctx, batch)
		cancel()
		if err != nil {
			e.logLimited("saving detector states failed", "states", len(batch), "err", err)
		}
	}
}

// ---- rules ----

func compile(r store.AnalyticsRule) (*compiled, error) {
	if err := core.ValidateName("name", r.Name); err != nil {
		return nil, err
	}
	if r.ThingType != "" && r.Group != "" {
		return nil, core.Invalid("group", "give a thingType or a group, not both")
	}
	if r.ThingType != "" {
		if err := core.ValidateName("thingType", r.ThingType); err != nil {
			return nil, err
		}
	}
	if r.Group != "" {
		if err := core.ValidateName("group", r.Group); err != nil {
			return nil, err
		}
	}
	d, cfg, err := Parse(r.Kind, r.Config)
	if err != nil {
		return nil, err
	}
	c := &compiled{rule: r, det: d, cfg: cfg, tele: r.Kind != KindFlapping}
	c.tick = r.Kind == KindSilence || r.Kind == KindFlapping
	c.pres = r.Kind == KindFlapping
	return c, nil
}

// compile compiles a rule for this engine: geofence and speed rules
// that name no position keys read Options.PositionKeys.
func (e *Engine) compile(r store.AnalyticsRule) (*compiled, error) {
	c, err := compile(r)
	if err != nil {
		return nil, err
	}
	if pk, ok := c.det.(positionKeyed); ok {
		pk.defaultPositionKeys(e.o.PositionKeys[0], e.o.PositionKeys[1])
	}
	return c, nil
}

// swap replaces (c != nil) or removes the rule name and drops its states.
func (e *Engine) swap(ctx context.Context, name string, c *compiled) error {
	old := *e.rules.Load()
	next := make([]*compiled, 0, len(old)+1)
	for _, x := range old {
		if x.rule.Name != name {
			next = append(next, x)
		}
	}
	if c != nil {
		next = append(next, c)
	}
	e.rules.Store(&next)
	if e.closed.Load() {
		return nil
	}
	done := make(chan struct{})
	select {
	case e.q <- input{reset: name, done: done}:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-done:
	case <-ctx.Done():
	}
	return nil
}

// Validate checks a rule without storing it.
func Validate(r Rule) error {
	_, err := compile(store.AnalyticsRule{Name: r.Name, Kind: r.Kind, ThingType: r.ThingType, Group: r.Group, Config: r.Config, Enabled: r.Enabled})
	return err
}

// CreateRule checks and stores a rule and starts running it.
func (e *Engine) CreateRule(ctx context.Context, r Rule) (Rule, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	sr := store.AnalyticsRule{Name: r.Name, Kind: r.Kind, ThingType: r.ThingType, Group: r.Group, Config: r.Config, Enabled: r.Enabled}
	c, err := e.compile(sr)
	if err != nil {
		return Rule{}, err
	}
	out, err := e.o.Store.CreateRule(ctx, sr)
	if err != nil {
		return Rule{}, err
	}
	c.rule = out
	return ruleView(out), e.swap(ctx, out.Name, c)
}

// UpdateRule replaces a rule; its detectors start afresh.
func (e *Engine) UpdateRule(ctx context.Context, r Rule) (Rule, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	sr := store.AnalyticsRule{Name: r.Name, Kind: r.Kind, ThingType: r.ThingType, Group: r.Group, Config: r.Config, Enabled: r.Enabled}
	c, err := e.compile(sr)
	if err != nil {
		return Rule{}, err
	}
	out, err := e.o.Store.UpdateRule(ctx, sr)
	if err != nil {
		return Rule{}, err
	}
	c.rule = out
	return ruleView(out), e.swap(ctx, out.Name, c)
}

// DeleteRule deletes a rule and its states.
func (e *Engine) DeleteRule(ctx context.Context, name string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.o.Store.DeleteRule(ctx, name); err != nil {
		return err
	}
	return e.swap(ctx, name, nil)
}

// GetRule returns a rule.
func (e *Engine) GetRule(ctx context.Context, name string) (Rule, error) {
	r, err := e.o.Store.GetRule(ctx, name)
	return ruleView(r), err
}

// ListRules returns rules by name after the cursor.
func (e *Engine) ListRules(ctx context.Context, after string, limit int) ([]Rule, error) {
	list, err := e.o.Store.ListRules(ctx, after, limit)
	if err != nil {
		return nil, err
	}
	out := make([]Rule, len(list))
	for i, r := range list {
		out[i] = ruleView(r)
	}
	return out, nil
}
