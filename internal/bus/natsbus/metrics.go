package natsbus

import "github.com/prometheus/client_golang/prometheus"

func (b *Bus) register(reg prometheus.Registerer) error {
	counter := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, f)
	}
	dropped := func(reason string, f func() float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name:        "mote_bus_nats_dropped_total",
			Help:        "Bus messages lost on NATS, by reason: slow_consumer (a subscriber beyond its pending limits), publish (not buffered: closed connection, full reconnect buffer, bad topic), decode (not a Mote message).",
			ConstLabels: prometheus.Labels{"reason": reason},
		}, f)
	}
	for _, c := range []prometheus.Collector{
		counter("mote_bus_nats_published_total", "Messages published on the NATS bus by this node.",
			func() float64 { return float64(b.published.Load()) }),
		counter("mote_bus_nats_received_total", "Messages handed to this node's bus subscribers from NATS.",
			func() float64 { return float64(b.received.Load()) }),
		dropped("slow_consumer", func() float64 { return float64(b.Dropped()) }),
		dropped("publish", func() float64 { return float64(b.publishErrors.Load()) }),
		dropped("decode", func() float64 { return float64(b.decodeErrors.Load()) }),
	} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}
