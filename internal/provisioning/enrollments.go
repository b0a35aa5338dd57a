package provisioning

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"path"
	"regexp"
	"strings"
	"time"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/pki"
	"github.com/moteiot/mote/internal/store"
)

// X.509 CA group modes.
const (
	// ModeJITR registers a device whose certificate chains to the group's
	// CA on its first TLS connect (just-in-time registration).
	ModeJITR = "jitr"
	// ModeClaim lets a certificate that chains to the group's CA (a claim
	// certificate shared by a batch of devices) connect only to the
	// provisioning topics, where the device gets its own certificate (the
	// AWS fleet-provisioning flow).
	ModeClaim = "claim"
)

// Limits on a group's document.
const (
	MaxDesiredSize  = 16 << 10
	MaxTemplateLen  = 256
	MaxPatternLen   = 256
	MaxDeviceConfig = 64
)

// Spec is what a group gives every device it admits, and how it names
// them. It is stored as JSON (store.Enrollment.Spec).
type Spec struct {
	Type       string            `json:"type,omitempty"`
	Groups     []string          `json:"groups,omitempty"`
	Attributes map[string]string `json:"attributes,omitempty"`
	Policies   []string          `json:"policies,omitempty"`
	// Desired is the initial desired state of the classic shadow (a JSON
	// object), or nil.
	Desired json.RawMessage `json:"desired,omitempty"`
	// NamePattern, if set, is what every thing name must match: a glob
	// (path.Match) or, starting with '^', a regular expression (RE2).
	NamePattern string `json:"namePattern,omitempty"`
	// NameTemplate names a thing from its certificate subject (JITR:
	// {CN}, {O}, {OU}, {SerialNumber}) or from the parameters of an AWS
	// RegisterThing request ({SerialNumber} by default there).
	NameTemplate string `json:"nameTemplate,omitempty"`
	// Mode of an x509CA group: ModeJITR (default) or ModeClaim.
	Mode string `json:"mode,omitempty"`
	// DeviceConfiguration is returned to a device by AWS RegisterThing.
	DeviceConfiguration map[string]string `json:"deviceConfiguration,omitempty"`
}

// Enrollment is an enrollment group as the service shows it (no key).
type Enrollment struct {
	Name          string
	Attestation   string
	CACert        string
	CAFingerprint string
	CAVerified    bool
	Spec          Spec
	Enabled       bool
	MaxDevices    int
	ExpiresAt     *time.Time
	Registered    int
	CreatedAt     time.Time
	UpdatedAt     time.Time
}

// NewEnrollment is a group to create.
type NewEnrollment struct {
	Name        string
	Attestation string // store.AttestationSymmetricKey or store.AttestationX509CA
	CACert      string // x509CA: PEM
	Spec        Spec
	Enabled     bool
	MaxDevices  int
	ExpiresAt   *time.Time
}

// EnrollmentPatch changes a group; nil fields stay as they are.
type EnrollmentPatch struct {
	Type                *string
	Groups              *[]string
	Attributes          *map[string]string
	Policies            *[]string
	Desired             *json.RawMessage // empty: none
	NamePattern         *string
	NameTemplate        *string
	DeviceConfiguration *map[string]string
	Enabled             *bool
	MaxDevices          *int
	ExpiresAt           **time.Time
}

func fromStore(e store.Enrollment) (Enrollment, error) {
	var sp Spec
	if len(e.Spec) > 0 {
		if err := json.Unmarshal(e.Spec, &sp); err != nil {
			return Enrollment{}, core.Errorf(core.KindInternal, "enrollment %q: stored spec does not decode: %v", e.Name, err)
		}
	}
	return Enrollment{Name: e.Name, Attestation: e.Attestation, CACert: e.CACert, CAFingerprint: e.CAFingerprint, CAVerified: e.CAVerified,
		Spec: sp, Enabled: e.Enabled, MaxDevices: e.MaxDevices, ExpiresAt: e.ExpiresAt, Registered: e.Registered,
		CreatedAt: e.CreatedAt, UpdatedAt: e.UpdatedAt}, nil
}

// checkSpec validates a group's spec.
func checkSpec(sp *Spec, attestation string) error {
	if sp.Type != "" {
		if err := core.ValidateName("type", sp.Type); err != nil {
			return err
		}
	}
	for _, g := range sp.Groups {
		if err := core.ValidateName("groups", g); err != nil {
			return err
		}
	}
	for _, p := range sp.Policies {
		if err := core.ValidateName("policies", p); err != nil {
			return err
		}
	}
	if len(sp.Attributes) > 64 {
		return core.Invalid("attributes", "at most 64 attributes")
	}
	for k, v := range sp.Attributes {
		if k == "" || len(k) > 128 || len(v) > 1024 {
			return core.Invalid("attributes", "attribute keys are 1 to 128 bytes, values at most 1024")
		}
	}
	if len(sp.Desired) > 0 {
		if len(sp.Desired) > MaxDesiredSize {
			return core.Invalid("desired", "desired is larger than %d bytes", MaxDesiredSize)
		}
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(sp.Desired, &obj); err != nil || obj == nil {
			return core.Invalid("desired", "desired must be a JSON object")
		}
		var buf bytes.Buffer
		if err := json.Compact(&buf, sp.Desired); err == nil {
			sp.Desired = buf.Bytes()
		}
	}
	if err := checkPattern(sp.NamePattern); err != nil {
		return err
	}
	if len(sp.NameTemplate) > MaxTemplateLen {
		return core.Invalid("nameTemplate", "nameTemplate is longer than %d characters", MaxTemplateLen)
	}
	if _, err := expandTemplate(sp.NameTemplate, nil, true); err != nil {
		return err
	}
	switch sp.Mode {
	case "":
		if attestation == store.AttestationX509CA {
			sp.Mode = ModeJITR
		}
	case ModeJITR, ModeClaim:
		if attestation != store.AttestationX509CA {
			return core.Invalid("mode", "mode applies to x509CA groups only")
		}
	default:
		return core.Invalid("mode", "mode must be %q or %q", ModeJITR, ModeClaim)
	}
	if len(sp.DeviceConfiguration) > MaxDeviceConfig {
		return core.Invalid("deviceConfiguration", "at most %d entries", MaxDeviceConfig)
	}
	return nil
}

func checkPattern(p string) error {
	if p == "" {
		return nil
	}
	if len(p) > MaxPatternLen {
		return core.Invalid("namePattern", "namePattern is longer than %d characters", MaxPatternLen)
	}
	if strings.HasPrefix(p, "^") {
		if _, err := regexp.Compile(p); err != nil {
			return core.Invalid("namePattern", "namePattern is not a valid regular expression: %v", err)
		}
		return nil
	}
	if _, err := path.Match(p, ""); err != nil {
		return core.Invalid("namePattern", "namePattern is not a valid glob: %v", err)
	}
	return nil
}

// matchName reports whether name matches a group's name pattern.
func matchName(p, name string) bool {
	if p == "" {
		return true
	}
	if strings.HasPrefix(p, "^") {
		re, err := regexp.Compile(p)
		return err == nil && re.MatchString(name)
	}
	ok, err := path.Match(p, name)
	return err == nil && ok
}

// expandTemplate replaces {Var} in t with vars[Var]. check only checks
// the syntax. A variable without a value is an error.
func expandTemplate(t string, vars map[string]string, check bool) (string, error) {
	var b strings.Builder
	for {
		i := strings.IndexByte(t, '{')
		if i < 0 {
			if strings.IndexByte(t, '}') >= 0 {
				return "", core.Invalid("nameTemplate", "nameTemplate has an unmatched '}'")
			}
			b.WriteString(t)
			return b.String(), nil
		}
		b.WriteString(t[:i])
		j := strings.IndexByte(t[i:], '}')
		if j < 0 {
			return "", core.Invalid("nameTemplate", "nameTemplate has an unmatched '{'")
		}
		name := t[i+1 : i+j]
		if name == "" || strings.ContainsAny(name, "{ ") {
			return "", core.Invalid("nameTemplate", "nameTemplate has an empty or malformed {variable}")
		}
		if !check {
			v, ok := vars[name]
			if !ok || v == "" {
				return "", core.Invalid("nameTemplate", "no value for {%s}", name)
			}
			b.WriteString(v)
		}
		t = t[i+j+1:]
	}
}

// parseCA checks an external CA certificate of an x509CA group.
func parseCA(pemText string, now time.Time) (*x509.Certificate, error) {
	if len(pemText) > 64<<10 {
		return nil, core.Invalid("attestation.caCertificate", "caCertificate is larger than 64 KB")
	}
	cert, err := pki.ParseCertificatePEM([]byte(pemText))
	if err != nil {
		return nil, &core.Error{Kind: core.KindInvalid, Field: "attestation.caCertificate", Msg: "caCertificate: " + err.Error()}
	}
	if !cert.BasicConstraintsValid || !cert.IsCA {
		return nil, core.Invalid("attestation.caCertificate", "caCertificate is not a CA certificate (basic constraints CA:TRUE)")
	}
	if now.After(cert.NotAfter) || now.Before(cert.NotBefore) {
		return nil, core.Invalid("attestation.caCertificate", "caCertificate is not valid now (valid %s to %s)", cert.NotBefore.Format(time.RFC3339), cert.NotAfter.Format(time.RFC3339))
	}
	return cert, nil
}

// CreateEnrollment creates a group. A symmetric-key group's primary key
// is generated and returned once (base64); it is kept sealed.
func (s *Service) CreateEnrollment(ctx context.Context, in NewEnrollment) (Enrollment, string, error) {
	if err := core.ValidateName("name", in.Name); err != nil {
		return Enrollment{}, "", err
	}
	if in.MaxDevices < 0 {
		return Enrollment{}, "", core.Invalid("maxDevices", "maxDevices must not be negative")
	}
	if err := checkSpec(&in.Spec, in.Attestation); err != nil {
		return Enrollment{}, "", err
	}
	row := store.Enrollment{Name: in.Name, Attestation: in.Attestation, Enabled: in.Enabled, MaxDevices: in.MaxDevices, ExpiresAt: in.ExpiresAt}
	var key string
	switch in.Attestation {
	case store.AttestationSymmetricKey:
		if in.CACert != "" {
			return Enrollment{}, "", core.Invalid("attestation.caCertificate", "a symmetricKey group has no CA certificate")
		}
		b := make([]byte, 32) // 256 bits
		if _, err := rand.Read(b); err != nil {
			return Enrollment{}, "", err
		}
		key = base64.StdEncoding.EncodeToString(b)
		row.SealedKey = s.sealer.Seal(key)
	case store.AttestationX509CA:
		cert, err := parseCA(in.CACert, s.now())
		if err != nil {
			return Enrollment{}, "", err
		}
		row.CACert, row.CAFingerprint = in.CACert, pki.Fingerprint(cert)
	default:
		return Enrollment{}, "", core.Invalid("attestation.type", "attestation.type must be %q or %q", store.AttestationSymmetricKey, store.AttestationX509CA)
	}
	spec, err := json.Marshal(in.Spec)
	if err != nil {
		return Enrollment{}, "", err
	}
	row.Spec = spec
	if list, err := s.st.ListEnrollments(ctx, "", 1000); err == nil && len(list) >= s.opts.MaxEnrollments {
		return Enrollment{}, "", core.Errorf(core.KindQuota, "there are %d enrollment groups already, the most --provisioning-max-enrollments allows", len(list))
	}
	created, err := s.st.CreateEnrollment(ctx, row)
	if err != nil {
		return Enrollment{}, "", err
	}
	s.refreshCAs(ctx)
	e, err := fromStore(created)
	return e, key, err
}

// GetEnrollment returns a group.
func (s *Service) GetEnrollment(ctx context.Context, name string) (Enrollment, error) {
	row, err := s.st.GetEnrollment(ctx, name)
	if err != nil {
		return Enrollment{}, err
	}
	return fromStore(row)
}

// ListEnrollments lists groups after a cursor; next is the cursor of the
// next page ("" at the end).
func (s *Service) ListEnrollments(ctx context.Context, after string, limit int) ([]Enrollment, string, error) {
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	rows, next, err := core.PageAfter(after, limit, func(after string, n int) ([]store.Enrollment, error) {
		return s.st.ListEnrollments(ctx, after, n)
	}, func(e store.Enrollment) string { return e.Name })
	if err != nil {
		return nil, "", err
	}
	out := make([]Enrollment, 0, len(rows))
	for _, r := range rows {
		e, err := fromStore(r)
		if err != nil {
			return nil, "", err
		}
		out = append(out, e)
	}
	return out, next, nil
}

// UpdateEnrollment applies a patch.
func (s *Service) UpdateEnrollment(ctx context.Context, name string, p EnrollmentPatch) (Enrollment, error) {
	row, err := s.st.GetEnrollment(ctx, name)
	if err != nil {
		return Enrollment{}, err
	}
	e, err := fromStore(row)
	if err != nil {
		return Enrollment{}, err
	}
	sp := e.Spec
	if p.Type != nil {
		sp.Type = *p.Type
	}
	if p.Groups != nil {
		sp.Groups = *p.Groups
	}
	if p.Attributes != nil {
		sp.Attributes = *p.Attributes
	}
	if p.Policies != nil {
		sp.Policies = *p.Policies
	}
	if p.Desired != nil {
		sp.Desired = *p.Desired
	}
	if p.NamePattern != nil {
		sp.NamePattern = *p.NamePattern
	}
	if p.NameTemplate != nil {
		sp.NameTemplate = *p.NameTemplate
	}
	if p.DeviceConfiguration != nil {
		sp.DeviceConfiguration = *p.DeviceConfiguration
	}
	if err := checkSpec(&sp, row.Attestation); err != nil {
		return Enrollment{}, err
	}
	if p.Enabled != nil {
		row.Enabled = *p.Enabled
	}
	if p.MaxDevices != nil {
		if *p.MaxDevices < 0 {
			return Enrollment{}, core.Invalid("maxDevices", "maxDevices must not be negative")
		}
		row.MaxDevices = *p.MaxDevices
	}
	if p.ExpiresAt != nil {
		row.ExpiresAt = *p.ExpiresAt
	}
	if row.Spec, err = json.Marshal(sp); err != nil {
		return Enrollment{}, err
	}
	updated, err := s.st.UpdateEnrollment(ctx, row)
	if err != nil {
		return Enrollment{}, err
	}
	s.refreshCAs(ctx)
	return fromStore(updated)
}

// DeleteEnrollment deletes a group (the things it registered stay).
func (s *Service) DeleteEnrollment(ctx context.Context, name string) error {
	if err := s.st.DeleteEnrollment(ctx, name); err != nil {
		return err
	}
	s.refreshCAs(ctx)
	return nil
}

// VerificationCode returns a fresh nonce for an x509CA group's proof of
// possession: the CA signs a certificate whose common name is the code.
func (s *Service) VerificationCode(ctx context.Context, name string) (string, time.Time, error) {
	row, err := s.st.GetEnrollment(ctx, name)
	if err != nil {
		return "", time.Time{}, err
	}
	if row.Attestation != store.AttestationX509CA {
		return "", time.Time{}, core.Invalid("name", "enrollment %q is not an x509CA group", name)
	}
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", time.Time{}, err
	}
	code := hex.EncodeToString(b)
	exp := s.now().Add(s.opts.VerificationTTL).UTC().Truncate(time.Millisecond)
	row.VerificationCode, row.VerificationExpires = code, &exp
	if _, err := s.st.UpdateEnrollment(ctx, row); err != nil {
		return "", time.Time{}, err
	}
	return code, exp, nil
}

// VerifyCA checks a verification certificate (common name = the current
// code, signed by the group's CA, valid now) and marks the CA verified.
func (s *Service) VerifyCA(ctx context.Context, name, certPEM string) (Enrollment, error) {
	row, err := s.st.GetEnrollment(ctx, name)
	if err != nil {
		return Enrollment{}, err
	}
	if row.Attestation != store.AttestationX509CA {
		return Enrollment{}, core.Invalid("name", "enrollment %q is not an x509CA group", name)
	}
	now := s.now()
	if row.VerificationCode == "" || row.VerificationExpires == nil || now.After(*row.VerificationExpires) {
		return Enrollment{}, core.Conflict("no valid verification code: get one from GET /api/v1/enrollments/%s/verification-code first", name)
	}
	ca, err := parseCA(row.CACert, now)
	if err != nil {
		return Enrollment{}, core.Errorf(core.KindConflict, "the group's CA certificate is no longer valid")
	}
	cert, err := pki.ParseCertificatePEM([]byte(certPEM))
	if err != nil {
		return Enrollment{}, err
	}
	if cert.Subject.CommonName != row.VerificationCode {
		return Enrollment{}, core.Invalid("certificate", "the verification certificate's common name must be the verification code")
	}
	if err := cert.CheckSignatureFrom(ca); err != nil {
		return Enrollment{}, core.Invalid("certificate", "the verification certificate is not signed by the group's CA")
	}
	if now.After(cert.NotAfter) || now.Before(cert.NotBefore) {
		return Enrollment{}, core.Invalid("certificate", "the verification certificate is not valid now")
	}
	row.CAVerified, row.VerificationCode, row.VerificationExpires = true, "", nil
	updated, err := s.st.UpdateEnrollment(ctx, row)
	if err != nil {
		return Enrollment{}, err
	}
	s.refreshCAs(ctx)
	return fromStore(updated)
}
