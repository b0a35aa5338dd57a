package devicemodel

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/moteiot/mote/internal/bus"
	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/store"
)

// ThingRecorder is what the Monitor needs of the registry's things: the
// type of a thing and a place to add its violations (store.ThingStore).
type ThingRecorder interface {
	Get(ctx context.Context, name string) (store.Thing, error)
	RecordActivity(ctx context.Context, batch []store.Activity) error
}

// MonitorOptions configure a Monitor.
type MonitorOptions struct {
	Models  *Models       // required
	Things  ThingRecorder // required
	Queue   int           // messages waiting for the check (default 10,000); more are dropped and counted
	Flush   time.Duration // how often violations are written to the things (default 1s)
	TypeTTL time.Duration // how long a thing's type is cached (default 30s)
	Logger  *slog.Logger
	Metrics prometheus.Registerer
}

// Monitor flags telemetry and reported shadow state outside the model of
// the thing's type: it counts them (mote_model_violations_total{kind})
// and adds them to the thing's stats (modelViolations, the latest one).
// Devices are never refused after the fact.
//
// The bus handler only enqueues into a bounded queue (full: dropped and
// counted); one goroutine checks and writes the violations in batches.
type Monitor struct {
	o     MonitorOptions
	log   *slog.Logger
	q     chan core.Message
	stop  chan struct{}
	wg    sync.WaitGroup
	once  sync.Once
	unsub []func()

	closed atomic.Bool

	// Owned by the worker.
	types   map[string]thingType
	pending map[string]*store.Activity

	violations *prometheus.CounterVec
	dropped    prometheus.Counter
	lastLog    atomic.Int64
}

type thingType struct {
	typ     string
	fetched time.Time
}

// maxPending bounds the things with violations waiting for a write.
const maxPending = 10_000

// NewMonitor returns a Monitor; Attach it to the bus, then Start it.
func NewMonitor(o MonitorOptions) *Monitor {
	if o.Queue <= 0 {
		o.Queue = 10_000
	}
	if o.Flush <= 0 {
		o.Flush = time.Second
	}
	if o.TypeTTL <= 0 {
		o.TypeTTL = 30 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	m := &Monitor{o: o, log: o.Logger, q: make(chan core.Message, o.Queue), stop: make(chan struct{}),
		types: map[string]thingType{}, pending: map[string]*store.Activity{}}
	m.violations = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mote_model_violations_total",
		Help: "Telemetry keys and reported shadow values outside the device model of the thing's type (flagged, not refused), by kind (telemetry, reported)."},
		[]string{"kind"})
	m.dropped = prometheus.NewCounter(prometheus.CounterOpts{Name: "mote_model_check_dropped_total",
		Help: "Messages the device-model check dropped because its queue (--model-check-queue) was full."})
	for _, k := range []string{"telemetry", "reported"} {
		m.violations.WithLabelValues(k)
	}
	if o.Metrics != nil {
		o.Metrics.MustRegister(m.violations, m.dropped)
	}
	return m
}

// Attach subscribes the monitor to telemetry and classic-shadow updates.
func (m *Monitor) Attach(b bus.Bus) {
	m.unsub = append(m.unsub,
		b.Subscribe("things/+/telemetry", m.enqueue),
		b.Subscribe("$aws/things/+/shadow/update", m.enqueue),
		b.Subscribe("$mote/things/+/shadow/update", m.enqueue))
}

// Start runs the worker.
func (m *Monitor) Start(context.Context) error {
	m.wg.Add(1)
	go m.loop()
	return nil
}

// Close stops the monitor and writes the pending violations (at most 5s).
func (m *Monitor) Close() error {
	m.once.Do(func() {
		m.closed.Store(true)
		for _, u := range m.unsub {
			u()
		}
		close(m.stop)
		m.wg.Wait()
	})
	return nil
}

func (m *Monitor) enqueue(msg core.Message) {
	if m.closed.Load() || msg.Thing == "" {
		return
	}
	select {
	case m.q <- msg:
	default:
		m.dropped.Inc()
		m.logLimited("model check queue full: message dropped")
	}
}

func (m *Monitor) logLimited(msg string, args ...any) {
	now := time.Now().UnixNano()
	last := m.lastLog.Load()
	if now-last < int64(time.Second) || !m.lastLog.CompareAndSwap(last, now) {
		return
	}
	m.log.Warn(msg, args...)
}

func (m *Monitor) loop() {
	defer m.wg.Done()
	t := time.NewTicker(m.o.Flush)
	defer t.Stop()
	for {
		select {
		case msg := <-m.q:
			m.check(msg)
		case <-t.C:
			m.flush()
		case <-m.stop:
			for {
				select {
				case msg := <-m.q:
					m.check(msg)
					continue
				default:
				}
				break
			}
			m.flush()
			return
		}
	}
}

// thingOf is the thing a topic is about, when it is the publisher.
func thingOf(msg core.Message) (string, bool) {
	parts := strings.Split(msg.Topic, "/")
	switch {
	case len(parts) == 3 && parts[0] == "things" && parts[2] == "telemetry":
		return parts[1], parts[1] == msg.Thing
	case len(parts) == 5 && parts[1] == "things" && parts[3] == "shadow" && parts[4] == "update":
		return parts[2], parts[2] == msg.Thing
	}
	return "", false
}

func (m *Monitor) typeOf(thing string, now time.Time) string {
	if e, ok := m.types[thing]; ok && now.Sub(e.fetched) < m.o.TypeTTL {
		return e.typ
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	t, err := m.o.Things.Get(ctx, thing)
	if err != nil && !core.IsNotFound(err) {
		return m.types[thing].typ // keep what we knew
	}
	if len(m.types) >= maxPending*10 {
		clear(m.types)
	}
	m.types[thing] = thingType{typ: t.Type, fetched: now}
	return t.Type
}

func (m *Monitor) check(msg core.Message) {
	thing, ok := thingOf(msg)
	if !ok {
		return
	}
	now := time.Now()
	typ := m.typeOf(thing, now)
	if typ == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	c, err := m.o.Models.Of(ctx, typ, false)
	cancel()
	if err != nil || c == nil {
		return
	}
	var vs []Violation
	if strings.HasPrefix(msg.Topic, "things/") {
		if len(c.Model.Telemetry) == 0 {
			return
		}
		var obj map[string]any
		d := json.NewDecoder(strings.NewReader(string(msg.Payload)))
		d.UseNumber()
		if d.Decode(&obj) != nil {
			return
		}
		vs = c.CheckTelemetry(obj)
	} else {
		var u struct {
			State struct {
				Reported json.RawMessage `json:"reported"`
			} `json:"state"`
		}
		if json.Unmarshal(msg.Payload, &u) != nil {
			return
		}
		vs = c.CheckReported(u.State.Reported)
	}
	if len(vs) == 0 {
		return
	}
	for _, v := range vs {
		m.violations.WithLabelValues(v.Kind).Inc()
	}
	a := m.pending[thing]
	if a == nil {
		if len(m.pending) >= maxPending {
			return // counted in the metric, not in the thing
		}
		a = &store.Activity{Thing: thing}
		m.pending[thing] = a
	}
	a.ModelViolations += int64(len(vs))
	last, _ := json.Marshal(vs[len(vs)-1])
	a.LastModelViolation = string(last)
	a.LastModelViolationAt = msg.Received
	if a.LastModelViolationAt.IsZero() {
		a.LastModelViolationAt = now
	}
}

func (m *Monitor) flush() {
	if len(m.pending) == 0 {
		return
	}
	batch := make([]store.Activity, 0, len(m.pending))
	for _, a := range m.pending {
		batch = append(batch, *a)
	}
	clear(m.pending)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := m.o.Things.RecordActivity(ctx, batch); err != nil {
		m.logLimited("model violations not recorded", "things", len(batch), "err", err)
	}
}
