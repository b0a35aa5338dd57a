// Package dashboards keeps the console's dashboards (docs/dashboards.md):
// named documents of widgets (time-series chart, latest values, gauge,
// map, alarm list, command button) placed on a 12-column grid.
//
// The service checks every document strictly (Parse: unknown fields,
// types, grid bounds, sizes, each error naming its JSON path), stores it
// through store.DashboardStore as one JSON text, and versions it: each
// update increments the version, and an update or delete that names an
// older version is refused (ErrStale, 412 at the HTTP edge), so two
// people editing one dashboard do not silently overwrite each other.
//
// A dashboard only describes what to show; the console fetches the data
// itself from the documented REST API.
package dashboards

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/store"
)

// ErrStale is the cause (errors.Is) of the conflict returned when an
// update or delete names a version that is not the dashboard's.
var ErrStale = store.ErrStaleVersion

// Dashboard is a stored dashboard.
type Dashboard struct {
	Name      string
	Title     string
	Widgets   []Widget
	Version   int64
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Options configure a Service.
type Options struct {
	Store         store.DashboardStore
	Limits        Limits
	MaxDashboards int // dashboards on the server (default 1000)
	Logger        *slog.Logger
	Metrics       prometheus.Registerer // may be nil
}

// Service keeps dashboards.
type Service struct {
	st      store.DashboardStore
	lim     Limits
	max     int
	log     *slog.Logger
	refused *prometheus.CounterVec

	logMu    sync.Mutex
	lastLog  time.Time
	unlogged int
}

// New returns a Service.
func New(o Options) *Service {
	if o.MaxDashboards <= 0 {
		o.MaxDashboards = 1000
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	s := &Service{st: o.Store, lim: o.Limits.withDefaults(), max: o.MaxDashboards, log: o.Logger,
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mote_dashboards_refused_total",
			Help: "Dashboard writes refused, by reason: invalid (a bad document), too_large (--dashboard-max-size), limit (--max-dashboards), stale (an older version).",
		}, []string{"reason"})}
	for _, r := range []string{"invalid", "too_large", "limit", "stale"} {
		s.refused.WithLabelValues(r)
	}
	if o.Metrics != nil {
		if err := o.Metrics.Register(s.refused); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				s.refused = are.ExistingCollector.(*prometheus.CounterVec)
			}
		}
	}
	return s
}

// Limits returns the document limits in force.
func (s *Service) Limits() Limits { return s.lim }

// Parse checks a document (a POST or PUT body) against the limits; a
// refusal is counted.
func (s *Service) Parse(doc []byte) (Document, error) { return s.ParseNamed(doc, "") }

// ParseNamed is Parse for the dashboard name (a PUT body, whose name is
// optional).
func (s *Service) ParseNamed(doc []byte, name string) (Document, error) {
	d, err := parse(doc, s.lim, name)
	if err != nil {
		if core.KindOf(err) == core.KindTooLarge {
			s.refuse("too_large", err)
		} else {
			s.refuse("invalid", err)
		}
	}
	return d, err
}

// TooLarge returns (and counts) the refusal of a document of size bytes
// (-1: unknown, larger than the limit).
func (s *Service) TooLarge(size int64) error {
	var err error
	if size < 0 {
		err = core.Errorf(core.KindTooLarge, "the dashboard document is larger than %d bytes (--dashboard-max-size)", s.lim.MaxSize)
	} else {
		err = core.Errorf(core.KindTooLarge, "the dashboard document is %d bytes, more than %d (--dashboard-max-size)", size, s.lim.MaxSize)
	}
	s.refuse("too_large", err)
	return err
}

// Create stores a new dashboard at version 1.
func (s *Service) Create(ctx context.Context, d Document) (Dashboard, error) {
	row, err := toRow(d)
	if err != nil {
		return Dashboard{}, err
	}
	out, err := s.st.Create(ctx, row, s.max)
	if err != nil {
		if core.KindOf(err) == core.KindConflict && !errors.Is(err, store.ErrStaleVersion) {
			if _, gerr := s.st.Get(ctx, d.Name); core.IsNotFound(gerr) {
				s.refuse("limit", err)
			}
		}
		return Dashboard{}, err
	}
	return fromRow(out)
}

// Get returns a dashboard.
func (s *Service) Get(ctx context.Context, name string) (Dashboard, error) {
	row, err := s.st.Get(ctx, name)
	if err != nil {
		return Dashboard{}, err
	}
	return fromRow(row)
}

// List returns dashboards by name after the cursor.
func (s *Service) List(ctx context.Context, after string, limit int) ([]Dashboard, error) {
	rows, err := s.st.List(ctx, after, limit)
	if err != nil {
		return nil, err
	}
	out := make([]Dashboard, 0, len(rows))
	for _, r := range rows {
		d, err := fromRow(r)
		if err != nil {
			// Listed without widgets, so that it can be found and
			// replaced; Get reports the error.
			s.logLimited("stored dashboard unreadable", "dashboard", r.Name, "err", err)
			d = Dashboard{Name: r.Name, Title: r.Title, Version: r.Version, CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt, Widgets: []Widget{}}
		}
		out = append(out, d)
	}
	return out, nil
}

// Update replaces a dashboard's title and widgets. ifVersion > 0 must be
// its current version (else a conflict wrapping ErrStale).
func (s *Service) Update(ctx context.Context, d Document, ifVersion int64) (Dashboard, error) {
	row, err := toRow(d)
	if err != nil {
		return Dashboard{}, err
	}
	out, err := s.st.Update(ctx, row, ifVersion)
	if err != nil {
		if errors.Is(err, ErrStale) {
			s.refuse("stale", err)
		}
		return Dashboard{}, err
	}
	return fromRow(out)
}

// Delete deletes a dashboard; ifVersion as in Update.
func (s *Service) Delete(ctx context.Context, name string, ifVersion int64) error {
	err := s.st.Delete(ctx, name, ifVersion)
	if errors.Is(err, ErrStale) {
		s.refuse("stale", err)
	}
	return err
}

func toRow(d Document) (store.Dashboard, error) {
	ws := d.Widgets
	if ws == nil {
		ws = []Widget{}
	}
	b, err := json.Marshal(ws)
	if err != nil {
		return store.Dashboard{}, fmt.Errorf("dashboards: encode widgets: %w", err)
	}
	return store.Dashboard{Name: d.Name, Title: d.Title, Widgets: b}, nil
}

func fromRow(r store.Dashboard) (Dashboard, error) {
	d := Dashboard{Name: r.Name, Title: r.Title, Version: r.Version, CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt, Widgets: []Widget{}}
	if err := json.Unmarshal(r.Widgets, &d.Widgets); err != nil {
		return Dashboard{}, fmt.Errorf("dashboards: stored widgets of %q: %w", r.Name, err)
	}
	return d, nil
}

// refuse counts a refusal and logs it, at most one line a second.
func (s *Service) refuse(reason string, err error) {
	s.refused.WithLabelValues(reason).Inc()
	s.logLimited("dashboard write refused", "reason", reason, "err", err)
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
	s.log.Info(msg, append(args, "suppressed", n)...)
}
