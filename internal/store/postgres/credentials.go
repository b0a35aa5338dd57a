package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/store"
)

type credentialStore struct{ s *Store }

const credentialSelect = `SELECT id, thing, type, secret_hash, coalesce(fingerprint, ''), cert_pem, not_after, revoked, revoked_at, created_at, sealed_key
FROM credentials`

func scanCredential(row scanner) (store.Credential, error) {
	var (
		c                   store.Credential
		notAfter, revokedAt *time.Time
		created             time.Time
	)
	if err := row.Scan(&c.ID, &c.Thing, &c.Type, &c.SecretHash, &c.Fingerprint, &c.CertPEM,
		&notAfter, &c.Revoked, &revokedAt, &created, &c.SealedKey); err != nil {
		return store.Credential{}, err
	}
	c.NotAfter = utcPtr(notAfter)
	c.RevokedAt = utcPtr(revokedAt)
	c.CreatedAt = created.UTC()
	return c, nil
}

func getCredential(ctx context.Context, q querier, id string) (store.Credential, error) {
	return getOne(q.QueryRow(ctx, credentialSelect+` WHERE id = $1`, id), scanCredential, "credential", id)
}

// Create stores a new credential; see the SQLite backend for the contract.
func (cs *credentialStore) Create(ctx context.Context, c store.Credential) (store.Credential, error) {
	if err := requireName("id", c.ID); err != nil {
		return store.Credential{}, err
	}
	created := orNow(c.CreatedAt)
	var out store.Credential
	err := cs.s.inTx(ctx, func(tx pgx.Tx) error {
		ok, err := exists(ctx, tx, `SELECT 1 FROM things WHERE name = $1`, c.Thing)
		if err != nil {
			return err
		}
		if !ok {
			return core.NotFound("thing", c.Thing)
		}
		if dup, err := exists(ctx, tx, `SELECT 1 FROM credentials WHERE id = $1`, c.ID); err != nil {
			return err
		} else if dup {
			return core.Conflict("credential %q already exists", c.ID)
		}
		if len(c.SecretHash) > 0 {
			if dup, err := exists(ctx, tx, `SELECT 1 FROM credentials WHERE secret_hash = $1`, c.SecretHash); err != nil {
				return err
			} else if dup {
				return core.Conflict("a credential with the same secret already exists")
			}
		}
		if c.Fingerprint != "" {
			if dup, err := exists(ctx, tx, `SELECT 1 FROM credentials WHERE fingerprint = $1`, c.Fingerprint); err != nil {
				return err
			} else if dup {
				return core.Conflict("a credential with fingerprint %q already exists", c.Fingerprint)
			}
		}
		var revokedAt *time.Time
		if c.Revoked {
			revokedAt = msPtr(c.RevokedAt)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO credentials
			(id, thing, type, secret_hash, fingerprint, cert_pem, not_after, revoked, revoked_at, created_at, sealed_key)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
			c.ID, c.Thing, c.Type, nullBytes(c.SecretHash), nullString(c.Fingerprint), c.CertPEM,
			msPtr(c.NotAfter), c.Revoked, revokedAt, created, c.SealedKey); err != nil {
			return internal("create credential", err)
		}
		out, err = getCredential(ctx, tx, c.ID)
		return err
	})
	return out, err
}

// Get returns the credential, or core.NotFound `credential "id" not found`.
func (cs *credentialStore) Get(ctx context.Context, id string) (store.Credential, error) {
	return getCredential(ctx, cs.s.pool, id)
}

// ListByThing returns the thing's credentials ordered by CreatedAt, then ID.
func (cs *credentialStore) ListByThing(ctx context.Context, thing string) ([]store.Credential, error) {
	return queryList(ctx, cs.s.pool, "list credentials", scanCredential,
		credentialSelect+` WHERE thing = $1 ORDER BY created_at, id`, thing)
}

var errSecretNotFound = core.Errorf(core.KindNotFound, "credential not found")

// FindSecret returns the credential whose SecretHash is exactly hash. None
// → core.NotFound, whose message does not contain the hash.
func (cs *credentialStore) FindSecret(ctx context.Context, hash []byte) (store.Credential, error) {
	if len(hash) == 0 {
		return store.Credential{}, errSecretNotFound
	}
	c, err := scanCredential(cs.s.pool.QueryRow(ctx, credentialSelect+` WHERE secret_hash = $1`, hash))
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return store.Credential{}, errSecretNotFound
	case err != nil:
		return store.Credential{}, internal("find secret", err)
	}
	return c, nil
}

// FindCertificate returns the credential with this certificate
// fingerprint. None → core.NotFound.
func (cs *credentialStore) FindCertificate(ctx context.Context, fingerprint string) (store.Credential, error) {
	notFound := core.Errorf(core.KindNotFound, "credential with fingerprint %q not found", fingerprint)
	if fingerprint == "" {
		return store.Credential{}, notFound
	}
	c, err := scanCredential(cs.s.pool.QueryRow(ctx, credentialSelect+` WHERE fingerprint = $1`, fingerprint))
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return store.Credential{}, notFound
	case err != nil:
		return store.Credential{}, internal("find certificate", err)
	}
	return c, nil
}

// Revoke marks the credential revoked at at (now if zero); RevokedAt stays
// the time of the first revocation. A missing credential → core.NotFound.
func (cs *credentialStore) Revoke(ctx context.Context, id string, at time.Time) (store.Credential, error) {
	if at.IsZero() {
		at = now()
	}
	var out store.Credential
	err := cs.s.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `UPDATE credentials SET revoked = true, revoked_at = $1 WHERE id = $2 AND NOT revoked`,
			ms(at), id); err != nil {
			return internal("revoke credential", err)
		}
		var err error
		out, err = getCredential(ctx, tx, id)
		return err
	})
	return out, err
}

// Expire brings the credential's NotAfter forward to at; see the SQLite
// backend for the contract.
func (cs *credentialStore) Expire(ctx context.Context, id string, at time.Time) (store.Credential, error) {
	var out store.Credential
	err := cs.s.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `UPDATE credentials SET not_after = $1 WHERE id = $2 AND (not_after IS NULL OR not_after > $1)`,
			ms(at), id); err != nil {
			return internal("expire credential", err)
		}
		var err error
		out, err = getCredential(ctx, tx, id)
		return err
	})
	return out, err
}

// ListRevokedCertificates returns the revoked X.509 credentials ordered
// by RevokedAt, then ID.
func (cs *credentialStore) ListRevokedCertificates(ctx context.Context) ([]store.Credential, error) {
	return queryList(ctx, cs.s.pool, "list revoked certificates", scanCredential,
		credentialSelect+` WHERE revoked AND type = $1 ORDER BY revoked_at, id`, store.CredentialX509)
}

// Delete removes the credential. A missing one → core.NotFound.
func (cs *credentialStore) Delete(ctx context.Context, id string) error {
	tag, err := cs.s.pool.Exec(ctx, `DELETE FROM credentials WHERE id = $1`, id)
	return affected(tag, err, "delete credential", "credential", id)
}
