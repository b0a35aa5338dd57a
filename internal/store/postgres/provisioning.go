package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/store"
)

// provisioningStore keeps enrollment groups, registrations and claim
// tokens (migration 0011).
type provisioningStore struct{ s *Store }

const enrollmentSelect = `SELECT name, attestation, sealed_key, ca_cert, ca_fingerprint, ca_verified, verification_code,
	verification_expires, spec, enabled, max_devices, expires_at, registered, created_at, updated_at FROM enrollments`

func scanEnrollment(row scanner) (store.Enrollment, error) {
	var (
		e         store.Enrollment
		vexp, exp *time.Time
		max, reg  int64
	)
	if err := row.Scan(&e.Name, &e.Attestation, &e.SealedKey, &e.CACert, &e.CAFingerprint, &e.CAVerified, &e.VerificationCode,
		&vexp, &e.Spec, &e.Enabled, &max, &exp, &reg, &e.CreatedAt, &e.UpdatedAt); err != nil {
		return store.Enrollment{}, err
	}
	e.MaxDevices, e.Registered = int(max), int(reg)
	e.VerificationExpires, e.ExpiresAt = utcPtr(vexp), utcPtr(exp)
	e.CreatedAt, e.UpdatedAt = e.CreatedAt.UTC(), e.UpdatedAt.UTC()
	return e, nil
}

func getEnrollment(ctx context.Context, q querier, name string) (store.Enrollment, error) {
	return getOne(q.QueryRow(ctx, enrollmentSelect+` WHERE name = $1`, name), scanEnrollment, "enrollment", name)
}

func specOrEmpty(b []byte) []byte {
	if b == nil {
		return []byte("{}")
	}
	return b
}

// CreateEnrollment stores a new group; the same name → core.Conflict.
func (ps *provisioningStore) CreateEnrollment(ctx context.Context, e store.Enrollment) (store.Enrollment, error) {
	if err := requireName("name", e.Name); err != nil {
		return store.Enrollment{}, err
	}
	created, updated := createdUpdated(e.CreatedAt, e.UpdatedAt)
	var out store.Enrollment
	err := ps.s.inTx(ctx, func(tx pgx.Tx) error {
		if dup, err := exists(ctx, tx, `SELECT 1 FROM enrollments WHERE name = $1`, e.Name); err != nil {
			return err
		} else if dup {
			return core.Conflict("enrollment %q already exists", e.Name)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO enrollments (name, attestation, sealed_key, ca_cert, ca_fingerprint, ca_verified,
			verification_code, verification_expires, spec, enabled, max_devices, expires_at, registered, created_at, updated_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 0, $13, $14)`,
			e.Name, e.Attestation, e.SealedKey, e.CACert, e.CAFingerprint, e.CAVerified, e.VerificationCode,
			msPtr(e.VerificationExpires), specOrEmpty(e.Spec), e.Enabled, int64(e.MaxDevices), msPtr(e.ExpiresAt), created, updated); err != nil {
			return internal("create enrollment", err)
		}
		var err error
		out, err = getEnrollment(ctx, tx, e.Name)
		return err
	})
	return out, err
}

// GetEnrollment returns the group or core.NotFound `enrollment "x" not found`.
func (ps *provisioningStore) GetEnrollment(ctx context.Context, name string) (store.Enrollment, error) {
	return getEnrollment(ctx, ps.s.pool, name)
}

// ListEnrollments returns groups after the cursor, ordered by name.
func (ps *provisioningStore) ListEnrollments(ctx context.Context, after string, limit int) ([]store.Enrollment, error) {
	return queryList(ctx, ps.s.pool, "list enrollments", scanEnrollment,
		enrollmentSelect+` WHERE name > $1 ORDER BY name LIMIT $2`, after, normLimit(limit))
}

// UpdateEnrollment replaces the mutable fields of e.Name.
func (ps *provisioningStore) UpdateEnrollment(ctx context.Context, e store.Enrollment) (store.Enrollment, error) {
	var out store.Enrollment
	err := ps.s.inTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE enrollments SET sealed_key = $1, ca_cert = $2, ca_fingerprint = $3, ca_verified = $4,
			verification_code = $5, verification_expires = $6, spec = $7, enabled = $8, max_devices = $9, expires_at = $10, updated_at = $11
			WHERE name = $12`,
			e.SealedKey, e.CACert, e.CAFingerprint, e.CAVerified, e.VerificationCode, msPtr(e.VerificationExpires),
			specOrEmpty(e.Spec), e.Enabled, int64(e.MaxDevices), msPtr(e.ExpiresAt), now(), e.Name)
		if err := affected(tag, err, "update enrollment", "enrollment", e.Name); err != nil {
			return err
		}
		out, err = getEnrollment(ctx, tx, e.Name)
		return err
	})
	return out, err
}

// DeleteEnrollment removes the group, its registrations and its claims.
func (ps *provisioningStore) DeleteEnrollment(ctx context.Context, name string) error {
	return ps.s.inTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM enrollments WHERE name = $1`, name)
		if err := affected(tag, err, "delete enrollment", "enrollment", name); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM claims WHERE enrollment = $1`, name); err != nil {
			return internal("delete enrollment claims", err)
		}
		return nil
	})
}

// Reserve counts one more device unless the group is full.
func (ps *provisioningStore) Reserve(ctx context.Context, name string) (store.Enrollment, error) {
	var out store.Enrollment
	err := ps.s.inTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE enrollments SET registered = registered + 1
			WHERE name = $1 AND (max_devices = 0 OR registered < max_devices)`, name)
		if err != nil {
			return internal("reserve enrollment", err)
		}
		if tag.RowsAffected() == 0 {
			if _, err := getEnrollment(ctx, tx, name); err != nil {
				return err
			}
			return core.Conflict("enrollment %q is full", name)
		}
		out, err = getEnrollment(ctx, tx, name)
		return err
	})
	return out, err
}

// Release gives back one Reserve.
func (ps *provisioningStore) Release(ctx context.Context, name string) error {
	if _, err := ps.s.pool.Exec(ctx, `UPDATE enrollments SET registered = registered - 1 WHERE name = $1 AND registered > 0`, name); err != nil {
		return internal("release enrollment", err)
	}
	return nil
}

const registrationSelect = `SELECT enrollment, registration_id, thing, credential, created_at, updated_at FROM registrations`

func scanRegistration(row scanner) (store.Registration, error) {
	var r store.Registration
	if err := row.Scan(&r.Enrollment, &r.ID, &r.Thing, &r.Credential, &r.CreatedAt, &r.UpdatedAt); err != nil {
		return store.Registration{}, err
	}
	r.CreatedAt, r.UpdatedAt = r.CreatedAt.UTC(), r.UpdatedAt.UTC()
	return r, nil
}

func getRegistration(ctx context.Context, q querier, enrollment, id string) (store.Registration, error) {
	return getOne(q.QueryRow(ctx, registrationSelect+` WHERE enrollment = $1 AND registration_id = $2`, enrollment, id),
		scanRegistration, "registration", id)
}

// GetRegistration returns the registration or core.NotFound.
func (ps *provisioningStore) GetRegistration(ctx context.Context, enrollment, id string) (store.Registration, error) {
	return getRegistration(ctx, ps.s.pool, enrollment, id)
}

// PutRegistration creates or replaces a registration.
func (ps *provisioningStore) PutRegistration(ctx context.Context, r store.Registration) (store.Registration, error) {
	if err := requireName("registrationId", r.ID); err != nil {
		return store.Registration{}, err
	}
	var out store.Registration
	err := ps.s.inTx(ctx, func(tx pgx.Tx) error {
		if ok, err := exists(ctx, tx, `SELECT 1 FROM enrollments WHERE name = $1`, r.Enrollment); err != nil {
			return err
		} else if !ok {
			return core.NotFound("enrollment", r.Enrollment)
		}
		if ok, err := exists(ctx, tx, `SELECT 1 FROM things WHERE name = $1`, r.Thing); err != nil {
			return err
		} else if !ok {
			return core.NotFound("thing", r.Thing)
		}
		at := now()
		if _, err := tx.Exec(ctx, `INSERT INTO registrations (enrollment, registration_id, thing, credential, created_at, updated_at)
			VALUES ($1, $2, $3, $4, $5, $5)
			ON CONFLICT (enrollment, registration_id) DO UPDATE SET thing = excluded.thing, credential = excluded.credential, updated_at = excluded.updated_at`,
			r.Enrollment, r.ID, r.Thing, r.Credential, at); err != nil {
			return internal("put registration", err)
		}
		var err error
		out, err = getRegistration(ctx, tx, r.Enrollment, r.ID)
		return err
	})
	return out, err
}

const claimSelect = `SELECT id, token_hash, thing, enrollment, expires_at, redeemed_at, redeemed_thing, created_at FROM claims`

func scanClaim(row scanner) (store.Claim, error) {
	var (
		c        store.Claim
		redeemed *time.Time
	)
	if err := row.Scan(&c.ID, &c.TokenHash, &c.Thing, &c.Enrollment, &c.ExpiresAt, &redeemed, &c.RedeemedThing, &c.CreatedAt); err != nil {
		return store.Claim{}, err
	}
	c.ExpiresAt, c.CreatedAt, c.RedeemedAt = c.ExpiresAt.UTC(), c.CreatedAt.UTC(), utcPtr(redeemed)
	return c, nil
}

func getClaim(ctx context.Context, q querier, id string) (store.Claim, error) {
	return getOne(q.QueryRow(ctx, claimSelect+` WHERE id = $1`, id), scanClaim, "claim", id)
}

// CreateClaim stores a new claim; the same id or token hash → core.Conflict.
func (ps *provisioningStore) CreateClaim(ctx context.Context, c store.Claim) (store.Claim, error) {
	if err := requireName("id", c.ID); err != nil {
		return store.Claim{}, err
	}
	if len(c.TokenHash) == 0 {
		return store.Claim{}, core.Invalid("tokenHash", "tokenHash is required")
	}
	created := orNow(c.CreatedAt)
	var out store.Claim
	err := ps.s.inTx(ctx, func(tx pgx.Tx) error {
		if dup, err := exists(ctx, tx, `SELECT 1 FROM claims WHERE id = $1 OR token_hash = $2`, c.ID, c.TokenHash); err != nil {
			return err
		} else if dup {
			return core.Conflict("claim %q already exists", c.ID)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO claims (id, token_hash, thing, enrollment, expires_at, redeemed_at, redeemed_thing, created_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
			c.ID, c.TokenHash, c.Thing, c.Enrollment, ms(c.ExpiresAt), msPtr(c.RedeemedAt), c.RedeemedThing, created); err != nil {
			return internal("create claim", err)
		}
		var err error
		out, err = getClaim(ctx, tx, c.ID)
		return err
	})
	return out, err
}

// GetClaim returns the claim or core.NotFound `claim "id" not found`.
func (ps *provisioningStore) GetClaim(ctx context.Context, id string) (store.Claim, error) {
	return getClaim(ctx, ps.s.pool, id)
}

// FindClaim returns the claim with this token hash.
func (ps *provisioningStore) FindClaim(ctx context.Context, hash []byte) (store.Claim, error) {
	return getOne(ps.s.pool.QueryRow(ctx, claimSelect+` WHERE token_hash = $1`, hash), scanClaim, "claim", "token")
}

// ListClaims returns claims after the cursor, ordered by id.
func (ps *provisioningStore) ListClaims(ctx context.Context, after string, limit int) ([]store.Claim, error) {
	return queryList(ctx, ps.s.pool, "list claims", scanClaim, claimSelect+` WHERE id > $1 ORDER BY id LIMIT $2`, after, normLimit(limit))
}

// DeleteClaim removes a claim.
func (ps *provisioningStore) DeleteClaim(ctx context.Context, id string) error {
	tag, err := ps.s.pool.Exec(ctx, `DELETE FROM claims WHERE id = $1`, id)
	return affected(tag, err, "delete claim", "claim", id)
}

// RedeemClaim marks the claim redeemed, once.
func (ps *provisioningStore) RedeemClaim(ctx context.Context, id, thing string, at time.Time) (store.Claim, error) {
	if at.IsZero() {
		at = now()
	}
	var out store.Claim
	err := ps.s.inTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE claims SET redeemed_at = $1, redeemed_thing = $2 WHERE id = $3 AND redeemed_at IS NULL`,
			ms(at), thing, id)
		if err != nil {
			return internal("redeem claim", err)
		}
		if tag.RowsAffected() == 0 {
			if _, err := getClaim(ctx, tx, id); err != nil {
				return err
			}
			return core.Conflict("claim %q was already redeemed", id)
		}
		out, err = getClaim(ctx, tx, id)
		return err
	})
	return out, err
}

// UnredeemClaim undoes a RedeemClaim.
func (ps *provisioningStore) UnredeemClaim(ctx context.Context, id string) error {
	tag, err := ps.s.pool.Exec(ctx, `UPDATE claims SET redeemed_at = NULL, redeemed_thing = '' WHERE id = $1`, id)
	return affected(tag, err, "unredeem claim", "claim", id)
}
