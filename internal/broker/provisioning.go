package broker

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/moteiot/mote/internal/auth"
	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/policy"
)

// Provisioning connections (docs/provisioning.md): a device that is not a
// thing yet connects with a provisioning identity — the user name
// "enrollment:{group}" and a derived key, or a claim certificate of an
// X.509 enrollment group — and may then only publish requests on the
// provisioning topics ($mote/provisioning/..., $aws/certificates/...,
// $aws/provisioning-templates/...) and subscribe to their answers. As
// with the Azure $iothub topics, nothing is routed on them: a request is
// served by the connection's own worker (off the publish path, with a
// deadline) and its answer written to that one connection. A certificate
// that Mote's CA did not issue is also offered to the provisioner, which
// may register it just in time (JITR) and answer with a thing's identity.

// Provisioner is the provisioning service (provisioning.MQTT). Session
// handles are opaque to the broker.
type Provisioner interface {
	ProvisioningSecret(ctx context.Context, remote, clientID, username, password string) (any, error)
	// ProvisioningCertificate: a thing's identity, or (session non-nil) a
	// provisioning-only connection.
	ProvisioningCertificate(ctx context.Context, cert *x509.Certificate) (auth.Identity, any, error)
	ProvisioningSubscribe(session any, filter string) bool
	// ProvisioningRequest answers one request ("" topic: no answer).
	ProvisioningRequest(ctx context.Context, session any, topic string, payload []byte) (string, []byte)
}

// ProvisioningOptions configure provisioning connections.
type ProvisioningOptions struct {
	// QueueSize bounds the requests waiting for one connection's worker;
	// more are refused (PUBACK 0x97 for MQTT 5 QoS 1) and counted.
	// Default 4.
	QueueSize int
	// RequestTimeout bounds one request. Default 10s.
	RequestTimeout time.Duration
}

type provisioning struct {
	b       *Broker
	p       atomic.Pointer[Provisioner]
	dropped prometheus.Counter
	conns   prometheus.Gauge
}

func newProvisioning(b *Broker, reg prometheus.Registerer) *provisioning {
	o := &b.opts.Provisioning
	if o.QueueSize <= 0 {
		o.QueueSize = 4
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = 10 * time.Second
	}
	p := &provisioning{b: b,
		dropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "mote_provisioning_mqtt_dropped_total",
			Help: "Provisioning requests over MQTT refused because the connection's queue was full."}),
		conns: prometheus.NewGauge(prometheus.GaugeOpts{Name: "mote_provisioning_mqtt_connections",
			Help: "Connected provisioning-only MQTT clients."}),
	}
	if reg != nil {
		reg.MustRegister(p.dropped, p.conns)
	}
	return p
}

// SetProvisioner sets the provisioning service (made after the broker);
// call it before Start. Without one, provisioning user names are ordinary
// (unknown) ones and foreign certificates are refused.
func (b *Broker) SetProvisioner(p Provisioner) { b.prov.p.Store(&p) }

func (b *Broker) provisioner() Provisioner {
	if p := b.prov.p.Load(); p != nil {
		return *p
	}
	return nil
}

// provisioningUserPrefix starts the user name of a symmetric-key
// provisioning connection ("enrollment:{group}"; provisioning.UserPrefix).
const provisioningUserPrefix = "enrollment:"

// isProvisioningUser reports whether a CONNECT user name asks for a
// provisioning connection (no copy of the name on every connect).
func isProvisioningUser(username []byte) bool {
	return bytes.HasPrefix(username, []byte(provisioningUserPrefix))
}

var errProvisioningClientID = errors.New("a provisioning connection needs a client id (its registration id)")

// provConn is the provisioning side of one connection.
type provConn struct {
	handle  any
	mu      sync.Mutex
	queue   chan provJob
	stopped bool
	done    chan struct{}
}

type provJob struct {
	topic   string
	payload []byte
}

// provisioningSession makes the session of a provisioning connection: no
// thing, no policies (an empty evaluator denies everything), never
// persistent, and its client id claimed so that it cannot take over a
// thing's session.
func (b *Broker) provisioningSession(cl *mqtt.Client, handle any) (*session, error) {
	if cl.ID == "" {
		return nil, errProvisioningClientID
	}
	if err := b.claimClientID(cl, ""); err != nil {
		return nil, err
	}
	// Not kept after the connection ends, whatever the client asked.
	cl.Properties.Clean = true
	cl.Properties.Props.SessionExpiryInterval = 0
	s := &session{cl: cl, listener: cl.Net.Listener, connectedAt: time.Now()}
	// No policy: nothing allowed, and never recompiled (the newest
	// generation: RefreshPolicies skips it).
	s.setEvaluator(policy.Compile(nil, policy.Vars{ClientID: cl.ID}), math.MaxUint64)
	c := &provConn{handle: handle, queue: make(chan provJob, b.opts.Provisioning.QueueSize), done: make(chan struct{})}
	s.prov = c
	go b.prov.work(s, c)
	b.prov.conns.Inc()
	return s, nil
}

func (c *provConn) stop(p *provisioning) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.stopped {
		c.stopped = true
		close(c.done)
		p.conns.Dec()
	}
}

func (c *provConn) enqueue(j provJob) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return false
	}
	select {
	case c.queue <- j:
		return true
	default:
		return false
	}
}

// isProvisioningTopic: the topics nothing is ever routed on.
func isProvisioningTopic(topic string) bool {
	return strings.HasPrefix(topic, "$mote/provisioning/") || strings.HasPrefix(topic, "$aws/certificates/") ||
		strings.HasPrefix(topic, "$aws/provisioning-templates/")
}

// provisioningPublish handles a publish in OnPublish: every publish of a
// provisioning connection (a request, or refused), and a publish on the
// provisioning topics by anyone else (refused). handled false leaves the
// packet to the normal path.
func (b *Broker) provisioningPublish(cl *mqtt.Client, s *session, pk packets.Packet) (bool, error) {
	if s.prov == nil {
		if !isProvisioningTopic(pk.TopicName) {
			return false, nil
		}
		b.metrics.denied.WithLabelValues("publish").Inc()
		if refuse(cl, pk, packets.ErrTopicNameInvalid) {
			return true, packets.ErrRejectPacket
		}
		return true, packets.CodeSuccessIgnore
	}
	if !isProvisioningTopic(pk.TopicName) || pk.FixedHeader.Retain {
		b.metrics.denied.WithLabelValues("publish").Inc()
		if refuse(cl, pk, packets.ErrNotAuthorized) {
			return true, packets.ErrRejectPacket
		}
		return true, packets.CodeSuccessIgnore
	}
	if !s.prov.enqueue(provJob{topic: pk.TopicName, payload: append([]byte(nil), pk.Payload...)}) {
		b.prov.dropped.Inc()
		if refuse(cl, pk, packets.ErrQuotaExceeded) {
			return true, packets.ErrRejectPacket
		}
	}
	return true, packets.CodeSuccessIgnore
}

// provisioningACL decides subscriptions and deliveries of a provisioning
// connection: it may subscribe to its answers' topics; nothing routed is
// ever delivered to it (answers are written directly).
func (b *Broker) provisioningACL(s *session, topic string) (allow, ok bool) {
	if s.prov == nil {
		return false, false
	}
	p := b.provisioner()
	if p == nil || !s.subscribingTo(topic) {
		return false, true
	}
	return p.ProvisioningSubscribe(s.prov.handle, topic), true
}

// work serves a connection's requests one at a time.
func (p *provisioning) work(s *session, c *provConn) {
	for {
		select {
		case <-c.done:
			return
		case <-p.b.stop:
			return
		case j := <-c.queue:
			pv := p.b.provisioner()
			if pv == nil {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), p.b.opts.Provisioning.RequestTimeout)
			topic, body := pv.ProvisioningRequest(ctx, c.handle, j.topic, j.payload)
			cancel()
			if topic != "" {
				p.b.azure.reply(s.cl, topic, body) // QoS 0 to this connection only
			}
		}
	}
}

// provisioningConnackCode maps the refusals of a provisioning connection.
func provisioningConnackCode(err error) (packets.Code, string, bool) {
	switch {
	case errors.Is(err, errProvisioningClientID):
		return packets.ErrClientIdentifierNotValid, "provisioning_client_id", true
	case core.KindOf(err) == core.KindRateLimited:
		return packets.ErrConnectionRateExceeded, "rate_limited", true
	case errors.Is(err, auth.ErrDisabled):
		return packets.Code{}, "", false
	case core.KindOf(err) == core.KindForbidden, core.KindOf(err) == core.KindConflict, core.KindOf(err) == core.KindInvalid:
		return packets.ErrNotAuthorized, "provisioning_refused", true // JITR refused (group disabled or full, name)
	}
	return packets.Code{}, "", false
}
