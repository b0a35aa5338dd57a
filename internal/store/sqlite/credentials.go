package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/store"
)

type credentialStore struct{ s *Store }

const credentialSelect = `SELECT id, thing, type, secret_hash, fingerprint, cert_pem, not_after, revoked, revoked_at, created_at, sealed_key
FROM credentials`

func scanCredential(row scanner) (store.Credential, error) {
	var (
		c                   store.Credential
		fingerprint         sql.NullString
		notAfter, revokedAt sql.NullInt64
		created             int64
	)
	if err := row.Scan(&c.ID, &c.Thing, &c.Type, &c.SecretHash, &fingerprint, &c.CertPEM,
		&notAfter, &c.Revoked, &revokedAt, &created, &c.SealedKey); err != nil {
		return store.Credential{}, err
	}
	c.Fingerprint = fingerprint.String
	c.NotAfter = ptrMS(notAfter)
	c.RevokedAt = ptrMS(revokedAt)
	c.CreatedAt = fromMS(created)
	return c, nil
}

func getCredential(ctx context.Context, q querier, id string) (store.Credential, error) {
	return getOne(q.QueryRowContext(ctx, credentialSelect+` WHERE id = ?`, id), scanCredential, "credential", id)
}

// Create stores a new credential. An empty SecretHash or Fingerprint is
// stored as absent (and comes back as nil or "").
//
//   - The thing does not exist → core.NotFound `thing "x" not found`.
//   - A credential with the same ID → core.Conflict `credential "x" already
//     exists`; with the same SecretHash or Fingerprint → core.Conflict too
//     (the message does not show the hash).
//   - A zero CreatedAt becomes now.
func (cs *credentialStore) Create(ctx context.Context, c store.Credential) (store.Credential, error) {
	if err := requireName("id", c.ID); err != nil {
		return store.Credential{}, err
	}
	created := orNow(c.CreatedAt)
	var out store.Credential
	err := cs.s.inTx(ctx, func(tx *sql.Tx) error {
		ok, err := exists(ctx, tx, `SELECT 1 FROM things WHERE name = ?`, c.Thing)
		if err != nil {
			return err
		}
		if !ok {
			return core.NotFound("thing", c.Thing)
		}
		if dup, err := exists(ctx, tx, `SELECT 1 FROM credentials WHERE id = ?`, c.ID); err != nil {
			return err
		} else if dup {
			return core.Conflict("credential %q already exists", c.ID)
		}
		if len(c.SecretHash) > 0 {
			if dup, err := exists(ctx, tx, `SELECT 1 FROM credentials WHERE secret_hash = ?`, c.SecretHash); err != nil {
				return err
			} else if dup {
				return core.Conflict("a credential with the same secret already exists")
			}
		}
		if c.Fingerprint != "" {
			if dup, err := exists(ctx, tx, `SELECT 1 FROM credentials WHERE fingerprint = ?`, c.Fingerprint); err != nil {
				return err
			} else if dup {
				return core.Conflict("a credential with fingerprint %q already exists", c.Fingerprint)
			}
		}
		var revokedAt any
		if c.Revoked {
			revokedAt = nullMS(c.RevokedAt)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO credentials
			(id, thing, type, secret_hash, fingerprint, cert_pem, not_after, revoked, revoked_at, created_at, sealed_key)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			c.ID, c.Thing, c.Type, nullBytes(c.SecretHash), nullString(c.Fingerprint), c.CertPEM,
			nullMS(c.NotAfter), c.Revoked, revokedAt, toMS(created), c.SealedKey); err != nil {
			return internal("create credential", err)
		}
		out, err = getCredential(ctx, tx, c.ID)
		return err
	})
	return out, err
}

// Get returns the credential, or core.NotFound `credential "id" not found`.
func (cs *credentialStore) Get(ctx context.Context, id string) (store.Credential, error) {
	return getCredential(ctx, cs.s.r, id)
}

// ListByThing returns the thing's credentials ordered by CreatedAt, then
// ID; an empty list if there are none or the thing does not exist.
func (cs *credentialStore) ListByThing(ctx context.Context, thing string) ([]store.Credential, error) {
	rows, err := cs.s.r.QueryContext(ctx, credentialSelect+` WHERE thing = ? ORDER BY created_at, id`, thing)
	if err != nil {
		return nil, internal("list credentials", err)
	}
	defer rows.Close()
	list := []store.Credential{}
	for rows.Next() {
		c, err := scanCredential(rows)
		if err != nil {
			return nil, internal("list credentials", err)
		}
		list = append(list, c)
	}
	if err := rows.Err(); err != nil {
		return nil, internal("list credentials", err)
	}
	return list, nil
}

// FindSecret returns the credential whose SecretHash is exactly hash,
// revoked or not (the caller decides). None → core.NotFound, whose message
// does not contain the hash.
func (cs *credentialStore) FindSecret(ctx context.Context, hash []byte) (store.Credential, error) {
	if len(hash) == 0 {
		return store.Credential{}, errSecretNotFound
	}
	c, err := scanCredential(cs.s.findSecret.QueryRowContext(ctx, hash))
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return store.Credential{}, errSecretNotFound
	case err != nil:
		return store.Credential{}, internal("find secret", err)
	}
	return c, nil
}

var errSecretNotFound = core.Errorf(core.KindNotFound, "credential not found")

// FindCertificate returns the credential with this certificate
// fingerprint, revoked or not. None → core.NotFound
// `credential with fingerprint "f" not found`.
func (cs *credentialStore) FindCertificate(ctx context.Context, fingerprint string) (store.Credential, error) {
	if fingerprint == "" {
		return store.Credential{}, core.Errorf(core.KindNotFound, "credential with fingerprint %q not found", fingerprint)
	}
	c, err := scanCredential(cs.s.findCertificate.QueryRowContext(ctx, fingerprint))
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return store.Credential{}, core.Errorf(core.KindNotFound, "credential with fingerprint %q not found", fingerprint)
	case err != nil:
		return store.Credential{}, internal("find certificate", err)
	}
	return c, nil
}

// Revoke marks the credential revoked at at (now if zero) and returns it.
// Revoking a revoked credential changes nothing: RevokedAt stays the time
// of the first revocation. A missing credential → core.NotFound.
func (cs *credentialStore) Revoke(ctx context.Context, id string, at time.Time) (store.Credential, error) {
	if at.IsZero() {
		at = now()
	}
	var out store.Credential
	err := cs.s.inTx(ctx, func(tx *sql.Tx) error {
		var revoked bool
		err := tx.QueryRowContext(ctx, `SELECT revoked FROM credentials WHERE id = ?`, id).Scan(&revoked)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return core.NotFound("credential", id)
		case err != nil:
			return internal("revoke credential", err)
		}
		if !revoked {
			if _, err := tx.ExecContext(ctx, `UPDATE credentials SET revoked = 1, revoked_at = ? WHERE id = ?`,
				toMS(at), id); err != nil {
				return internal("revoke credential", err)
			}
		}
		out, err = getCredential(ctx, tx, id)
		return err
	})
	return out, err
}

// Expire brings the credential's NotAfter forward to at; a NotAfter
// already earlier stays. A missing credential → core.NotFound.
func (cs *credentialStore) Expire(ctx context.Context, id string, at time.Time) (store.Credential, error) {
	var out store.Credential
	err := cs.s.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `UPDATE credentials SET not_after = ? WHERE id = ? AND (not_after IS NULL OR not_after > ?)`,
			toMS(at), id, toMS(at)); err != nil {
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
	rows, err := cs.s.r.QueryContext(ctx, credentialSelect+` WHERE revoked AND type = ? ORDER BY revoked_at, id`, store.CredentialX509)
	if err != nil {
		return nil, internal("list revoked certificates", err)
	}
	defer rows.Close()
	list := []store.Credential{}
	for rows.Next() {
		c, err := scanCredential(rows)
		if err != nil {
			return nil, internal("list revoked certificates", err)
		}
		list = append(list, c)
	}
	if err := rows.Err(); err != nil {
		return nil, internal("list revoked certificates", err)
	}
	return list, nil
}

// Delete removes the credential. A missing one → core.NotFound.
func (cs *credentialStore) Delete(ctx context.Context, id string) error {
	return cs.s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM credentials WHERE id = ?`, id)
		if err != nil {
			return internal("delete credential", err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return internal("delete credential", err)
		} else if n == 0 {
			return core.NotFound("credential", id)
		}
		return nil
	})
}
