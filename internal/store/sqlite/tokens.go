package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/store"
)

type tokenStore struct{ s *Store }

const tokenSelect = `SELECT id, name, hash, role, created_at, expires_at, last_used_at, user_name, groups, rate_limit FROM tokens`

func scanToken(row scanner) (store.Token, error) {
	var (
		t                 store.Token
		created           int64
		expires, lastUsed sql.NullInt64
		groups            string
	)
	if err := row.Scan(&t.ID, &t.Name, &t.Hash, &t.Role, &created, &expires, &lastUsed, &t.User, &groups, &t.RateLimit); err != nil {
		return store.Token{}, err
	}
	var err error
	if t.Groups, err = scopeGroups(groups); err != nil {
		return store.Token{}, fmt.Errorf("groups of token %q: %w", t.ID, err)
	}
	t.CreatedAt = fromMS(created)
	t.ExpiresAt = ptrMS(expires)
	t.LastUsedAt = ptrMS(lastUsed)
	return t, nil
}

func getToken(ctx context.Context, q querier, id string) (store.Token, error) {
	return getOne(q.QueryRowContext(ctx, tokenSelect+` WHERE id = ?`, id), scanToken, "token", id)
}

// Create stores a new token.
//
//   - A token with the same ID → core.Conflict `token "x" already exists`;
//     with the same (non-empty) Hash → core.Conflict too.
//   - A zero CreatedAt becomes now.
func (ks *tokenStore) Create(ctx context.Context, t store.Token) (store.Token, error) {
	if err := requireName("id", t.ID); err != nil {
		return store.Token{}, err
	}
	created := orNow(t.CreatedAt)
	var out store.Token
	err := ks.s.inTx(ctx, func(tx *sql.Tx) error {
		if dup, err := exists(ctx, tx, `SELECT 1 FROM tokens WHERE id = ?`, t.ID); err != nil {
			return err
		} else if dup {
			return core.Conflict("token %q already exists", t.ID)
		}
		if len(t.Hash) > 0 {
			if dup, err := exists(ctx, tx, `SELECT 1 FROM tokens WHERE hash = ?`, t.Hash); err != nil {
				return err
			} else if dup {
				return core.Conflict("a token with the same secret already exists")
			}
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO tokens (id, name, hash, role, created_at, expires_at, last_used_at, user_name, groups, rate_limit)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			t.ID, t.Name, nullBytes(t.Hash), t.Role, toMS(created), nullMS(t.ExpiresAt), nullMS(t.LastUsedAt), t.User, scopeText(t.Groups), t.RateLimit); err != nil {
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
	return getToken(ctx, ks.s.r, id)
}

// List returns every token ordered by CreatedAt, then ID.
func (ks *tokenStore) List(ctx context.Context) ([]store.Token, error) {
	rows, err := ks.s.r.QueryContext(ctx, tokenSelect+` ORDER BY created_at, id`)
	if err != nil {
		return nil, internal("list tokens", err)
	}
	defer rows.Close()
	list := []store.Token{}
	for rows.Next() {
		t, err := scanToken(rows)
		if err != nil {
			return nil, internal("list tokens", err)
		}
		list = append(list, t)
	}
	if err := rows.Err(); err != nil {
		return nil, internal("list tokens", err)
	}
	return list, nil
}

// Delete removes the token. A missing one → core.NotFound.
func (ks *tokenStore) Delete(ctx context.Context, id string) error {
	return ks.s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM tokens WHERE id = ?`, id)
		if err != nil {
			return internal("delete token", err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return internal("delete token", err)
		} else if n == 0 {
			return core.NotFound("token", id)
		}
		return nil
	})
}

// Touch sets LastUsedAt to at (now if zero). A missing token →
// core.NotFound.
func (ks *tokenStore) Touch(ctx context.Context, id string, at time.Time) error {
	if at.IsZero() {
		at = now()
	}
	res, err := ks.s.w.ExecContext(ctx, `UPDATE tokens SET last_used_at = ? WHERE id = ?`, toMS(at), id)
	if err != nil {
		return internal("touch token", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return internal("touch token", err)
	} else if n == 0 {
		return core.NotFound("token", id)
	}
	return nil
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
