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
