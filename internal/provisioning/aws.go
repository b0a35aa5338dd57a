package provisioning

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"time"

	"github.com/moteiot/mote/internal/auth"
	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/pki"
	"github.com/moteiot/mote/internal/registry"
	"github.com/moteiot/mote/internal/store"
)

// The AWS IoT fleet-provisioning MQTT API, where it maps: a device
// connected with a claim certificate of a claim-mode x509CA group (or a
// symmetric-key provisioning identity) asks for a certificate from its
// CSR (CreateCertificateFromCsr), then registers a thing with it
// (RegisterThing, template name = the group's name). The certificate
// waits, bound to its ownership token, until RegisterThing claims it
// (Options.PendingTTL, at most Options.MaxPendingCertificates); it is kept
// in memory only: a restart in between means asking again.

// Limits of a RegisterThing request.
const (
	MaxParameters     = 32
	MaxParameterKey   = 64
	MaxParameterValue = 256
)

type pendingCert struct {
	group   string
	certPEM string
	fp      string
	notAft  time.Time
	expires time.Time
}

// CreatedCertificate is the answer of CreateCertificateFromCsr.
type CreatedCertificate struct {
	CertificateID             string `json:"certificateId"`
	CertificatePEM            string `json:"certificatePem"`
	CertificateOwnershipToken string `json:"certificateOwnershipToken"`
}

// CreateCertificateFromCSR signs a CSR for a provisioning session and
// returns the certificate with its ownership token.
func (s *Service) CreateCertificateFromCSR(ctx context.Context, sess *Session, csrPEM string) (CreatedCertificate, error) {
	if sess == nil {
		return CreatedCertificate{}, core.Errorf(core.KindForbidden, "not a provisioning connection")
	}
	csr, err := ParseCSR([]byte(csrPEM), "")
	if err != nil {
		s.count(MethodAWS, "bad_csr")
		return CreatedCertificate{}, err
	}
	validity := s.opts.CertValidity
	if validity == 0 {
		validity = registry.DefaultCertValidity
	}
	cn := csr.Subject.CommonName
	if cn == "" || core.ValidateName("cn", cn) != nil {
		cn = "pending"
	}
	certPEM, cert, err := s.opts.CA.SignCSR([]byte(csrPEM), cn, validity)
	if err != nil {
		return CreatedCertificate{}, err
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return CreatedCertificate{}, err
	}
	token := base64.RawURLEncoding.EncodeToString(b)
	now := s.now()
	s.pendMu.Lock()
	defer s.pendMu.Unlock()
	for k, p := range s.pending {
		if now.After(p.expires) {
			delete(s.pending, k)
		}
	}
	if len(s.pending) >= s.opts.MaxPendingCertificates {
		s.count(MethodAWS, "pending_full")
		return CreatedCertificate{}, core.Errorf(core.KindRateLimited, "too many certificates wait for RegisterThing (--provisioning-max-pending-certificates); try again later")
	}
	fp := pki.Fingerprint(cert)
	s.pending[token] = pendingCert{group: sess.Enrollment, certPEM: string(certPEM), fp: fp, notAft: cert.NotAfter.UTC(), expires: now.Add(s.opts.PendingTTL)}
	return CreatedCertificate{CertificateID: fp, CertificatePEM: string(certPEM), CertificateOwnershipToken: token}, nil
}

// RegisterThingRequest is the body of an AWS RegisterThing request.
type RegisterThingRequest struct {
	CertificateOwnershipToken string            `json:"certificateOwnershipToken"`
	Parameters                map[string]string `json:"parameters"`
}

// RegisterThingResponse is its accepted answer.
type RegisterThingResponse struct {
	DeviceConfiguration map[string]string `json:"deviceConfiguration"`
	ThingName           string            `json:"thingName"`
}

// RegisterThing registers the thing of a certificate created by
// CreateCertificateFromCSR through template (the group's name). The
// thing is named by the group's nameTemplate over the parameters
// (default {SerialNumber}); registering the same name again through the
// group gives it the new certificate.
func (s *Service) RegisterThing(ctx context.Context, sess *Session, template string, req RegisterThingRequest) (RegisterThingResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, s.opts.RequestTimeout)
	defer cancel()
	res, err := s.registerThing(ctx, sess, template, req)
	if err != nil {
		s.count(MethodAWS, result(err))
		return RegisterThingResponse{}, err
	}
	return res, nil
}

func (s *Service) registerThing(ctx context.Context, sess *Session, template string, req RegisterThingRequest) (RegisterThingResponse, error) {
	if sess == nil || template != sess.Enrollment {
		return RegisterThingResponse{}, refuse("wrong_template", core.KindForbidden, "this connection may use only the template of its own enrollment group")
	}
	if len(req.Parameters) > MaxParameters {
		return RegisterThingResponse{}, core.Invalid("parameters", "at most %d parameters", MaxParameters)
	}
	for k, v := range req.Parameters {
		if len(k) > MaxParameterKey || len(v) > MaxParameterValue {
			return RegisterThingResponse{}, core.Invalid("parameters", "parameter names are at most %d bytes, values %d", MaxParameterKey, MaxParameterValue)
		}
	}
	s.pendMu.Lock()
	p, ok := s.pending[req.CertificateOwnershipToken]
	s.pendMu.Unlock()
	if !ok || p.group != sess.Enrollment || s.now().After(p.expires) {
		return RegisterThingResponse{}, refuse("bad_token", core.KindInvalid, "certificateOwnershipToken is unknown or expired")
	}
	row, err := s.st.GetEnrollment(ctx, template)
	if err != nil {
		return RegisterThingResponse{}, err
	}
	e, err := fromStore(row)
	if err != nil {
		return RegisterThingResponse{}, err
	}
	thing, err := expandTemplate(orDefault(e.Spec.NameTemplate, "{SerialNumber}"), req.Parameters, false)
	if err != nil {
		return RegisterThingResponse{}, refuse("bad_name", core.KindInvalid, "no thing name from the parameters: %v", err)
	}
	slot, err := s.auditSlot(ctx)
	if err != nil {
		return RegisterThingResponse{}, err
	}
	res, err := s.admit(ctx, row, "aws:"+thing, thing, nil, func(ctx context.Context, thing string) (registry.NewCredential, error) {
		na := p.notAft
		c, err := s.opts.Store.Credentials().Create(ctx, store.Credential{ID: auth.NewID("cred"), Thing: thing, Type: store.CredentialX509,
			Fingerprint: p.fp, CertPEM: p.certPEM, NotAfter: &na})
		return registry.NewCredential{Credential: c}, err
	})
	auditCommit(slot, AuditActionAWS, thing, row.Name, res, err)
	if err != nil {
		return RegisterThingResponse{}, err
	}
	s.pendMu.Lock()
	delete(s.pending, req.CertificateOwnershipToken)
	s.pendMu.Unlock()
	s.countResult(MethodAWS, res, nil)
	cfg := e.Spec.DeviceConfiguration
	if cfg == nil {
		cfg = map[string]string{}
	}
	return RegisterThingResponse{DeviceConfiguration: cfg, ThingName: res.Thing}, nil
}
