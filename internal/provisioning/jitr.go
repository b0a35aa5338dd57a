package provisioning

import (
	"context"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"strings"

	"github.com/moteiot/mote/internal/auth"
	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/pki"
	"github.com/moteiot/mote/internal/registry"
	"github.com/moteiot/mote/internal/store"
)

// Session is a provisioning-only connection: it may use the provisioning
// topics and nothing else.
type Session struct {
	Enrollment     string
	RegistrationID string // symmetric key: the registration id (the client id)
	ClaimCert      string // claim certificate: its fingerprint
}

// groupOf returns the verified group whose CA issued cert.
func (s *Service) groupOf(cert *x509.Certificate) (groupCA, bool) {
	for _, g := range *s.cas.Load() {
		if cert.CheckSignatureFrom(g.cert) == nil {
			return g, true
		}
	}
	return groupCA{}, false
}

// Certificate authenticates a client certificate that Mote's CA did not
// issue: one issued by a verified enrollment CA. For a JITR group it is
// the device's identity — registered now on its first connect (thing name
// from the group's template over the subject, default {CN}) — for a claim
// group a provisioning-only Session. A certificate from no verified CA is
// auth.ErrInvalidCertificate; an expired one auth.ErrExpired.
func (s *Service) Certificate(ctx context.Context, cert *x509.Certificate) (auth.Identity, *Session, error) {
	if cert == nil || cert.IsCA {
		return auth.Identity{}, nil, auth.ErrInvalidCertificate
	}
	g, ok := s.groupOf(cert)
	if !ok {
		return auth.Identity{}, nil, auth.ErrInvalidCertificate
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: g.pool, CurrentTime: s.now(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		var inv x509.CertificateInvalidError
		if errors.As(err, &inv) && inv.Reason == x509.Expired {
			return auth.Identity{}, nil, auth.ErrExpired
		}
		return auth.Identity{}, nil, auth.ErrInvalidCertificate
	}
	fp := pki.Fingerprint(cert)
	if g.mode == ModeClaim {
		return auth.Identity{}, &Session{Enrollment: g.name, ClaimCert: fp}, nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.opts.RequestTimeout)
	defer cancel()
	c, err := s.opts.Store.Credentials().FindCertificate(ctx, fp)
	if err == nil {
		id, err := s.check(ctx, c)
		return id, nil, err
	}
	if !core.IsNotFound(err) {
		return auth.Identity{}, nil, err
	}
	// Just-in-time registration.
	row, err := s.st.GetEnrollment(ctx, g.name)
	if err != nil {
		s.count(MethodJITR, result(err))
		return auth.Identity{}, nil, err
	}
	e, err := fromStore(row)
	if err != nil {
		return auth.Identity{}, nil, err
	}
	thing, err := expandTemplate(orDefault(e.Spec.NameTemplate, "{CN}"), subjectVars(cert), false)
	if err != nil {
		s.count(MethodJITR, "bad_name")
		return auth.Identity{}, nil, refuse("bad_name", core.KindForbidden, "no thing name from the certificate: %v", err)
	}
	slot, err := s.auditSlot(ctx)
	if err != nil {
		return auth.Identity{}, nil, err
	}
	res, err := s.admit(ctx, row, "x509:"+fp, thing, nil, func(ctx context.Context, thing string) (registry.NewCredential, error) {
		na := cert.NotAfter.UTC()
		c, err := s.opts.Store.Credentials().Create(ctx, store.Credential{ID: auth.NewID("cred"), Thing: thing, Type: store.CredentialX509,
			Fingerprint: fp, CertPEM: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})), NotAfter: &na})
		return registry.NewCredential{Credential: c}, err
	})
	s.countResult(MethodJITR, res, err)
	auditCommit(slot, AuditActionJITR, thing, g.name, res, err)
	if err != nil {
		return auth.Identity{}, nil, err
	}
	c, err = s.opts.Store.Credentials().Get(ctx, res.Credential)
	if err != nil {
		return auth.Identity{}, nil, err
	}
	id, err := s.check(ctx, c)
	return id, nil, err
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// subjectVars are the variables of a name template over a certificate.
func subjectVars(cert *x509.Certificate) map[string]string {
	v := map[string]string{"CN": cert.Subject.CommonName, "SerialNumber": cert.Subject.SerialNumber,
		"Serial": hex.EncodeToString(cert.SerialNumber.Bytes())}
	if len(cert.Subject.Organization) > 0 {
		v["O"] = cert.Subject.Organization[0]
	}
	if len(cert.Subject.OrganizationalUnit) > 0 {
		v["OU"] = cert.Subject.OrganizationalUnit[0]
	}
	return v
}

// check turns a stored credential into an identity, as auth.Devices does.
func (s *Service) check(ctx context.Context, c store.Credential) (auth.Identity, error) {
	if c.Revoked {
		return auth.Identity{}, auth.ErrRevoked
	}
	if c.NotAfter != nil && !c.NotAfter.After(s.now()) {
		return auth.Identity{}, auth.ErrExpired
	}
	t, err := s.opts.Store.Things().Get(ctx, c.Thing)
	if core.IsNotFound(err) {
		return auth.Identity{}, auth.ErrUnknownCertificate
	}
	if err != nil {
		return auth.Identity{}, err
	}
	if !t.Enabled {
		return auth.Identity{}, auth.ErrDisabled
	}
	id := auth.Identity{Thing: t.Name, Credential: c.ID, Method: c.Type, Type: t.Type}
	if c.NotAfter != nil {
		id.Expires = *c.NotAfter
	}
	return id, nil
}

// UserPrefix starts the MQTT user name of a symmetric-key provisioning
// connection: "enrollment:{group}", client id = registration id, password
// = the base64 derived key.
const UserPrefix = "enrollment:"

// IsProvisioningUser reports whether an MQTT user name asks for a
// provisioning-only connection.
func IsProvisioningUser(username string) bool { return strings.HasPrefix(username, UserPrefix) }

// Secret authenticates a symmetric-key provisioning connection.
func (s *Service) Secret(ctx context.Context, clientID, username, password string) (*Session, error) {
	group := strings.TrimPrefix(username, UserPrefix)
	ctx, cancel := context.WithTimeout(ctx, s.opts.RequestTimeout)
	defer cancel()
	row, err := s.Authenticate(ctx, group, clientID, password)
	if err != nil {
		s.count(MethodSymmetricKey, result(err))
		if core.KindOf(err) == core.KindInternal {
			return nil, err
		}
		return nil, auth.ErrBadSecret
	}
	if err := s.checkGroup(row); err != nil {
		s.count(MethodSymmetricKey, result(err))
		return nil, auth.ErrDisabled
	}
	return &Session{Enrollment: row.Name, RegistrationID: clientID}, nil
}

// Devices is the device authenticator of the HTTPS device API with
// just-in-time registration: auth.Devices first, then the enrollment CAs.
type Devices struct {
	*auth.Devices
	Provisioning *Service
}

// Certificate authenticates a client certificate, registering it just in
// time when it chains to a verified JITR group's CA.
func (d Devices) Certificate(ctx context.Context, cert *x509.Certificate) (auth.Identity, error) {
	id, err := d.Devices.Certificate(ctx, cert)
	if !errors.Is(err, auth.ErrInvalidCertificate) || d.Provisioning == nil {
		return id, err
	}
	id, sess, err := d.Provisioning.Certificate(ctx, cert)
	if err != nil {
		return auth.Identity{}, err
	}
	if sess != nil {
		return auth.Identity{}, &core.Error{Kind: core.KindUnauthorized, Msg: "a claim certificate may only use the MQTT provisioning topics"}
	}
	return id, nil
}
