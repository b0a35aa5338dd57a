package broker

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	connections  *prometheus.GaugeVec
	connects     *prometheus.CounterVec
	authFailures *prometheus.CounterVec
	denied       *prometheus.CounterVec
	dropped      *prometheus.CounterVec
	stalls       prometheus.Counter
	backpressure prometheus.Histogram
	closed       *prometheus.CounterVec

	retainedRefused  *prometheus.CounterVec
	slowDisconnected prometheus.Counter
	held             prometheus.Gauge

	keepaliveCapped prometheus.Counter
	publishRefused  *prometheus.CounterVec
}

func newMetrics(b *Broker, reg prometheus.Registerer) *metrics {
	m := &metrics{
		connections: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "mote_mqtt_connections", Help: "Live authenticated MQTT connections, by listener (tcp, tls, ws).",
		}, []string{"listener"}),
		connects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mote_mqtt_connects_total", Help: "Accepted MQTT connections, by listener.",
		}, []string{"listener"}),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mote_mqtt_auth_failures_total", Help: "Refused MQTT connections, by reason.",
		}, []string{"reason"}),
		denied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mote_mqtt_policy_denied_total", Help: "Publishes, subscriptions and deliveries refused by policy, by action.",
		}, []string{"action"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mote_mqtt_messages_dropped_total", Help: "Messages not delivered to a subscriber, by reason.",
		}, []string{"reason"}),
		stalls: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mote_mqtt_backpressure_timeouts_total", Help: "Publishes that waited the whole backpressure bound for a slow subscriber.",
		}),
		backpressure: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "mote_mqtt_backpressure_wait_seconds", Help: "Time publishers were held for slow subscribers.",
			Buckets: []float64{.0001, .001, .01, .05, .1, .25, .5, 1},
		}),
		closed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mote_mqtt_server_disconnects_total", Help: "Connections the server closed on its own, by reason (credential_expired, packet_too_large).",
		}, []string{"reason"}),
		retainedRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mote_mqtt_retained_refused_total", Help: "Retained publishes refused because they would exceed a retained-message quota, by reason (thing_count, thing_bytes, server_bytes).",
		}, []string{"reason"}),
		slowDisconnected: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mote_mqtt_slow_subscribers_disconnected_total", Help: "Subscribers disconnected because they held publishers longer than --slow-subscriber-budget without draining.",
		}),
		held: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mote_mqtt_backpressure_held", Help: "Publishers being held for a slow subscriber right now.",
		}),
	}
	m.keepaliveCapped = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "mote_mqtt_keepalive_capped_total", Help: "Connections that asked for a keep-alive longer than --max-keepalive (or none) and were granted --max-keepalive.",
	})
	m.publishRefused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mote_mqtt_publishes_refused_total", Help: "Publishes acknowledged but not accepted, by reason (topic_not_accepted: $SYS/...; MQTT 5 PUBACK 0x90).",
	}, []string{"reason"})
	m.publishRefused.WithLabelValues(refusedTopic)
	m.closed.WithLabelValues("packet_too_large")
	for _, r := range []string{retainedThingCount, retainedThingBytes, retainedServer} {
		m.retainedRefused.WithLabelValues(r)
	}
	for _, l := range []string{"tcp", "tls", "ws"} {
		m.connections.WithLabelValues(l)
		m.connects.WithLabelValues(l)
	}
	if reg == nil {
		return m
	}
	reg.MustRegister(m.closed)
	info := func(p *int64) func() float64 { return func() float64 { return float64(atomic.LoadInt64(p)) } }
	in := b.server.Info
	reg.MustRegister(m.connections, m.connects, m.authFailures, m.denied, m.dropped, m.stalls, m.backpressure,
		m.retainedRefused, m.slowDisconnected, m.held,
		m.keepaliveCapped, m.publishRefused,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "mote_mqtt_retained_bytes", Help: "Payload bytes of the retained messages held (--max-retained-bytes)."}, func() float64 { return float64(b.retainQuota.bytes.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "mote_mqtt_messages_received_total", Help: "Messages received from devices (MQTT PUBLISH packets and HTTP device messages); platform publishes are not counted."}, func() float64 { return float64(b.messagesReceived()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "mote_mqtt_messages_sent_total", Help: "PUBLISH packets sent to clients."}, info(&in.MessagesSent)),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "mote_mqtt_bytes_received_total", Help: "Bytes read from MQTT clients."}, info(&in.BytesReceived)),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "mote_mqtt_bytes_sent_total", Help: "Bytes written to MQTT clients."}, info(&in.BytesSent)),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "mote_mqtt_subscriptions", Help: "Active subscriptions."}, info(&in.Subscriptions)),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "mote_mqtt_retained_messages", Help: "Retained messages held."}, info(&in.Retained)),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "mote_mqtt_inflight_messages", Help: "QoS 1/2 messages in flight or queued for offline sessions."}, info(&in.Inflight)),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "mote_mqtt_queue_full_dropped_total", Help: "QoS 1/2 messages dropped because a client's queue (max-offline-queue) was full."}, info(&in.InflightDropped)),
	)
	return m
}
