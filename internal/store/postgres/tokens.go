package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/store"
)

type tokenStore struct{ s *Store }

const tokenSelect = `SELECT id, name, hash, role, created_at, expires_at, last_used_at FROM tokens`

func scanToken(row scanner) (store.Token, error) {
	var (
		t                 store.Token
		created           time.Time
		expires, lastUsed *time.Time
	)
	if err := row.Scan(&t.ID, &t.Name, &t.Hash, &t.Role, &created, &expires, &lastUsed); err != nil {
		return store.Token{}, err
	}
	t.CreatedAt = created.UTC()
	t.ExpiresAt = utcPtr(expires)
	t.LastUsedAt = utcPtr(lastUsed)
	return t, nil
}

func getToken(ctx context.Context, q querier, id string) (store.Token, error) {
	return getOne(q.QueryRow(ctx, tokenSelect+` WHERE id = $1`, id), scanToken, "token", id)
}

// Create stores a new token; the same ID or (non-empty) Hash is a conflict.
func (ks *tokenStore) Create(ctx context.Context, t store.Token) (store.Token, error) {
	if err := requireName("id", t.ID); err != nil {
		return store.Token{}, err
	}
	created := orNow(t.CreatedAt)
	var out store.Token
	err := ks.s.inTx(ctx, func(tx pgx.Tx) error {
		if dup, err := exists(ctx, tx, `SELECT 1 FROM tokens WHERE id = $1`, t.ID); err != nil {
			return err
		} else if dup {
			return core.Conflict("token %q already exists", t.ID)
		}
		if len(t.Hash) > 0 {
			if dup, err := exists(ctx, tx, `SELECT 1 FROM tokens WHERE hash = $1`, t.Hash); err != nil {
				return err
			} else if dup {
				return core.Conflict("a token with the same secret already exists")
			}
		}
		if _, err := tx.Exec(ctx, `INSERT INTO tokens (id, name, hash, role, created_at, expires_at, last_used_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7)`,
			t.ID, t.Name, nullBytes(t.Hash), t.Role, created, msPtr(t.ExpiresAt), msPtr(t.LastUsedAt)); err != nil {
			return internal("create token", err)
		}
		var err error
		out, err = getToken(ctx, tx, t.ID)
		return err
	})
	return out, err
}

// Get returns the token, or core.NotFound `token "id" not found`.
func (ks *tokenStore) Get(ctx context.Context, id string) (store.Token, error) {
	return getToken(ctx, ks.s.pool, id)
}

// List returns every token ordered by CreatedAt, then ID.
func (ks *tokenStore) List(ctx context.Context) ([]store.Token, error) {
	return queryList(ctx, ks.s.pool, "list tokens", scanToken, tokenSelect+` ORDER BY created_at, id`)
}

// Delete removes the token. A missing one → core.NotFound.
func (ks *tokenStore) Delete(ctx context.Context, id string) error {
	tag, err := ks.s.pool.Exec(ctx, `DELETE FROM tokens WHERE id = $1`, id)
	return affected(tag, err, "delete token", "token", id)
}

// Touch sets LastUsedAt to at (now if zero). A missing token →
// core.NotFound.
func (ks *tokenStore) Touch(ctx context.Context, id string, at time.Time) error {
	if at.IsZero() {
		at = now()
	}
	tag, err := ks.s.pool.Exec(ctx, `UPDATE tokens SET last_used_at = $1 WHERE id = $2`, ms(at), id)
	return affected(tag, err, "touch token", "token", id)
}
