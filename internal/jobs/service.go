// Package jobs is Mote's jobs: an operator describes work for a set of
// things (a job document, targets, a rollout rate, abort, timeout and
// retry criteria); Mote creates one execution per thing, releases them at
// the rollout's rate, and devices follow the AWS IoT Jobs device API over
// MQTT ($aws/things/{thing}/jobs/..., the same under $mote/things/...) or
// the HTTP device API. See docs/jobs.md.
//
// Nothing runs on the publish path: the bus handler only hands a request
// to a bounded queue (a full queue is answered RequestThrottled). Workers
// answer requests, one shard of things each (a thing's requests are
// answered in order); one scheduler goroutine releases executions, checks
// abort criteria, completes jobs and times executions out; a notifier
// publishes notify and notify-next when a thing's pending executions
// change. All state is in the store (store.JobStore): the rollout's
// progress is written with every release, so a restart resumes a job
// where it was, at its rate, and releases nothing twice.
package jobs

import (
	"context"
	"encoding/json"
	"hash/fnv"
	"log/slog"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/moteiot/mote/internal/bus"
	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/store"
)

// Publisher publishes answers, notifications and events; *broker.Broker
// satisfies it.
type Publisher interface {
	Publish(topic string, payload []byte, retain bool, qos byte) error
}

// Things is the registry as jobs needs it (*registry.Registry).
type Things interface {
	GetThing(ctx context.Context, name string) (store.Thing, error)
	ListThings(ctx context.Context, f store.ThingFilter) ([]store.Thing, string, error)
}

// Selector resolves a fleet query to thing names; internal/fleetquery
// implements it (wired by the daemon). Match returns core.Invalid for a
// query with a syntax error.
type Selector interface {
	Match(ctx context.Context, query string) ([]string, error)
}

// GroupMembers is implemented by a Selector that also knows the members
// of dynamic groups (internal/fleetindex): Members returns them, and
// whether name is a dynamic group. A target group that is not one is read
// from the registry (a static group).
type GroupMembers interface {
	Members(ctx context.Context, name string) ([]string, bool, error)
}

// Filterer is what a Selector may also do (fleetindex.Index does):
// return those of names that match query. With it, continuous jobs pick
// up things that later match a query target.
type Filterer interface {
	Filter(ctx context.Context, query string, names []string) ([]string, error)
}

// DynamicMember is what a Selector may also do (fleetindex.Index does):
// tell whether thing is now a member of the dynamic group name (false for
// a static group). With it, continuous jobs follow dynamic target groups.
type DynamicMember interface {
	InGroup(name, thing string) bool
}

// Options configure a Service.
type Options struct {
	Store     store.JobStore // required
	Things    Things         // required
	Publisher Publisher      // nil: nothing is published (tests)
	Selector  Selector       // nil: query targets are refused
	Artifacts ArtifactResolver
	// QueueSize bounds the device requests waiting for a worker
	// (default 10000); Workers answer them (default 4).
	QueueSize int
	Workers   int
	// Interval is the scheduler's tick (default 1s).
	Interval time.Duration
	// MaxTargets bounds the things of one job (default 100000).
	MaxTargets int
	// MaxDocumentSize bounds a job document in bytes (default 32 KiB).
	MaxDocumentSize int
	// ReleaseBatch bounds the executions one job releases per tick
	// (default 10000).
	ReleaseBatch int
	Logger       *slog.Logger
	Metrics      prometheus.Registerer
	Now          func() time.Time // default time.Now
}

// Info is a job as the API shows it.
type Info struct {
	Spec
	Status      string
	ReasonCode  string
	Comment     string
	Released    int64
	CreatedAt   time.Time
	UpdatedAt   time.Time
	CompletedAt *time.Time
	Counts      map[string]int // by execution status; nil in lists
}

type jobEntry struct {
	job  store.Job
	spec Spec
	doc  []byte
}

type deviceMsg struct {
	prefix string
	req    DeviceRequest
}

// Service owns jobs.
type Service struct {
	opts Options
	st   store.JobStore
	log  *slog.Logger
	now  func() time.Time

	mu     sync.RWMutex // guards closed and unsubs; HandleMessage holds it shared
	closed bool
	unsubs []func()

	// schedMu serializes the scheduler's tick with cancels and deletes:
	// both change a job and its entry (lock order: schedMu, then
	// activeMu).
	schedMu  sync.Mutex
	activeMu sync.Mutex
	active   map[string]*jobEntry // jobs IN_PROGRESS

	shards  []chan deviceMsg
	rejects chan deviceMsg
	notify  *thingSet
	members *thingSet
	kick    chan struct{}

	sigMu sync.Mutex
	sigs  map[string]notifySig

	m       *metrics
	limiter logLimiter

	stop chan struct{}
	wg   sync.WaitGroup
}

type notifySig struct{ notify, next string }

// New returns a Service; Start runs it.
func New(o Options) *Service {
	if o.QueueSize <= 0 {
		o.QueueSize = 10_000
	}
	if o.Workers <= 0 {
		o.Workers = 4
	}
	if o.Interval <= 0 {
		o.Interval = time.Second
	}
	if o.MaxTargets <= 0 {
		o.MaxTargets = 100_000
	}
	if o.MaxDocumentSize <= 0 {
		o.MaxDocumentSize = 32 * 1024
	}
	if o.ReleaseBatch <= 0 {
		o.ReleaseBatch = 10_000
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	s := &Service{
		opts: o, st: o.Store, log: o.Logger, now: func() time.Time { return o.Now().UTC().Truncate(time.Millisecond) },
		active:  map[string]*jobEntry{},
		rejects: make(chan deviceMsg, 256),
		notify:  newThingSet(max(o.MaxTargets, 100_000)),
		members: newThingSet(100_000),
		kick:    make(chan struct{}, 1),
		sigs:    map[string]notifySig{},
		m:       newMetrics(o.Metrics),
		stop:    make(chan struct{}),
	}
	per := max(o.QueueSize/o.Workers, 1)
	for range o.Workers {
		s.shards = append(s.shards, make(chan deviceMsg, per))
	}
	return s
}

// Attach subscribes the device API to the bus.
func (s *Service) Attach(b bus.Bus) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range Filters {
		s.unsubs = append(s.unsubs, b.Subscribe(f, s.HandleMessage))
	}
}

// Start loads the jobs in progress and runs the workers, the scheduler,
// the notifier and the membership worker.
func (s *Service) Start(ctx context.Context) error {
	after := ""
	for {
		list, err := s.st.List(ctx, after, 1000)
		if err != nil {
			return err
		}
		for _, j := range list {
			if j.Status != store.JobInProgress {
				continue
			}
			e, err := entryOf(j)
			if err != nil {
				s.log.Error("job has an unreadable spec; not scheduled", "job", j.ID, "error", err)
				continue
			}
			s.active[j.ID] = e
		}
		if len(list) < 1000 {
			break
		}
		after = list[len(list)-1].ID
	}
	for _, ch := range s.shards {
		s.wg.Add(1)
		go func() { defer s.wg.Done(); s.deviceLoop(ch) }()
	}
	s.wg.Add(4)
	go func() { defer s.wg.Done(); s.rejectLoop() }()
	go func() { defer s.wg.Done(); s.schedulerLoop() }()
	go func() { defer s.wg.Done(); s.notifyLoop() }()
	go func() { defer s.wg.Done(); s.membersLoop() }()
	return nil
}

// Close stops taking requests and waits for the goroutines. It is safe to
// call twice.
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
	close(s.stop)
	s.wg.Wait()
	return nil
}

func entryOf(j store.Job) (*jobEntry, error) {
	var sp Spec
	if err := json.Unmarshal(j.Spec, &sp); err != nil {
		return nil, err
	}
	return &jobEntry{job: j, spec: sp, doc: documentOf(sp)}, nil
}

// entry returns a job with its spec: the active one, or read from the
// store.
func (s *Service) entry(ctx context.Context, id string) (*jobEntry, error) {
	s.activeMu.Lock()
	e, ok := s.active[id]
	s.activeMu.Unlock()
	if ok {
		return e, nil
	}
	j, err := s.st.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	return entryOf(j)
}

// --- the operator's side ---

// Create validates and stores a job with an execution per target thing
// (in one transaction) and schedules it.
func (s *Service) Create(ctx context.Context, sp Spec) (Info, error) {
	if err := sp.Validate(s.opts.MaxDocumentSize); err != nil {
		return Info{}, err
	}
	doc := documentOf(sp)
	if names := artifactNames(doc); len(names) > 0 {
		if s.opts.Artifacts == nil {
			return Info{}, core.Invalid("document", "the document names artifacts (${mote:artifact:...}) and this server has no artifact store")
		}
		for _, n := range names {
			if _, err := s.opts.Artifacts.Resolve(ctx, n, ""); err != nil {
				if core.IsNotFound(err) {
					return Info{}, core.Invalid("document", "the document names artifact %q, which does not exist", n)
				}
				return Info{}, err
			}
		}
	}
	things, err := s.resolveTargets(ctx, sp.Targets)
	if err != nil {
		return Info{}, err
	}
	if len(things) == 0 && sp.TargetSelection == Snapshot {
		return Info{}, core.Invalid("targets", "the targets match no thing")
	}
	spec, err := json.Marshal(sp)
	if err != nil {
		return Info{}, err
	}
	now := s.now()
	j := store.Job{ID: sp.JobID, Description: sp.Description, Status: store.JobInProgress, Continuous: sp.TargetSelection == Continuous,
		Spec: spec, CreatedAt: now, UpdatedAt: now, ReleasedAt: now.Add(-s.firstInterval(sp))}
	j, n, err := s.st.Create(ctx, j, things)
	if err != nil {
		return Info{}, err
	}
	if n < len(things) {
		// A listed thing does not exist (or a member was deleted
		// meanwhile): take the job back and say which.
		if err := s.st.Delete(ctx, j.ID); err != nil {
			return Info{}, err
		}
		return Info{}, s.missingThing(ctx, sp.Targets.Things)
	}
	e := &jobEntry{job: j, spec: sp, doc: doc}
	s.activeMu.Lock()
	s.active[j.ID] = e
	s.activeMu.Unlock()
	s.m.jobs.WithLabelValues("created").Inc()
	s.jobEvent(e.job, "created")
	s.wake()
	return s.Get(ctx, j.ID)
}

// missingThing returns the error naming a listed thing that does not
// exist.
func (s *Service) missingThing(ctx context.Context, names []string) error {
	for _, n := range names {
		if _, err := s.opts.Things.GetThing(ctx, n); core.IsNotFound(err) {
			return core.Invalid("targets.things", "targets.things: thing %q does not exist", n)
		} else if err != nil {
			return err
		}
	}
	return core.Conflict("a target thing was deleted while the job was created; try again")
}

// firstInterval backdates a new job's rollout clock by one release
// interval, so that the first execution is released at once.
func (s *Service) firstInterval(sp Spec) time.Duration {
	r := rateOf(sp, 0, 0)
	if r == 0 {
		return 0
	}
	return time.Duration(float64(time.Minute) / r)
}

// resolveTargets returns the things of targets, each once, in the order
// given: things, then the members of each group, then the query's.
func (s *Service) resolveTargets(ctx context.Context, t Targets) ([]string, error) {
	seen := map[string]bool{}
	var out []string
	add := func(n string) error {
		if seen[n] {
			return nil
		}
		if len(out) >= s.opts.MaxTargets {
			return core.Errorf(core.KindTooLarge, "the targets select more than %d things (--job-max-targets)", s.opts.MaxTargets)
		}
		seen[n] = true
		out = append(out, n)
		return nil
	}
	// Listed things are checked by the store, which skips missing ones
	// (Create compares the count; missingThing names one).
	for _, n := range t.Things {
		if err := add(n); err != nil {
			return nil, err
		}
	}
	for _, g := range t.Groups {
		if gm, ok := s.opts.Selector.(GroupMembers); ok {
			members, dynamic, err := gm.Members(ctx, g)
			if err != nil {
				return nil, err
			}
			if dynamic {
				for _, n := range members {
					if err := add(n); err != nil {
						return nil, err
					}
				}
				continue
			}
		}
		after := ""
		for {
			list, next, err := s.opts.Things.ListThings(ctx, store.ThingFilter{Group: g, After: after, Limit: 1000})
			if err != nil {
				return nil, err
			}
			for _, th := range list {
				if err := add(th.Name); err != nil {
					return nil, err
				}
			}
			if next == "" {
				break
			}
			after = next
		}
	}
	if t.Query != "" {
		if s.opts.Selector == nil {
			return nil, core.Invalid("targets.query", "query targets need the fleet index, which this server does not have yet")
		}
		names, err := s.opts.Selector.Match(ctx, t.Query)
		if err != nil {
			return nil, err
		}
		for _, n := range names {
			if err := add(n); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// Get returns a job with its counts per execution status.
func (s *Service) Get(ctx context.Context, id string) (Info, error) {
	j, err := s.st.Get(ctx, id)
	if err != nil {
		return Info{}, err
	}
	info, err := infoOf(j)
	if err != nil {
		return Info{}, err
	}
	counts, err := s.st.Counts(ctx, id)
	if err != nil {
		return Info{}, err
	}
	info.Counts = map[string]int{}
	for _, st := range AllStatuses {
		info.Counts[st] = counts[st]
	}
	return info, nil
}

// AllStatuses are the execution statuses, SCHEDULED (not yet released)
// first.
var AllStatuses = []string{store.JobExecScheduled, store.JobExecQueued, store.JobExecInProgress, store.JobExecSucceeded,
	store.JobExecFailed, store.JobExecTimedOut, store.JobExecRejected, store.JobExecRemoved, store.JobExecCanceled}

func infoOf(j store.Job) (Info, error) {
	var sp Spec
	if err := json.Unmarshal(j.Spec, &sp); err != nil {
		return Info{}, core.Errorf(core.KindInternal, "job %q has an unreadable spec", j.ID)
	}
	return Info{Spec: sp, Status: j.Status, ReasonCode: j.ReasonCode, Comment: j.Comment, Released: j.Released,
		CreatedAt: j.CreatedAt, UpdatedAt: j.UpdatedAt, CompletedAt: j.CompletedAt}, nil
}

// List returns jobs ordered by id.
func (s *Service) List(ctx context.Context, after string, limit int) ([]Info, error) {
	list, err := s.st.List(ctx, after, limit)
	if err != nil {
		return nil, err
	}
	out := make([]Info, 0, len(list))
	for _, j := range list {
		i, err := infoOf(j)
		if err != nil {
			return nil, err
		}
		out = append(out, i)
	}
	return out, nil
}

// Executions lists a job's executions by thing.
func (s *Service) Executions(ctx context.Context, id, after string, limit int) ([]store.JobExecution, error) {
	if _, err := s.st.Get(ctx, id); err != nil {
		return nil, err
	}
	return s.st.Executions(ctx, store.JobExecutionFilter{JobID: id, After: after, Limit: limit})
}

// ThingExecutions lists a thing's executions, oldest first.
func (s *Service) ThingExecutions(ctx context.Context, thing string, limit int) ([]store.JobExecution, error) {
	return s.st.Executions(ctx, store.JobExecutionFilter{Thing: thing, Limit: limit})
}

// Cancel cancels a job in progress: its executions not yet started are
// CANCELED, and with force those IN_PROGRESS too. reasonCode and comment
// are kept with the job.
func (s *Service) Cancel(ctx context.Context, id string, force bool, reasonCode, comment string) (Info, error) {
	e, err := s.entry(ctx, id)
	if err != nil {
		return Info{}, err
	}
	s.schedMu.Lock()
	if s.isActive(id) {
		err = s.cancel(ctx, e, force, reasonCode, comment, "canceled")
	} else {
		err = core.Conflict("job %q is not IN_PROGRESS", id)
		if j, gerr := s.st.Get(ctx, id); gerr == nil {
			err = core.Conflict("job %q is %s, not IN_PROGRESS", id, j.Status)
		}
	}
	s.schedMu.Unlock()
	if err != nil {
		return Info{}, err
	}
	return s.Get(ctx, id)
}

func (s *Service) isActive(id string) bool {
	s.activeMu.Lock()
	defer s.activeMu.Unlock()
	_, ok := s.active[id]
	return ok
}

// cancel cancels a job in progress; called with schedMu held.
func (s *Service) cancel(ctx context.Context, e *jobEntry, force bool, reasonCode, comment, event string) error {
	from := []string{store.JobExecScheduled, store.JobExecQueued}
	if force {
		from = append(from, store.JobExecInProgress)
	}
	now := s.now()
	j := e.job
	j.Status, j.ReasonCode, j.Comment, j.CompletedAt = store.JobCanceled, reasonCode, comment, &now
	// The job first, so that the scheduler releases nothing more.
	s.activeMu.Lock()
	delete(s.active, j.ID)
	s.activeMu.Unlock()
	j, err := s.st.Update(ctx, j)
	if err != nil {
		return err
	}
	things, err := s.st.TransitionAll(ctx, j.ID, from, store.JobExecCanceled, now)
	if err != nil {
		return err
	}
	s.m.executions.WithLabelValues(store.JobExecCanceled).Add(float64(len(things)))
	s.m.jobs.WithLabelValues(event).Inc()
	s.notifyThings(things)
	s.jobEvent(j, event)
	return nil
}

// Delete deletes a job and its executions. A job in progress needs force
// (its executions are canceled first).
func (s *Service) Delete(ctx context.Context, id string, force bool) error {
	e, err := s.entry(ctx, id)
	if err != nil {
		return err
	}
	s.schedMu.Lock()
	if s.isActive(id) {
		if !force {
			s.schedMu.Unlock()
			return core.Conflict("job %q is in progress: cancel it first, or delete with force=true", id)
		}
		if err := s.cancel(ctx, e, true, "deleted", "", "canceled"); err != nil {
			s.schedMu.Unlock()
			return err
		}
	}
	s.schedMu.Unlock()
	if err := s.st.Delete(ctx, id); err != nil {
		return err
	}
	s.m.jobs.WithLabelValues("deleted").Inc()
	s.jobEvent(e.job, "deleted")
	return nil
}

// ThingChanged tells the service that a thing was created or changed
// (its groups may have): continuous jobs pick it up or drop it. It only
// enqueues.
func (s *Service) ThingChanged(thing string) {
	if !s.members.add(thing) {
		s.m.dropped.WithLabelValues("membership_queue_full").Inc()
	}
}

// ThingsChanged tells the service that these things changed in a way a
// fleet query may see (the fleet index's change feed,
// fleetindex.Index.Watch): continuous jobs with a query target, or with
// target groups that may be dynamic, pick them up or drop them. It only
// enqueues, and only while such a job runs.
func (s *Service) ThingsChanged(things []string) {
	s.activeMu.Lock()
	found := false
	for _, e := range s.active {
		if e.job.Continuous && (e.spec.Targets.Query != "" || len(e.spec.Targets.Groups) > 0) {
			found = true
			break
		}
	}
	s.activeMu.Unlock()
	if !found {
		return
	}
	for _, t := range things {
		s.ThingChanged(t)
	}
}

// --- rollout ---

// rateOf is the release rate in executions per minute (0: unlimited),
// from what the job has done so far.
func rateOf(sp Spec, released int64, succeeded int) float64 {
	r := sp.Rollout
	if r == nil {
		return 0
	}
	if e := r.ExponentialRate; e != nil {
		var k int64
		if c := e.RateIncreaseCriteria.NumberOfNotifiedThings; c > 0 {
			k = released / int64(c)
		} else if c := e.RateIncreaseCriteria.NumberOfSucceededThings; c > 0 {
			k = int64(succeeded / c)
		}
		limit := float64(r.MaximumPerMinute)
		if limit == 0 {
			limit = MaxPerMinute
		}
		return math.Min(float64(e.BaseRatePerMinute)*math.Pow(e.IncrementFactor, float64(min(k, 64))), limit)
	}
	return float64(r.MaximumPerMinute)
}

func (s *Service) wake() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

func (s *Service) schedulerLoop() {
	t := time.NewTicker(s.opts.Interval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		case <-s.kick:
		}
		s.Tick(context.Background())
	}
}

// Tick runs the scheduler once: releases what each job's rate allows,
// aborts and completes jobs, times executions out. The scheduler calls
// it every Interval; tests and benchmarks may call it directly.
func (s *Service) Tick(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	s.schedMu.Lock()
	defer s.schedMu.Unlock()
	s.activeMu.Lock()
	list := make([]*jobEntry, 0, len(s.active))
	for _, e := range s.active {
		list = append(list, e)
	}
	s.activeMu.Unlock()
	for _, e := range list {
		if err := s.tickJob(ctx, e); err != nil {
			s.limiter.log(s.log, "tick", "job scheduling failed; retrying", "job", e.job.ID, "error", err)
		}
	}
	if err := s.timeouts(ctx); err != nil {
		s.limiter.log(s.log, "timeouts", "job timeouts failed; retrying", "error", err)
	}
}

func (s *Service) tickJob(ctx context.Context, e *jobEntry) error {
	counts, err := s.st.Counts(ctx, e.job.ID)
	if err != nil {
		return err
	}
	if counts[store.JobExecScheduled] > 0 {
		now := s.now()
		rate := rateOf(e.spec, e.job.Released, counts[store.JobExecSucceeded])
		n, clock := s.opts.ReleaseBatch, now
		if rate > 0 {
			per := time.Duration(float64(time.Minute) / rate)
			clock = e.job.ReleasedAt
			if now.Sub(clock) > time.Minute {
				clock = now.Add(-time.Minute) // at most a minute's worth after a pause
			}
			n = min(int(now.Sub(clock)/per), s.opts.ReleaseBatch)
			clock = clock.Add(time.Duration(n) * per)
		}
		if n > 0 {
			rel, err := s.st.Release(ctx, e.job.ID, n, now, clock)
			if err != nil {
				return err
			}
			e.job.Released += int64(len(rel))
			e.job.ReleasedAt = clock
			s.m.executions.WithLabelValues(store.JobExecQueued).Add(float64(len(rel)))
			things := make([]string, len(rel))
			for i, x := range rel {
				things[i] = x.Thing
			}
			s.notifyThings(things)
			counts[store.JobExecScheduled] -= len(rel)
			counts[store.JobExecQueued] += len(rel)
		}
	}
	// Abort criteria.
	if a := e.spec.Abort; a != nil {
		executed := counts[store.JobExecSucceeded] + counts[store.JobExecFailed] + counts[store.JobExecRejected] + counts[store.JobExecTimedOut]
		for _, c := range a.Criteria {
			failed := 0
			for _, st := range []string{store.JobExecFailed, store.JobExecRejected, store.JobExecTimedOut} {
				if matches(c.FailureType, st) {
					failed += counts[st]
				}
			}
			if executed >= c.MinNumberOfExecutedThings && float64(failed)*100 >= c.ThresholdPercentage*float64(executed) {
				comment := c.FailureType + " executions reached the abort threshold"
				s.log.Info("job aborted", "job", e.job.ID, "failureType", c.FailureType, "failed", failed, "executed", executed)
				return s.cancel(ctx, e, false, "ABORTED", comment, "aborted")
			}
		}
	}
	if !e.job.Continuous && counts[store.JobExecScheduled]+counts[store.JobExecQueued]+counts[store.JobExecInProgress] == 0 {
		now := s.now()
		j := e.job
		j.Status, j.CompletedAt = store.JobCompleted, &now
		s.activeMu.Lock()
		delete(s.active, j.ID)
		s.activeMu.Unlock()
		j, err := s.st.Update(ctx, j)
		if err != nil {
			return err
		}
		s.m.jobs.WithLabelValues("completed").Inc()
		s.jobEvent(j, "completed")
	}
	return nil
}

// timeouts moves IN_PROGRESS executions past their deadline to TIMED_OUT
// (and retries them when the job says so).
func (s *Service) timeouts(ctx context.Context) error {
	due, err := s.st.TimedOut(ctx, s.now(), 1000)
	if err != nil {
		return err
	}
	for _, x := range due {
		n := x
		n.Status, n.TimeoutAt, n.LastUpdatedAt = store.JobExecTimedOut, nil, s.now()
		got, err := s.st.UpdateExecution(ctx, n, x.VersionNumber)
		if err != nil {
			if core.KindOf(err) == core.KindConflict {
				continue // the device updated it meanwhile
			}
			return err
		}
		s.m.executions.WithLabelValues(store.JobExecTimedOut).Inc()
		s.executionEvent(got)
		if e, err := s.entry(ctx, got.JobID); err == nil {
			s.retry(ctx, e, got)
		}
		s.notifyThings([]string{got.Thing})
	}
	return nil
}

// retry queues a failed or timed-out execution again if the job's retry
// criteria allow another attempt (Retries counts them, over all failure
// types).
func (s *Service) retry(ctx context.Context, e *jobEntry, x store.JobExecution) {
	if e.spec.Retry == nil || e.job.Status != store.JobInProgress {
		return
	}
	allowed := -1
	for _, c := range e.spec.Retry.Criteria {
		if c.FailureType == FailureAll && (x.Status == store.JobExecFailed || x.Status == store.JobExecTimedOut) || c.FailureType == x.Status {
			allowed = max(allowed, c.NumberOfRetries)
		}
	}
	if x.Retries >= allowed {
		return
	}
	now := s.now()
	n := x
	n.Status, n.Retries, n.ExecutionNumber = store.JobExecQueued, x.Retries+1, x.ExecutionNumber+1
	n.QueuedAt, n.StartedAt, n.TimeoutAt, n.StatusDetails, n.LastUpdatedAt = &now, nil, nil, nil, now
	got, err := s.st.UpdateExecution(ctx, n, x.VersionNumber)
	if err != nil {
		if core.KindOf(err) != core.KindConflict {
			s.limiter.log(s.log, "retry", "job retry failed", "job", x.JobID, "thing", x.Thing, "error", err)
		}
		return
	}
	s.m.executions.WithLabelValues("retried").Inc()
	s.executionEvent(got)
}

// --- continuous jobs ---

func (s *Service) membersLoop() {
	for {
		select {
		case <-s.stop:
			return
		case <-s.members.signal:
		}
		for _, thing := range s.members.take(1000) {
			if err := s.membership(context.Background(), thing); err != nil {
				s.limiter.log(s.log, "membership", "continuous job membership failed", "thing", thing, "error", err)
			}
		}
		if s.members.len() > 0 {
			s.members.poke()
		}
	}
}

func (s *Service) membership(ctx context.Context, thing string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	s.activeMu.Lock()
	var list []*jobEntry
	for _, e := range s.active {
		if e.job.Continuous {
			list = append(list, e)
		}
	}
	s.activeMu.Unlock()
	if len(list) == 0 {
		return nil
	}
	th, err := s.opts.Things.GetThing(ctx, thing)
	if core.IsNotFound(err) {
		return nil // deleted: its executions went with it
	}
	if err != nil {
		return err
	}
	for _, e := range list {
		in := slices.Contains(e.spec.Targets.Things, thing)
		for _, g := range th.Groups {
			in = in || slices.Contains(e.spec.Targets.Groups, g)
		}
		if dm, ok := s.opts.Selector.(DynamicMember); ok {
			for _, g := range e.spec.Targets.Groups {
				in = in || dm.InGroup(g, thing)
			}
		}
		if q := e.spec.Targets.Query; !in && q != "" {
			if f, ok := s.opts.Selector.(Filterer); ok {
				m, err := f.Filter(ctx, q, []string{thing})
				if err != nil {
					return err
				}
				in = len(m) > 0
			}
		}
		x, err := s.st.Execution(ctx, e.job.ID, thing)
		switch {
		case core.IsNotFound(err) && in:
			if _, err := s.st.AddExecutions(ctx, e.job.ID, []string{thing}); err != nil {
				return err
			}
			s.wake()
		case err != nil && !core.IsNotFound(err):
			return err
		case err == nil && in && x.Status == store.JobExecRemoved:
			n := x
			n.Status, n.QueuedAt = store.JobExecScheduled, nil
			if _, err := s.st.UpdateExecution(ctx, n, x.VersionNumber); err != nil && core.KindOf(err) != core.KindConflict {
				return err
			}
			s.wake()
		case err == nil && !in && (x.Status == store.JobExecScheduled || x.Status == store.JobExecQueued):
			n := x
			n.Status = store.JobExecRemoved
			got, err := s.st.UpdateExecution(ctx, n, x.VersionNumber)
			if err != nil && core.KindOf(err) != core.KindConflict {
				return err
			}
			if err == nil {
				s.m.executions.WithLabelValues(store.JobExecRemoved).Inc()
				s.executionEvent(got)
				s.notifyThings([]string{thing})
			}
		}
	}
	return nil
}

// --- metrics and rate-limited logs ---

type metrics struct {
	requests   *prometheus.CounterVec
	dropped    *prometheus.CounterVec
	executions *prometheus.CounterVec
	jobs       *prometheus.CounterVec
}

func newMetrics(r prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mote_job_device_requests_total",
			Help: "Job requests of devices (MQTT and HTTP), by operation and result (accepted, rejected).",
		}, []string{"op", "result"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mote_job_requests_dropped_total",
			Help: "Job requests and notifications not handled, by reason (queue_full: answered RequestThrottled, reject_queue_full, wrong_thing, closed, notify_queue_full, membership_queue_full).",
		}, []string{"reason"}),
		executions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mote_job_executions_total",
			Help: "Job executions that reached a status (QUEUED when released, retried when queued again).",
		}, []string{"status"}),
		jobs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mote_jobs_total",
			Help: "Jobs by event (created, canceled, aborted, completed, deleted).",
		}, []string{"event"}),
	}
	for _, r := range []string{"queue_full", "reject_queue_full", "wrong_thing", "closed", "notify_queue_full", "membership_queue_full"} {
		m.dropped.WithLabelValues(r)
	}
	for _, e := range []string{"created", "canceled", "aborted", "completed", "deleted"} {
		m.jobs.WithLabelValues(e)
	}
	if r != nil {
		r.MustRegister(m.requests, m.dropped, m.executions, m.jobs)
	}
	return m
}

// logLimiter logs a kind of message at most once per 10 seconds.
type logLimiter struct {
	mu   sync.Mutex
	last map[string]time.Time
	hush atomic.Int64
}

func (l *logLimiter) log(log *slog.Logger, kind, msg string, args ...any) {
	l.mu.Lock()
	if l.last == nil {
		l.last = map[string]time.Time{}
	}
	now := time.Now()
	if now.Sub(l.last[kind]) < 10*time.Second {
		l.mu.Unlock()
		l.hush.Add(1)
		return
	}
	l.last[kind] = now
	l.mu.Unlock()
	log.Warn(msg, append(args, "suppressed", l.hush.Swap(0))...)
}

// thingSet is a bounded set of thing names waiting for work: a name is
// queued once however often it is added.
type thingSet struct {
	mu     sync.Mutex
	limit  int
	m      map[string]struct{}
	order  []string
	signal chan struct{}
}

func newThingSet(limit int) *thingSet {
	return &thingSet{limit: limit, m: map[string]struct{}{}, signal: make(chan struct{}, 1)}
}

// add queues name; false when the set is full.
func (t *thingSet) add(name string) bool {
	t.mu.Lock()
	if _, ok := t.m[name]; ok {
		t.mu.Unlock()
		return true
	}
	if len(t.m) >= t.limit {
		t.mu.Unlock()
		return false
	}
	t.m[name] = struct{}{}
	t.order = append(t.order, name)
	t.mu.Unlock()
	t.poke()
	return true
}

func (t *thingSet) poke() {
	select {
	case t.signal <- struct{}{}:
	default:
	}
}

func (t *thingSet) take(n int) []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	n = min(n, len(t.order))
	out := slices.Clone(t.order[:n])
	t.order = t.order[n:]
	for _, x := range out {
		delete(t.m, x)
	}
	if len(t.order) == 0 {
		t.order = nil
	}
	return out
}

func (t *thingSet) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.order)
}

func shardOf(thing string, n int) int {
	h := fnv.New32a()
	h.Write([]byte(thing))
	return int(h.Sum32() % uint32(n))
}
