package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/store"
)

type tokenStore struct{ s *Store }

const tokenSelect = `SELECT id, name, hash, role, created_at, expires_at, last_used_at, user_name, groups, rate_limit FROM tokens`

func scanToken(row scanner) (store.Token, error) {
	var (
		t                 store.Token
		created           time.Time
		expires, lastUsed *time.Time
		groups            string
	)
	if err := row.Scan(&t.ID, &t.Name, &t.Hash, &t.Role, &created, &expires, &lastUsed, &t.User, &groups, &t.RateLimit); err != nil {
		return store.Token{}, err
	}
	var err error
	if t.Groups, err = scopeGroups(groups); err != nil {
		return store.Token{}, fmt.Errorf("groups of token %q: %w", t.ID, err)
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
		if _, err := tx.Exec(ctx, `INSERT INTO tokens (id, name, hash, role, created_at, expires_at, last_used_at, user_name, groups, rate_limit)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
			t.ID, t.Name, nullBytes(t.Hash), t.Role, created, msPtr(t.ExpiresAt), msPtr(t.LastUsedAt), t.User, scopeText(t.Groups), t.RateLimit); err != nil {
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

// scopeText encodes a group scope: "" for none, else a JSON array.
func scopeText(groups []string) string {
	if len(groups) == 0 {
		return ""
	}
	b, _ := json.Marshal(groups)
	return string(b)
}

// scopeGroups decodes scopeText; nil for none.
func scopeGroups(s string) ([]string, error) {
	if s == "" || s == "[]" {
		return nil, nil
	}
	var list []string
	err := json.Unmarshal([]byte(s), &list)
	return list, err
}
