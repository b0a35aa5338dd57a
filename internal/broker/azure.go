package broker

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/moteiot/mote/internal/auth"
	"github.com/moteiot/mote/internal/azureiot"
	"github.com/moteiot/mote/internal/core"
)

// The Azure IoT Hub device protocol (docs/azure.md): a device running an
// Azure IoT device SDK connects with the user name
// "{host}/{deviceId}/?api-version=..." and a SAS token (or its X.509
// certificate); its "devices/{id}/messages/events/{bag}" telemetry is
// republished on things/{id}/telemetry with the property bag as MQTT 5
// user properties, and its "$iothub/twin/..." requests are answered from
// the thing's classic shadow. The "$iothub/..." topics carry no device id:
// they are per connection. Nothing is ever routed on them — a device's
// publishes there are requests handled here, and answers and desired
// patches are written to that one connection — so they cannot leak
// across devices.

// SASAuthenticator verifies Azure IoT Hub SAS tokens; *auth.Devices
// implements it. Without it (Options.Auth does not), SAS tokens are
// refused.
type SASAuthenticator interface {
	SAS(ctx context.Context, host, deviceID, token string) (auth.Identity, error)
}

// TwinBackend keeps device twins (the daemon backs it with the thing's
// classic shadow). Its calls are made off the publish path, from the
// connection's own Azure worker, with a deadline.
type TwinBackend interface {
	// GetTwin returns the twin document:
	// {"desired": {..., "$version": n}, "reported": {..., "$version": n}}.
	GetTwin(ctx context.Context, thing string) ([]byte, error)
	// ReportTwin merges a reported-properties patch and returns the new
	// version.
	ReportTwin(ctx context.Context, thing string, patch []byte) (int64, error)
	// DesiredPatch turns the body of a shadow's update/documents message
	// into a desired-properties patch and its version; ok is false when
	// the desired state did not change.
	DesiredPatch(documents []byte) (patch []byte, version int64, ok bool)
}

// AzureOptions configure the Azure IoT Hub device protocol.
type AzureOptions struct {
	// Enabled accepts Azure IoT Hub user names; when false they are
	// ordinary (and unknown) user names.
	Enabled bool
	// QueueSize bounds the $iothub requests and desired patches waiting
	// for one connection's worker; more are answered 429 (or, for
	// patches, dropped and counted). Default 16.
	QueueSize int
	// RequestTimeout bounds one twin request. Default 5s.
	RequestTimeout time.Duration
}

// Refusals of an Azure connection.
var (
	errAzureUsername = errors.New("malformed Azure IoT Hub user name")
	errAzureClientID = errors.New("Azure IoT Hub client id must equal the device id")
	errAzureDevice   = errors.New("credential is for another device than the user name names")
	errAzureNoSAS    = errors.New("Azure IoT Hub password must be a SAS token")
	errAzureNeedsTLS = errors.New("Azure IoT Hub devices connect over TLS (the MQTTS port) only")
)

// azureConnackCode maps the refusals of an Azure connection.
func azureConnackCode(err error) (packets.Code, string, bool) {
	switch {
	case errors.Is(err, errAzureUsername), errors.Is(err, errAzureNoSAS):
		return packets.ErrBadUsernameOrPassword, "azure_bad_username", true
	case errors.Is(err, errAzureNeedsTLS):
		return packets.ErrNotAuthorized, "azure_needs_tls", true
	case errors.Is(err, errAzureClientID):
		return packets.ErrClientIdentifierNotValid, "azure_client_id", true
	case errors.Is(err, errAzureDevice), errors.Is(err, auth.ErrSASWrongDevice):
		return packets.ErrNotAuthorized, "sas_wrong_device", true
	case errors.Is(err, auth.ErrSASExpired):
		return packets.ErrNotAuthorized, "sas_expired", true
	}
	return packets.Code{}, "", false
}

// azureMetrics count what the Azure protocol did.
type azureMetrics struct {
	requests *prometheus.CounterVec // by kind and status
	dropped  *prometheus.CounterVec // by reason
	events   prometheus.Counter
}

type azure struct {
	b    *Broker
	log  *slog.Logger
	m    azureMetrics
	twin atomic.Pointer[TwinBackend] // SetAzureTwin
}

// SetAzureTwin sets what backs device twins. The shadow service
// publishes through the broker, so it is made after it; call this before
// devices connect. Until then twin requests are answered 501.
func (b *Broker) SetAzureTwin(t TwinBackend) { b.azure.twin.Store(&t) }

func newAzure(b *Broker, reg prometheus.Registerer) *azure {
	o := &b.opts.Azure
	if o.QueueSize <= 0 {
		o.QueueSize = 16
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = 5 * time.Second
	}
	a := &azure{b: b, log: throttled(b.opts.Logger, "azure"), m: azureMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mote_azure_requests_total", Help: "Azure IoT Hub $iothub requests from devices, by kind (twin-get, twin-reported, method-result, invalid) and answer status.",
		}, []string{"kind", "status"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mote_azure_dropped_total", Help: "Azure IoT Hub messages dropped, by reason (queue_full, bad_property_bag, wrong_device, write_failed).",
		}, []string{"reason"}),
		events: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mote_azure_events_total", Help: "Azure IoT Hub device-to-cloud messages republished on things/{id}/telemetry.",
		}),
	}}
	if reg != nil {
		reg.MustRegister(a.m.requests, a.m.dropped, a.m.events)
	}
	return a
}

// azureConn is the Azure side of one connection: who it is and its
// worker's queue.
type azureConn struct {
	device string

	mu      sync.Mutex
	queue   chan azureJob
	stopped bool
	done    chan struct{}
}

// Filters an Azure device subscribes to for what the platform pushes.
const (
	desiredFilter = "$iothub/twin/PATCH/properties/desired/#"
	methodsFilter = "$iothub/methods/POST/#"
)

// subscribed reports whether a connection has a subscription to filter
// (made now, or resumed with a persistent session).
func subscribed(s *session, filter string) bool {
	_, ok := s.cl.State.Subscriptions.Get(filter)
	return ok
}

type azureJob struct {
	req     azureiot.Request
	payload []byte
	// method is a direct-method call to write (req.RID is its id) when
	// req.Kind is "".
	method string
	// documents is a shadow update/documents body (a desired patch to
	// push) when req.Kind is "".
	documents []byte
}

// azureUser parses the user name of a CONNECT: nil, nil when it is not an
// Azure IoT Hub user name (or the protocol is off).
func (b *Broker) azureUser(cl *mqtt.Client, pk packets.Packet) (*azureiot.Username, error) {
	// An Azure user name is {hostname}/{deviceId}/?api-version=...: one
	// without a '/' is not one (and is not copied, on every connect).
	if !b.opts.Azure.Enabled || bytes.IndexByte(pk.Connect.Username, '/') < 0 {
		return nil, nil
	}
	u, err := azureiot.ParseUsername(string(pk.Connect.Username))
	if errors.Is(err, azureiot.ErrNotAzure) {
		return nil, nil
	}
	if err != nil {
		return nil, errAzureUsername
	}
	if cl.Net.Listener != "tls" {
		return nil, errAzureNeedsTLS // a SAS token is a bearer credential
	}
	if cl.ID != u.DeviceID {
		return nil, errAzureClientID
	}
	return &u, nil
}

// azureSAS authenticates the password of an Azure connection.
func (b *Broker) azureSAS(ctx context.Context, u *azureiot.Username, password string) (auth.Identity, error) {
	sas, ok := b.opts.Auth.(SASAuthenticator)
	if !ok || !azureiot.IsSAS(password) {
		return auth.Identity{}, errAzureNoSAS
	}
	return sas.SAS(ctx, u.Host, u.DeviceID, password)
}

// newAzureConn starts the worker of an authenticated Azure connection.
func (a *azure) newConn(s *session) *azureConn {
	c := &azureConn{device: s.id.Thing, queue: make(chan azureJob, a.b.opts.Azure.QueueSize), done: make(chan struct{})}
	go a.work(s, c)
	return c
}

// stop ends the worker; jobs still queued are dropped.
func (c *azureConn) stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.stopped {
		c.stopped = true
		close(c.done)
	}
}

// enqueue hands a job to the connection's worker without blocking.
func (c *azureConn) enqueue(j azureJob) bool {
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

// azurePublish handles a publish of an Azure connection (or a publish on
// $iothub/... by anyone) in OnPublish. handled means the packet is done
// with (err tells mochi what to do); otherwise pk, maybe rewritten, goes
// on through the normal path (policies, limits, durability).
func (b *Broker) azurePublish(cl *mqtt.Client, s *session, pk packets.Packet) (packets.Packet, bool, error) {
	a := b.azure
	if azureiot.IsIoTHub(pk.TopicName) {
		if s.azure == nil {
			// Nothing is ever routed on $iothub/...: it would reach every
			// Azure device subscribed to its responses.
			b.metrics.denied.WithLabelValues("publish").Inc()
			if refuse(cl, pk, packets.ErrTopicNameInvalid) {
				return pk, true, packets.ErrRejectPacket
			}
			return pk, true, packets.CodeSuccessIgnore
		}
		req, err := azureiot.ParseRequest(pk.TopicName)
		if err != nil {
			a.m.requests.WithLabelValues("invalid", "400").Inc()
			a.log.Info("azure: unsupported $iothub topic", "client", clip(cl.ID))
			return pk, true, packets.CodeSuccessIgnore
		}
		if req.Kind == azureiot.MethodResult {
			// The answer to a direct method goes on as the device's answer
			// on Mote's topic (its policies apply; package methods takes it
			// from the bus).
			if strings.ContainsAny(req.RID, "/+#") {
				a.m.requests.WithLabelValues(req.Kind, "400").Inc()
				return pk, true, packets.CodeSuccessIgnore
			}
			a.m.requests.WithLabelValues(req.Kind, itoa(req.Status)).Inc()
			pk.TopicName = "$mote/things/" + s.id.Thing + "/methods/res/" + strconv.Itoa(req.Status) + "/" + req.RID
			return pk, false, nil
		}
		// The payload is copied: the job outlives the packet.
		if !s.azure.enqueue(azureJob{req: req, payload: append([]byte(nil), pk.Payload...)}) {
			a.m.dropped.WithLabelValues("queue_full").Inc()
			a.m.requests.WithLabelValues(req.Kind, "429").Inc()
			a.reply(cl, azureiot.TwinResponseTopic(429, req.RID, 0), nil)
		}
		return pk, true, packets.CodeSuccessIgnore
	}
	if s.azure == nil {
		return pk, false, nil
	}
	dev, bag, ok := azureiot.EventsTopic(pk.TopicName)
	if !ok {
		return pk, false, nil // any other topic: as a Mote device
	}
	if dev != s.azure.device {
		a.m.dropped.WithLabelValues("wrong_device").Inc()
		b.metrics.denied.WithLabelValues("publish").Inc()
		b.authLog.Info("azure: telemetry for another device refused", "client", clip(cl.ID), "thing", s.id.Thing)
		if refuse(cl, pk, packets.ErrNotAuthorized) {
			return pk, true, packets.ErrRejectPacket
		}
		return pk, true, packets.CodeSuccessIgnore
	}
	props, err := azureiot.ParsePropertyBag(bag)
	if err != nil {
		a.m.dropped.WithLabelValues("bad_property_bag").Inc()
		a.log.Info("azure: malformed property bag", "client", clip(cl.ID))
		if refuse(cl, pk, packets.ErrTopicNameInvalid) {
			return pk, true, packets.ErrRejectPacket
		}
		return pk, true, packets.CodeSuccessIgnore
	}
	pk.TopicName = azureiot.TelemetryTopic(s.id.Thing)
	user := make([]packets.UserProperty, 0, len(props))
	for _, p := range props {
		user = append(user, packets.UserProperty{Key: p.Key, Val: p.Value})
		switch p.Key {
		case "$.ct":
			pk.Properties.ContentType = p.Value
		}
	}
	pk.Properties.User = user
	a.m.events.Inc()
	return pk, false, nil
}

// azureACL answers the ACL checks that the Azure protocol decides for an
// Azure connection: its $iothub subscriptions and its own devicebound
// topics. ok is false when the policies decide.
func (b *Broker) azureACL(s *session, topic string) (allow, ok bool) {
	if s.azure == nil {
		return false, false
	}
	switch {
	case topic == desiredFilter, topic == methodsFilter, topic == "$iothub/twin/res/#":
		return true, true
	case azureiot.IsIoTHub(topic):
		return false, true
	case topic == azureiot.DeviceBoundFilter(s.azure.device),
		strings.HasPrefix(topic, "devices/"+s.azure.device+"/messages/devicebound/") && !strings.ContainsAny(topic, "+#"):
		return true, true
	}
	return false, false
}

// azureInline sees the platform's own publishes: a shadow's
// update/documents becomes a desired patch for the thing's Azure
// connection, if it subscribed to them.
func (b *Broker) azureInline(pk packets.Packet) {
	rest, ok := strings.CutPrefix(pk.TopicName, "$mote/things/")
	if !ok {
		return
	}
	thing, ok := strings.CutSuffix(rest, "/shadow/update/documents")
	if !ok || strings.Contains(thing, "/") {
		b.azureMethod(rest, pk.Payload)
		return
	}
	s := b.azureSession(thing)
	if s == nil || !subscribed(s, desiredFilter) {
		return
	}
	if !s.azure.enqueue(azureJob{documents: append([]byte(nil), pk.Payload...)}) {
		b.azure.m.dropped.WithLabelValues("queue_full").Inc()
	}
}

// work runs a connection's $iothub requests, one at a time, off the
// publish path: a slow store or a slow device holds only this worker.
func (a *azure) work(s *session, c *azureConn) {
	for {
		select {
		case <-c.done:
			return
		case <-a.b.stop:
			return
		case j := <-c.queue:
			a.do(s, j)
		}
	}
}

func (a *azure) do(s *session, j azureJob) {
	var twin TwinBackend
	if p := a.twin.Load(); p != nil {
		twin = *p
	}
	if j.method != "" {
		a.reply(s.cl, azureiot.MethodTopic(j.method, j.req.RID), j.payload)
		return
	}
	if j.req.Kind == "" {
		if twin == nil {
			return
		}
		patch, version, ok := twin.DesiredPatch(j.documents)
		if ok {
			a.reply(s.cl, azureiot.DesiredPatchTopic(version), patch)
		}
		return
	}
	if twin == nil {
		a.m.requests.WithLabelValues(j.req.Kind, "501").Inc()
		a.reply(s.cl, azureiot.TwinResponseTopic(501, j.req.RID, 0), nil)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), a.b.opts.Azure.RequestTimeout)
	defer cancel()
	switch j.req.Kind {
	case azureiot.TwinGet:
		doc, err := twin.GetTwin(ctx, s.id.Thing)
		status := twinStatus(err, 200)
		a.m.requests.WithLabelValues(j.req.Kind, itoa(status)).Inc()
		a.reply(s.cl, azureiot.TwinResponseTopic(status, j.req.RID, 0), doc)
	case azureiot.TwinReported:
		version, err := twin.ReportTwin(ctx, s.id.Thing, j.payload)
		status := twinStatus(err, 204)
		a.m.requests.WithLabelValues(j.req.Kind, itoa(status)).Inc()
		a.reply(s.cl, azureiot.TwinResponseTopic(status, j.req.RID, version), nil)
	}
}

// twinStatus is the HTTP-like status of a twin answer, from the error's
// core kind.
func twinStatus(err error, ok int) int {
	if err == nil {
		return ok
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return 504
	}
	switch core.KindOf(err) {
	case core.KindInvalid:
		return 400
	case core.KindNotFound:
		return 404
	case core.KindConflict:
		return 409
	case core.KindForbidden:
		return 403
	case core.KindTooLarge:
		return 413
	case core.KindRateLimited:
		return 429
	case core.KindUnavailable:
		return 503
	}
	return 500
}

// reply writes a QoS 0 message to one connection only.
func (a *azure) reply(cl *mqtt.Client, topic string, payload []byte) {
	if payload == nil {
		payload = []byte{}
	}
	err := cl.WritePacket(packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish},
		TopicName:   topic,
		Payload:     payload,
	})
	if err != nil {
		a.m.dropped.WithLabelValues("write_failed").Inc()
	}
}

func itoa(n int) string {
	if n >= 100 && n <= 999 {
		return string([]byte{byte('0' + n/100), byte('0' + n/10%10), byte('0' + n%10)})
	}
	return "other"
}

func isAzureRefusal(err error) bool {
	_, _, ok := azureConnackCode(err)
	return ok
}

// azureMethod sees a direct-method request of package methods,
// "{thing}/methods/{method}/{requestId}" under $mote/things/, and hands it
// to the thing's Azure connection (if it subscribed to
// $iothub/methods/POST/#) as "$iothub/methods/POST/{method}/?$rid={id}".
func (b *Broker) azureMethod(rest string, payload []byte) {
	parts := strings.Split(rest, "/")
	if len(parts) != 4 || parts[1] != "methods" || parts[2] == "res" {
		return
	}
	thing, method, id := parts[0], parts[2], parts[3]
	s := b.azureSession(thing)
	if s == nil || !subscribed(s, methodsFilter) {
		return
	}
	if !s.azure.enqueue(azureJob{method: method, req: azureiot.Request{RID: id}, payload: append([]byte(nil), payload...)}) {
		b.azure.m.dropped.WithLabelValues("queue_full").Inc()
	}
}

// azureSession returns the live Azure connection of a thing, or nil.
func (b *Broker) azureSession(thing string) *session {
	v, ok := b.sessions.Load(thing) // an Azure client id is its thing's name
	if !ok {
		return nil
	}
	s := v.(*session)
	if s.azure == nil || s.id.Thing != thing {
		return nil
	}
	return s
}

// commandsPrefix is package commands' topic of a thing's commands.
func commandsPrefix(thing string) string { return "$mote/things/" + thing + "/commands/" }

// azureDeviceBound maps a command for an Azure connection that subscribed
// to its cloud-to-device messages: the topic it goes out on,
// devices/{id}/messages/devicebound/{bag} with $.mid (the command id),
// $.to, $.ct and $.ce, and the subscription it is delivered under.
func (b *Broker) azureDeviceBound(s *session, topic string) (string, packets.Subscription, bool) {
	id, ok := strings.CutPrefix(topic, commandsPrefix(s.id.Thing))
	if !ok || id == "" || strings.Contains(id, "/") {
		return "", packets.Subscription{}, false
	}
	sub, ok := s.cl.State.Subscriptions.Get(azureiot.DeviceBoundFilter(s.azure.device))
	if !ok {
		return "", packets.Subscription{}, false
	}
	return azureiot.DeviceBoundTopic(s.azure.device, []azureiot.Property{
		{Key: "$.mid", Value: id},
		{Key: "$.to", Value: "/devices/" + s.azure.device + "/messages/devicebound"},
		{Key: "$.ct", Value: "application/json"},
		{Key: "$.ce", Value: "utf-8"},
		{Key: "mote-command", Value: id},
	}), sub, true
}

// azureFilters adds, for an Azure connection subscribed to its
// cloud-to-device messages, the filter of its commands, so that package
// commands delivers them (as C2D messages, azureDeviceBound).
func (b *Broker) azureFilters(s *session, filters []string) []string {
	if s.azure == nil {
		return filters
	}
	for _, f := range filters {
		if f == azureiot.DeviceBoundFilter(s.azure.device) {
			return append(filters, commandsPrefix(s.id.Thing)+"+")
		}
	}
	return filters
}

// SendC2D sends a raw cloud-to-device message to a thing's live Azure
// connection, at QoS 1 if it subscribed so, on
// devices/{id}/messages/devicebound/{bag}: the application properties,
// then $.mid (a new message id, returned), $.to and $.ct if given. It is
// not queued: a thing without a connection subscribed to its C2D messages
// is a conflict.
func (b *Broker) SendC2D(thing string, payload []byte, props []azureiot.Property, contentType string) (string, error) {
	if b.closed.Load() {
		return "", core.Errorf(core.KindUnavailable, "broker is shutting down")
	}
	if len(payload) > b.opts.MaxPacketSize {
		return "", &core.Error{Kind: core.KindTooLarge, Msg: "message is larger than the largest packet the broker accepts (max-packet-size)"}
	}
	s := b.azureSession(thing)
	if s == nil || s.cl.Closed() {
		return "", core.Errorf(core.KindConflict, "thing %q has no Azure IoT Hub connection", thing)
	}
	sub, ok := s.cl.State.Subscriptions.Get(azureiot.DeviceBoundFilter(s.azure.device))
	if !ok {
		return "", core.Errorf(core.KindConflict, "thing %q has not subscribed to its cloud-to-device messages", thing)
	}
	mid := newMessageID()
	all := append([]azureiot.Property(nil), props...)
	all = append(all, azureiot.Property{Key: "$.mid", Value: mid},
		azureiot.Property{Key: "$.to", Value: "/devices/" + s.azure.device + "/messages/devicebound"})
	if contentType != "" {
		all = append(all, azureiot.Property{Key: "$.ct", Value: contentType})
	}
	topic := azureiot.DeviceBoundTopic(s.azure.device, all)
	now := time.Now()
	ok, full := b.deliverTo(s.cl, thing, topic, topic, payload, min(sub.Qos, 1), now, now.Add(time.Hour))
	if !ok {
		if full {
			return "", ErrDeliveryBusy
		}
		return "", core.Errorf(core.KindUnavailable, "the connection of thing %q cannot take the message now", thing)
	}
	return mid, nil
}

func newMessageID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
