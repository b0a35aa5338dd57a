package broker

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"slices"
	"strings"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/moteiot/mote/internal/auth"
	"github.com/moteiot/mote/internal/core"
)

// hook connects mochi-mqtt's events to Mote. It is the only hook, so
// mochi's OR-ing of auth results across hooks cannot open a hole.
type hook struct {
	mqtt.HookBase
	b          *Broker
	connecting sync.Map // *mqtt.Client → *session, between CONNECT and CONNACK
}

func (h *hook) ID() string { return "mote" }

func (h *hook) Provides(b byte) bool {
	return bytes.Contains([]byte{
		mqtt.OnConnect,
		mqtt.OnConnectAuthenticate,
		mqtt.OnACLCheck,
		mqtt.OnSessionEstablish,
		mqtt.OnSessionEstablished,
		mqtt.OnDisconnect,
		mqtt.OnPublish,
		mqtt.OnPublished,
		mqtt.OnPacketSent,
		mqtt.OnPacketEncode,
		mqtt.OnPacketRead,
		mqtt.OnPublishDropped,
		mqtt.OnWillSent,
		mqtt.OnClientExpired,
		mqtt.OnQosComplete,
		mqtt.OnRetainMessage,
		mqtt.OnRetainedExpired,
		mqtt.OnQosPublish,
		mqtt.OnQosDropped,
		mqtt.OnSubscribe,
		mqtt.OnSubscribed,
		mqtt.OnUnsubscribed,
		mqtt.OnSelectSubscribers,
		mqtt.StoredClients,
		mqtt.StoredSubscriptions,
	}, []byte{b})
}

// connackCode picks the CONNACK reason for a refusal; mochi maps v5 codes
// to their 3.1.1 equivalents when it encodes a CONNACK for a v3 client.
func connackCode(err error) (packets.Code, string) {
	if code, reason, ok := azureConnackCode(err); ok { // azure.go
		return code, reason
	}
	if code, reason, ok := provisioningConnackCode(err); ok { // provisioning.go
		return code, reason
	}
	switch {
	case errors.Is(err, auth.ErrBadSecret):
		return packets.ErrBadUsernameOrPassword, "bad_credentials"
	case errors.Is(err, auth.ErrDisabled):
		return packets.ErrBanned, "disabled"
	case errors.Is(err, auth.ErrRevoked):
		return packets.ErrNotAuthorized, "revoked"
	case errors.Is(err, auth.ErrExpired):
		return packets.ErrNotAuthorized, "expired"
	case errors.Is(err, auth.ErrUnknownCertificate), errors.Is(err, auth.ErrInvalidCertificate):
		return packets.ErrNotAuthorized, "bad_certificate"
	case errors.Is(err, errBadClientID):
		return packets.ErrClientIdentifierNotValid, "bad_client_id"
	case errors.Is(err, errClientIDTooLong):
		return packets.ErrClientIdentifierNotValid, "client_id_too_long"
	case errors.Is(err, errClientIDOwned):
		return packets.ErrClientIdentifierNotValid, "client_id_owned"
	case errors.Is(err, errWillDenied):
		return packets.ErrNotAuthorized, "will_denied"
	case errors.Is(err, errClusterBusy):
		return packets.ErrServerBusy, "cluster_busy"
	default:
		return packets.ErrServerUnavailable, "server_error"
	}
}

// v3Code translates a CONNACK reason for an MQTT 3.1.1 client, which knows
// only return codes 1 to 5 (mochi's own table maps "bad user name or
// password" to 5 and passes v5-only codes through, which a 3.1.1 client
// may read as success).
func v3Code(cl *mqtt.Client, code packets.Code) packets.Code {
	if cl.Properties.ProtocolVersion >= 5 {
		return code
	}
	switch code {
	case packets.ErrBadUsernameOrPassword:
		return packets.Code{Code: 4, Reason: code.Reason}
	case packets.ErrClientIdentifierNotValid:
		return packets.Code{Code: 2, Reason: code.Reason}
	case packets.ErrServerUnavailable, packets.ErrServerBusy:
		return packets.Code{Code: 3, Reason: code.Reason}
	default:
		return packets.Code{Code: 5, Reason: code.Reason} // not authorized
	}
}

var (
	errBadClientID = errors.New("client id must not contain '/', '+', '#' or NUL")
	errWillDenied  = errors.New("last will topic not allowed by policy")
)

// OnConnect authenticates the client. A refusal is answered here with a
// specific CONNACK reason code (mochi would always say "bad user name or
// password").
func (h *hook) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	b := h.b
	s, err := h.authenticate(cl, pk)
	if err != nil {
		code, reason := connackCode(err)
		b.metrics.authFailures.WithLabelValues(reason).Inc()
		b.authLog.Warn("connection refused", "reason", reason, "client", clip(cl.ID),
			"username", clip(string(cl.Properties.Username)), "remote", cl.Net.Remote, "listener", cl.Net.Listener,
			"error", err)
		_ = b.server.SendConnack(cl, v3Code(cl, code), false, nil)
		return code
	}
	if s.stored != nil && !pk.Connect.Clean && persistent(cl) {
		b.resumeFromCluster(cl, s, s.stored, s.storedRec) // handover.go
	} else if s.holder != "" && !pk.Connect.Clean && persistent(cl) {
		b.resumeFrom(cl, s, s.holder, nil, nil) // not in the store yet: from its live node
	}
	s.stored, s.storedRec, s.holder = nil, nil, ""
	if v, ok := b.sessions.Load(cl.ID); ok {
		// mochi will disconnect the live connection with this client id
		// (session take-over). Say so now: its own end may be seen first
		// (the old client closes on the DISCONNECT it is sent), and that
		// would read as a lost connection.
		v.(*session).takenOver.Store(true)
	}
	h.connecting.Store(cl, s)
	return nil
}

func (h *hook) authenticate(cl *mqtt.Client, pk packets.Packet) (*session, error) {
	b := h.b
	if len(cl.ID) > b.opts.MaxClientIDLength {
		return nil, errClientIDTooLong
	}
	if strings.ContainsAny(cl.ID, "/+#\x00") {
		return nil, errBadClientID
	}
	ctx, cancel := newLazyTimeout(b.opts.ConnectTimeout) // no timer unless a cache misses (lazyctx.go)
	defer cancel()
	var (
		id  auth.Identity
		err error
	)
	az, err := b.azureUser(cl, pk) // nil unless an Azure IoT Hub user name (azure.go)
	if err != nil {
		return nil, err
	}
	var provHandle any // a provisioning-only connection (provisioning.go)
	if cert := peerCertificate(cl); cert != nil {
		id, err = b.opts.Auth.Certificate(ctx, cert)
		if pv := b.provisioner(); pv != nil && errors.Is(err, auth.ErrInvalidCertificate) && az == nil {
			id, provHandle, err = pv.ProvisioningCertificate(ctx, cert) // JITR or a claim certificate
		}
	} else if pv := b.provisioner(); pv != nil && az == nil && isProvisioningUser(pk.Connect.Username) {
		provHandle, err = pv.ProvisioningSecret(ctx, cl.Net.Remote, cl.ID, string(pk.Connect.Username), string(pk.Connect.Password))
	} else if az != nil {
		id, err = b.azureSAS(ctx, az, string(pk.Connect.Password))
	} else {
		id, err = b.opts.Auth.Secret(ctx, string(pk.Connect.Username), string(pk.Connect.Password))
	}
	if err != nil {
		if _, _, prov := provisioningConnackCode(err); !auth.IsRefusal(err) && !isAzureRefusal(err) && !prov {
			b.log.Error("authentication failed", "client", cl.ID, "error", err)
		}
		return nil, err
	}
	if provHandle != nil {
		return b.provisioningSession(cl, provHandle)
	}
	if az != nil && id.Thing != az.DeviceID {
		return nil, errAzureDevice
	}
	ev, gen, err := b.compile(ctx, id.Thing, cl.ID)
	if err != nil {
		b.log.Error("load policies", "thing", id.Thing, "error", err)
		return nil, err
	}
	if pk.Connect.WillFlag && !ev.CanPublish(pk.Connect.WillTopic) {
		return nil, errWillDenied
	}
	// In a cluster, a session another node held under this client id
	// (handover.go); another thing's refuses the connection.
	stored, storedRec, err := b.clusterSession(ctx, cl.ID, id.Thing)
	if err != nil {
		return nil, err
	}
	var holder string
	if storedRec == nil { // nor a live connection of another thing on another node (owners_cluster.go)
		if holder, err = b.clusterOwner(cl.ID, id.Thing); err != nil {
			return nil, err
		}
	}
	if err := b.claimClientID(cl, id.Thing); err != nil { // last: nothing may refuse after the claim (ownership.go)
		return nil, err
	}
	s := &session{cl: cl, id: id, listener: cl.Net.Listener, connectedAt: time.Now(), stored: stored, storedRec: storedRec, holder: holder}
	if az != nil {
		s.azure = b.azure.newConn(s)
	}
	s.setEvaluator(ev, gen)
	return s, nil
}

// peerCertificate returns the client certificate of a TLS connection.
func peerCertificate(cl *mqtt.Client) *x509.Certificate {
	c, ok := underlying(cl.Net.Conn).(*tls.Conn)
	if !ok {
		return nil
	}
	certs := c.ConnectionState().PeerCertificates
	if len(certs) == 0 {
		return nil
	}
	return certs[0]
}

func (h *hook) OnConnectAuthenticate(cl *mqtt.Client, _ packets.Packet) bool {
	_, ok := h.connecting.Load(cl)
	return ok
}

func (h *hook) OnSessionEstablished(cl *mqtt.Client, _ packets.Packet) {
	v, ok := h.connecting.LoadAndDelete(cl)
	if !ok {
		return
	}
	s := v.(*session)
	h.b.addSession(s)
	h.b.sessionEstablished(cl, s)
	h.b.clusterConnected(cl, s) // cluster.go: other nodes drop this client id
	h.b.willRecord(cl, s)       // wills.go: a survivor sends it if this node dies
	h.b.metrics.connects.WithLabelValues(s.listener).Inc()
	h.b.metrics.connections.WithLabelValues(s.listener).Inc()
	if s.prov == nil { // a provisioning connection is no thing's presence
		h.b.presence.connected(s)
	}
	h.b.armExpiry(s)
}

func (h *hook) OnDisconnect(cl *mqtt.Client, err error, expire bool) {
	if v, ok := h.connecting.LoadAndDelete(cl); ok && v.(*session).azure != nil {
		v.(*session).azure.stop() // never established
	} else if ok && v.(*session).prov != nil {
		v.(*session).prov.stop(h.b.prov) // never established
	}
	h.b.tooLarge(cl, err) // DISCONNECT 0x95 (protocol.go)
	if expire && !cl.IsTakenOver() {
		h.b.releaseClientID(cl, true) // mochi deletes the session now
	}
	s := h.b.current(cl)
	if s == nil {
		return
	}
	if s.azure != nil {
		s.azure.stop()
	}
	if s.prov != nil {
		s.prov.stop(h.b.prov)
		h.b.removeSession(s)
		h.b.metrics.connections.WithLabelValues(s.listener).Dec()
		return
	}
	if !cl.IsTakenOver() && !s.takenOver.Load() {
		h.b.sessionEnded(cl, s, expire) // else the new connection's session is what counts
	}
	if !expire && !cl.IsTakenOver() && !s.takenOver.Load() && !s.kicked.Load() {
		// A persistent session lives on: keep its permissions so messages
		// are queued for it (up to MaxOfflineQueue) while it is away. Stored
		// before the live session is removed, so no delivery falls between.
		h.b.offline.Store(cl.ID, s)
	}
	h.b.willEnded(cl, s) // wills.go
	h.b.removeSession(s)
	h.b.metrics.connections.WithLabelValues(s.listener).Dec()
	h.b.presence.disconnected(s, disconnectReason(s, cl, err))
}

func (h *hook) OnClientExpired(cl *mqtt.Client) {
	h.b.releaseClientID(cl, true)
	if l := h.b.sessionLog; l != nil {
		l.deleteSession(cl.ID)
	}
	if v, ok := h.b.offline.Load(cl.ID); ok && v.(*session).cl == cl {
		h.b.offline.CompareAndDelete(cl.ID, v)
	}
}

func (h *hook) OnWillSent(cl *mqtt.Client, pk packets.Packet) {
	h.b.willSent(cl, pk) // wills.go: to the platform and the other nodes
}

// OnACLCheck authorizes subscriptions and deliveries (write=false).
// Publishes are authorized in OnPublish, which can answer a v3 client
// without disconnecting it.
func (h *hook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	if write {
		return true
	}
	s := h.b.current(cl)
	if s == nil {
		s = h.b.offlineSession(cl)
	}
	if s == nil {
		// Between CONNECT and CONNACK mochi may already route deliveries
		// to a client taking over a persistent session.
		if v, ok := h.connecting.Load(cl); ok {
			s = v.(*session)
		}
	}
	if s == nil {
		return false
	}
	if allow, ok := h.b.azureACL(s, topic); ok { // azure.go
		return allow
	}
	if allow, ok := h.b.provisioningACL(s, topic); ok { // provisioning.go
		return allow
	}
	if allow, ok := h.b.rotationACL(s, topic); ok { // certrotate.go
		return allow
	}
	ev := s.ev.Load()
	if strings.ContainsAny(topic, "+#") || strings.HasPrefix(topic, "$share/") {
		ok := ev.CanSubscribe(topic)
		if !ok {
			h.b.metrics.denied.WithLabelValues("subscribe").Inc()
			h.b.authLog.Info("subscribe denied by policy", "client", cl.ID, "thing", s.id.Thing, "filter", topic)
		}
		return ok
	}
	// A topic name: a subscription to exactly that topic (it is in the
	// SUBSCRIBE being processed), or a delivery. A subscription needs
	// subscribe on the filter as written, and receive (it would get
	// nothing otherwise). A delivery — on whatever filter — needs receive
	// on the topic (policy.Evaluator.CanDeliver): a deny on subscribe does
	// not keep it from a wildcard subscriber. A delivery racing a SUBSCRIBE
	// to its very topic is checked as the subscription, which is stricter.
	if s.subscribingTo(topic) {
		ok := ev.CanSubscribe(topic) && ev.CanReceive(topic)
		if !ok {
			h.b.metrics.denied.WithLabelValues("subscribe").Inc()
			h.b.authLog.Info("subscribe denied by policy", "client", cl.ID, "thing", s.id.Thing, "filter", topic)
		}
		return ok
	}
	ok := ev.CanDeliver(topic)
	if !ok {
		h.b.metrics.denied.WithLabelValues("receive").Inc()
	}
	return ok
}

// subscribingTo reports whether filter is one of the SUBSCRIBE the
// session is processing (markSubscribe).
func (s *session) subscribingTo(filter string) bool {
	p := s.subscribing.Load()
	return p != nil && slices.Contains(*p, filter)
}

// markSubscribe records the filters of the SUBSCRIBE being processed, so
// that OnACLCheck tells a subscription to a topic name from a delivery
// on it; nil clears them. mochi processes one SUBSCRIBE of a client at a
// time, on its read goroutine: OnSubscribe, the ACL checks, OnSubscribed.
func (s *session) markSubscribe(filters []packets.Subscription) {
	if filters == nil {
		s.subscribing.Store(nil)
		return
	}
	names := make([]string, len(filters))
	for i, f := range filters {
		names[i] = f.Filter
	}
	s.subscribing.Store(&names)
}

// OnPublish authorizes a publish and applies backpressure. It runs on the
// publisher's read goroutine before the PUBACK is sent.
func (h *hook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	b := h.b
	if cl.Net.Inline {
		b.azureInline(pk) // desired twin patches (azure.go)
		return pk, nil
	}
	s := b.current(cl)
	if s == nil {
		return pk, packets.ErrRejectPacket
	}
	if done, err := b.provisioningPublish(cl, s, pk); done { // provisioning requests (provisioning.go)
		return pk, err
	}
	if done, err := b.rotationPublish(cl, s, pk); done { // certificate self-rotation (certrotate.go)
		return pk, err
	}
	pk, done, err := b.azurePublish(cl, s, pk) // Azure telemetry and $iothub requests (azure.go)
	if done {
		return pk, err
	}
	if s.durable.injected(pk) {
		return pk, nil // made durable and checked before (durable.go)
	}
	if !s.ev.Load().CanPublish(pk.TopicName) {
		b.metrics.denied.WithLabelValues("publish").Inc()
		b.activity.denied(cl, pk.TopicName) // shown on the thing's record
		b.authLog.Info("publish denied by policy", "client", cl.ID, "thing", s.id.Thing, "topic", pk.TopicName)
		if refuse(cl, pk, packets.ErrNotAuthorized) {
			return pk, packets.ErrRejectPacket
		}
		return pk, packets.CodeSuccessIgnore // acknowledged, not delivered (3.1.1 cannot say no)
	}
	if err := b.limitPublish(cl, s, pk); err != nil { // per-thing rate limit (ratelimit.go)
		return pk, err
	}
	if err := b.limitRetained(cl, s, pk); err != nil { // retained-message quota (retainquota.go)
		return pk, err
	}
	b.backpressure(cl, pk)
	if err := b.persist(cl, s, pk); err != nil {
		return pk, err
	}
	return pk, nil
}

// refuse answers an MQTT 5 QoS 1/2 publish with a failure reason code
// (PUBACK, or PUBREC for QoS 2) and reports whether it did; the caller then
// drops the packet with packets.ErrRejectPacket. Returning the code to
// mochi instead would make it log the whole packet at error level (and
// answer a QoS 2 PUBLISH with a PUBACK). MQTT 3.1.1 and QoS 0 have no way
// to say no: refuse returns false.
func refuse(cl *mqtt.Client, pk packets.Packet, code packets.Code) bool {
	if cl.Properties.ProtocolVersion != 5 || pk.FixedHeader.Qos == 0 {
		return false
	}
	typ := packets.Puback
	if pk.FixedHeader.Qos == 2 {
		typ = packets.Pubrec
	}
	_ = cl.WritePacket(packets.Packet{
		FixedHeader: packets.FixedHeader{Type: typ},
		PacketID:    pk.PacketID,
		ReasonCode:  code.Code,
	})
	return true
}

func (h *hook) OnPublished(cl *mqtt.Client, pk packets.Packet) {
	b := h.b
	if pk.Ignore || cl.Net.Inline || b.opts.OnMessage == nil {
		return
	}
	s := b.current(cl)
	if s == nil {
		return
	}
	received, seq := time.Now(), uint64(0)
	if p := s.durable.take(pk); p != nil {
		received, seq = p.received, p.seq
	}
	m := messageOf(cl, s, pk, received)
	m.Seq = seq
	b.opts.OnMessage(m)
}

// messageOf is the platform's view of a device's MQTT publish.
func messageOf(cl *mqtt.Client, s *session, pk packets.Packet, received time.Time) core.Message {
	return core.Message{
		Topic:      pk.TopicName,
		Payload:    pk.Payload,
		QoS:        pk.FixedHeader.Qos,
		Retain:     pk.FixedHeader.Retain,
		ClientID:   cl.ID,
		Thing:      s.id.Thing,
		Received:   received,
		Protocol:   "mqtt",
		Properties: propertiesOf(pk.Properties.User),
	}
}

// propertiesOf is the platform's copy of a publish's user properties.
func propertiesOf(user []packets.UserProperty) []core.Property {
	if len(user) == 0 {
		return nil
	}
	props := make([]core.Property, len(user))
	for i, u := range user {
		props[i] = core.Property{Key: u.Key, Value: u.Val}
	}
	return props
}

func (h *hook) OnPacketSent(cl *mqtt.Client, pk packets.Packet, _ []byte) {
	if pk.FixedHeader.Type == packets.Suback {
		if s := h.b.current(cl); s != nil {
			h.b.subacked(s, pk) // its retained messages follow (retainfeed.go)
		}
		return
	}
	if pk.FixedHeader.Type != packets.Publish {
		return
	}
	if s := h.b.current(cl); s != nil {
		s.sent(h.b.highWater / 2)
	}
}

// OnQosComplete runs when a client acknowledged a QoS 1/2 delivery (and
// when the server completed one of the client's own publishes).
func (h *hook) OnQosComplete(cl *mqtt.Client, pk packets.Packet) {
	if l := h.b.sessionLog; l != nil && persistent(cl) {
		l.deleteMessage(cl.ID, pk.PacketID)
	}
	if s := h.b.current(cl); s != nil && s.waiting.Load() && cl.State.Inflight.Len() <= h.b.inflightHigh/2 {
		s.wake()
	}
}

func (h *hook) OnPublishDropped(cl *mqtt.Client, pk packets.Packet) {
	h.b.metrics.dropped.WithLabelValues("slow_subscriber").Inc()
	h.b.dropLog.Warn("message dropped: subscriber queue full", "client", cl.ID, "topic", pk.TopicName, "qos", pk.FixedHeader.Qos)
	if s := h.b.current(cl); s != nil {
		s.sent(h.b.highWater / 2)
	}
}

// backpressure holds a publisher, for at most BackpressureWait, while a
// subscriber of this topic has a full queue, so that a slow subscriber
// slows its publishers instead of losing what they sent.
func (b *Broker) backpressure(cl *mqtt.Client, pk packets.Packet) {
	subs := b.server.Topics.Subscribers(pk.TopicName)
	var deadline time.Time
	for id, sub := range subs.Subscriptions {
		if sub.NoLocal && id == cl.ID {
			continue
		}
		v, ok := b.sessions.Load(id)
		if !ok {
			continue // offline persistent session: queued up to MaxOfflineQueue
		}
		s := v.(*session)
		if !s.ev.Load().CanReceive(pk.TopicName) {
			continue
		}
		qos := min(pk.FixedHeader.Qos, sub.Qos) // the QoS it is delivered at
		if b.opts.BackpressureWait > 0 && !s.slow.cut.Load() {
			if !b.full(s, qos) {
				s.slow.hadRoom()
			} else {
				if deadline.IsZero() {
					deadline = time.Now().Add(b.opts.BackpressureWait)
				}
				b.waitDrain(s, qos, deadline)
			}
		}
		s.pending.Add(1)
	}
}

// full reports whether a subscriber cannot take another message now: its
// write queue is at the high-water mark, or (for QoS 1/2) it has nearly
// MaxOfflineQueue deliveries unacknowledged.
func (b *Broker) full(s *session, qos byte) bool {
	return s.pending.Load() >= b.highWater || (qos > 0 && s.cl.State.Inflight.Len() >= b.inflightHigh)
}

func (b *Broker) waitDrain(s *session, qos byte, deadline time.Time) {
	start := time.Now()
	b.metrics.held.Inc()
	defer func() {
		b.metrics.held.Dec()
		b.metrics.backpressure.Observe(time.Since(start).Seconds())
	}()
	for b.full(s, qos) {
		left := time.Until(deadline)
		if left <= 0 || s.cl.Closed() || s.slow.cut.Load() {
			b.metrics.stalls.Inc()
			b.heldInVain(s) // slowsub.go
			return
		}
		ch := s.drainCh()
		if !b.full(s, qos) { // drained between the check and drainCh
			break
		}
		t := time.NewTimer(left)
		select {
		case <-ch:
		case <-t.C:
		case <-b.stop:
		}
		t.Stop()
	}
	s.slow.hadRoom()
}

// disconnectReason names why a connection ended, for presence events.
func disconnectReason(s *session, cl *mqtt.Client, err error) string {
	cause := cl.StopCause()
	switch {
	case s.expired.Load():
		return "credential_expired"
	case s.kicked.Load():
		return "kicked"
	case s.slow.cut.Load():
		return "slow_subscriber"
	case s.takenOver.Load() || errors.Is(cause, packets.ErrSessionTakenOver) || errors.Is(err, packets.ErrSessionTakenOver):
		return "taken_over"
	case errors.Is(cause, packets.ErrServerShuttingDown) || errors.Is(err, packets.ErrServerShuttingDown):
		return "server_shutdown"
	case errors.Is(cause, packets.CodeDisconnect) && err == nil:
		return "client_disconnect"
	case isTimeout(err) || isTimeout(cause):
		return "keepalive_timeout"
	case errors.Is(err, packets.CodeDisconnectWillMessage):
		return "client_disconnect_with_will"
	}
	var code packets.Code
	if errors.As(err, &code) && code.Code >= packets.ErrUnspecifiedError.Code {
		return "protocol_error"
	}
	return "connection_lost"
}

func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}
