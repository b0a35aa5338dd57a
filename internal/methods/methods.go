// Package methods is direct methods: synchronous request/response calls
// from the platform to a connected device, with a timeout.
//
// A call publishes the request at QoS 1 on
// $mote/things/{thing}/methods/{method}/{requestId}; the device answers on
// $mote/things/{thing}/methods/res/{status}/{requestId}. Pending calls are
// kept in a sync.Map keyed by request id, so calls to many devices never
// wait for each other, and the bus handler only looks the call up and hands
// the answer over (it never blocks).
package methods

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/moteiot/mote/internal/bus"
	"github.com/moteiot/mote/internal/core"
)

// Limits and defaults of a call.
const (
	DefaultTimeout = 30 * time.Second
	MaxTimeout     = 300 * time.Second
	MinTimeout     = time.Second
	// DefaultMaxPayload bounds the request payload (its JSON encoding).
	DefaultMaxPayload = 128 * 1024
)

// ResponseFilter is the bus filter of device answers.
const ResponseFilter = "$mote/things/+/methods/res/+/+"

// ErrTimeout is returned when the device did not answer in time.
var ErrTimeout = errors.New("the device did not answer in time")

// Publisher sends a platform message to the devices (the broker).
type Publisher interface {
	Publish(topic string, payload []byte, retain bool, qos byte) error
}

// Presence tells whether a thing is connected now (the broker).
type Presence interface {
	Connected(thing string) bool
}

// Remote routes a call to the cluster node a thing is connected to, when
// it is not connected to this one (cluster.MethodRouter).
type Remote interface {
	// Invoke calls the method on the node the thing is connected to and
	// returns that node's answer: the device's Response or an error of the
	// same kinds as Service.Invoke. routed is false when the thing is
	// connected to no other node: the caller then answers as for an
	// offline thing.
	Invoke(ctx context.Context, thing, method string, payload json.RawMessage, timeout time.Duration) (r Response, routed bool, err error)
}

// Options configure a Service.
type Options struct {
	Publisher  Publisher
	Presence   Presence
	Remote     Remote                // nil: one node alone; calls reach only local devices
	MaxPayload int                   // 0: DefaultMaxPayload
	Metrics    prometheus.Registerer // may be nil
	Logger     *slog.Logger
}

// Response is a device's answer.
type Response struct {
	Status  int             `json:"status"`
	Payload json.RawMessage `json:"payload"`
}

type pending struct {
	thing string
	ch    chan Response // buffered 1: the handler never blocks
}

// Service runs direct method calls.
type Service struct {
	pub        Publisher
	presence   Presence
	remote     Remote
	maxPayload int
	log        *slog.Logger

	calls   sync.Map // request id → *pending
	prefix  string   // random per process, so ids never repeat across restarts
	counter atomic.Uint64

	outcomes *prometheus.CounterVec
	latency  prometheus.Histogram
	dropped  *prometheus.CounterVec
	inflight prometheus.Gauge
}

// New returns a Service. Attach it to the bus to receive answers.
func New(o Options) *Service {
	if o.MaxPayload <= 0 {
		o.MaxPayload = DefaultMaxPayload
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	var p [6]byte
	rand.Read(p[:])
	s := &Service{
		pub: o.Publisher, presence: o.Presence, remote: o.Remote, maxPayload: o.MaxPayload, log: o.Logger,
		prefix: hex.EncodeToString(p[:]),
		outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mote_method_calls_total",
			Help: "Direct method calls, by outcome (ok, offline, timeout, error).",
		}, []string{"outcome"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "mote_method_duration_seconds",
			Help:    "Time from sending a direct method request to the device's answer.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mote_method_responses_dropped_total",
			Help: "Device answers to direct methods that were ignored, by reason (unknown_request, wrong_thing, bad_topic).",
		}, []string{"reason"}),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mote_method_calls_pending",
			Help: "Direct method calls waiting for the device's answer.",
		}),
	}
	for _, o := range []string{"ok", "offline", "timeout", "error"} {
		s.outcomes.WithLabelValues(o)
	}
	for _, r := range []string{"unknown_request", "wrong_thing", "bad_topic"} {
		s.dropped.WithLabelValues(r)
	}
	if o.Metrics != nil {
		o.Metrics.MustRegister(s.outcomes, s.latency, s.dropped, s.inflight)
	}
	return s
}

// Attach subscribes the service to device answers on the bus; the returned
// function detaches it.
func (s *Service) Attach(b bus.Bus) (detach func()) {
	return b.Subscribe(ResponseFilter, s.HandleMessage)
}

// RequestTopic is the topic a request is published on.
func RequestTopic(thing, method, requestID string) string {
	return "$mote/things/" + thing + "/methods/" + method + "/" + requestID
}

// ResponseTopic is the topic a device answers on.
func ResponseTopic(thing string, status int, requestID string) string {
	return "$mote/things/" + thing + "/methods/res/" + strconv.Itoa(status) + "/" + requestID
}

// ParseResponseTopic splits $mote/things/{thing}/methods/res/{status}/{id}.
// The status is a decimal integer that fits in 32 bits.
func ParseResponseTopic(topic string) (thing string, status int, requestID string, ok bool) {
	rest, found := strings.CutPrefix(topic, "$mote/things/")
	if !found {
		return "", 0, "", false
	}
	thing, rest, found = strings.Cut(rest, "/")
	if !found || thing == "" {
		return "", 0, "", false
	}
	rest, found = strings.CutPrefix(rest, "methods/res/")
	if !found {
		return "", 0, "", false
	}
	st, id, found := strings.Cut(rest, "/")
	if !found || id == "" || strings.Contains(id, "/") || st == "" || len(st) > 11 || st[0] == '+' {
		return "", 0, "", false
	}
	n, err := strconv.ParseInt(st, 10, 32)
	if err != nil {
		return "", 0, "", false
	}
	return thing, int(n), id, true
}

// ValidateMethod checks a method name: a name (core.ValidateName) other
// than "res", which is where answers go.
func ValidateMethod(method string) error {
	if err := core.ValidateName("method", method); err != nil {
		return err
	}
	if method == "res" {
		return core.Invalid("method", `method must not be "res" (answers are published under methods/res/)`)
	}
	return nil
}

// ValidateTimeout checks a call's timeout; 0 means DefaultTimeout.
func ValidateTimeout(d time.Duration) (time.Duration, error) {
	switch {
	case d == 0:
		return DefaultTimeout, nil
	case d < MinTimeout || d > MaxTimeout:
		return 0, core.Invalid("timeoutSeconds", "timeoutSeconds must be from %d to %d", int(MinTimeout/time.Second), int(MaxTimeout/time.Second))
	}
	return d, nil
}

// Invoke calls a method on a connected device and waits for its answer or
// the timeout. The payload is JSON (nil sends null). Errors: KindInvalid
// for a bad method, payload or timeout; KindNotFound when the thing is not
// connected; ErrTimeout (wrapped in a KindUnavailable error) when it does
// not answer in time; KindUnavailable when the broker is shutting down.
// In a cluster, a thing connected to another node is called there
// (Options.Remote).
func (s *Service) Invoke(ctx context.Context, thing, method string, payload json.RawMessage, timeout time.Duration) (Response, error) {
	return s.invoke(ctx, thing, method, payload, timeout, s.remote)
}

// InvokeHere is Invoke for a thing connected to this node only: how a
// node serves a call routed to it by another (never routed again).
func (s *Service) InvokeHere(ctx context.Context, thing, method string, payload json.RawMessage, timeout time.Duration) (Response, error) {
	return s.invoke(ctx, thing, method, payload, timeout, nil)
}

func (s *Service) invoke(ctx context.Context, thing, method string, payload json.RawMessage, timeout time.Duration, remote Remote) (Response, error) {
	if err := core.ValidateName("thing", thing); err != nil {
		return Response{}, err
	}
	if err := ValidateMethod(method); err != nil {
		return Response{}, err
	}
	timeout, err := ValidateTimeout(timeout)
	if err != nil {
		return Response{}, err
	}
	if len(payload) == 0 {
		payload = json.RawMessage("null")
	}
	if len(payload) > s.maxPayload {
		return Response{}, &core.Error{Kind: core.KindTooLarge, Field: "payload",
			Msg: "payload is larger than " + strconv.Itoa(s.maxPayload) + " bytes"}
	}
	if !json.Valid(payload) {
		return Response{}, core.Invalid("payload", "payload must be JSON")
	}
	if !s.presence.Connected(thing) && remote != nil {
		if r, routed, err := remote.Invoke(ctx, thing, method, payload, timeout); routed {
			return r, err // counted by the node that served it, and by the router
		}
	}
	if !s.presence.Connected(thing) {
		s.outcomes.WithLabelValues("offline").Inc()
		return Response{}, core.Errorf(core.KindNotFound, "thing %q is not connected", thing)
	}

	id := s.prefix + strconv.FormatUint(s.counter.Add(1), 36)
	p := &pending{thing: thing, ch: make(chan Response, 1)}
	s.calls.Store(id, p)
	s.inflight.Inc()
	defer func() {
		s.calls.Delete(id)
		s.inflight.Dec()
	}()
	start := time.Now()
	if err := s.pub.Publish(RequestTopic(thing, method, id), payload, false, 1); err != nil {
		s.outcomes.WithLabelValues("error").Inc()
		if core.KindOf(err) == core.KindInternal {
			return Response{}, &core.Error{Kind: core.KindUnavailable, Msg: "could not send the request", Err: err}
		}
		return Response{}, err
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case r := <-p.ch:
		s.outcomes.WithLabelValues("ok").Inc()
		s.latency.Observe(time.Since(start).Seconds())
		return r, nil
	case <-t.C:
		s.outcomes.WithLabelValues("timeout").Inc()
		return Response{}, &core.Error{Kind: core.KindUnavailable,
			Msg: "thing " + strconv.Quote(thing) + " did not answer method " + strconv.Quote(method) + " within " + timeout.String(),
			Err: ErrTimeout}
	case <-ctx.Done():
		s.outcomes.WithLabelValues("error").Inc()
		return Response{}, &core.Error{Kind: core.KindUnavailable, Msg: "call abandoned", Err: ctx.Err()}
	}
}

// HandleMessage takes a device's answer from the bus. It never blocks.
func (s *Service) HandleMessage(m core.Message) {
	thing, status, id, ok := ParseResponseTopic(m.Topic)
	if !ok {
		s.dropped.WithLabelValues("bad_topic").Inc()
		return
	}
	v, ok := s.calls.Load(id)
	if !ok {
		s.dropped.WithLabelValues("unknown_request").Inc() // late, repeated or made up
		return
	}
	p := v.(*pending)
	// Only the thing that was called may answer (policies normally keep a
	// device to its own topics; this holds even if one says otherwise).
	if thing != p.thing || (m.Thing != "" && m.Thing != p.thing) {
		s.dropped.WithLabelValues("wrong_thing").Inc()
		return
	}
	if _, ok := s.calls.LoadAndDelete(id); !ok {
		s.dropped.WithLabelValues("unknown_request").Inc() // answered twice at once
		return
	}
	p.ch <- Response{Status: status, Payload: responsePayload(m.Payload)}
}

// responsePayload makes a device's answer JSON: JSON as it is, nothing as
// null, anything else as a JSON string of its text.
func responsePayload(b []byte) json.RawMessage {
	if len(b) == 0 {
		return json.RawMessage("null")
	}
	if json.Valid(b) {
		return json.RawMessage(append([]byte(nil), b...))
	}
	s := string(b)
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	out, _ := json.Marshal(s) // cannot fail for a string
	return out
}
