package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/store"
)

type userStore struct{ s *Store }

const userColumns = `name, password_hash, role, created_at, updated_at, last_login_at, groups`

const userSelect = `SELECT ` + userColumns + ` FROM users`

func scanUser(row scanner) (store.User, error) {
	var (
		u                store.User
		created, updated time.Time
		lastLogin        *time.Time
		groups           string
	)
	if err := row.Scan(&u.Name, &u.PasswordHash, &u.Role, &created, &updated, &lastLogin, &groups); err != nil {
		return store.User{}, err
	}
	var err error
	if u.Groups, err = scopeGroups(groups); err != nil {
		return store.User{}, fmt.Errorf("groups of user %q: %w", u.Name, err)
	}
	u.CreatedAt, u.UpdatedAt = created.UTC(), updated.UTC()
	u.LastLoginAt = utcPtr(lastLogin)
	return u, nil
}

func getUser(ctx context.Context, q querier, name string) (store.User, error) {
	return getOne(q.QueryRow(ctx, userSelect+` WHERE name = $1`, name), scanUser, "user", name)
}

// Create stores a new user; the same name → core.Conflict.
func (us *userStore) Create(ctx context.Context, u store.User) (store.User, error) {
	if err := requireName("name", u.Name); err != nil {
		return store.User{}, err
	}
	created := orNow(u.CreatedAt)
	var out store.User
	err := us.s.inTx(ctx, func(tx pgx.Tx) error {
		if dup, err := exists(ctx, tx, `SELECT 1 FROM users WHERE name = $1`, u.Name); err != nil {
			return err
		} else if dup {
			return core.Conflict("user %q already exists", u.Name)
		}
		var err error
		out, err = getOne(tx.QueryRow(ctx, `INSERT INTO users (`+userColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING `+userColumns,
			u.Name, u.PasswordHash, u.Role, created, created, msPtr(u.LastLoginAt), scopeText(u.Groups)), scanUser, "user", u.Name)
		return err
	})
	return out, err
}

// Get returns a user, or core.NotFound `user "x" not found`.
func (us *userStore) Get(ctx context.Context, name string) (store.User, error) {
	return getUser(ctx, us.s.pool, name)
}

// List returns every user ordered by name.
func (us *userStore) List(ctx context.Context) ([]store.User, error) {
	return queryList(ctx, us.s.pool, "list users", scanUser, userSelect+` ORDER BY name`)
}

// SetPassword replaces the password hash, sets UpdatedAt and deletes the
// user's sessions. A missing user → core.NotFound.
func (us *userStore) SetPassword(ctx context.Context, name string, hash []byte) (store.User, error) {
	var out store.User
	err := us.s.inTx(ctx, func(tx pgx.Tx) error {
		var err error
		out, err = getOne(tx.QueryRow(ctx, `UPDATE users SET password_hash = $1, updated_at = $2 WHERE name = $3 RETURNING `+userColumns,
			hash, now(), name), scanUser, "user", name)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM console_sessions WHERE user_name = $1`, name); err != nil {
			return internal("set password", err)
		}
		return nil
	})
	return out, err
}

// RecordLogin sets LastLoginAt (now if at is zero). A missing user →
// core.NotFound.
func (us *userStore) RecordLogin(ctx context.Context, name string, at time.Time) error {
	if at.IsZero() {
		at = now()
	}
	tag, err := us.s.pool.Exec(ctx, `UPDATE users SET last_login_at = $1 WHERE name = $2`, ms(at), name)
	return affected(tag, err, "record login", "user", name)
}

// Delete removes a user with its sessions and tokens. A missing one →
// core.NotFound; the last admin → core.Conflict.
func (us *userStore) Delete(ctx context.Context, name string) error {
	return us.s.inTx(ctx, func(tx pgx.Tx) error {
		u, err := lockUser(ctx, tx, name)
		if err != nil {
			return err
		}
		if u.Role == "admin" {
			if err := otherAdmin(ctx, tx, name); err != nil {
				return err
			}
		}
		if _, err := tx.Exec(ctx, `DELETE FROM tokens WHERE user_name = $1`, name); err != nil {
			return internal("delete user", err)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM users WHERE name = $1`, name); err != nil {
			return internal("delete user", err)
		}
		return nil
	})
}

// lockUser reads a user and locks every admin row, so that two
// transactions cannot each remove one of the last two admins.
func lockUser(ctx context.Context, tx pgx.Tx, name string) (store.User, error) {
	if _, err := tx.Exec(ctx, `SELECT name FROM users WHERE role = 'admin' OR name = $1 ORDER BY name FOR UPDATE`, name); err != nil {
		return store.User{}, internal("lock users", err)
	}
	return getUser(ctx, tx, name)
}

// otherAdmin returns core.Conflict unless an admin other than name exists.
func otherAdmin(ctx context.Context, tx pgx.Tx, name string) error {
	ok, err := exists(ctx, tx, `SELECT 1 FROM users WHERE role = 'admin' AND name != $1`, name)
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
	err := us.s.inTx(ctx, func(tx pgx.Tx) error {
		old, err := lockUser(ctx, tx, u.Name)
		if err != nil {
			return err
		}
		if old.Role == "admin" && u.Role != "admin" {
			if err := otherAdmin(ctx, tx, u.Name); err != nil {
				return err
			}
		}
		out, err = getOne(tx.QueryRow(ctx, `UPDATE users SET role = $1, groups = $2, updated_at = $3 WHERE name = $4 RETURNING `+userColumns,
			u.Role, scopeText(u.Groups), now(), u.Name), scanUser, "user", u.Name)
		return err
	})
	return out, err
}

var errSessionNotFound = core.Errorf(core.KindNotFound, "session not found")

// CreateSession stores a session. An unknown user → core.NotFound; the
// same id hash → core.Conflict.
func (us *userStore) CreateSession(ctx context.Context, s store.Session) error {
	if len(s.IDHash) == 0 {
		return core.Invalid("id", "a session id hash is required")
	}
	created := orNow(s.CreatedAt)
	return us.s.inTx(ctx, func(tx pgx.Tx) error {
		if ok, err := exists(ctx, tx, `SELECT 1 FROM users WHERE name = $1`, s.User); err != nil {
			return err
		} else if !ok {
			return core.NotFound("user", s.User)
		}
		if dup, err := exists(ctx, tx, `SELECT 1 FROM console_sessions WHERE id_hash = $1`, s.IDHash); err != nil {
			return err
		} else if dup {
			return core.Conflict("a session with the same id already exists")
		}
		if _, err := tx.Exec(ctx, `INSERT INTO console_sessions (id_hash, user_name, created_at, expires_at) VALUES ($1, $2, $3, $4)`,
			s.IDHash, s.User, created, ms(s.ExpiresAt)); err != nil {
			return internal("create session", err)
		}
		return nil
	})
}

// GetSession returns a session, or core.NotFound `session not found`.
func (us *userStore) GetSession(ctx context.Context, idHash []byte) (store.Session, error) {
	var (
		s                store.Session
		created, expires time.Time
	)
	err := us.s.pool.QueryRow(ctx, `SELECT id_hash, user_name, created_at, expires_at FROM console_sessions WHERE id_hash = $1`, idHash).
		Scan(&s.IDHash, &s.User, &created, &expires)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return store.Session{}, errSessionNotFound
	case err != nil:
		return store.Session{}, internal("get session", err)
	}
	s.CreatedAt, s.ExpiresAt = created.UTC(), expires.UTC()
	return s, nil
}

// ExtendSession sets a session's expiry. A missing one → core.NotFound.
func (us *userStore) ExtendSession(ctx context.Context, idHash []byte, expiresAt time.Time) error {
	tag, err := us.s.pool.Exec(ctx, `UPDATE console_sessions SET expires_at = $1 WHERE id_hash = $2`, ms(expiresAt), idHash)
	if err != nil {
		return internal("extend session", err)
	}
	if tag.RowsAffected() == 0 {
		return errSessionNotFound
	}
	return nil
}

// DeleteSession removes a session; a missing one is not an error.
func (us *userStore) DeleteSession(ctx context.Context, idHash []byte) error {
	if _, err := us.s.pool.Exec(ctx, `DELETE FROM console_sessions WHERE id_hash = $1`, idHash); err != nil {
		return internal("delete session", err)
	}
	return nil
}

// DeleteExpiredSessions removes sessions whose expiry is before at.
func (us *userStore) DeleteExpiredSessions(ctx context.Context, at time.Time) (int, error) {
	tag, err := us.s.pool.Exec(ctx, `DELETE FROM console_sessions WHERE expires_at < $1`, ms(at))
	if err != nil {
		return 0, internal("delete expired sessions", err)
	}
	return int(tag.RowsAffected()), nil
}
