// Package profiles keeps configuration profiles (device policies, as in
// WSO2's EMM): a profile is a fragment of desired state with a target (a
// static or dynamic group, or a fleet query) and a priority. The service
// merges the profiles that apply to each thing into its classic shadow's
// desired state and reports compliance: whether the reported state equals
// the merged desired value of every key a profile decides.
//
// How it applies (docs/profiles.md):
//
//   - Per thing it records what the profiles wrote (store.ProfileApplied:
//     each key, its value and the profile that won it). Only those keys
//     are ever changed or removed: desired keys that no profile wrote are
//     never touched. A key a profile no longer sets is removed, unless an
//     operator changed it since (then it is theirs).
//   - Merging: a higher priority wins each key (deep, per leaf key); equal
//     priorities are decided by name, the lower name (byte order) winning.
//   - Triggers: a profile created, updated or deleted, and a periodic
//     reconcile (Options.Reconcile), evaluate every profile's target;
//     the fleet index's change feed (ThingsChanged) evaluates the things
//     that changed, which also re-asserts a profile's value when the
//     desired state was edited away from it. Triggers only enqueue, into
//     a bounded set of thing names; when it is full the name is dropped,
//     counted, and a full reconcile is scheduled instead, so the state
//     converges. One worker goroutine does the work, off the publish path.
//   - Restart-safe: the recorded state is loaded at Start and a full
//     reconcile runs; applying is idempotent (a thing whose merged
//     profiles equal what was recorded is not written).
package profiles

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/shadow"
	"github.com/moteiot/mote/internal/store"
)

// Fleet selects things: *fleetindex.Index.
type Fleet interface {
	// Match returns the things that match query, sorted.
	Match(ctx context.Context, query string) ([]string, error)
	// Filter returns those of names that match query.
	Filter(ctx context.Context, query string, names []string) ([]string, error)
	// Members returns a dynamic group's members and whether it is one.
	Members(ctx context.Context, group string) ([]string, bool, error)
	// Count is used to check a query (and a group) when a profile is saved.
	Count(ctx context.Context, query string) (int, error)
}

// Shadows updates desired state: *shadow.Service.
type Shadows interface {
	Update(ctx context.Context, thing, name string, payload []byte) ([]byte, error)
}

// Options configure a Service.
type Options struct {
	Store   store.Store // Profiles(), Groups(), Shadows()
	Fleet   Fleet
	Shadows Shadows
	// MaxProfiles bounds the profiles (default 100); MaxSize a profile's
	// desired document in bytes (default 16 KiB).
	MaxProfiles int
	MaxSize     int
	// QueueSize bounds the things waiting to be applied (default 10,000).
	QueueSize int
	// Reconcile is how often every target is evaluated again (default 1m).
	Reconcile time.Duration
	Logger    *slog.Logger
	Metrics   prometheus.Registerer
}

// Profile is a configuration profile.
type Profile struct {
	Name        string
	Description string
	Desired     json.RawMessage // a JSON object
	Group       string          // target: a group, or
	Query       string          // a fleet query
	Priority    int
	CreatedAt   time.Time
	UpdatedAt   time.Time
}

type compiled struct {
	p      store.Profile
	leaves []Leaf
}

type applied struct {
	profiles []string
	leaves   []Leaf
}

// Service applies profiles.
type Service struct {
	o   Options
	log *slog.Logger

	mu       sync.Mutex // pending, all
	pending  map[string]struct{}
	all      bool
	wake     chan struct{}
	stop     chan struct{}
	done     chan struct{}
	started  atomic.Bool
	stopOnce sync.Once

	smu    sync.RWMutex // state
	state  map[string]applied
	loaded atomic.Bool
	// none: the last reconcile found no profile (and none was created
	// since). With no profile state either, a changed thing needs no work:
	// presence changes a thing on every connect.
	none    atomic.Bool
	lastLog atomic.Int64

	mDropped  prometheus.Counter
	mWrites   *prometheus.CounterVec
	mRuns     *prometheus.CounterVec
	mErrors   prometheus.Counter
	mProfiles prometheus.GaugeFunc
	mQueued   prometheus.GaugeFunc
}

// New returns a Service; Start loads it and starts the worker.
func New(o Options) *Service {
	if o.MaxProfiles <= 0 {
		o.MaxProfiles = 100
	}
	if o.MaxSize <= 0 {
		o.MaxSize = 16 << 10
	}
	if o.QueueSize <= 0 {
		o.QueueSize = 10_000
	}
	if o.Reconcile <= 0 {
		o.Reconcile = time.Minute
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	s := &Service{
		o: o, log: o.Logger,
		pending: make(map[string]struct{}),
		wake:    make(chan struct{}, 1),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
		state:   make(map[string]applied),
		mDropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "mote_profile_dropped_total",
			Help: "Things the profile queue was too full to take; a full reconcile is run instead."}),
		mWrites: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mote_profile_writes_total",
			Help: "Desired-state writes by configuration profiles, by result (applied, failed)."}, []string{"result"}),
		mRuns: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mote_profile_reconciles_total",
			Help: "Profile evaluations, by kind (full, things)."}, []string{"kind"}),
		mErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "mote_profile_errors_total",
			Help: "Profile evaluations that failed (a target that could not be resolved, a store error)."}),
	}
	s.mProfiles = prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "mote_profile_things",
		Help: "Things with configuration profiles applied."}, func() float64 {
		s.smu.RLock()
		defer s.smu.RUnlock()
		return float64(len(s.state))
	})
	s.mQueued = prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "mote_profile_queued",
		Help: "Things waiting for their profiles to be applied."}, func() float64 {
		s.mu.Lock()
		defer s.mu.Unlock()
		return float64(len(s.pending))
	})
	for _, r := range []string{"applied", "failed"} {
		s.mWrites.WithLabelValues(r)
	}
	if o.Metrics != nil {
		o.Metrics.MustRegister(s.mDropped, s.mWrites, s.mRuns, s.mErrors, s.mProfiles, s.mQueued)
	}
	return s
}

// Start starts the worker, which loads the recorded state and runs a
// full reconcile.
func (s *Service) Start() error {
	if !s.started.CompareAndSwap(false, true) {
		return errors.New("profiles: already started")
	}
	s.mu.Lock()
	s.all = true
	s.mu.Unlock()
	go s.run()
	return nil
}

// Close stops the worker and waits for it (at most the current item).
func (s *Service) Close() error {
	s.stopOnce.Do(func() { close(s.stop) })
	if s.started.Load() {
		<-s.done
	}
	return nil
}

// ThingsChanged tells the service that these things changed (the fleet
// index's change feed, fleetindex.Index.Watch). It never blocks.
func (s *Service) ThingsChanged(things []string) {
	if s.none.Load() {
		s.smu.RLock()
		idle := len(s.state) == 0
		s.smu.RUnlock()
		if idle {
			return
		}
	}
	s.mu.Lock()
	dropped := 0
	for _, t := range things {
		if _, ok := s.pending[t]; ok {
			continue
		}
		if len(s.pending) >= s.o.QueueSize {
			dropped++
			continue
		}
		s.pending[t] = struct{}{}
	}
	if dropped > 0 {
		s.all = true
	}
	s.mu.Unlock()
	if dropped > 0 {
		s.mDropped.Add(float64(dropped))
		if now := time.Now().UnixNano(); now-s.lastLog.Load() > int64(10*time.Second) {
			s.lastLog.Store(now)
			s.log.Warn("profile queue full; a full reconcile follows", "queue", s.o.QueueSize, "dropped", dropped)
		}
	}
	s.signal()
}

// ReconcileAll schedules a full reconcile.
func (s *Service) ReconcileAll() {
	s.mu.Lock()
	s.all = true
	s.mu.Unlock()
	s.signal()
}

func (s *Service) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *Service) run() {
	defer close(s.done)
	// Not canceled by Close: the thing being applied is finished (its
	// shadow write and its record go together); loops check s.stop.
	ctx := context.Background()
	tick := time.NewTicker(s.o.Reconcile)
	defer tick.Stop()
	for {
		if !s.loaded.Load() {
			if err := s.load(ctx); err != nil {
				s.mErrors.Inc()
				s.log.Warn("profiles: loading the applied state failed; retrying", "error", err)
			} else {
				s.loaded.Store(true)
			}
		}
		if s.loaded.Load() {
			s.work(ctx)
		}
		select {
		case <-s.stop:
			return
		case <-s.wake:
		case <-tick.C:
			s.ReconcileAll()
		}
	}
}

// work runs a full reconcile if one is due, then the pending things, in
// rounds of 1000.
func (s *Service) work(ctx context.Context) {
	s.mu.Lock()
	all := s.all
	s.all = false
	if all {
		clear(s.pending) // the full reconcile covers them
	}
	var names []string
	for n := range s.pending {
		names = append(names, n)
		delete(s.pending, n)
		if len(names) == 1000 {
			break
		}
	}
	more := len(s.pending) > 0
	s.mu.Unlock()
	if more {
		s.signal()
	}
	if all {
		s.mRuns.WithLabelValues("full").Inc()
		if err := s.reconcile(ctx, nil); err != nil && err != errClosed {
			s.mErrors.Inc()
			s.log.Warn("profiles: full reconcile failed; retried at the next one", "error", err)
			s.mu.Lock()
			s.all = true // retry
			s.mu.Unlock()
		}
		return
	}
	if len(names) > 0 {
		s.mRuns.WithLabelValues("things").Inc()
		if err := s.reconcile(ctx, names); err != nil && err != errClosed {
			s.mErrors.Inc()
			s.log.Warn("profiles: applying to changed things failed", "things", len(names), "error", err)
		}
	}
}

func (s *Service) load(ctx context.Context) error {
	st := map[string]applied{}
	after := ""
	for {
		page, err := s.o.Store.Profiles().ListApplied(ctx, after, 1000)
		if err != nil {
			return err
		}
		for _, a := range page {
			var leaves []Leaf
			if err := json.Unmarshal(a.State, &leaves); err != nil {
				s.log.Warn("profiles: a thing's recorded profile state is unreadable; it is rebuilt", "thing", a.Thing, "error", err)
			}
			st[a.Thing] = applied{profiles: a.Profiles, leaves: leaves}
		}
		if len(page) < 1000 {
			break
		}
		after = page[len(page)-1].Thing
	}
	s.smu.Lock()
	s.state = st
	s.smu.Unlock()
	return nil
}

// profilesAll reads every profile, compiled, in name order.
func (s *Service) profilesAll(ctx context.Context) ([]compiled, error) {
	var out []compiled
	after := ""
	for {
		page, err := s.o.Store.Profiles().List(ctx, after, 1000)
		if err != nil {
			return nil, err
		}
		for _, p := range page {
			leaves, err := ParseDocument(p.Desired, 0)
			if err != nil {
				s.log.Warn("profiles: a stored profile document is unreadable; skipped", "profile", p.Name, "error", err)
				continue
			}
			out = append(out, compiled{p: p, leaves: leaves})
		}
		if len(page) < 1000 {
			return out, nil
		}
		after = page[len(page)-1].Name
	}
}

// members returns the things of p's target among names (nil: all).
func (s *Service) members(ctx context.Context, p store.Profile, names []string) (map[string]struct{}, error) {
	var list []string
	var err error
	switch {
	case p.Query != "":
		if names == nil {
			list, err = s.o.Fleet.Match(ctx, p.Query)
		} else {
			list, err = s.o.Fleet.Filter(ctx, p.Query, names)
		}
	default:
		var dyn bool
		list, dyn, err = s.o.Fleet.Members(ctx, p.Group)
		if err == nil && !dyn {
			q := "groups = '" + p.Group + "'" // a valid name has no quote
			if names == nil {
				list, err = s.o.Fleet.Match(ctx, q)
			} else {
				list, err = s.o.Fleet.Filter(ctx, q, names)
			}
		}
	}
	if err != nil {
		return nil, fmt.Errorf("profile %q: target: %w", p.Name, err)
	}
	set := make(map[string]struct{}, len(list))
	for _, n := range list {
		set[n] = struct{}{}
	}
	return set, nil
}

// reconcile applies the profiles to names (nil: every thing a target
// selects or that has profile state). For changed things (names given)
// the current desired state is read, so that a value edited away from
// its profile's is set again.
func (s *Service) reconcile(ctx context.Context, names []string) error {
	ps, err := s.profilesAll(ctx)
	if err != nil {
		return err
	}
	s.none.Store(len(ps) == 0)
	sets := make([]map[string]struct{}, len(ps))
	for i, p := range ps {
		if sets[i], err = s.members(ctx, p.p, names); err != nil {
			// A target that cannot be resolved now (the index loading, a
			// deleted group) must not remove what the profile set.
			return err
		}
	}
	things := names
	if things == nil {
		seen := map[string]struct{}{}
		for _, set := range sets {
			for n := range set {
				seen[n] = struct{}{}
			}
		}
		s.smu.RLock()
		for n := range s.state {
			seen[n] = struct{}{}
		}
		s.smu.RUnlock()
		for n := range seen {
			things = append(things, n)
		}
		sort.Strings(things)
	}
	check := names != nil
	var firstErr error
	for _, t := range things {
		select {
		case <-s.stop:
			return errClosed
		default:
		}
		var apply []Applying
		var which []string
		for i, p := range ps {
			if _, ok := sets[i][t]; ok {
				apply = append(apply, Applying{Name: p.p.Name, Priority: p.p.Priority, Leaves: p.leaves})
				which = append(which, p.p.Name)
			}
		}
		tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := s.applyThing(tctx, t, which, Merge(apply), check)
		cancel()
		if err != nil && firstErr == nil {
			firstErr = err
		}
	}
	return firstErr
}

var errClosed = errors.New("profiles: closed")

func leavesEqual(a, b []Leaf) bool {
	return slices.EqualFunc(a, b, func(x, y Leaf) bool {
		return x.Profile == y.Profile && slices.Equal(x.Path, y.Path) && bytes.Equal(x.Value, y.Value)
	})
}

// covered reports whether setting want replaces the key p (the same key,
// one above it or one below it).
func covered(want []Leaf, p []string) bool {
	for _, w := range want {
		n := min(len(w.Path), len(p))
		if slices.Equal(w.Path[:n], p[:n]) {
			return true
		}
	}
	return false
}

// state reads a thing's classic shadow: desired and reported (nil when
// there is none).
func (s *Service) shadowState(ctx context.Context, thing string) (desired, reported map[string]any, err error) {
	sh, err := s.o.Store.Shadows().Get(ctx, thing, "")
	if core.IsNotFound(err) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	d, err := shadow.ParseDocument(sh.Document)
	if err != nil {
		return nil, nil, fmt.Errorf("shadow of %q: %w", thing, err)
	}
	return d.Desired, d.Reported, nil
}

// applyThing brings one thing's desired state to want (the merged leaves
// of profiles) and records it.
func (s *Service) applyThing(ctx context.Context, thing string, profiles []string, want []Leaf, check bool) error {
	s.smu.RLock()
	prev, had := s.state[thing]
	s.smu.RUnlock()
	if !had && len(profiles) == 0 {
		return nil
	}
	same := had && slices.Equal(prev.profiles, profiles) && leavesEqual(prev.leaves, want)
	if same && !check {
		return nil
	}
	desired, _, err := s.shadowState(ctx, thing)
	if err != nil {
		return err
	}
	patch := map[string]any{}
	for _, l := range want {
		if cur, ok := lookup(desired, l.Path); !ok || !bytes.Equal(cur, l.Value) {
			setPath(patch, l.Path, l.Value)
		}
	}
	for _, l := range prev.leaves {
		if covered(want, l.Path) {
			continue
		}
		// Removed only while it holds what the profile wrote: a value an
		// operator set since is theirs.
		if cur, ok := lookup(desired, l.Path); ok && bytes.Equal(cur, l.Value) {
			setPath(patch, l.Path, nil)
		}
	}
	pruneEmpty(desired, patch, prev.leaves)
	if len(patch) > 0 && len(profiles) > 0 && !same {
		// Record the keys about to be written first (with those written
		// before), so that a crash between the two writes cannot leave
		// keys no record owns: the next reconcile finishes the job.
		if err := s.record(ctx, thing, profiles, append(slices.Clone(prev.leaves), want...)); err != nil {
			return err
		}
	}
	if len(patch) > 0 {
		body, err := json.Marshal(map[string]any{"state": map[string]any{"desired": patch}})
		if err != nil {
			return err
		}
		if _, err := s.o.Shadows.Update(ctx, thing, "", body); err != nil {
			s.mWrites.WithLabelValues("failed").Inc()
			if core.IsNotFound(err) {
				s.forget(thing)
				return nil
			}
			return fmt.Errorf("update desired state of %q: %w", thing, err)
		}
		s.mWrites.WithLabelValues("applied").Inc()
	}
	if same {
		return nil
	}
	if len(profiles) == 0 {
		if err := s.o.Store.Profiles().DeleteApplied(ctx, thing); err != nil {
			return err
		}
		s.forget(thing)
		return nil
	}
	return s.record(ctx, thing, profiles, want)
}

// record stores what the profiles wrote into a thing's desired state.
func (s *Service) record(ctx context.Context, thing string, profiles []string, leaves []Leaf) error {
	if leaves == nil {
		leaves = []Leaf{}
	}
	b, err := json.Marshal(leaves)
	if err != nil {
		return err
	}
	err = s.o.Store.Profiles().PutApplied(ctx, store.ProfileApplied{Thing: thing, Profiles: profiles, State: b})
	if core.IsNotFound(err) {
		s.forget(thing)
		return nil
	}
	if err != nil {
		return err
	}
	s.smu.Lock()
	s.state[thing] = applied{profiles: profiles, leaves: leaves}
	s.smu.Unlock()
	return nil
}

func (s *Service) forget(thing string) {
	s.smu.Lock()
	delete(s.state, thing)
	s.smu.Unlock()
}

// pruneEmpty replaces, in patch, the removal of the last keys of an
// object with the removal of the object, so that removing a profile's
// wifi.ssid does not leave "wifi": {} behind.
func pruneEmpty(desired, patch map[string]any, removed []Leaf) {
	if len(desired) == 0 || len(removed) == 0 {
		return
	}
	sim, ok := deepCopy(desired).(map[string]any)
	if !ok {
		return
	}
	applyPatch(sim, patch)
	for _, l := range removed {
		for i := 1; i < len(l.Path); i++ {
			m, ok := at(sim, l.Path[:i]).(map[string]any)
			if ok && len(m) == 0 {
				if _, was := at(desired, l.Path[:i]).(map[string]any); was {
					setPath(patch, l.Path[:i], nil)
				}
				break
			}
		}
	}
}

func at(obj map[string]any, path []string) any {
	var cur any = obj
	for _, k := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[k]
	}
	return cur
}

func deepCopy(v any) any {
	switch v := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(v))
		for k, x := range v {
			m[k] = deepCopy(x)
		}
		return m
	case []any:
		a := make([]any, len(v))
		for i, x := range v {
			a[i] = deepCopy(x)
		}
		return a
	}
	return v
}

// applyPatch merges a desired patch into obj as the shadow does: null
// deletes, objects merge, anything else replaces.
func applyPatch(obj, patch map[string]any) {
	for k, v := range patch {
		switch v := v.(type) {
		case nil:
			delete(obj, k)
		case map[string]any:
			sub, ok := obj[k].(map[string]any)
			if !ok {
				sub = map[string]any{}
				obj[k] = sub
			}
			applyPatch(sub, v)
		default:
			obj[k] = v
		}
	}
}
