// Package certrotate lets a device rotate its own certificate before it
// expires (docs/credentials.md): over a connection authenticated with that
// certificate it sends a new certificate signing request — its private
// key never leaves it — and receives a certificate signed by Mote's CA.
// The old certificate stays valid for the rotation window
// (--credential-rotation-window), then it is refused and connections that
// still use it are closed (registry.RotateCredential).
//
// The same service answers the MQTT topic $mote/things/{name}/certificate/rotate
// (package broker writes the answer to the requesting connection only)
// and POST /api/v1/devices/{thing}/certificate (package httpapi). Only the
// thing itself, authenticated with the certificate it rotates, may rotate
// it; a CSR with a weak key or another subject is refused, and each thing
// may rotate at most --device-rotation-limit times an hour. Every
// rotation, accepted or refused, is an audit entry with the device as
// actor.
package certrotate

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/moteiot/mote/internal/audit"
	"github.com/moteiot/mote/internal/auth"
	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/provisioning"
	"github.com/moteiot/mote/internal/registry"
	"github.com/moteiot/mote/internal/store"
)

// MQTT topics (docs/topics.md).
const (
	topicPrefix = "$mote/things/"
	topicSuffix = "/certificate/rotate"
)

// RequestTopic is the topic a thing publishes its rotation request on;
// the answer comes on RequestTopic(thing)+"/accepted" or "/rejected".
func RequestTopic(thing string) string { return topicPrefix + thing + topicSuffix }

// IsTopic reports whether topic is a rotation request or answer topic of
// any thing (or a filter under one); nothing is ever routed on them.
func IsTopic(topic string) bool {
	rest, ok := strings.CutPrefix(topic, topicPrefix)
	if !ok {
		return false
	}
	_, after, ok := strings.Cut(rest, "/")
	return ok && (after == "certificate" || strings.HasPrefix(after, "certificate/"))
}

// MaxRequestSize bounds a request (a CSR and a few fields).
const MaxRequestSize = provisioning.MaxCSRSize + 1024

// maxThings bounds the per-thing limiters kept; when full they are
// forgotten (a thing then gets a fresh hour once).
const maxThings = 100_000

// Request is a rotation request.
type Request struct {
	CSR string `json:"csr"` // PEM certificate request
}

// Answer is an accepted rotation.
type Answer struct {
	Credential    string    `json:"credential"` // the new credential's id
	Certificate   string    `json:"certificate"`
	CACertificate string    `json:"caCertificate"`
	NotAfter      time.Time `json:"notAfter"`
	// Previous is the rotated credential and when it stops being valid.
	Previous         string    `json:"previous"`
	PreviousNotAfter time.Time `json:"previousNotAfter"`
}

// Options configure a Service.
type Options struct {
	Registry *registry.Registry
	Audit    *audit.Recorder // nil: not recorded
	// PerHour is how many rotations a thing may make an hour
	// (--device-rotation-limit); 0: 6.
	PerHour int
	Logger  *slog.Logger
	Metrics prometheus.Registerer
}

// Service rotates devices' certificates.
type Service struct {
	o       Options
	log     *slog.Logger
	logRate *rate.Limiter
	total   *prometheus.CounterVec

	mu     sync.Mutex
	things map[string]*rate.Limiter
}

// New returns a Service.
func New(o Options) *Service {
	if o.PerHour <= 0 {
		o.PerHour = 6
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	s := &Service{o: o, log: o.Logger, logRate: rate.NewLimiter(1, 5), things: make(map[string]*rate.Limiter),
		total: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mote_certificate_rotations_total",
			Help: "Certificate self-rotations by devices, by protocol (mqtt, http) and result (accepted, invalid, forbidden, rate_limited, error)."},
			[]string{"protocol", "result"})}
	if o.Metrics != nil {
		o.Metrics.MustRegister(s.total)
	}
	return s
}

// Rotate serves one request of the device id (as it authenticated) for
// thing (the thing named in the topic or path), from remote over protocol
// ("mqtt" or "http"). Errors carry a core kind: Forbidden (another thing,
// or not authenticated with a certificate), Invalid (the CSR),
// RateLimited, Conflict (the certificate is revoked or expired).
func (s *Service) Rotate(ctx context.Context, id auth.Identity, thing string, payload []byte, remote, protocol string) (Answer, error) {
	a, err := s.rotate(ctx, id, thing, payload)
	result := "accepted"
	status := 201
	switch core.KindOf(err) {
	case 0:
	case core.KindInvalid, core.KindTooLarge:
		result, status = "invalid", 400
	case core.KindForbidden:
		result, status = "forbidden", 403
	case core.KindRateLimited:
		result, status = "rate_limited", 429
	case core.KindConflict:
		result, status = "conflict", 409
	default:
		result, status = "error", 500
	}
	if err == nil && a.Credential == "" {
		result, status = "error", 500
	}
	s.total.WithLabelValues(protocol, result).Inc()
	if err != nil && s.logRate.Allow() {
		s.log.Info("certificate rotation refused", "thing", id.Thing, "asked_for", clip(thing), "protocol", protocol, "remote", remote, "result", result, "error", err)
	}
	if s.o.Audit != nil && core.KindOf(err) != core.KindRateLimited { // a flood is counted, not recorded
		e := store.AuditEntry{Time: time.Now(), ActorKind: audit.ActorDevice, ActorName: id.Thing,
			Action: "thing.credential.rotate", TargetKind: "thing", TargetName: clip(thing), Status: status, Source: hostOf(remote)}
		if err == nil {
			after, _ := json.Marshal(map[string]any{"credential": a.Credential, "previous": a.Previous, "previousNotAfter": a.PreviousNotAfter, "notAfter": a.NotAfter, "protocol": protocol})
			e.After, e.Omitted = audit.Document(after, s.o.Audit.MaxDocument())
		}
		if aerr := s.o.Audit.Record(ctx, e); aerr != nil && s.logRate.Allow() {
			s.log.Warn("certificate rotation not recorded in the audit log", "thing", id.Thing, "error", aerr)
		}
	}
	return a, err
}

func (s *Service) rotate(ctx context.Context, id auth.Identity, thing string, payload []byte) (Answer, error) {
	if id.Thing == "" || id.Thing != thing {
		return Answer{}, core.Errorf(core.KindForbidden, "a thing may rotate only its own certificate")
	}
	if id.Method != store.CredentialX509 || id.Credential == "" {
		return Answer{}, core.Errorf(core.KindForbidden, "rotate a certificate over a connection authenticated with it (a client certificate on MQTTS or the HTTPS port)")
	}
	if !s.allow(thing) {
		return Answer{}, core.Errorf(core.KindRateLimited, "too many certificate rotations for this thing; at most %d an hour (--device-rotation-limit)", s.o.PerHour)
	}
	var req Request
	if err := decode(payload, &req); err != nil {
		return Answer{}, err
	}
	if _, err := provisioning.ParseCSR([]byte(req.CSR), thing); err != nil {
		return Answer{}, err
	}
	nc, old, err := s.o.Registry.RotateCredential(ctx, thing, id.Credential, registry.Rotation{CSR: []byte(req.CSR)})
	if err != nil {
		return Answer{}, err
	}
	a := Answer{Credential: nc.ID, Certificate: nc.CertPEM, CACertificate: nc.CACert, Previous: old.ID}
	if nc.NotAfter != nil {
		a.NotAfter = *nc.NotAfter
	}
	if old.NotAfter != nil {
		a.PreviousNotAfter = *old.NotAfter
	}
	return a, nil
}

// allow takes one rotation of thing from its hourly budget.
func (s *Service) allow(thing string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	l, ok := s.things[thing]
	if !ok {
		if len(s.things) >= maxThings {
			clear(s.things)
		}
		l = rate.NewLimiter(rate.Limit(float64(s.o.PerHour)/3600), s.o.PerHour)
		s.things[thing] = l
	}
	return l.Allow()
}

// decode parses a request strictly.
func decode(payload []byte, v any) error {
	if len(payload) > MaxRequestSize {
		return core.Errorf(core.KindTooLarge, "request is larger than %d bytes", MaxRequestSize)
	}
	dec := json.NewDecoder(strings.NewReader(string(payload)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return core.Invalid("payload", "malformed request: want {\"csr\": \"-----BEGIN CERTIFICATE REQUEST-----...\"}")
	}
	if dec.More() {
		return core.Invalid("payload", "malformed request: one JSON object expected")
	}
	return nil
}

// Rejection is the payload of a .../rejected answer (the shape of the
// provisioning topics').
type Rejection = provisioning.Rejection

// MQTTAnswer serves a request published on topic by the device id and
// returns the answer's topic and payload; topic must satisfy IsTopic.
func (s *Service) MQTTAnswer(ctx context.Context, id auth.Identity, topic string, payload []byte, remote string) (string, []byte) {
	thing := ""
	if rest, ok := strings.CutPrefix(topic, topicPrefix); ok && strings.HasSuffix(rest, topicSuffix) {
		thing = strings.TrimSuffix(rest, topicSuffix)
	}
	a, err := s.Rotate(ctx, id, thing, payload, remote, "mqtt")
	answer := RequestTopic(id.Thing)
	if err != nil {
		b, _ := json.Marshal(provisioning.RejectionOf(err))
		return answer + "/rejected", b
	}
	b, _ := json.Marshal(a)
	return answer + "/accepted", b
}

func clip(s string) string {
	if len(s) > 128 {
		return s[:128]
	}
	return s
}

func hostOf(remote string) string {
	if i := strings.LastIndexByte(remote, ':'); i > 0 && !strings.Contains(remote[i:], "]") {
		return strings.Trim(remote[:i], "[]")
	}
	return remote
}
