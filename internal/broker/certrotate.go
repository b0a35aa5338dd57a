package broker

import (
	"context"
	"strings"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/moteiot/mote/internal/auth"
)

// Certificate self-rotation (docs/credentials.md): a thing connected with
// its client certificate publishes a CSR on
// $mote/things/{its name}/certificate/rotate and gets the answer on
// .../accepted or .../rejected, written to its connection only. As with
// the provisioning topics nothing is routed on these topics: a request
// goes to a bounded queue served by a few workers (off the publish path,
// each request with a deadline); a full queue refuses it (PUBACK 0x97).
// Publishing on another thing's rotation topic, or on an answer topic,
// is refused (0x87).

// CertRotator serves rotation requests (certrotate.Service).
type CertRotator interface {
	MQTTAnswer(ctx context.Context, id auth.Identity, topic string, payload []byte, remote string) (string, []byte)
}

// CertRotationOptions configure certificate self-rotation over MQTT.
type CertRotationOptions struct {
	Rotator CertRotator // nil: the topics are refused
	// QueueSize bounds the requests waiting for a worker (default 64);
	// Workers serve them (default 2); RequestTimeout bounds one (10s).
	QueueSize      int
	Workers        int
	RequestTimeout time.Duration
}

type rotJob struct {
	s       *session
	topic   string
	payload []byte
	remote  string
}

type certRotation struct {
	b       *Broker
	queue   chan rotJob
	dropped prometheus.Counter
}

func newCertRotation(b *Broker, reg prometheus.Registerer) *certRotation {
	o := &b.opts.CertRotation
	if o.QueueSize <= 0 {
		o.QueueSize = 64
	}
	if o.Workers <= 0 {
		o.Workers = 2
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = 10 * time.Second
	}
	r := &certRotation{b: b, queue: make(chan rotJob, o.QueueSize),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "mote_certificate_rotation_mqtt_dropped_total",
			Help: "Certificate rotation requests over MQTT refused because the rotation queue was full."})}
	if reg != nil {
		reg.MustRegister(r.dropped)
	}
	return r
}

// start runs the workers until the broker stops.
func (r *certRotation) start() {
	if r.b.opts.CertRotation.Rotator == nil {
		return
	}
	for range r.b.opts.CertRotation.Workers {
		r.b.wg.Add(1)
		go func() {
			defer r.b.wg.Done()
			r.work()
		}()
	}
}

func (r *certRotation) work() {
	o := r.b.opts.CertRotation
	for {
		select {
		case <-r.b.stop:
			return
		case j := <-r.queue:
			if r.b.current(j.s.cl) != j.s {
				continue // gone: nobody to answer
			}
			ctx, cancel := context.WithTimeout(context.Background(), o.RequestTimeout)
			topic, body := o.Rotator.MQTTAnswer(ctx, j.s.id, j.topic, j.payload, j.remote)
			cancel()
			if topic != "" && r.b.current(j.s.cl) == j.s {
				r.b.azure.reply(j.s.cl, topic, body) // QoS 0 to this connection only
			}
		}
	}
}

// isRotationTopic: $mote/things/{name}/certificate[/...].
func isRotationTopic(topic string) bool {
	rest, ok := strings.CutPrefix(topic, "$mote/things/")
	if !ok {
		return false
	}
	_, after, ok := strings.Cut(rest, "/")
	return ok && (after == "certificate" || strings.HasPrefix(after, "certificate/"))
}

// rotationPublish handles a publish on the rotation topics in OnPublish;
// handled false leaves the packet to the normal path.
func (b *Broker) rotationPublish(cl *mqtt.Client, s *session, pk packets.Packet) (bool, error) {
	if !isRotationTopic(pk.TopicName) {
		return false, nil
	}
	r := b.rotation
	if b.opts.CertRotation.Rotator == nil || s.id.Thing == "" || pk.FixedHeader.Retain ||
		pk.TopicName != "$mote/things/"+s.id.Thing+"/certificate/rotate" {
		b.metrics.denied.WithLabelValues("publish").Inc()
		b.authLog.Info("publish on a certificate rotation topic refused", "client", clip(cl.ID), "thing", s.id.Thing, "topic", clip(pk.TopicName))
		if refuse(cl, pk, packets.ErrNotAuthorized) {
			return true, packets.ErrRejectPacket
		}
		return true, packets.CodeSuccessIgnore
	}
	select {
	case r.queue <- rotJob{s: s, topic: pk.TopicName, payload: append([]byte(nil), pk.Payload...), remote: cl.Net.Remote}:
	default:
		r.dropped.Inc()
		if refuse(cl, pk, packets.ErrQuotaExceeded) {
			return true, packets.ErrRejectPacket
		}
	}
	return true, packets.CodeSuccessIgnore
}

// rotationACL lets a thing subscribe to the answers of its own rotation
// requests (which are written to it directly, never routed).
func (b *Broker) rotationACL(s *session, topic string) (allow, ok bool) {
	if !isRotationTopic(topic) {
		return false, false
	}
	if b.opts.CertRotation.Rotator == nil || s.id.Thing == "" || !s.subscribingTo(topic) {
		return false, true
	}
	base := "$mote/things/" + s.id.Thing + "/certificate/rotate"
	switch topic {
	case base + "/accepted", base + "/rejected", base + "/+":
		return true, true
	}
	return false, true
}
