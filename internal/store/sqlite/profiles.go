package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/store"
)

type profileStore struct{ s *Store }

const profileSelect = `SELECT name, description, desired, grp, query, priority, created_at, updated_at FROM profiles`

func scanProfile(row scanner) (store.Profile, error) {
	var (
		p                store.Profile
		created, updated int64
	)
	if err := row.Scan(&p.Name, &p.Description, &p.Desired, &p.Group, &p.Query, &p.Priority, &created, &updated); err != nil {
		return store.Profile{}, err
	}
	p.CreatedAt, p.UpdatedAt = fromMS(created), fromMS(updated)
	return p, nil
}

func getProfile(ctx context.Context, q querier, name string) (store.Profile, error) {
	return getOne(q.QueryRowContext(ctx, profileSelect+` WHERE name = ?`, name), scanProfile, "profile", name)
}

// Create stores a new profile; the same name → core.Conflict.
func (ps *profileStore) Create(ctx context.Context, p store.Profile) (store.Profile, error) {
	if err := requireName("name", p.Name); err != nil {
		return store.Profile{}, err
	}
	created, updated := createdUpdated(p.CreatedAt, p.UpdatedAt)
	var out store.Profile
	err := ps.s.inTx(ctx, func(tx *sql.Tx) error {
		dup, err := exists(ctx, tx, `SELECT 1 FROM profiles WHERE name = ?`, p.Name)
		if err != nil {
			return err
		}
		if dup {
			return core.Conflict("profile %q already exists", p.Name)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO profiles (name, description, desired, grp, query, priority, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
			p.Name, p.Description, nonNil(p.Desired), p.Group, p.Query, p.Priority, toMS(created), toMS(updated)); err != nil {
			return internal("create profile", err)
		}
		out, err = getProfile(ctx, tx, p.Name)
		return err
	})
	return out, err
}

func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// Get returns the profile, or core.NotFound `profile "x" not found`.
func (ps *profileStore) Get(ctx context.Context, name string) (store.Profile, error) {
	return getProfile(ctx, ps.s.r, name)
}

// List returns profiles ordered by name, after the name after.
func (ps *profileStore) List(ctx context.Context, after string, limit int) ([]store.Profile, error) {
	rows, err := ps.s.r.QueryContext(ctx, profileSelect+` WHERE name > ? ORDER BY name LIMIT ?`, after, normLimit(limit))
	if err != nil {
		return nil, internal("list profiles", err)
	}
	defer rows.Close()
	list := []store.Profile{}
	for rows.Next() {
		p, err := scanProfile(rows)
		if err != nil {
			return nil, internal("list profiles", err)
		}
		list = append(list, p)
	}
	if err := rows.Err(); err != nil {
		return nil, internal("list profiles", err)
	}
	return list, nil
}

// Update replaces Description, Desired, Group, Query and Priority.
func (ps *profileStore) Update(ctx context.Context, p store.Profile) (store.Profile, error) {
	var out store.Profile
	err := ps.s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE profiles SET description = ?, desired = ?, grp = ?, query = ?, priority = ?, updated_at = ? WHERE name = ?`,
			p.Description, nonNil(p.Desired), p.Group, p.Query, p.Priority, toMS(now()), p.Name)
		if err != nil {
			return internal("update profile", err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return internal("update profile", err)
		} else if n == 0 {
			return core.NotFound("profile", p.Name)
		}
		out, err = getProfile(ctx, tx, p.Name)
		return err
	})
	return out, err
}

// Delete removes the profile; a missing one → core.NotFound.
func (ps *profileStore) Delete(ctx context.Context, name string) error {
	return ps.s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM profiles WHERE name = ?`, name)
		if err != nil {
			return internal("delete profile", err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return internal("delete profile", err)
		} else if n == 0 {
			return core.NotFound("profile", name)
		}
		return nil
	})
}

// Count returns how many profiles there are.
func (ps *profileStore) Count(ctx context.Context) (int, error) {
	var n int
	if err := ps.s.r.QueryRowContext(ctx, `SELECT count(*) FROM profiles`).Scan(&n); err != nil {
		return 0, internal("count profiles", err)
	}
	return n, nil
}

const appliedSelect = `SELECT thing, profiles, state, updated_at FROM profile_applied`

func scanApplied(row scanner) (store.ProfileApplied, error) {
	var (
		a       store.ProfileApplied
		names   string
		updated int64
	)
	if err := row.Scan(&a.Thing, &names, &a.State, &updated); err != nil {
		return store.ProfileApplied{}, err
	}
	if err := json.Unmarshal([]byte(names), &a.Profiles); err != nil {
		return store.ProfileApplied{}, err
	}
	a.UpdatedAt = fromMS(updated)
	return a, nil
}

// PutApplied creates or replaces a thing's applied row.
func (ps *profileStore) PutApplied(ctx context.Context, a store.ProfileApplied) error {
	if a.Profiles == nil {
		a.Profiles = []string{}
	}
	names, err := json.Marshal(a.Profiles)
	if err != nil {
		return internal("put profile state", err)
	}
	return ps.s.inTx(ctx, func(tx *sql.Tx) error {
		ok, err := exists(ctx, tx, `SELECT 1 FROM things WHERE name = ?`, a.Thing)
		if err != nil {
			return err
		}
		if !ok {
			return core.NotFound("thing", a.Thing)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO profile_applied (thing, profiles, state, updated_at) VALUES (?, ?, ?, ?)
			ON CONFLICT (thing) DO UPDATE SET profiles = excluded.profiles, state = excluded.state, updated_at = excluded.updated_at`,
			a.Thing, string(names), nonNil(a.State), toMS(now())); err != nil {
			return internal("put profile state", err)
		}
		return nil
	})
}

// GetApplied returns a thing's applied row.
func (ps *profileStore) GetApplied(ctx context.Context, thing string) (store.ProfileApplied, error) {
	return getOne(ps.s.r.QueryRowContext(ctx, appliedSelect+` WHERE thing = ?`, thing), scanApplied, "profile state", thing)
}

// ListApplied returns applied rows ordered by thing, after the thing after.
func (ps *profileStore) ListApplied(ctx context.Context, after string, limit int) ([]store.ProfileApplied, error) {
	rows, err := ps.s.r.QueryContext(ctx, appliedSelect+` WHERE thing > ? ORDER BY thing LIMIT ?`, after, normLimit(limit))
	if err != nil {
		return nil, internal("list profile states", err)
	}
	defer rows.Close()
	list := []store.ProfileApplied{}
	for rows.Next() {
		a, err := scanApplied(rows)
		if err != nil {
			return nil, internal("list profile states", err)
		}
		list = append(list, a)
	}
	if err := rows.Err(); err != nil {
		return nil, internal("list profile states", err)
	}
	return list, nil
}

// DeleteApplied removes a thing's applied row; none is not an error.
func (ps *profileStore) DeleteApplied(ctx context.Context, thing string) error {
	return ps.s.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM profile_applied WHERE thing = ?`, thing); err != nil {
			return internal("delete profile state", err)
		}
		return nil
	})
}
