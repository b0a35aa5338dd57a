// Package provisioning lets devices enroll themselves (docs/provisioning.md):
// enrollment groups with a symmetric key (the Azure DPS derived-key scheme)
// or an external X.509 CA (just-in-time registration on the first TLS
// connect, or claim certificates for the AWS fleet-provisioning flow), and
// one-time claim tokens with a QR code.
//
// Every registration goes through admit, which checks everything it can
// (group enabled and not expired, name valid and matching the group's
// pattern, CSR strong and for that name) before it creates anything, then
// counts the device (atomically bounded by maxDevices), creates the thing,
// its credential and its initial desired shadow, and undoes them all if a
// later step fails: nothing is left half-created.
package provisioning

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/moteiot/mote/internal/audit"
	"github.com/moteiot/mote/internal/auth"
	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/pki"
	"github.com/moteiot/mote/internal/registry"
	"github.com/moteiot/mote/internal/seal"
	"github.com/moteiot/mote/internal/store"
)

// Shadows sets a new thing's initial desired state (*shadow.Service).
type Shadows interface {
	Update(ctx context.Context, thing, name string, payload []byte) ([]byte, error)
}

// Options configure a Service.
type Options struct {
	Store    store.Store
	Registry *registry.Registry
	Sealer   *seal.Box
	Hasher   *auth.Hasher
	Shadows  Shadows // may be nil: no initial desired shadow
	CA       *pki.CA // signs the certificates of AWS CreateCertificateFromCsr
	// Trust is told the verified CAs of x509CA groups (TLS client
	// certificate verification); may be nil.
	Trust *Trust
	// CertValidity of the certificates signed for devices (0: the
	// registry's default).
	CertValidity time.Duration
	// VerificationTTL is how long a CA verification code is valid.
	VerificationTTL time.Duration
	// MaxEnrollments bounds the number of groups.
	MaxEnrollments int
	// MaxPendingCertificates bounds the certificates created by AWS
	// CreateCertificateFromCsr and not yet claimed by RegisterThing;
	// PendingTTL is how long one waits.
	MaxPendingCertificates int
	PendingTTL             time.Duration
	// ClaimTTL is a claim token's validity when none is asked for;
	// MaxClaimTTL the longest allowed.
	ClaimTTL    time.Duration
	MaxClaimTTL time.Duration
	// RequestTimeout bounds one registration's store work.
	RequestTimeout time.Duration
	// Audit records the registrations that do not come through the REST
	// API (MQTT, just-in-time); may be nil.
	Audit   *audit.Recorder
	Logger  *slog.Logger
	Metrics prometheus.Registerer
}

func (o *Options) defaults() {
	if o.VerificationTTL <= 0 {
		o.VerificationTTL = time.Hour
	}
	if o.MaxEnrollments <= 0 {
		o.MaxEnrollments = 1000
	}
	if o.MaxPendingCertificates <= 0 {
		o.MaxPendingCertificates = 1000
	}
	if o.PendingTTL <= 0 {
		o.PendingTTL = 5 * time.Minute
	}
	if o.ClaimTTL <= 0 {
		o.ClaimTTL = 24 * time.Hour
	}
	if o.MaxClaimTTL <= 0 {
		o.MaxClaimTTL = 365 * 24 * time.Hour
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = 10 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// Registration methods, the "method" label of the metric.
const (
	MethodSymmetricKey = "symmetricKey"
	MethodJITR         = "jitr"
	MethodClaim        = "claim"
	MethodAWS          = "aws"
)

// Service runs enrollment groups, registrations and claim tokens.
type Service struct {
	opts   Options
	st     store.ProvisioningStore
	reg    *registry.Registry
	sealer *seal.Box
	log    *slog.Logger
	now    func() time.Time

	registrations *prometheus.CounterVec // by method and result

	cas           atomic.Pointer[[]groupCA] // verified x509CA groups
	caFingerprint string                    // of Mote's CA, in claim QR codes

	pendMu  sync.Mutex
	pending map[string]pendingCert // AWS ownership token → certificate
}

type groupCA struct {
	name string
	mode string
	cert *x509.Certificate
	pool *x509.CertPool
}

// New returns a Service; call Start before use.
func New(o Options) *Service {
	o.defaults()
	s := &Service{opts: o, st: o.Store.Provisioning(), reg: o.Registry, sealer: o.Sealer, log: o.Logger, now: time.Now,
		pending: make(map[string]pendingCert),
		registrations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mote_provisioning_registrations_total",
			Help: "Device registrations through provisioning, by method (symmetricKey, jitr, claim, aws) and result (created, repeated, refused reasons, error).",
		}, []string{"method", "result"}),
	}
	if o.Metrics != nil {
		o.Metrics.MustRegister(s.registrations)
	}
	if o.CA != nil {
		s.caFingerprint = "sha256:" + pki.Fingerprint(o.CA.Certificate())
	}
	empty := []groupCA{}
	s.cas.Store(&empty)
	return s
}

// Start loads the verified CAs of x509CA groups.
func (s *Service) Start(ctx context.Context) error {
	return s.loadCAs(ctx)
}

func (s *Service) loadCAs(ctx context.Context) error {
	var list []groupCA
	after := ""
	for {
		rows, err := s.st.ListEnrollments(ctx, after, 1000)
		if err != nil {
			return err
		}
		for _, r := range rows {
			if r.Attestation != store.AttestationX509CA || !r.CAVerified || !r.Enabled {
				continue
			}
			cert, err := pki.ParseCertificatePEM([]byte(r.CACert))
			if err != nil {
				continue
			}
			e, err := fromStore(r)
			if err != nil {
				continue
			}
			pool := x509.NewCertPool()
			pool.AddCert(cert)
			list = append(list, groupCA{name: r.Name, mode: e.Spec.Mode, cert: cert, pool: pool})
		}
		if len(rows) < 1000 {
			break
		}
		after = rows[len(rows)-1].Name
	}
	s.cas.Store(&list)
	if s.opts.Trust != nil {
		certs := make([]*x509.Certificate, len(list))
		for i, g := range list {
			certs[i] = g.cert
		}
		s.opts.Trust.set(certs)
	}
	return nil
}

// refreshCAs reloads the CAs after a change of groups.
func (s *Service) refreshCAs(ctx context.Context) {
	if err := s.loadCAs(context.WithoutCancel(ctx)); err != nil {
		s.log.Warn("provisioning: reload enrollment CAs", "error", err)
	}
}

// count records one registration attempt.
func (s *Service) count(method, result string) {
	s.registrations.WithLabelValues(method, result).Inc()
}

// result is the metric label of an error.
func result(err error) string {
	var re *refusal
	if errors.As(err, &re) {
		return re.reason
	}
	switch core.KindOf(err) {
	case core.KindInvalid:
		return "invalid"
	case core.KindNotFound:
		return "unknown"
	case core.KindConflict:
		return "conflict"
	case core.KindUnauthorized:
		return "unauthorized"
	case core.KindForbidden:
		return "forbidden"
	case core.KindRateLimited:
		return "rate_limited"
	}
	return "error"
}

// refusal is a core error with a metric reason.
type refusal struct {
	reason string
	err    *core.Error
}

func (r *refusal) Error() string { return r.err.Error() }
func (r *refusal) Unwrap() error { return r.err }
func refuse(reason string, kind core.Kind, format string, args ...any) error {
	return &refusal{reason: reason, err: core.Errorf(kind, format, args...).(*core.Error)}
}

// Errors of a registration a caller may want to tell apart.
var (
	// ErrBadKey: the derived key does not match the registration id (or
	// the group is unknown: the two are not told apart).
	ErrBadKey = &core.Error{Kind: core.KindUnauthorized, Msg: "enrollment unknown or derived key wrong for this registration id"}
	// ErrClaimExpired: the claim token expired (HTTP 410).
	ErrClaimExpired = &core.Error{Kind: core.KindForbidden, Msg: "claim token expired"}
	// ErrClaimUsed: the claim token was redeemed already (HTTP 409).
	ErrClaimUsed = &core.Error{Kind: core.KindConflict, Msg: "claim token was already redeemed"}
)

// Result is what a registered device is given.
type Result struct {
	Thing       string
	Secret      string // without a CSR
	Certificate string // PEM, from a CSR
	CACert      string // PEM of Mote's CA, with a certificate
	Credential  string // the credential's id
	Repeated    bool   // the registration id was registered before
	// Enrollment is the group that admitted the device ("" for a claim
	// token without one); Claim the id of the claim token redeemed.
	Enrollment string
	Claim      string
}

// DeriveKey is the Azure DPS derived key of a registration id:
// base64(HMAC-SHA256(base64-decoded group key, registrationId)).
func DeriveKey(groupKey, registrationID string) (string, error) {
	k, err := base64.StdEncoding.DecodeString(groupKey)
	if err != nil {
		return "", core.Invalid("key", "group key is not base64")
	}
	m := hmac.New(sha256.New, k)
	m.Write([]byte(registrationID))
	return base64.StdEncoding.EncodeToString(m.Sum(nil)), nil
}

// RegisterRequest is a symmetric-key registration.
type RegisterRequest struct {
	RegistrationID string
	Enrollment     string
	Key            string // base64 derived key
	CSR            string // optional PEM
}

// Authenticate checks a symmetric-key device's derived key and returns
// its group; the same refusal (ErrBadKey) for an unknown group and a
// wrong key.
func (s *Service) Authenticate(ctx context.Context, enrollment, registrationID, key string) (store.Enrollment, error) {
	if err := core.ValidateName("registrationId", registrationID); err != nil {
		return store.Enrollment{}, err
	}
	row, err := s.st.GetEnrollment(ctx, enrollment)
	if core.IsNotFound(err) || (err == nil && row.Attestation != store.AttestationSymmetricKey) {
		return store.Enrollment{}, &refusal{reason: "bad_key", err: ErrBadKey}
	}
	if err != nil {
		return store.Enrollment{}, err
	}
	groupKey, err := s.sealer.Open(row.SealedKey)
	if err != nil {
		return store.Enrollment{}, core.Errorf(core.KindInternal, "enrollment %q: key does not open: %v", enrollment, err)
	}
	want, err := DeriveKey(groupKey, registrationID)
	if err != nil {
		return store.Enrollment{}, err
	}
	got, err := base64.StdEncoding.DecodeString(key)
	wantRaw, _ := base64.StdEncoding.DecodeString(want)
	if err != nil || !hmac.Equal(got, wantRaw) {
		return store.Enrollment{}, &refusal{reason: "bad_key", err: ErrBadKey}
	}
	return row, nil
}

// Register registers a device of a symmetric-key group: the thing is
// named by its registration id; it gets a certificate signed from its CSR,
// or a new secret. Registering the same id again returns the same thing
// with a new credential (the previous one is deleted).
func (s *Service) Register(ctx context.Context, r RegisterRequest) (Result, error) {
	ctx, cancel := context.WithTimeout(ctx, s.opts.RequestTimeout)
	defer cancel()
	row, err := s.Authenticate(ctx, r.Enrollment, r.RegistrationID, r.Key)
	if err != nil {
		s.count(MethodSymmetricKey, result(err))
		return Result{}, err
	}
	res, err := s.admit(ctx, row, r.RegistrationID, r.RegistrationID, []byte(r.CSR), nil)
	s.countResult(MethodSymmetricKey, res, err)
	if err == nil {
		res.Enrollment = row.Name
	}
	return res, err
}

func (s *Service) countResult(method string, res Result, err error) {
	switch {
	case err != nil:
		s.count(method, result(err))
	case res.Repeated:
		s.count(method, "repeated")
	default:
		s.count(method, "created")
	}
}

// checkGroup refuses a disabled or expired group.
func (s *Service) checkGroup(row store.Enrollment) error {
	if !row.Enabled {
		return refuse("disabled", core.KindForbidden, "enrollment %q is disabled", row.Name)
	}
	if row.ExpiresAt != nil && !s.now().Before(*row.ExpiresAt) {
		return refuse("expired", core.KindForbidden, "enrollment %q expired at %s", row.Name, row.ExpiresAt.Format(time.RFC3339))
	}
	return nil
}

// credentialFn issues a new thing's credential; nil issues a secret or
// signs the CSR.
type credentialFn func(ctx context.Context, thing string) (registry.NewCredential, error)

// admit registers regID of group row as thing. csr (PEM, may be empty)
// is signed for the thing; otherwise issue, if set, makes the credential;
// otherwise a secret is created.
func (s *Service) admit(ctx context.Context, row store.Enrollment, regID, thing string, csr []byte, issue credentialFn) (Result, error) {
	if err := s.checkGroup(row); err != nil {
		return Result{}, err
	}
	e, err := fromStore(row)
	if err != nil {
		return Result{}, err
	}
	if err := core.ValidateName("thing", thing); err != nil {
		return Result{}, refuse("bad_name", core.KindInvalid, "thing name %q is not valid: %v", thing, err)
	}
	if !matchName(e.Spec.NamePattern, thing) {
		return Result{}, refuse("bad_name", core.KindForbidden, "thing name %q does not match the enrollment's namePattern %q", thing, e.Spec.NamePattern)
	}
	if len(csr) > 0 {
		if _, err := ParseCSR(csr, thing); err != nil {
			return Result{}, &refusal{reason: "bad_csr", err: err.(*core.Error)}
		}
	}
	mk := func(ctx context.Context) (registry.NewCredential, error) {
		switch {
		case len(csr) > 0:
			return s.reg.SignCSR(ctx, thing, csr, s.opts.CertValidity)
		case issue != nil:
			return issue(ctx, thing)
		}
		return s.reg.CreateSecret(ctx, thing, nil)
	}
	// The same registration again: the same thing, a new credential.
	if prev, err := s.st.GetRegistration(ctx, row.Name, regID); err == nil {
		nc, err := mk(ctx)
		if err != nil {
			return Result{}, err
		}
		if _, err := s.st.PutRegistration(ctx, store.Registration{Enrollment: row.Name, ID: regID, Thing: prev.Thing, Credential: nc.ID}); err != nil {
			_ = s.reg.DeleteCredential(context.WithoutCancel(ctx), prev.Thing, nc.ID)
			return Result{}, err
		}
		if prev.Credential != "" && prev.Credential != nc.ID {
			if err := s.reg.DeleteCredential(ctx, prev.Thing, prev.Credential); err != nil && !core.IsNotFound(err) {
				s.log.Warn("provisioning: delete the previous credential", "thing", prev.Thing, "error", err)
			}
		}
		res := toResult(prev.Thing, nc)
		res.Repeated = true
		return res, nil
	} else if !core.IsNotFound(err) {
		return Result{}, err
	}
	if _, err := s.reg.GetThing(ctx, thing); err == nil {
		return Result{}, refuse("name_taken", core.KindConflict, "thing %q exists and was not registered through enrollment %q", thing, row.Name)
	} else if !core.IsNotFound(err) {
		return Result{}, err
	}
	if _, err := s.st.Reserve(ctx, row.Name); err != nil {
		if core.KindOf(err) == core.KindConflict {
			return Result{}, refuse("full", core.KindForbidden, "enrollment %q has registered its maxDevices (%d) devices", row.Name, row.MaxDevices)
		}
		return Result{}, err
	}
	undo := func(deleteThing bool) {
		bg := context.WithoutCancel(ctx)
		if deleteThing {
			if err := s.reg.DeleteThing(bg, thing); err != nil && !core.IsNotFound(err) {
				s.log.Error("provisioning: undo: delete thing", "thing", thing, "error", err)
			}
		}
		if err := s.st.Release(bg, row.Name); err != nil {
			s.log.Error("provisioning: undo: release", "enrollment", row.Name, "error", err)
		}
	}
	if _, err := s.reg.CreateThing(ctx, store.Thing{Name: thing, Type: e.Spec.Type, Attributes: e.Spec.Attributes, Groups: e.Spec.Groups,
		Policies: e.Spec.Policies, Enabled: true}); err != nil {
		undo(false)
		return Result{}, err
	}
	nc, err := mk(ctx)
	if err != nil {
		undo(true)
		return Result{}, err
	}
	if len(e.Spec.Desired) > 0 && s.opts.Shadows != nil {
		doc := append(append([]byte(`{"state":{"desired":`), e.Spec.Desired...), `}}`...)
		if _, err := s.opts.Shadows.Update(ctx, thing, "", doc); err != nil {
			undo(true)
			return Result{}, err
		}
	}
	if _, err := s.st.PutRegistration(ctx, store.Registration{Enrollment: row.Name, ID: regID, Thing: thing, Credential: nc.ID}); err != nil {
		undo(true)
		return Result{}, err
	}
	s.log.Info("device registered", "enrollment", row.Name, "thing", thing)
	return toResult(thing, nc), nil
}

func toResult(thing string, nc registry.NewCredential) Result {
	r := Result{Thing: thing, Credential: nc.ID, Secret: nc.Secret}
	if nc.Type == store.CredentialX509 {
		r.Certificate, r.CACert = nc.CertPEM, nc.CACert
	}
	return r
}
