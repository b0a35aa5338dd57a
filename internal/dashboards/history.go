package dashboards

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/moteiot/mote/internal/store"
)

// The overview's history (GET /api/v1/stats/history): a Sampler records
// one point per interval — messages received, things connected, alarms
// open — in the store (table stats_history), which keeps the last
// Retention (a day) and so survives a restart. The store is the ring:
// every append deletes the points older than the retention, in the same
// transaction.

// Retention is how long the history keeps points.
const Retention = 24 * time.Hour

// MaxHistoryPoints is the most points one history answer holds; a
// window with more (a short --stats-history-interval) is merged into
// this many.
const MaxHistoryPoints = 1440

// ThingCounter counts the things (the registry).
type ThingCounter interface {
	ThingCounts(ctx context.Context) (store.ThingCounts, error)
}

// AlarmCounter counts the open alarms (the alarm service).
type AlarmCounter interface {
	CountOpen(ctx context.Context) (int, error)
}

// MessageCounter is the running count of messages received (the broker).
type MessageCounter interface {
	MessagesReceived() int64
}

// SamplerOptions configure a Sampler.
type SamplerOptions struct {
	Store    store.StatsHistoryStore
	Things   ThingCounter
	Alarms   AlarmCounter // nil: no alarm counts
	Messages MessageCounter
	Interval time.Duration // default 1m
	Logger   *slog.Logger
	Metrics  prometheus.Registerer
}

// Sampler records the history.
type Sampler struct {
	o SamplerOptions

	points, failures prometheus.Counter

	stop, done chan struct{}
	closeOnce  sync.Once

	lastMessages int64
	lastAt       time.Time

	logMu    sync.Mutex
	lastLog  time.Time
	unlogged int
}

// NewSampler returns a Sampler; Start starts it.
func NewSampler(o SamplerOptions) *Sampler {
	if o.Interval <= 0 {
		o.Interval = time.Minute
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	s := &Sampler{o: o, stop: make(chan struct{}), done: make(chan struct{}),
		points: prometheus.NewCounter(prometheus.CounterOpts{Name: "mote_stats_history_points_total",
			Help: "Points the overview's history recorded (one per --stats-history-interval)."}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{Name: "mote_stats_history_failures_total",
			Help: "Points of the overview's history that could not be counted or stored."}),
	}
	if o.Metrics != nil {
		for _, c := range []prometheus.Collector{s.points, s.failures} {
			if err := o.Metrics.Register(c); err != nil {
				var are prometheus.AlreadyRegisteredError
				if !errors.As(err, &are) {
					o.Logger.Warn("stats history metrics", "err", err)
				}
			}
		}
	}
	return s
}

// Start starts sampling: the first point one interval from now.
func (s *Sampler) Start() {
	s.lastMessages, s.lastAt = s.o.Messages.MessagesReceived(), time.Now()
	go s.run()
}

// Close stops sampling; a point being stored finishes first (its store
// calls have a deadline of at most 10 s).
func (s *Sampler) Close() error {
	s.closeOnce.Do(func() { close(s.stop) })
	<-s.done
	return nil
}

func (s *Sampler) run() {
	defer close(s.done)
	t := time.NewTicker(s.o.Interval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case now := <-t.C:
			s.sample(now)
		}
	}
}

// sample records one point.
func (s *Sampler) sample(now time.Time) {
	timeout := min(max(s.o.Interval, time.Second), 10*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	msgs := s.o.Messages.MessagesReceived()
	p := store.StatsPoint{Time: now.UTC().Truncate(time.Millisecond), Interval: now.Sub(s.lastAt), Messages: max(0, msgs-s.lastMessages)}
	s.lastMessages, s.lastAt = msgs, now
	err := func() error {
		c, err := s.o.Things.ThingCounts(ctx)
		if err != nil {
			return err
		}
		p.Connected = c.Connected
		if s.o.Alarms != nil {
			if p.ActiveAlarms, err = s.o.Alarms.CountOpen(ctx); err != nil {
				return err
			}
		}
		return s.o.Store.Append(ctx, p, now.Add(-Retention))
	}()
	if err != nil {
		s.failures.Inc()
		s.logLimited("stats history point not recorded", "err", err)
		return
	}
	s.points.Inc()
}

func (s *Sampler) logLimited(msg string, args ...any) {
	s.logMu.Lock()
	now := time.Now()
	if now.Sub(s.lastLog) < time.Minute {
		s.unlogged++
		s.logMu.Unlock()
		return
	}
	n := s.unlogged
	s.lastLog, s.unlogged = now, 0
	s.logMu.Unlock()
	s.o.Logger.Warn(msg, append(args, "suppressed", n)...)
}

// HistoryPoint is one point of a history answer.
type HistoryPoint struct {
	Time              time.Time
	Messages          int64
	MessagesPerSecond float64
	Connected         int
	ActiveAlarms      int
}

// History returns the points of the last window, oldest first, at most
// MaxHistoryPoints: when there are more, runs of consecutive points are
// merged (messages summed, connected and alarms the highest of the run).
func History(ctx context.Context, st store.StatsHistoryStore, now time.Time, window time.Duration) ([]HistoryPoint, error) {
	return history(ctx, st, now, window, MaxHistoryPoints)
}

func history(ctx context.Context, st store.StatsHistoryStore, now time.Time, window time.Duration, maxPoints int) ([]HistoryPoint, error) {
	pts, err := st.Since(ctx, now.Add(-window), 0)
	if err != nil {
		return nil, err
	}
	per := max((len(pts)+maxPoints-1)/maxPoints, 1)
	out := make([]HistoryPoint, 0, min(len(pts), maxPoints))
	for i := 0; i < len(pts); i += per {
		var (
			h    HistoryPoint
			ival time.Duration
		)
		for _, p := range pts[i:min(i+per, len(pts))] {
			h.Time = p.Time
			h.Messages += p.Messages
			h.Connected = max(h.Connected, p.Connected)
			h.ActiveAlarms = max(h.ActiveAlarms, p.ActiveAlarms)
			ival += p.Interval
		}
		if ival > 0 {
			h.MessagesPerSecond = float64(h.Messages) / ival.Seconds()
		}
		out = append(out, h)
	}
	return out, nil
}
