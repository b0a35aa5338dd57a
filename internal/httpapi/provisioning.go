package httpapi

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/moteiot/mote/internal/audit"
	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/provisioning"
)

// Provisioning (docs/provisioning.md): enrollment groups, device
// registration, claim tokens. Wire types here; the service's types are
// mapped to and from them.

// attestationIn is the attestation of POST /enrollments.
type attestationIn struct {
	Type          string `json:"type"`
	CACertificate string `json:"caCertificate"`
	Mode          string `json:"mode"`
}

// enrollmentBody is the body of POST /enrollments.
type enrollmentBody struct {
	Name                string            `json:"name"`
	Attestation         attestationIn     `json:"attestation"`
	Type                string            `json:"type"`
	Groups              []string          `json:"groups"`
	Attributes          map[string]string `json:"attributes"`
	Policies            []string          `json:"policies"`
	Desired             json.RawMessage   `json:"desired"`
	Enabled             *bool             `json:"enabled"`
	MaxDevices          int               `json:"maxDevices"`
	NamePattern         string            `json:"namePattern"`
	NameTemplate        string            `json:"nameTemplate"`
	ExpiresAt           *time.Time        `json:"expiresAt"`
	DeviceConfiguration map[string]string `json:"deviceConfiguration"`
}

// enrollmentPatch is the body of PATCH /enrollments/{name}; absent fields
// stay, expiresAt and desired null clear.
type enrollmentPatch struct {
	Type                *string            `json:"type"`
	Groups              *[]string          `json:"groups"`
	Attributes          *map[string]string `json:"attributes"`
	Policies            *[]string          `json:"policies"`
	Desired             json.RawMessage    `json:"desired"`
	Enabled             *bool              `json:"enabled"`
	MaxDevices          *int               `json:"maxDevices"`
	NamePattern         *string            `json:"namePattern"`
	NameTemplate        *string            `json:"nameTemplate"`
	ExpiresAt           json.RawMessage    `json:"expiresAt"`
	DeviceConfiguration *map[string]string `json:"deviceConfiguration"`
}

// attestationOut is a group's attestation in an answer; primaryKey only
// in the answer to its creation.
type attestationOut struct {
	Type          string `json:"type"`
	PrimaryKey    string `json:"primaryKey,omitempty"`
	CACertificate string `json:"caCertificate,omitempty"`
	CAFingerprint string `json:"caFingerprint,omitempty"`
	Verified      *bool  `json:"verified,omitempty"`
	Mode          string `json:"mode,omitempty"`
}

// enrollmentOut is an enrollment group in an answer.
type enrollmentOut struct {
	Name                string            `json:"name"`
	Attestation         attestationOut    `json:"attestation"`
	Type                string            `json:"type,omitempty"`
	Groups              []string          `json:"groups"`
	Attributes          map[string]string `json:"attributes"`
	Policies            []string          `json:"policies"`
	Desired             json.RawMessage   `json:"desired,omitempty"`
	Enabled             bool              `json:"enabled"`
	MaxDevices          int               `json:"maxDevices"`
	NamePattern         string            `json:"namePattern,omitempty"`
	NameTemplate        string            `json:"nameTemplate,omitempty"`
	DeviceConfiguration map[string]string `json:"deviceConfiguration,omitempty"`
	ExpiresAt           *time.Time        `json:"expiresAt,omitempty"`
	Registered          int               `json:"registered"`
	CreatedAt           time.Time         `json:"createdAt"`
	UpdatedAt           time.Time         `json:"updatedAt"`
}

func enrollmentWire(e provisioning.Enrollment) enrollmentOut {
	a := attestationOut{Type: e.Attestation}
	if e.Attestation == "x509CA" {
		v := e.CAVerified
		a.CACertificate, a.CAFingerprint, a.Verified, a.Mode = e.CACert, e.CAFingerprint, &v, e.Spec.Mode
	}
	out := enrollmentOut{Name: e.Name, Attestation: a, Type: e.Spec.Type, Groups: e.Spec.Groups, Attributes: e.Spec.Attributes,
		Policies: e.Spec.Policies, Desired: e.Spec.Desired, Enabled: e.Enabled, MaxDevices: e.MaxDevices, NamePattern: e.Spec.NamePattern,
		NameTemplate: e.Spec.NameTemplate, DeviceConfiguration: e.Spec.DeviceConfiguration, ExpiresAt: e.ExpiresAt,
		Registered: e.Registered, CreatedAt: e.CreatedAt, UpdatedAt: e.UpdatedAt}
	if out.Groups == nil {
		out.Groups = []string{}
	}
	if out.Policies == nil {
		out.Policies = []string{}
	}
	if out.Attributes == nil {
		out.Attributes = map[string]string{}
	}
	return out
}

func (s *server) provisioningService() (*provisioning.Service, error) {
	if s.prov == nil {
		return nil, core.Errorf(core.KindUnavailable, "provisioning is not enabled on this server")
	}
	return s.prov, nil
}

func isNull(raw json.RawMessage) bool { return bytes.Equal(bytes.TrimSpace(raw), []byte("null")) }

func (s *server) createEnrollment(w http.ResponseWriter, r *http.Request) error {
	p, err := s.provisioningService()
	if err != nil {
		return err
	}
	if err := noParams(r); err != nil {
		return err
	}
	var in enrollmentBody
	if err := decodeJSON(w, r, &in); err != nil {
		return err
	}
	enabled := in.Enabled == nil || *in.Enabled
	desired := in.Desired
	if isNull(desired) {
		desired = nil
	}
	e, key, err := p.CreateEnrollment(r.Context(), provisioning.NewEnrollment{Name: in.Name, Attestation: in.Attestation.Type,
		CACert: in.Attestation.CACertificate, Enabled: enabled, MaxDevices: in.MaxDevices, ExpiresAt: in.ExpiresAt,
		Spec: provisioning.Spec{Type: in.Type, Groups: in.Groups, Attributes: in.Attributes, Policies: in.Policies, Desired: desired,
			NamePattern: in.NamePattern, NameTemplate: in.NameTemplate, Mode: in.Attestation.Mode, DeviceConfiguration: in.DeviceConfiguration}})
	if err != nil {
		return err
	}
	out := enrollmentWire(e)
	out.Attestation.PrimaryKey = key
	return created(w, "/enrollments/"+e.Name, out)
}

func (s *server) listEnrollments(w http.ResponseWriter, r *http.Request) error {
	p, err := s.provisioningService()
	if err != nil {
		return err
	}
	after, limit, err := pageParams(r)
	if err != nil {
		return err
	}
	list, next, err := p.ListEnrollments(r.Context(), after, limit)
	if err != nil {
		return err
	}
	items := make([]enrollmentOut, len(list))
	for i, e := range list {
		items[i] = enrollmentWire(e)
	}
	return writeJSON(w, http.StatusOK, newList(items, next))
}

func (s *server) enrollmentByName(r *http.Request) (*provisioning.Service, string, error) {
	p, err := s.provisioningService()
	if err != nil {
		return nil, "", err
	}
	if err := noParams(r); err != nil {
		return nil, "", err
	}
	name, err := pathName(r, "name")
	return p, name, err
}

func (s *server) getEnrollment(w http.ResponseWriter, r *http.Request) error {
	p, name, err := s.enrollmentByName(r)
	if err != nil {
		return err
	}
	e, err := p.GetEnrollment(r.Context(), name)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, enrollmentWire(e))
}

func (s *server) updateEnrollment(w http.ResponseWriter, r *http.Request) error {
	p, name, err := s.enrollmentByName(r)
	if err != nil {
		return err
	}
	var in enrollmentPatch
	if err := decodeJSON(w, r, &in); err != nil {
		return err
	}
	patch := provisioning.EnrollmentPatch{Type: in.Type, Groups: in.Groups, Attributes: in.Attributes, Policies: in.Policies,
		Enabled: in.Enabled, MaxDevices: in.MaxDevices, NamePattern: in.NamePattern, NameTemplate: in.NameTemplate,
		DeviceConfiguration: in.DeviceConfiguration}
	if in.Desired != nil {
		d := in.Desired
		if isNull(d) {
			d = json.RawMessage{}
		}
		patch.Desired = &d
	}
	if in.ExpiresAt != nil {
		var t *time.Time
		if !isNull(in.ExpiresAt) {
			var v time.Time
			if err := json.Unmarshal(in.ExpiresAt, &v); err != nil {
				return core.Invalid("expiresAt", "expiresAt must be an RFC 3339 time or null")
			}
			t = &v
		}
		patch.ExpiresAt = &t
	}
	e, err := p.UpdateEnrollment(r.Context(), name, patch)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, enrollmentWire(e))
}

func (s *server) deleteEnrollment(w http.ResponseWriter, r *http.Request) error {
	p, name, err := s.enrollmentByName(r)
	if err != nil {
		return err
	}
	if err := p.DeleteEnrollment(r.Context(), name); err != nil {
		return err
	}
	return noContent(w)
}

func (s *server) getVerificationCode(w http.ResponseWriter, r *http.Request) error {
	p, name, err := s.enrollmentByName(r)
	if err != nil {
		return err
	}
	code, exp, err := p.VerificationCode(r.Context(), name)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, struct {
		VerificationCode string    `json:"verificationCode"`
		ExpiresAt        time.Time `json:"expiresAt"`
	}{code, exp})
}

func (s *server) verifyEnrollmentCA(w http.ResponseWriter, r *http.Request) error {
	p, name, err := s.enrollmentByName(r)
	if err != nil {
		return err
	}
	var in struct {
		Certificate string `json:"certificate"`
	}
	if err := decodeJSON(w, r, &in); err != nil {
		return err
	}
	e, err := p.VerifyCA(r.Context(), name, in.Certificate)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, enrollmentWire(e))
}

// registerAnswer is the answer of POST /provisioning/register and
// /provisioning/claim.
type registerAnswer struct {
	Thing         string `json:"thing"`
	Secret        string `json:"secret,omitempty"`
	Certificate   string `json:"certificate,omitempty"`
	CACertificate string `json:"caCertificate,omitempty"`
}

func registerWire(res provisioning.Result) registerAnswer {
	return registerAnswer{Thing: res.Thing, Secret: res.Secret, Certificate: res.Certificate, CACertificate: res.CACert}
}

// provisioningRegister registers a device of a symmetric-key group. It
// needs no token: the derived key is the credential. Limited per source.
func (s *server) provisioningRegister(w http.ResponseWriter, r *http.Request) error {
	p, err := s.provisioningService()
	if err != nil {
		return err
	}
	if err := s.provLimit.Allow(r.RemoteAddr, "http"); err != nil {
		return retryAfter(w, err)
	}
	if err := noParams(r); err != nil {
		return err
	}
	var in struct {
		RegistrationID string `json:"registrationId"`
		Enrollment     string `json:"enrollment"`
		Key            string `json:"key"`
		CSR            string `json:"csr"`
	}
	if err := decodeJSON(w, r, &in); err != nil {
		return err
	}
	// The actor is the device as it names itself (refused or not), and
	// its enrollment group; the target the thing registered.
	noteAuditActor(r, audit.ActorDevice, in.RegistrationID, provisioning.AuditActorID(in.Enrollment, ""), "", "")
	res, err := p.Register(r.Context(), provisioning.RegisterRequest{RegistrationID: in.RegistrationID, Enrollment: in.Enrollment, Key: in.Key, CSR: in.CSR})
	if err != nil {
		return err
	}
	noteAuditActor(r, audit.ActorDevice, in.RegistrationID, provisioning.AuditActorID(res.Enrollment, ""), "thing", res.Thing)
	status := http.StatusCreated
	if res.Repeated {
		status = http.StatusOK
	}
	return writeJSON(w, status, registerWire(res))
}

// provisioningClaim redeems a claim token with a CSR (no API token: the
// claim token is the credential). Limited per source.
func (s *server) provisioningClaim(w http.ResponseWriter, r *http.Request) error {
	p, err := s.provisioningService()
	if err != nil {
		return err
	}
	if err := s.provLimit.Allow(r.RemoteAddr, "http"); err != nil {
		return retryAfter(w, err)
	}
	if err := noParams(r); err != nil {
		return err
	}
	var in struct {
		Token string `json:"token"`
		CSR   string `json:"csr"`
	}
	if err := decodeJSON(w, r, &in); err != nil {
		return err
	}
	// A refused claim names no device (its token is unknown, used or
	// expired); a redeemed one names the thing and its claim.
	noteAuditActor(r, audit.ActorDevice, "", "", "", "")
	res, err := p.RedeemClaim(r.Context(), in.Token, in.CSR)
	if err == nil {
		noteAuditActor(r, audit.ActorDevice, res.Thing, provisioning.AuditActorID(res.Enrollment, res.Claim), "thing", res.Thing)
	}
	if errors.Is(err, provisioning.ErrClaimExpired) {
		return &httpError{status: http.StatusGone, kind: "gone", msg: "claim token expired"}
	}
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, registerWire(res))
}

// claimOut is a claim token in an answer (never the token, but in the
// answer to its creation).
type claimOut struct {
	ID            string     `json:"id"`
	Token         string     `json:"token,omitempty"`
	Thing         string     `json:"thing,omitempty"`
	Enrollment    string     `json:"enrollment,omitempty"`
	ExpiresAt     time.Time  `json:"expiresAt"`
	Redeemed      bool       `json:"redeemed"`
	RedeemedAt    *time.Time `json:"redeemedAt,omitempty"`
	RedeemedThing string     `json:"redeemedThing,omitempty"`
	CreatedAt     time.Time  `json:"createdAt"`
	// QR is the QR code's content and image, in the answer to the
	// creation only.
	QR *qrOut `json:"qr,omitempty"`
}

type qrOut struct {
	Payload string `json:"payload"`
	PNG     string `json:"png"` // data URL
}

func claimWire(c provisioning.Claim) claimOut {
	return claimOut{ID: c.ID, Thing: c.Thing, Enrollment: c.Enrollment, ExpiresAt: c.ExpiresAt, Redeemed: c.RedeemedAt != nil,
		RedeemedAt: c.RedeemedAt, RedeemedThing: c.RedeemedThing, CreatedAt: c.CreatedAt}
}

// claimEndpoint is the API URL a QR code carries.
func (s *server) claimEndpoint(r *http.Request) string {
	if s.provEndpoint != "" {
		return s.provEndpoint
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

func (s *server) createClaim(w http.ResponseWriter, r *http.Request) error {
	p, err := s.provisioningService()
	if err != nil {
		return err
	}
	if err := noParams(r); err != nil {
		return err
	}
	var in struct {
		Thing      string `json:"thing"`
		Enrollment string `json:"enrollment"`
		TTL        string `json:"ttl"`
	}
	if err := decodeOptionalJSON(w, r, &in); err != nil {
		return err
	}
	var ttl time.Duration
	if in.TTL != "" {
		if ttl, err = time.ParseDuration(in.TTL); err != nil {
			return core.Invalid("ttl", "ttl must be a duration such as 24h")
		}
	}
	c, token, err := p.CreateClaim(r.Context(), provisioning.NewClaim{Thing: in.Thing, Enrollment: in.Enrollment, TTL: ttl})
	if err != nil {
		return err
	}
	payload, png, err := p.QR(s.claimEndpoint(r), token)
	if err != nil {
		return err
	}
	out := claimWire(c)
	// The audit log keeps the claim without its token and QR code: the
	// QR payload carries the token inside a string, where redaction by
	// field name cannot see it.
	noteAudit(r, c.ID, claimWire(c))
	out.Token = token
	out.QR = &qrOut{Payload: payload, PNG: "data:image/png;base64," + base64.StdEncoding.EncodeToString(png)}
	return created(w, "/claims/"+c.ID, out)
}

func (s *server) listClaims(w http.ResponseWriter, r *http.Request) error {
	p, err := s.provisioningService()
	if err != nil {
		return err
	}
	after, limit, err := pageParams(r)
	if err != nil {
		return err
	}
	list, next, err := p.ListClaims(r.Context(), after, limit)
	if err != nil {
		return err
	}
	items := make([]claimOut, len(list))
	for i, c := range list {
		items[i] = claimWire(c)
	}
	return writeJSON(w, http.StatusOK, newList(items, next))
}

func (s *server) claimByID(r *http.Request) (*provisioning.Service, string, error) {
	p, err := s.provisioningService()
	if err != nil {
		return nil, "", err
	}
	if err := noParams(r); err != nil {
		return nil, "", err
	}
	id, err := pathName(r, "id")
	return p, id, err
}

func (s *server) getClaim(w http.ResponseWriter, r *http.Request) error {
	p, id, err := s.claimByID(r)
	if err != nil {
		return err
	}
	c, err := p.GetClaim(r.Context(), id)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, claimWire(c))
}

func (s *server) deleteClaim(w http.ResponseWriter, r *http.Request) error {
	p, id, err := s.claimByID(r)
	if err != nil {
		return err
	}
	if err := p.DeleteClaim(r.Context(), id); err != nil {
		return err
	}
	return noContent(w)
}

// ClaimTokenHeader carries a claim's token to GET /claims/{id}/qr.png:
// only a hash of the token is kept, so the QR code can be drawn again
// only for whoever holds it (and a token never goes in a URL).
const ClaimTokenHeader = "Mote-Claim-Token"

func (s *server) getClaimQR(w http.ResponseWriter, r *http.Request) error {
	p, id, err := s.claimByID(r)
	if err != nil {
		return err
	}
	token := r.Header.Get(ClaimTokenHeader)
	if token == "" {
		return core.Invalid(ClaimTokenHeader, "the claim's token is required in the %s header (only its hash is kept)", ClaimTokenHeader)
	}
	if _, err := p.GetClaim(r.Context(), id); err != nil {
		return err
	}
	if _, err := p.CheckClaimToken(r.Context(), id, token); err != nil {
		return err
	}
	_, png, err := p.QR(s.claimEndpoint(r), token)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "image/png")
	w.Header().Set("Cache-Control", "no-store")
	_, err = w.Write(png)
	return err
}
