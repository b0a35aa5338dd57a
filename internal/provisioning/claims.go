package provisioning

import (
	"context"
	"encoding/json"
	"time"

	"rsc.io/qr"

	"github.com/moteiot/mote/internal/auth"
	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/store"
)

// TokenPrefix starts every claim token.
const TokenPrefix = "mclaim_"

// Claim is a claim token as the service shows it (never the token).
type Claim struct {
	ID            string
	Thing         string
	Enrollment    string
	ExpiresAt     time.Time
	RedeemedAt    *time.Time
	RedeemedThing string
	CreatedAt     time.Time
}

// NewClaim is a claim token to create.
type NewClaim struct {
	Thing      string        // optional fixed thing name
	Enrollment string        // optional group whose spec the thing gets
	TTL        time.Duration // 0: Options.ClaimTTL
}

func claimFromStore(c store.Claim) Claim {
	return Claim{ID: c.ID, Thing: c.Thing, Enrollment: c.Enrollment, ExpiresAt: c.ExpiresAt, RedeemedAt: c.RedeemedAt,
		RedeemedThing: c.RedeemedThing, CreatedAt: c.CreatedAt}
}

// CreateClaim creates a one-time claim token, returned once; only its
// keyed hash is kept.
func (s *Service) CreateClaim(ctx context.Context, in NewClaim) (Claim, string, error) {
	if in.Thing != "" {
		if err := core.ValidateName("thing", in.Thing); err != nil {
			return Claim{}, "", err
		}
		if _, err := s.reg.GetThing(ctx, in.Thing); err == nil {
			return Claim{}, "", core.Conflict("thing %q exists already", in.Thing)
		}
	}
	if in.Enrollment != "" {
		if _, err := s.st.GetEnrollment(ctx, in.Enrollment); err != nil {
			if core.IsNotFound(err) {
				return Claim{}, "", core.Invalid("enrollment", "enrollment %q does not exist", in.Enrollment)
			}
			return Claim{}, "", err
		}
	}
	ttl := in.TTL
	if ttl == 0 {
		ttl = s.opts.ClaimTTL
	}
	if ttl < time.Minute || ttl > s.opts.MaxClaimTTL {
		return Claim{}, "", core.Invalid("ttl", "ttl must be between 1m and %s (--provisioning-max-claim-ttl)", s.opts.MaxClaimTTL)
	}
	token := TokenPrefix + auth.NewSecret()
	c, err := s.st.CreateClaim(ctx, store.Claim{ID: auth.NewID("clm"), TokenHash: s.opts.Hasher.Hash(token), Thing: in.Thing,
		Enrollment: in.Enrollment, ExpiresAt: s.now().Add(ttl)})
	if err != nil {
		return Claim{}, "", err
	}
	return claimFromStore(c), token, nil
}

// GetClaim returns a claim.
func (s *Service) GetClaim(ctx context.Context, id string) (Claim, error) {
	c, err := s.st.GetClaim(ctx, id)
	return claimFromStore(c), err
}

// ListClaims lists claims after a cursor.
func (s *Service) ListClaims(ctx context.Context, after string, limit int) ([]Claim, string, error) {
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	rows, next, err := core.PageAfter(after, limit, func(after string, n int) ([]store.Claim, error) {
		return s.st.ListClaims(ctx, after, n)
	}, func(c store.Claim) string { return c.ID })
	if err != nil {
		return nil, "", err
	}
	out := make([]Claim, len(rows))
	for i, r := range rows {
		out[i] = claimFromStore(r)
	}
	return out, next, nil
}

// DeleteClaim deletes a claim (revoking an unused token).
func (s *Service) DeleteClaim(ctx context.Context, id string) error { return s.st.DeleteClaim(ctx, id) }

// CheckClaimToken reports whether token is claim id's (core.Forbidden if
// not): the QR code is drawn only for whoever holds the token.
func (s *Service) CheckClaimToken(ctx context.Context, id, token string) (Claim, error) {
	c, err := s.st.FindClaim(ctx, s.opts.Hasher.Hash(token))
	if err != nil || c.ID != id {
		return Claim{}, core.Errorf(core.KindForbidden, "the token is not this claim's")
	}
	return claimFromStore(c), nil
}

// QRPayload is what a claim's QR code carries (JSON).
type QRPayload struct {
	Endpoint      string `json:"endpoint"`
	Token         string `json:"token"`
	CAFingerprint string `json:"caFingerprint"` // "sha256:" + hex of Mote's CA certificate
}

// QR returns the QR payload text of a token and its PNG.
func (s *Service) QR(endpoint, token string) (string, []byte, error) {
	b, err := json.Marshal(QRPayload{Endpoint: endpoint, Token: token, CAFingerprint: s.caFingerprint})
	if err != nil {
		return "", nil, err
	}
	code, err := qr.Encode(string(b), qr.M)
	if err != nil {
		return "", nil, core.Errorf(core.KindInternal, "qr: %v", err)
	}
	code.Scale = 6
	return string(b), code.PNG(), nil
}

// RedeemClaim redeems a claim token with a CSR: the thing (the claim's
// fixed name, or the CSR's common name) is created with a certificate
// signed from the CSR. A token works once (ErrClaimUsed) and not after
// its expiry (ErrClaimExpired); a failed registration gives it back.
func (s *Service) RedeemClaim(ctx context.Context, token, csrPEM string) (Result, error) {
	ctx, cancel := context.WithTimeout(ctx, s.opts.RequestTimeout)
	defer cancel()
	res, err := s.redeem(ctx, token, csrPEM)
	s.countResult(MethodClaim, res, err)
	return res, err
}

func (s *Service) redeem(ctx context.Context, token, csrPEM string) (Result, error) {
	if token == "" || len(token) > 256 {
		return Result{}, refuse("bad_token", core.KindUnauthorized, "unknown claim token")
	}
	c, err := s.st.FindClaim(ctx, s.opts.Hasher.Hash(token))
	if core.IsNotFound(err) {
		return Result{}, refuse("bad_token", core.KindUnauthorized, "unknown claim token")
	}
	if err != nil {
		return Result{}, err
	}
	if c.RedeemedAt != nil {
		return Result{}, &refusal{reason: "used", err: ErrClaimUsed}
	}
	if !s.now().Before(c.ExpiresAt) {
		return Result{}, &refusal{reason: "expired", err: ErrClaimExpired}
	}
	csr, err := ParseCSR([]byte(csrPEM), c.Thing)
	if err != nil {
		return Result{}, &refusal{reason: "bad_csr", err: err.(*core.Error)}
	}
	thing := c.Thing
	if thing == "" {
		thing = csr.Subject.CommonName
		if thing == "" {
			return Result{}, refuse("bad_csr", core.KindInvalid, "csr: this claim names no thing, so the CSR's common name must")
		}
	}
	if err := core.ValidateName("thing", thing); err != nil {
		return Result{}, refuse("bad_name", core.KindInvalid, "thing name %q is not valid: %v", thing, err)
	}
	if _, err := s.reg.GetThing(ctx, thing); err == nil {
		return Result{}, refuse("name_taken", core.KindConflict, "thing %q exists already", thing)
	}
	if _, err := s.st.RedeemClaim(ctx, c.ID, thing, s.now()); err != nil {
		if core.KindOf(err) == core.KindConflict {
			return Result{}, &refusal{reason: "used", err: ErrClaimUsed}
		}
		return Result{}, err
	}
	res, err := s.claimThing(ctx, c, thing, []byte(csrPEM))
	if err != nil {
		if uerr := s.st.UnredeemClaim(context.WithoutCancel(ctx), c.ID); uerr != nil {
			s.log.Error("provisioning: give back a claim", "claim", c.ID, "error", uerr)
		}
		return Result{}, err
	}
	res.Enrollment, res.Claim = c.Enrollment, c.ID
	return res, nil
}

// claimThing creates the thing of a redeemed claim.
func (s *Service) claimThing(ctx context.Context, c store.Claim, thing string, csr []byte) (Result, error) {
	if c.Enrollment != "" {
		row, err := s.st.GetEnrollment(ctx, c.Enrollment)
		if err != nil {
			return Result{}, err
		}
		return s.admit(ctx, row, "claim:"+c.ID, thing, csr, nil)
	}
	if _, err := s.reg.CreateThing(ctx, store.Thing{Name: thing, Enabled: true}); err != nil {
		return Result{}, err
	}
	nc, err := s.reg.SignCSR(ctx, thing, csr, s.opts.CertValidity)
	if err != nil {
		if derr := s.reg.DeleteThing(context.WithoutCancel(ctx), thing); derr != nil {
			s.log.Error("provisioning: undo: delete thing", "thing", thing, "error", derr)
		}
		return Result{}, err
	}
	return toResult(thing, nc), nil
}
