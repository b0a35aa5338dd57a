// Package fleetindex keeps, per node, an in-memory index of every thing as
// the fleet query language sees it (fleetquery.Doc: registry record,
// connection state, shadows, latest telemetry) and answers queries over
// it: the things list's ?q=, counts, job targets (Selector) and dynamic
// groups, whose membership it maintains and announces on
// $mote/events/groups/{group}/added|removed.
//
// How it stays current (docs/fleet-query.md, "How the index works"):
//
//   - At start it loads every thing, its shadows and its latest telemetry
//     from the stores, in the background; queries answer 503 until then.
//   - Changes reach it off the publish path: registry events (OnRegistry),
//     committed shadow changes (OnShadowChange, from the shadow workers),
//     presence events and telemetry from the bus. Each only enqueues into
//     one bounded queue; when the queue is full the change is dropped,
//     counted, and the thing is marked for a reload from the store (a set
//     bounded by the number of things), so the index converges.
//   - One worker goroutine applies changes in batches under the write
//     lock, re-evaluates the dynamic groups for the things that changed
//     and publishes membership events.
//   - Every Recompute it re-evaluates every dynamic group (queries with
//     now() change with time alone); every Resync it reloads everything
//     from the store, which also picks up changes made on other nodes
//     of a cluster (PostgreSQL backend) that this node's events missed.
package fleetindex

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/moteiot/mote/internal/bus"
	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/fleetquery"
	"github.com/moteiot/mote/internal/registry"
	"github.com/moteiot/mote/internal/shadow"
	"github.com/moteiot/mote/internal/store"
	"github.com/moteiot/mote/internal/telemetry"
)

// Selector selects things by a fleet query. *Index implements it; the
// jobs engine takes one for its targets.
type Selector interface {
	// Match returns the names of the things that match query, sorted.
	// A bad query is a core.KindInvalid error (field "q") whose message
	// gives the line and column; an index still loading is
	// core.KindUnavailable.
	Match(ctx context.Context, query string) ([]string, error)
	// Count returns how many things match query.
	Count(ctx context.Context, query string) (int, error)
}

var _ Selector = (*Index)(nil)

// Publisher publishes platform messages (the broker).
type Publisher interface {
	Publish(topic string, payload []byte, retain bool, qos byte) error
}

// GroupEventsPrefix is followed by {group}/added or {group}/removed.
const GroupEventsPrefix = "$mote/events/groups/"

// Options configure an Index.
type Options struct {
	Store     store.Store     // things, shadows, groups
	Telemetry telemetry.Store // latest values at load; nil: none
	Bus       bus.Bus         // presence and telemetry; nil: not followed
	Publisher Publisher       // membership events; nil: not published
	Limits    fleetquery.Limits
	// QueueSize bounds the changes waiting for the worker (default 10,000).
	QueueSize int
	// MaxDynamicGroups bounds the dynamic groups (default 100).
	MaxDynamicGroups int
	// Recompute is how often every dynamic group is re-evaluated
	// (default 1m); Resync how often everything is reloaded from the
	// store (default 10m; negative: never).
	Recompute, Resync time.Duration
	Logger            *slog.Logger
	Metrics           prometheus.Registerer
	Now               func() time.Time
}

type entry struct {
	doc     fleetquery.Doc
	created time.Time
	removed bool     // deleted since an order snapshot was taken
	keys    []string // its postings (fleetquery.DocKeys) while indexed
	// versions of the shadows in doc, and of those known deleted
	// (tombstones): a change older than what the entry holds is ignored,
	// so a reload racing with newer events cannot go back in time.
	versions map[string]int64
}

type group struct {
	name    string
	q       *fleetquery.Query
	members map[string]struct{}
}

type evKind int

const (
	evShadow evKind = iota + 1
	evPresence
	evTelemetry
)

type event struct {
	kind    evKind
	thing   string
	name    string // shadow name
	payload []byte // stored shadow (nil: deleted), presence JSON, telemetry JSON
	at      time.Time
}

// Index is the fleet index of one node.
type Index struct {
	o   Options
	log *slog.Logger

	mu    sync.RWMutex
	docs  map[string]*entry
	order []*entry // by name; nil when things were added or removed
	// early holds the latest telemetry of things not in the index yet: a
	// new thing's first message can come before the reload that adds it,
	// which reads only the thing and its shadows (at most maxEarly
	// things; guarded by mu).
	early map[string]map[string]any
	// postings: per fleetquery.DocKeys key, the things that have it.
	postings map[string]map[*entry]struct{}
	groups   map[string]*group
	ready    atomic.Bool

	events chan event
	pmu    sync.Mutex
	reload map[string]struct{} // things to reload from the store
	regrp  bool                // reload the dynamic groups' definitions
	wake   chan struct{}
	quit   chan struct{}
	done   chan struct{}
	unsubs []func()
	closed sync.Once

	dropped      *prometheus.CounterVec
	applied      prometheus.Counter
	groupEvents  *prometheus.CounterVec
	queries      *prometheus.CounterVec
	things       prometheus.GaugeFunc
	queryRefused *prometheus.CounterVec
	lastLog      atomic.Int64 // unix ns of the last drop warning

	wmu      sync.Mutex
	wseq     int
	watchers map[int]func(things []string)
}

// New returns an Index; Start loads it and follows changes.
func New(o Options) *Index {
	if o.QueueSize <= 0 {
		o.QueueSize = 10_000
	}
	if o.MaxDynamicGroups <= 0 {
		o.MaxDynamicGroups = 100
	}
	if o.Recompute <= 0 {
		o.Recompute = time.Minute
	}
	if o.Resync == 0 {
		o.Resync = 10 * time.Minute
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	x := &Index{
		o: o, log: o.Logger,
		docs:     make(map[string]*entry),
		postings: make(map[string]map[*entry]struct{}),
		groups:   make(map[string]*group),
		events:   make(chan event, o.QueueSize),
		reload:   make(map[string]struct{}),
		wake:     make(chan struct{}, 1),
		quit:     make(chan struct{}),
		done:     make(chan struct{}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mote_fleet_index_dropped_total",
			Help: "Changes the fleet index's queue was too full to take, by source; the thing is reloaded from the store instead (telemetry values are lost)."}, []string{"source"}),
		applied: prometheus.NewCounter(prometheus.CounterOpts{Name: "mote_fleet_index_changes_total",
			Help: "Changes applied to the fleet index (shadow, presence, telemetry, reloads)."}),
		groupEvents: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mote_fleet_group_events_total",
			Help: "Dynamic group membership changes announced, by event."}, []string{"event"}),
		queries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mote_fleet_queries_total",
			Help: "Fleet queries answered, by kind (list, count, match)."}, []string{"kind"}),
		queryRefused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mote_fleet_queries_refused_total",
			Help: "Fleet queries refused, by reason (invalid, too_large, loading)."}, []string{"reason"}),
	}
	x.things = prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "mote_fleet_index_things", Help: "Things in the fleet index."},
		func() float64 { x.mu.RLock(); defer x.mu.RUnlock(); return float64(len(x.docs)) })
	if o.Metrics != nil {
		o.Metrics.MustRegister(x.dropped, x.applied, x.groupEvents, x.queries, x.queryRefused, x.things)
	}
	return x
}

// Start subscribes to the bus and starts the worker, which first loads
// the index from the stores. It returns at once; Ready reports when the
// load is done.
func (x *Index) Start() {
	if b := x.o.Bus; b != nil {
		x.unsubs = append(x.unsubs,
			b.Subscribe("$mote/events/presence/#", x.onPresence),
			b.Subscribe("things/+/telemetry", x.onTelemetry))
	}
	go x.run()
}

// Close stops following changes and waits for the worker.
func (x *Index) Close() error {
	x.closed.Do(func() {
		for _, u := range x.unsubs {
			u()
		}
		close(x.quit)
	})
	<-x.done
	return nil
}

// Ready reports whether the initial load is done.
func (x *Index) Ready() bool { return x.ready.Load() }

// OnRegistry takes a registry event (registry.Listen): the thing is
// reloaded from the store; group changes reload the dynamic groups. It
// never blocks.
func (x *Index) OnRegistry(e registry.Event) {
	switch e.Kind {
	case registry.ThingChanged, registry.ThingDeleted, registry.ThingCreated:
		x.markReload(e.Thing)
	case registry.GroupsChanged:
		x.pmu.Lock()
		x.regrp = true
		x.pmu.Unlock()
		if e.Group != "" {
			// A deleted static group leaves its things: reload them.
			x.mu.RLock()
			var members []string
			for n, ent := range x.docs {
				if slices.Contains(ent.doc.Groups, e.Group) {
					members = append(members, n)
				}
			}
			x.mu.RUnlock()
			x.pmu.Lock()
			for _, n := range members {
				x.reload[n] = struct{}{}
			}
			x.pmu.Unlock()
		}
		x.signal()
	}
}

// OnShadowChange takes a committed shadow change (shadow.Options.OnChange).
// It never blocks.
func (x *Index) OnShadowChange(thing, name string, stored []byte) {
	x.enqueue(event{kind: evShadow, thing: thing, name: name, payload: stored}, "shadow")
}

func (x *Index) onPresence(m core.Message) {
	// The thing is read from the payload by the worker; the client id in
	// the topic may differ from it.
	x.enqueue(event{kind: evPresence, payload: m.Payload, at: m.Received}, "presence")
}

func (x *Index) onTelemetry(m core.Message) {
	thing := strings.TrimSuffix(strings.TrimPrefix(m.Topic, core.ThingsPrefix), "/telemetry")
	x.enqueue(event{kind: evTelemetry, thing: thing, payload: m.Payload, at: m.Received}, "telemetry")
}

func (x *Index) enqueue(e event, source string) {
	select {
	case x.events <- e:
		return
	default:
	}
	x.dropped.WithLabelValues(source).Inc()
	if now := time.Now().UnixNano(); now-x.lastLog.Load() > int64(10*time.Second) {
		x.lastLog.Store(now)
		x.log.Warn("fleet index queue full; things are reloaded from the store instead", "source", source, "queue", cap(x.events))
	}
	if e.thing != "" {
		x.markReload(e.thing)
	}
}

func (x *Index) markReload(thing string) {
	x.pmu.Lock()
	x.reload[thing] = struct{}{}
	x.pmu.Unlock()
	x.signal()
}

func (x *Index) signal() {
	select {
	case x.wake <- struct{}{}:
	default:
	}
}

// run is the worker: load, then apply changes until Close.
func (x *Index) run() {
	defer close(x.done)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-x.quit:
			cancel()
		case <-ctx.Done():
		}
	}()
	for {
		err := x.loadAll(ctx)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return
		}
		x.log.Error("fleet index load failed; retrying", "error", err)
		select {
		case <-x.quit:
			return
		case <-time.After(5 * time.Second):
		}
	}
	x.ready.Store(true)
	recompute := time.NewTicker(x.o.Recompute)
	defer recompute.Stop()
	var resync <-chan time.Time
	if x.o.Resync > 0 {
		t := time.NewTicker(x.o.Resync)
		defer t.Stop()
		resync = t.C
	}
	batch := make([]event, 0, 512)
	for {
		select {
		case <-x.quit:
			return
		case e := <-x.events:
			batch = append(batch[:0], e)
		drain:
			for len(batch) < cap(batch) {
				select {
				case e := <-x.events:
					batch = append(batch, e)
				default:
					break drain
				}
			}
			x.apply(batch)
		case <-x.wake:
			x.reloadPending(ctx)
		case <-recompute.C:
			x.recomputeAll()
		case <-resync:
			if err := x.loadAll(ctx); err != nil && ctx.Err() == nil {
				x.log.Warn("fleet index resync failed", "error", err)
			}
		}
	}
}

// loadAll reads every thing, its shadows and latest telemetry, and the
// dynamic groups, and replaces the index. Membership computed by a load
// is not announced.
func (x *Index) loadAll(ctx context.Context) error {
	st := x.o.Store
	docs := make(map[string]*entry)
	after := ""
	for {
		page, err := st.Things().List(ctx, store.ThingFilter{After: after, Limit: 1000})
		if err != nil {
			return fmt.Errorf("list things: %w", err)
		}
		names := make([]string, len(page))
		for i, t := range page {
			e := newEntry(t)
			if err := x.loadShadows(ctx, e, nil); err != nil {
				return err
			}
			docs[t.Name] = e
			names[i] = t.Name
		}
		if err := x.loadTelemetry(ctx, docs, names); err != nil {
			return err
		}
		if len(page) < 1000 {
			break
		}
		after = page[len(page)-1].Name
	}
	groups, err := x.loadGroups(ctx)
	if err != nil {
		return err
	}
	x.mu.Lock()
	x.docs, x.order = docs, nil
	x.postings = make(map[string]map[*entry]struct{})
	for _, e := range docs {
		x.post(e)
	}
	x.groups = groups
	x.mu.Unlock()
	x.recompute(nil, false)
	return nil
}

func newEntry(t store.Thing) *entry {
	e := &entry{created: t.CreatedAt, versions: make(map[string]int64)}
	e.setThing(t)
	return e
}

func (e *entry) setThing(t store.Thing) {
	d := &e.doc
	d.Name, d.Type, d.Attributes, d.Tags, d.Groups = t.Name, t.Type, t.Attributes, t.Tags, t.Groups
	d.Enabled, d.Connected = t.Enabled, t.Connected
	d.LastSeen = time.Time{}
	if t.LastSeen != nil {
		d.LastSeen = *t.LastSeen
	}
	e.created = t.CreatedAt
}

func (x *Index) loadShadows(ctx context.Context, e *entry, check []string) error {
	infos, err := x.o.Store.Shadows().List(ctx, e.doc.Name)
	if err != nil {
		return fmt.Errorf("list shadows of %q: %w", e.doc.Name, err)
	}
	e.doc.Shadows, e.versions = nil, make(map[string]int64)
	names := make([]string, 0, len(infos)+len(check))
	for _, in := range infos {
		names = append(names, in.Name)
	}
	for _, n := range check {
		if !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	for _, n := range names {
		sh, err := x.o.Store.Shadows().Get(ctx, e.doc.Name, n)
		if core.KindOf(err) == core.KindNotFound {
			if sh.Deleted {
				e.versions[n] = sh.Version // a tombstone
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("read shadow of %q: %w", e.doc.Name, err)
		}
		e.versions[n] = sh.Version
		if s, _ := parseShadow(sh.Document); s != nil {
			if e.doc.Shadows == nil {
				e.doc.Shadows = make(map[string]*fleetquery.Shadow)
			}
			e.doc.Shadows[n] = s
		}
	}
	return nil
}

// mergeShadows keeps, per shadow, the newer of what old holds and what
// a reload (e) read.
func mergeShadows(old, e *entry) {
	for n, ov := range old.versions {
		if ev, ok := e.versions[n]; ok && ev >= ov {
			continue
		}
		e.versions[n] = ov
		if s := old.doc.Shadows[n]; s != nil {
			if e.doc.Shadows == nil {
				e.doc.Shadows = make(map[string]*fleetquery.Shadow)
			}
			e.doc.Shadows[n] = s
		} else {
			delete(e.doc.Shadows, n)
		}
	}
}

func (x *Index) loadTelemetry(ctx context.Context, docs map[string]*entry, names []string) error {
	if x.o.Telemetry == nil || len(names) == 0 {
		return nil
	}
	pts, err := x.o.Telemetry.Latest(ctx, names, nil)
	if err != nil {
		return fmt.Errorf("latest telemetry: %w", err)
	}
	for _, p := range pts {
		if e := docs[p.Thing]; e != nil {
			if e.doc.Telemetry == nil {
				e.doc.Telemetry = make(map[string]any)
			}
			e.doc.Telemetry[p.Key] = telemetryValue(p.Value)
		}
	}
	return nil
}

func (x *Index) loadGroups(ctx context.Context) (map[string]*group, error) {
	groups := make(map[string]*group)
	after := ""
	for {
		page, err := x.o.Store.Groups().List(ctx, after, 1000)
		if err != nil {
			return nil, fmt.Errorf("list groups: %w", err)
		}
		for _, g := range page {
			if g.Query == "" {
				continue
			}
			// Stored queries were checked when written; one that no
			// longer parses (a lower limit) matches nothing.
			q, err := fleetquery.Parse(g.Query, fleetquery.Limits{MaxLength: 1 << 20, MaxDepth: 1 << 10})
			if err != nil {
				x.log.Warn("dynamic group query does not parse; it has no members", "group", g.Name, "error", err)
			}
			groups[g.Name] = &group{name: g.Name, q: q, members: make(map[string]struct{})}
		}
		if len(page) < 1000 {
			return groups, nil
		}
		after = page[len(page)-1].Name
	}
}

// parseShadow reads the state and version of a stored shadow document;
// numbers become float64.
func parseShadow(stored []byte) (*fleetquery.Shadow, int64) {
	if stored == nil {
		return nil, 0
	}
	d, err := shadow.ParseDocument(stored)
	if err != nil {
		return nil, 0
	}
	s := &fleetquery.Shadow{}
	s.Reported, _ = normalize(d.Reported).(map[string]any)
	s.Desired, _ = normalize(d.Desired).(map[string]any)
	return s, d.Version
}

func normalize(v any) any {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			v[k] = normalize(x)
		}
		return v
	case []any:
		for i, x := range v {
			v[i] = normalize(x)
		}
		return v
	case json.Number:
		f, err := v.Float64()
		if err != nil {
			return string(v)
		}
		return f
	}
	return v
}

func telemetryValue(v telemetry.Value) any {
	switch v.Kind() {
	case telemetry.KindNumber:
		return v.Float()
	case telemetry.KindBool:
		return v.Bool()
	}
	return v.Text()
}

// apply applies a batch of queued changes: decoding happens before the
// lock is taken.
func (x *Index) apply(batch []event) {
	type change struct {
		ev     event
		shadow *fleetquery.Shadow
		ver    int64
		conn   bool
		fields []telemetry.Field
		ok     bool
	}
	changes := make([]change, 0, len(batch))
	for _, e := range batch {
		c := change{ev: e, ok: true}
		switch e.kind {
		case evShadow:
			c.shadow, c.ver = parseShadow(e.payload)
		case evPresence:
			c.ev.thing, c.conn, c.ev.at, c.ok = presenceOf(e.payload)
		case evTelemetry:
			_, fields, err := telemetry.Flatten(e.payload, e.at)
			c.fields, c.ok = fields, err == nil
		}
		if c.ok {
			changes = append(changes, c)
		}
	}
	touched := make(map[string]struct{}, len(changes))
	x.mu.Lock()
	for _, c := range changes {
		ent := x.docs[c.ev.thing]
		if ent == nil {
			// Not (yet) a thing: a reload will bring it, and this
			// message's values with it.
			if c.ev.kind == evTelemetry {
				x.keepEarly(c.ev.thing, c.fields)
			}
			continue
		}
		d := &ent.doc
		switch c.ev.kind {
		case evShadow:
			if v, ok := ent.versions[c.ev.name]; ok && c.shadow != nil && c.ver <= v {
				continue // older than what a reload read
			}
			if c.shadow != nil {
				ent.versions[c.ev.name] = c.ver
			}
			shadows := make(map[string]*fleetquery.Shadow, len(d.Shadows)+1)
			for k, v := range d.Shadows {
				shadows[k] = v
			}
			if c.shadow == nil {
				delete(shadows, c.ev.name)
			} else {
				shadows[c.ev.name] = c.shadow
			}
			d.Shadows = shadows
		case evPresence:
			if d.Connected != c.conn {
				x.unpost(ent)
				d.Connected = c.conn
				x.post(ent)
			}
			if c.ev.at.After(d.LastSeen) {
				d.LastSeen = c.ev.at
			}
		case evTelemetry:
			tel := make(map[string]any, len(d.Telemetry)+len(c.fields))
			for k, v := range d.Telemetry {
				tel[k] = v
			}
			for _, f := range c.fields {
				tel[f.Key] = telemetryValue(f.Value)
			}
			d.Telemetry = tel
		}
		touched[c.ev.thing] = struct{}{}
	}
	x.mu.Unlock()
	x.applied.Add(float64(len(changes)))
	x.recompute(touched, true)
}

// maxEarly bounds Index.early: beyond it a new thing's values wait for
// its next message (counted as a dropped change).
const maxEarly = 10000

// keepEarly keeps the values of a message from a thing the index does not
// hold yet, for the reload that adds it. x.mu is held.
func (x *Index) keepEarly(thing string, fields []telemetry.Field) {
	tel, ok := x.early[thing]
	if !ok {
		if len(x.early) >= maxEarly {
			x.dropped.WithLabelValues("early").Inc()
			return
		}
		if x.early == nil {
			x.early = make(map[string]map[string]any)
		}
		tel = make(map[string]any, len(fields))
		x.early[thing] = tel
		x.markReload(thing) // also forgets the values if there is no such thing
	}
	for _, f := range fields {
		tel[f.Key] = telemetryValue(f.Value)
	}
}

// reloadPending reloads the things marked for it (and the groups), at
// most 1000 per round so that queued changes are not held up.
func (x *Index) reloadPending(ctx context.Context) {
	x.pmu.Lock()
	regrp := x.regrp
	x.regrp = false
	var names []string
	for n := range x.reload {
		names = append(names, n)
		delete(x.reload, n)
		if len(names) == 1000 {
			break
		}
	}
	more := len(x.reload) > 0
	x.pmu.Unlock()
	if more {
		x.signal()
	}
	if regrp {
		x.reloadGroups(ctx)
	}
	if len(names) == 0 {
		return
	}
	known := make(map[string][]string, len(names)) // shadows the index holds
	x.mu.RLock()
	for _, n := range names {
		if e := x.docs[n]; e != nil {
			for s := range e.versions {
				known[n] = append(known[n], s)
			}
		}
	}
	x.mu.RUnlock()
	loaded := make(map[string]*entry, len(names))
	gone := make([]string, 0)
	// The things in one read (a bulk import marks thousands at once),
	// then each one's shadows.
	things, err := x.o.Store.Things().GetMany(ctx, names)
	if err != nil {
		if ctx.Err() == nil {
			x.log.Warn("fleet index: reload of things failed; they stay as they were until the next resync", "things", len(names), "error", err)
		}
		return
	}
	byName := make(map[string]store.Thing, len(things))
	for _, t := range things {
		byName[t.Name] = t
	}
	for _, n := range names {
		t, ok := byName[n]
		if !ok {
			gone = append(gone, n)
			continue
		}
		e := newEntry(t)
		err := x.loadShadows(ctx, e, known[n])
		if err == nil {
			loaded[n] = e
			continue
		}
		if ctx.Err() == nil {
			x.log.Warn("fleet index: reload of a thing failed; it stays as it was until the next resync", "thing", n, "error", err)
		}
	}
	touched := make(map[string]struct{}, len(names))
	x.mu.Lock()
	for n, e := range loaded {
		old := x.docs[n]
		if old == nil {
			if tel, ok := x.early[n]; ok {
				e.doc.Telemetry = tel
				delete(x.early, n)
			}
			x.docs[n] = e
			x.post(e)
			x.order = nil
		} else {
			// In place: the name order holds the entry.
			e.doc.Telemetry = old.doc.Telemetry
			mergeShadows(old, e)
			x.unpost(old)
			*old = *e
			x.post(old)
		}
		touched[n] = struct{}{}
	}
	for _, n := range gone {
		delete(x.early, n)
		if e, ok := x.docs[n]; ok {
			e.removed = true
			x.unpost(e)
			delete(x.docs, n)
			x.order = nil
			touched[n] = struct{}{}
		}
	}
	x.mu.Unlock()
	x.applied.Add(float64(len(touched)))
	x.recompute(touched, true)
}

// reloadGroups reads the dynamic groups' definitions again: a new or
// changed query is evaluated over every thing (without announcing its
// initial members), a deleted group is forgotten.
func (x *Index) reloadGroups(ctx context.Context) {
	groups, err := x.loadGroups(ctx)
	if err != nil {
		if ctx.Err() == nil {
			x.log.Warn("fleet index: reading dynamic groups failed", "error", err)
		}
		return
	}
	x.mu.Lock()
	for name, g := range groups {
		if old := x.groups[name]; old != nil && sameQuery(old.q, g.q) {
			groups[name] = old
		}
	}
	x.groups = groups
	for _, g := range groups {
		if len(g.members) == 0 {
			x.evaluate(g, nil, nil)
		}
	}
	x.mu.Unlock()
}

func sameQuery(a, b *fleetquery.Query) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.String() == b.String()
}

// recomputeAll re-evaluates every dynamic group over every thing and
// announces the differences (queries with now() change with time).
func (x *Index) recomputeAll() { x.recompute(nil, true) }

type membership struct {
	group, thing string
	added        bool
}

// recompute re-evaluates the dynamic groups for the things in touched
// (nil: every thing) and, if announce, publishes the differences.
func (x *Index) recompute(touched map[string]struct{}, announce bool) {
	var diffs []membership
	x.mu.Lock()
	for _, g := range x.groups {
		x.evaluate(g, touched, &diffs)
	}
	x.mu.Unlock()
	if announce {
		x.announce(diffs)
	}
	x.notifyWatchers(touched, diffs)
}

// Watch calls fn, on the index's worker, with the names of the things
// whose document (or dynamic group membership) changed, after each batch
// of changes: the change feed that continuous job targets and
// configuration profiles follow. fn must not block (hand the names to a
// bounded queue). Changes found by a periodic resync are not fed; the
// watchers' own periodic reconcile covers them. stop removes fn.
func (x *Index) Watch(fn func(things []string)) (stop func()) {
	x.wmu.Lock()
	defer x.wmu.Unlock()
	x.wseq++
	id := x.wseq
	if x.watchers == nil {
		x.watchers = make(map[int]func([]string))
	}
	x.watchers[id] = fn
	return func() {
		x.wmu.Lock()
		delete(x.watchers, id)
		x.wmu.Unlock()
	}
}

func (x *Index) notifyWatchers(touched map[string]struct{}, diffs []membership) {
	x.wmu.Lock()
	fns := make([]func([]string), 0, len(x.watchers))
	for _, fn := range x.watchers {
		fns = append(fns, fn)
	}
	x.wmu.Unlock()
	if len(fns) == 0 || len(touched)+len(diffs) == 0 {
		return
	}
	names := make([]string, 0, len(touched)+len(diffs))
	for n := range touched {
		names = append(names, n)
	}
	for _, d := range diffs {
		if _, ok := touched[d.thing]; !ok {
			names = append(names, d.thing)
		}
	}
	for _, fn := range fns {
		fn(names)
	}
}

// Filter returns those of names (in their order) that are things
// matching query; like Match, a bad query is core.KindInvalid and an
// index still loading core.KindUnavailable.
func (x *Index) Filter(ctx context.Context, query string, names []string) ([]string, error) {
	q, err := x.check(ctx, query)
	if err != nil {
		return nil, err
	}
	now := x.o.Now()
	x.mu.RLock()
	defer x.mu.RUnlock()
	var out []string
	for _, n := range names {
		if e := x.docs[n]; e != nil && q.Match(&e.doc, now) {
			out = append(out, n)
		}
	}
	return out, nil
}

// evaluate brings g's members up to date for touched (nil: all things),
// appending the differences to diffs if it is not nil. x.mu is held.
func (x *Index) evaluate(g *group, touched map[string]struct{}, diffs *[]membership) {
	now := x.o.Now()
	check := func(name string) {
		e := x.docs[name]
		in := e != nil && g.q != nil && g.q.Match(&e.doc, now)
		_, was := g.members[name]
		switch {
		case in && !was:
			g.members[name] = struct{}{}
		case !in && was:
			delete(g.members, name)
		default:
			return
		}
		if diffs != nil {
			*diffs = append(*diffs, membership{group: g.name, thing: name, added: in})
		}
	}
	if touched != nil {
		for n := range touched {
			check(n)
		}
		return
	}
	for n := range x.docs {
		check(n)
	}
	for n := range g.members {
		if x.docs[n] == nil {
			check(n)
		}
	}
}

func (x *Index) announce(diffs []membership) {
	if len(diffs) == 0 {
		return
	}
	now := x.o.Now().UTC()
	for _, d := range diffs {
		ev := "removed"
		if d.added {
			ev = "added"
		}
		x.groupEvents.WithLabelValues(ev).Inc()
		if x.o.Publisher == nil {
			continue
		}
		b := []byte(`{"event":`)
		b = core.AppendJSONString(b, ev)
		b = append(b, `,"group":`...)
		b = core.AppendJSONString(b, d.group)
		b = append(b, `,"thing":`...)
		b = core.AppendJSONString(b, d.thing)
		b = append(b, `,"time":"`...)
		b = now.AppendFormat(b, time.RFC3339Nano)
		b = append(b, `"}`...)
		topic := GroupEventsPrefix + d.group + "/" + ev
		if err := x.o.Publisher.Publish(topic, b, false, 1); err != nil {
			x.log.Debug("group event not published", "topic", topic, "error", err)
		}
		if x.o.Bus != nil {
			x.o.Bus.Publish(core.Message{Topic: topic, Payload: b, QoS: 1, Received: now, Protocol: "platform"})
		}
	}
}

// Parse parses a query under the index's limits; errors are
// core.KindInvalid (field "q") with the line and column.
func (x *Index) Parse(query string) (*fleetquery.Query, error) {
	q, err := fleetquery.Parse(query, x.o.Limits)
	if err != nil {
		reason := "invalid"
		if strings.Contains(err.Error(), "more than the limit") || strings.Contains(err.Error(), "nested deeper") {
			reason = "too_large"
		}
		x.queryRefused.WithLabelValues(reason).Inc()
		var pe *fleetquery.Error
		if errors.As(err, &pe) {
			return nil, &core.Error{Kind: core.KindInvalid, Field: "q", Msg: err.Error()}
		}
		return nil, core.Invalid("q", "%v", err)
	}
	return q, nil
}

func (x *Index) check(ctx context.Context, query string) (*fleetquery.Query, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	q, err := x.Parse(query)
	if err != nil {
		return nil, err
	}
	if !x.ready.Load() {
		x.queryRefused.WithLabelValues("loading").Inc()
		return nil, &core.Error{Kind: core.KindUnavailable, Msg: "the fleet index is still loading; retry shortly"}
	}
	return q, nil
}

// post adds e to the postings of its keys; unpost removes it. x.mu is
// held for writing.
func (x *Index) post(e *entry) {
	e.keys = fleetquery.DocKeys(&e.doc)
	for _, k := range e.keys {
		set := x.postings[k]
		if set == nil {
			set = make(map[*entry]struct{})
			x.postings[k] = set
		}
		set[e] = struct{}{}
	}
}

func (x *Index) unpost(e *entry) {
	for _, k := range e.keys {
		if set := x.postings[k]; set != nil {
			delete(set, e)
			if len(set) == 0 {
				delete(x.postings, k)
			}
		}
	}
	e.keys = nil
}

// candidates returns the things q can match, from the smallest group of
// its postings, in no order; all (nil, false) when it has none. x.mu is
// held for reading.
func (x *Index) candidates(q *fleetquery.Query) ([]*entry, bool) {
	groups := q.Postings()
	if len(groups) == 0 {
		return nil, false
	}
	best, bestN := -1, 0
	for i, g := range groups {
		n := 0
		for _, k := range g {
			n += len(x.postings[k])
		}
		if best < 0 || n < bestN {
			best, bestN = i, n
		}
	}
	out := make([]*entry, 0, bestN)
	g := groups[best]
	for _, k := range g {
		for e := range x.postings[k] {
			out = append(out, e)
		}
	}
	if len(g) > 1 { // a thing may have several of the keys (tags IN (...))
		slices.SortFunc(out, func(a, b *entry) int { return strings.Compare(a.doc.Name, b.doc.Name) })
		out = slices.Compact(out)
	}
	return out, true
}

// others returns, for each of q's posting groups but the one candidates
// used, the posting sets of its keys: a thing q can match is in at least
// one set of every group. Checking these pointer sets first spares the
// full evaluation of most candidates that cannot match (a count of
// "site AND type AND connected" evaluates only the things in all three).
// x.mu is held for reading.
func (x *Index) others(q *fleetquery.Query, cands int) [][]map[*entry]struct{} {
	groups := q.Postings()
	if len(groups) < 2 {
		return nil
	}
	var out [][]map[*entry]struct{}
	skipped := false
	for _, g := range groups {
		n := 0
		sets := make([]map[*entry]struct{}, 0, len(g))
		for _, k := range g {
			if set := x.postings[k]; set != nil {
				sets = append(sets, set)
				n += len(set)
			}
		}
		if !skipped && n == cands {
			skipped = true // the candidates' own group (or one as large)
			continue
		}
		out = append(out, sets)
	}
	return out
}

// inAll reports whether e is in one set of every group.
func inAll(e *entry, groups [][]map[*entry]struct{}) bool {
	for _, sets := range groups {
		found := false
		for _, set := range sets {
			if _, ok := set[e]; ok {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// ordered returns the entries ordered by name: a snapshot, rebuilt when
// things were added or removed. Entries removed since are marked removed.
func (x *Index) ordered() []*entry {
	x.mu.RLock()
	o := x.order
	x.mu.RUnlock()
	if o != nil {
		return o
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.order == nil {
		o := make([]*entry, 0, len(x.docs))
		for _, e := range x.docs {
			o = append(o, e)
		}
		slices.SortFunc(o, func(a, b *entry) int { return strings.Compare(a.doc.Name, b.doc.Name) })
		x.order = o
	}
	return x.order
}

// Match returns the names of the things that match query, sorted.
func (x *Index) Match(ctx context.Context, query string) ([]string, error) {
	q, err := x.check(ctx, query)
	if err != nil {
		return nil, err
	}
	x.queries.WithLabelValues("match").Inc()
	now := x.o.Now()
	x.mu.RLock()
	cands, narrowed := x.candidates(q)
	x.mu.RUnlock()
	if !narrowed {
		cands = x.ordered()
	}
	x.mu.RLock()
	var others [][]map[*entry]struct{}
	if narrowed {
		others = x.others(q, len(cands))
	}
	var out []string
	for _, e := range cands {
		if !e.removed && inAll(e, others) && q.Match(&e.doc, now) {
			out = append(out, e.doc.Name)
		}
	}
	x.mu.RUnlock()
	if narrowed {
		slices.Sort(out)
	}
	return out, nil
}

// Count returns how many things match query.
func (x *Index) Count(ctx context.Context, query string) (int, error) {
	q, err := x.check(ctx, query)
	if err != nil {
		return 0, err
	}
	x.queries.WithLabelValues("count").Inc()
	now := x.o.Now()
	x.mu.RLock()
	cands, narrowed := x.candidates(q)
	x.mu.RUnlock()
	if !narrowed {
		cands = x.ordered() // a slice scans faster than the map
	}
	x.mu.RLock()
	defer x.mu.RUnlock()
	var others [][]map[*entry]struct{}
	if narrowed {
		others = x.others(q, len(cands))
	}
	n := 0
	for _, e := range cands {
		if !e.removed && inAll(e, others) && q.Match(&e.doc, now) {
			n++
		}
	}
	return n, nil
}

// Page is a page of things selected by a query.
type Page struct {
	Names []string // the page, in the requested order
	Next  string   // cursor of the next page ("" at the end)
	Total int      // how many things match in all
}

// List returns a page of the things that match query, ordered like the
// store's things list (sort is one of store.ThingSorts or "") and with
// the same cursors (store.ThingCursor), so that ?q= pages like the rest
// of GET /things. limit is 1..1000.
func (x *Index) List(ctx context.Context, query, sortBy, after string, limit int) (Page, error) {
	q, err := x.check(ctx, query)
	if err != nil {
		return Page{}, err
	}
	desc := strings.HasPrefix(sortBy, "-")
	field := strings.TrimPrefix(sortBy, "-")
	if field != "" && field != "name" && field != "lastSeen" && field != "createdAt" {
		return Page{}, core.Invalid("sort", "sort must be one of %s", strings.Join(store.ThingSorts, ", "))
	}
	var cms int64
	var cname string
	if after != "" && field != "" && field != "name" {
		v, name, ok := strings.Cut(after, ":")
		ms, perr := strconv.ParseInt(v, 10, 64)
		if !ok || perr != nil {
			return Page{}, core.Invalid("cursor", "cursor %q is not one of this sort", after)
		}
		cms, cname = ms, name
	}
	x.queries.WithLabelValues("list").Inc()
	now := x.o.Now()
	type hit struct {
		key  int64
		name string
	}
	x.mu.RLock()
	cands, narrowed := x.candidates(q)
	x.mu.RUnlock()
	if !narrowed {
		cands = x.ordered()
	}
	hits := make([]hit, 0, 1024)
	x.mu.RLock()
	var others [][]map[*entry]struct{}
	if narrowed {
		others = x.others(q, len(cands))
	}
	for _, e := range cands {
		if e.removed || !inAll(e, others) || !q.Match(&e.doc, now) {
			continue
		}
		h := hit{name: e.doc.Name}
		switch field {
		case "lastSeen":
			if !e.doc.LastSeen.IsZero() {
				h.key = e.doc.LastSeen.UnixMilli()
			}
		case "createdAt":
			h.key = e.created.UnixMilli()
		}
		hits = append(hits, h)
	}
	x.mu.RUnlock()
	cmpHit := func(a, b hit) int {
		if c := cmp.Compare(a.key, b.key); c != 0 {
			return c
		}
		return strings.Compare(a.name, b.name)
	}
	if field == "lastSeen" || field == "createdAt" || narrowed {
		slices.SortFunc(hits, cmpHit)
	}
	if desc {
		slices.Reverse(hits)
	}
	// The first hit after the cursor.
	start := 0
	if after != "" {
		c := hit{key: cms, name: cname}
		if field == "" || field == "name" {
			c = hit{name: after}
		}
		start = sort.Search(len(hits), func(i int) bool {
			r := cmpHit(hits[i], c)
			if desc {
				return r < 0
			}
			return r > 0
		})
	}
	if limit <= 0 {
		limit = 100
	}
	p := Page{Total: len(hits)}
	end := min(start+limit, len(hits))
	for _, h := range hits[start:end] {
		p.Names = append(p.Names, h.name)
	}
	if end < len(hits) && end > start {
		last := hits[end-1]
		if field == "" || field == "name" {
			p.Next = last.name
		} else {
			p.Next = strconv.FormatInt(last.key, 10) + ":" + last.name
		}
	}
	return p, nil
}

// Members returns the members of the dynamic group name, sorted, and
// whether it is one.
func (x *Index) Members(ctx context.Context, name string) ([]string, bool, error) {
	if err := ctx.Err(); err != nil {
		return nil, false, err
	}
	if !x.ready.Load() {
		return nil, false, &core.Error{Kind: core.KindUnavailable, Msg: "the fleet index is still loading; retry shortly"}
	}
	x.mu.RLock()
	g := x.groups[name]
	var out []string
	if g != nil {
		out = make([]string, 0, len(g.members))
		for n := range g.members {
			out = append(out, n)
		}
	}
	x.mu.RUnlock()
	if g == nil {
		return nil, false, nil
	}
	slices.Sort(out)
	return out, true, nil
}

// InGroup reports whether thing is now a member of the dynamic group
// name (false for a static or unknown group, or before the first load).
func (x *Index) InGroup(name, thing string) bool {
	if !x.ready.Load() {
		return false
	}
	x.mu.RLock()
	defer x.mu.RUnlock()
	g := x.groups[name]
	if g == nil {
		return false
	}
	_, ok := g.members[thing]
	return ok
}

// DynamicGroups returns how many dynamic groups the index holds.
func (x *Index) DynamicGroups() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return len(x.groups)
}

// MaxDynamicGroups is the configured limit of dynamic groups.
func (x *Index) MaxDynamicGroups() int { return x.o.MaxDynamicGroups }

// presenceOf reads the thing, the state and the time of a presence event
// (broker.Event's JSON). There is one per connect and disconnect, so the
// broker's own encoding is read directly: a key such as "thing":" cannot
// occur inside a JSON string (a quote there is escaped), thing names have
// no escapes, and the time is RFC 3339. Anything else goes through
// encoding/json.
func presenceOf(b []byte) (thing string, connected bool, at time.Time, ok bool) {
	th, ok1 := plainJSONString(b, `"thing":"`)
	ev, ok2 := plainJSONString(b, `"event":"`)
	ts, ok3 := plainJSONString(b, `"time":"`)
	if ok1 && ok2 && ok3 && core.ValidateName("thing", string(th)) == nil {
		if t, err := time.Parse(time.RFC3339Nano, string(ts)); err == nil {
			return string(th), string(ev) == "connected", t, true
		}
	}
	var p struct {
		Event string    `json:"event"`
		Thing string    `json:"thing"`
		Time  time.Time `json:"time"`
	}
	if json.Unmarshal(b, &p) != nil || p.Thing == "" {
		return "", false, time.Time{}, false
	}
	return p.Thing, p.Event == "connected", p.Time, true
}

// plainJSONString returns the value of the string member that starts
// right after key ("name":"), when it has no escapes.
func plainJSONString(b []byte, key string) ([]byte, bool) {
	i := bytes.Index(b, []byte(key))
	if i < 0 {
		return nil, false
	}
	rest := b[i+len(key):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 || bytes.IndexByte(rest[:j], '\\') >= 0 {
		return nil, false
	}
	return rest[:j], true
}
