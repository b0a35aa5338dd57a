package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/store"
)

type userStore struct{ s *Store }

const userSelect = `SELECT name, password_hash, role, created_at, updated_at, last_login_at, groups FROM users`

func scanUser(row scanner) (store.User, error) {
	var (
		u                store.User
		created, updated int64
		lastLogin        sql.NullInt64
		groups           string
	)
	if err := row.Scan(&u.Name, &u.PasswordHash, &u.Role, &created, &updated, &lastLogin, &groups); err != nil {
		return store.User{}, err
	}
	var err error
	if u.Groups, err = scopeGroups(groups); err != nil {
		return store.User{}, fmt.Errorf("groups of user %q: %w", u.Name, err)
	}
	u.CreatedAt = fromMS(created)
	u.UpdatedAt = fromMS(updated)
	u.LastLoginAt = ptrMS(lastLogin)
	return u, nil
}

func getUser(ctx context.Context, q querier, name string) (store.User, error) {
	return getOne(q.QueryRowContext(ctx, userSelect+` WHERE name = ?`, name), scanUser, "user", name)
}

// Create stores a new user. The same name → core.Conflict `user "x"
// already exists`. A zero CreatedAt becomes now; UpdatedAt = CreatedAt.
func (us *userStore) Create(ctx context.Context, u store.User) (store.User, error) {
	if err := requireName("name", u.Name); err != nil {
		return store.User{}, err
	}
	created := orNow(u.CreatedAt)
	var out store.User
	err := us.s.inTx(ctx, func(tx *sql.Tx) error {
		if dup, err := exists(ctx, tx, `SELECT 1 FROM users WHERE name = ?`, u.Name); err != nil {
			return err
		} else if dup {
			return core.Conflict("user %q already exists", u.Name)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO users (name, password_hash, role, created_at, updated_at, last_login_at, groups)
			VALUES (?, ?, ?, ?, ?, ?, ?)`,
			u.Name, u.PasswordHash, u.Role, toMS(created), toMS(created), nullMS(u.LastLoginAt), scopeText(u.Groups)); err != nil {
			return internal("create user", err)
		}
		var err error
		out, err = getUser(ctx, tx, u.Name)
		return err
	})
	return out, err
}

// Get returns a user, or core.NotFound `user "x" not found`.
func (us *userStore) Get(ctx context.Context, name string) (store.User, error) {
	return getUser(ctx, us.s.r, name)
}

// List returns every user ordered by name.
func (us *userStore) List(ctx context.Context) ([]store.User, error) {
	rows, err := us.s.r.QueryContext(ctx, userSelect+` ORDER BY name`)
	if err != nil {
		return nil, internal("list users", err)
	}
	defer rows.Close()
	list := []store.User{}
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, internal("list users", err)
		}
		list = append(list, u)
	}
	if err := rows.Err(); err != nil {
		return nil, internal("list users", err)
	}
	return list, nil
}

// SetPassword replaces the password hash, sets UpdatedAt and deletes the
// user's sessions. A missing user → core.NotFound.
func (us *userStore) SetPassword(ctx context.Context, name string, hash []byte) (store.User, error) {
	var out store.User
	err := us.s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE users SET password_hash = ?, updated_at = ? WHERE name = ?`, hash, toMS(now()), name)
		if err != nil {
			return internal("set password", err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return internal("set password", err)
		} else if n == 0 {
			return core.NotFound("user", name)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM sessions WHERE user = ?`, name); err != nil {
			return internal("set password", err)
		}
		out, err = getUser(ctx, tx, name)
		return err
	})
	return out, err
}

// RecordLogin sets LastLoginAt (now if at is zero). A missing user →
// core.NotFound.
func (us *userStore) RecordLogin(ctx context.Context, name string, at time.Time) error {
	if at.IsZero() {
		at = now()
	}
	res, err := us.s.w.ExecContext(ctx, `UPDATE users SET last_login_at = ? WHERE name = ?`, toMS(at), name)
	if err != nil {
		return internal("record login", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return internal("record login", err)
	} else if n == 0 {
		return core.NotFound("user", name)
	}
	return nil
}

// Delete removes a user with its sessions and tokens. A missing one →
// core.NotFound; the last admin → core.Conflict.
func (us *userStore) Delete(ctx context.Context, name string) error {
	return us.s.inTx(ctx, func(tx *sql.Tx) error {
		u, err := getUser(ctx, tx, name)
		if err != nil {
			return err
		}
		if u.Role == "admin" {
			if err := otherAdmin(ctx, tx, name); err != nil {
				return err
			}
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM tokens WHERE user_name = ?`, name); err != nil {
			return internal("delete user", err)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM users WHERE name = ?`, name); err != nil {
			return internal("delete user", err)
		}
		return nil
	})
}

// otherAdmin returns core.Conflict unless an admin other than name exists.
func otherAdmin(ctx context.Context, tx *sql.Tx, name string) error {
	ok, err := exists(ctx, tx, `SELECT 1 FROM users WHERE role = 'admin' AND name != ?`, name)
	if err != nil {
		return err
	}
	if !ok {
		return core.Conflict("user %q is the last admin: make another user admin first", name)
	}
	return nil
}

// Update replaces Role and Groups and sets UpdatedAt. A missing user →
// core.NotFound; demoting the last admin → core.Conflict.
func (us *userStore) Update(ctx context.Context, u store.User) (store.User, error) {
	var out store.User
	err := us.s.inTx(ctx, func(tx *sql.Tx) error {
		old, err := getUser(ctx, tx, u.Name)
		if err != nil {
			return err
		}
		if old.Role == "admin" && u.Role != "admin" {
			if err := otherAdmin(ctx, tx, u.Name); err != nil {
				return err
			}
		}
		if _, err := tx.ExecContext(ctx, `UPDATE users SET role = ?, groups = ?, updated_at = ? WHERE name = ?`,
			u.Role, scopeText(u.Groups), toMS(now()), u.Name); err != nil {
			return internal("update user", err)
		}
		out, err = getUser(ctx, tx, u.Name)
		return err
	})
	return out, err
}

// CreateSession stores a session. An unknown user → core.NotFound; the
// same id hash → core.Conflict.
func (us *userStore) CreateSession(ctx context.Context, s store.Session) error {
	if len(s.IDHash) == 0 {
		return core.Invalid("id", "a session id hash is required")
	}
	created := orNow(s.CreatedAt)
	return us.s.inTx(ctx, func(tx *sql.Tx) error {
		if ok, err := exists(ctx, tx, `SELECT 1 FROM users WHERE name = ?`, s.User); err != nil {
			return err
		} else if !ok {
			return core.NotFound("user", s.User)
		}
		if dup, err := exists(ctx, tx, `SELECT 1 FROM sessions WHERE id_hash = ?`, s.IDHash); err != nil {
			return err
		} else if dup {
			return core.Conflict("a session with the same id already exists")
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO sessions (id_hash, user, created_at, expires_at) VALUES (?, ?, ?, ?)`,
			s.IDHash, s.User, toMS(created), toMS(s.ExpiresAt)); err != nil {
			return internal("create session", err)
		}
		return nil
	})
}

// GetSession returns a session, or core.NotFound `session not found`.
func (us *userStore) GetSession(ctx context.Context, idHash []byte) (store.Session, error) {
	var (
		s                store.Session
		created, expires int64
	)
	err := us.s.r.QueryRowContext(ctx, `SELECT id_hash, user, created_at, expires_at FROM sessions WHERE id_hash = ?`, idHash).
		Scan(&s.IDHash, &s.User, &created, &expires)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return store.Session{}, core.Errorf(core.KindNotFound, "session not found")
	case err != nil:
		return store.Session{}, internal("get session", err)
	}
	s.CreatedAt = fromMS(created)
	s.ExpiresAt = fromMS(expires)
	return s, nil
}

// ExtendSession sets a session's expiry. A missing one →
// core.NotFound `session not found`.
func (us *userStore) ExtendSession(ctx context.Context, idHash []byte, expiresAt time.Time) error {
	res, err := us.s.w.ExecContext(ctx, `UPDATE sessions SET expires_at = ? WHERE id_hash = ?`, toMS(expiresAt), idHash)
	if err != nil {
		return internal("extend session", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return internal("extend session", err)
	} else if n == 0 {
		return core.Errorf(core.KindNotFound, "session not found")
	}
	return nil
}

// DeleteSession removes a session; a missing one is not an error.
func (us *userStore) DeleteSession(ctx context.Context, idHash []byte) error {
	if _, err := us.s.w.ExecContext(ctx, `DELETE FROM sessions WHERE id_hash = ?`, idHash); err != nil {
		return internal("delete session", err)
	}
	return nil
}

// DeleteExpiredSessions removes sessions whose expiry is before at.
func (us *userStore) DeleteExpiredSessions(ctx context.Context, at time.Time) (int, error) {
	res, err := us.s.w.ExecContext(ctx, `DELETE FROM sessions WHERE expires_at < ?`, toMS(at))
	if err != nil {
		return 0, internal("delete expired sessions", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, internal("delete expired sessions", err)
	}
	return int(n), nil
}
