package coap

import (
	"errors"

	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the CoAP server's Prometheus collectors (unregistered ones
// when there is no registry).
type metrics struct {
	requests        *prometheus.CounterVec
	authFailures    *prometheus.CounterVec
	forbidden       prometheus.Counter
	sessions        *prometheus.GaugeVec
	sessionsRefused *prometheus.CounterVec
	observers       *prometheus.GaugeVec
	observeRefused  prometheus.Counter
	notifications   *prometheus.CounterVec
	blockEvicted    prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mote_coap_requests_total",
			Help: "CoAP requests by response code (e.g. 2.04, 4.13).",
		}, []string{"code"}),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mote_coap_auth_failures_total",
			Help: "CoAP requests and DTLS sessions refused for their credentials, by method (token, psk, dtls).",
		}, []string{"method"}),
		forbidden: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mote_coap_forbidden_total",
			Help: "CoAP requests of a device on another thing's path (4.03).",
		}),
		sessions: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "mote_coap_sessions",
			Help: "Live CoAP sessions by listener (udp: one per peer address; dtls).",
		}, []string{"listener"}),
		sessionsRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mote_coap_sessions_refused_total",
			Help: "CoAP sessions closed at once because the listener held --coap-max-sessions.",
		}, []string{"listener"}),
		observers: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "mote_coap_observers",
			Help: "Registered CoAP observations by resource (shadow, commands).",
		}, []string{"resource"}),
		observeRefused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mote_coap_observe_refused_total",
			Help: "CoAP observe registrations answered without Observe because the thing held --coap-max-observers.",
		}),
		notifications: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mote_coap_notifications_total",
			Help: "CoAP Observe notifications by resource and result (sent, failed).",
		}, []string{"resource", "result"}),
		blockEvicted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mote_coap_blockwise_evicted_total",
			Help: "Block-wise CoAP request transfers no longer matched across tokens because their session started more than --coap-max-blockwise-transfers.",
		}),
	}
	if reg == nil {
		return m
	}
	m.requests = register(reg, m.requests)
	m.authFailures = register(reg, m.authFailures)
	m.forbidden = register(reg, m.forbidden)
	m.sessions = register(reg, m.sessions)
	m.sessionsRefused = register(reg, m.sessionsRefused)
	m.observers = register(reg, m.observers)
	m.observeRefused = register(reg, m.observeRefused)
	m.notifications = register(reg, m.notifications)
	m.blockEvicted = register(reg, m.blockEvicted)
	return m
}

// register registers c, or returns the collector registered already (a
// second server on the same registry shares them).
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		if are, ok := errors.AsType[prometheus.AlreadyRegisteredError](err); ok {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
	}
	return c
}

// request counts one answered request by its code, "2.04" style.
func (m *metrics) request(c codes.Code) {
	m.requests.WithLabelValues(codeString(c)).Inc()
}

func codeString(c codes.Code) string {
	cls, detail := uint8(c)>>5, uint8(c)&0x1f
	return string([]byte{'0' + cls, '.', '0' + detail/10, '0' + detail%10})
}
