package httpapi

import (
	"errors"
	"log/slog"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the API's Prometheus collectors; a nil *metrics records
// nothing.
type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	// longPolls counts command long polls refused for holding
	// --max-long-polls-per-device already.
	longPolls prometheus.Counter
	heldPolls prometheus.Gauge
	// refusals counts requests refused by authentication or
	// authorization, by reason.
	refusals *prometheus.CounterVec
}

// refused counts one refused request.
func (m *metrics) refused(reason string) {
	if m == nil || m.refusals == nil {
		return
	}
	m.refusals.WithLabelValues(reason).Inc()
}

// newMetrics registers the collectors with reg (nil: no metrics). A second
// API handler on the same registry shares the collectors of the first.
func newMetrics(reg prometheus.Registerer, log *slog.Logger) *metrics {
	if reg == nil {
		return nil
	}
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mote_http_requests_total",
			Help: "API requests by route (the mux pattern), method and status code.",
		}, []string{"route", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "mote_http_request_duration_seconds",
			Help:    "API request latency by route (the mux pattern).",
			Buckets: prometheus.DefBuckets,
		}, []string{"route"}),
	}
	m.requests = register(reg, m.requests, log)
	m.duration = register(reg, m.duration, log)
	m.longPolls = register(reg, prometheus.NewCounter(prometheus.CounterOpts{
		Name: "mote_http_long_polls_refused_total",
		Help: "Command long polls (GET /devices/{thing}/commands?wait=) refused with 429 because the thing already held --max-long-polls-per-device.",
	}), log)
	m.refusals = register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mote_api_requests_refused_total",
		Help: "API requests refused by authentication or authorization, by reason: unauthenticated, role, out_of_scope (a thing outside a scoped principal's groups, answered 404), fleet_wide (a fleet-wide route refused to a scoped principal), rate_limited (a token's request limit).",
	}, []string{"reason"}), log)
	m.heldPolls = register(reg, prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "mote_http_long_polls",
		Help: "Command long polls open now, all things together.",
	}), log)
	return m
}

func register[C prometheus.Collector](reg prometheus.Registerer, c C, log *slog.Logger) C {
	err := reg.Register(c)
	if are, ok := errors.AsType[prometheus.AlreadyRegisteredError](err); ok {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing
		}
	}
	if err != nil {
		log.Warn("http: cannot register metrics", "err", err)
	}
	return c
}

// longPollRefusals is the counter of refused long polls and the gauge of
// open ones (nil without metrics).
func (m *metrics) longPollRefusals() (prometheus.Counter, prometheus.Gauge) {
	if m == nil {
		return nil, nil
	}
	return m.longPolls, m.heldPolls
}

// observe records one request. route is a mux pattern (or "(unmatched)"),
// never the raw path, so the label set stays bounded.
func (m *metrics) observe(route, method string, code int, d time.Duration) {
	if m == nil {
		return
	}
	if code == 0 {
		code = 200 // the handler wrote nothing
	}
	switch method {
	case "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS":
	default:
		method = "other" // the method is client-chosen: keep the label set bounded
	}
	m.requests.WithLabelValues(route, method, strconv.Itoa(code)).Inc()
	m.duration.WithLabelValues(route).Observe(d.Seconds())
}
