package provisioning

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"strings"

	"github.com/moteiot/mote/internal/auth"
	"github.com/moteiot/mote/internal/core"
)

// MQTT request/response topics of a provisioning connection
// (docs/provisioning.md). Answers are written to the requesting
// connection only; nothing is routed on these topics.
const (
	TopicRegister      = "$mote/provisioning/register"
	TopicCreateFromCSR = "$aws/certificates/create-from-csr/json"
	awsTemplatesPrefix = "$aws/provisioning-templates/"
	awsProvisionSuffix = "/provision/json"
)

// IsTopic reports whether topic is one of the provisioning request or
// answer topics (or a filter under them).
func IsTopic(topic string) bool {
	return strings.HasPrefix(topic, "$mote/provisioning/") || strings.HasPrefix(topic, "$aws/certificates/") ||
		strings.HasPrefix(topic, awsTemplatesPrefix)
}

// MaxRequestSize bounds the payload of one provisioning request.
const MaxRequestSize = 32 << 10

// Rejection is the payload of a .../rejected answer (the AWS shape).
type Rejection struct {
	StatusCode   int    `json:"statusCode"`
	ErrorCode    string `json:"errorCode"`
	ErrorMessage string `json:"errorMessage"`
}

// RegisterAnswer is the accepted answer of $mote/provisioning/register.
type RegisterAnswer struct {
	Thing         string `json:"thing"`
	Secret        string `json:"secret,omitempty"`
	Certificate   string `json:"certificate,omitempty"`
	CACertificate string `json:"caCertificate,omitempty"`
}

// MQTT is the broker's view of the service (broker.Provisioner): the
// session handle is a *Session.
type MQTT struct {
	S       *Service
	Limiter *Limiter // per source address; nil: none
}

// ProvisioningSecret authenticates a symmetric-key provisioning connection.
func (m MQTT) ProvisioningSecret(ctx context.Context, remote, clientID, username, password string) (any, error) {
	if err := m.Limiter.Allow(remote, "mqtt"); err != nil {
		m.S.count(MethodSymmetricKey, "rate_limited")
		return nil, err
	}
	return m.S.Secret(ctx, clientID, username, password)
}

// ProvisioningCertificate authenticates a certificate Mote's CA did not
// issue: a thing's identity (JITR) or a claim session.
func (m MQTT) ProvisioningCertificate(ctx context.Context, cert *x509.Certificate) (auth.Identity, any, error) {
	id, sess, err := m.S.Certificate(ctx, cert)
	if sess == nil {
		return id, nil, err
	}
	return id, sess, err
}

// ProvisioningSubscribe reports whether a provisioning connection may
// subscribe to filter: the answer topics of its requests.
func (m MQTT) ProvisioningSubscribe(sess any, filter string) bool {
	s, _ := sess.(*Session)
	if s == nil {
		return false
	}
	for _, base := range []string{TopicRegister, TopicCreateFromCSR, awsTemplatesPrefix + s.Enrollment + awsProvisionSuffix} {
		switch filter {
		case base + "/accepted", base + "/rejected", base + "/+":
			return true
		}
	}
	return false
}

// ProvisioningRequest serves one request and returns its answer's topic
// and payload ("" when the topic is no request: nothing is answered).
func (m MQTT) ProvisioningRequest(ctx context.Context, sess any, topic string, payload []byte) (string, []byte) {
	s, _ := sess.(*Session)
	if s == nil {
		return "", nil
	}
	var (
		answer any
		err    error
	)
	switch {
	case topic == TopicRegister:
		answer, err = m.register(ctx, s, payload)
	case topic == TopicCreateFromCSR:
		var req struct {
			CSR string `json:"certificateSigningRequest"`
		}
		if err = decode(payload, &req); err == nil {
			answer, err = m.S.CreateCertificateFromCSR(ctx, s, req.CSR)
		}
	case strings.HasPrefix(topic, awsTemplatesPrefix) && strings.HasSuffix(topic, awsProvisionSuffix):
		name := strings.TrimSuffix(strings.TrimPrefix(topic, awsTemplatesPrefix), awsProvisionSuffix)
		var req RegisterThingRequest
		if err = decode(payload, &req); err == nil {
			answer, err = m.S.RegisterThing(ctx, s, name, req)
		}
	default:
		return "", nil
	}
	if err != nil {
		b, _ := json.Marshal(rejection(err))
		return topic + "/rejected", b
	}
	b, _ := json.Marshal(answer)
	return topic + "/accepted", b
}

func (m MQTT) register(ctx context.Context, s *Session, payload []byte) (RegisterAnswer, error) {
	if s.RegistrationID == "" {
		return RegisterAnswer{}, core.Errorf(core.KindForbidden, "$mote/provisioning/register is for symmetric-key provisioning connections; a claim certificate uses the AWS topics")
	}
	var req struct {
		CSR string `json:"csr"`
	}
	if len(payload) > 0 {
		if err := decode(payload, &req); err != nil {
			return RegisterAnswer{}, err
		}
	}
	ctx, cancel := context.WithTimeout(ctx, m.S.opts.RequestTimeout)
	defer cancel()
	row, err := m.S.st.GetEnrollment(ctx, s.Enrollment)
	if err != nil {
		return RegisterAnswer{}, err
	}
	slot, err := m.S.auditSlot(ctx)
	if err != nil {
		return RegisterAnswer{}, err
	}
	res, err := m.S.admit(ctx, row, s.RegistrationID, s.RegistrationID, []byte(req.CSR), nil)
	m.S.countResult(MethodSymmetricKey, res, err)
	auditCommit(slot, AuditActionMQTTRegister, s.RegistrationID, s.Enrollment, res, err)
	if err != nil {
		return RegisterAnswer{}, err
	}
	return RegisterAnswer{Thing: res.Thing, Secret: res.Secret, Certificate: res.Certificate, CACertificate: res.CACert}, nil
}

// decode parses a JSON request body strictly.
func decode(payload []byte, v any) error {
	if len(payload) > MaxRequestSize {
		return core.Errorf(core.KindTooLarge, "request is larger than %d bytes", MaxRequestSize)
	}
	dec := json.NewDecoder(strings.NewReader(string(payload)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return core.Invalid("payload", "malformed request: %v", err)
	}
	return nil
}

// RejectionOf is the AWS-shaped refusal of err (for other request/response
// topics in the same style: package certrotate).
func RejectionOf(err error) Rejection { return rejection(err) }

// rejection is the AWS-shaped refusal of err.
func rejection(err error) Rejection {
	status := 500
	code := "InternalError"
	switch core.KindOf(err) {
	case core.KindInvalid:
		status, code = 400, "InvalidPayload"
	case core.KindUnauthorized:
		status, code = 401, "Unauthorized"
	case core.KindForbidden:
		status, code = 403, "Forbidden"
	case core.KindNotFound:
		status, code = 404, "NotFound"
	case core.KindConflict:
		status, code = 409, "Conflict"
	case core.KindTooLarge:
		status, code = 413, "PayloadTooLarge"
	case core.KindRateLimited:
		status, code = 429, "Throttled"
	case core.KindUnavailable:
		status, code = 503, "ServiceUnavailable"
	}
	msg := "internal error"
	var ce *core.Error
	if status != 500 && errors.As(err, &ce) {
		msg = err.Error()
	}
	return Rejection{StatusCode: status, ErrorCode: code, ErrorMessage: msg}
}
