package postgres

import (
	"context"
	"encoding/json"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/store"
)

type profileStore struct{ s *Store }

const profileSelect = `SELECT name, description, desired, grp, query, priority, created_at, updated_at FROM profiles`

func scanProfile(row scanner) (store.Profile, error) {
	var (
		p                store.Profile
		prio             int64
		created, updated time.Time
	)
	if err := row.Scan(&p.Name, &p.Description, &p.Desired, &p.Group, &p.Query, &prio, &created, &updated); err != nil {
		return store.Profile{}, err
	}
	p.Priority = int(prio)
	p.CreatedAt, p.UpdatedAt = created.UTC(), updated.UTC()
	return p, nil
}

func getProfile(ctx context.Context, q querier, name string) (store.Profile, error) {
	return getOne(q.QueryRow(ctx, profileSelect+` WHERE name = $1`, name), scanProfile, "profile", name)
}

func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// Create stores a new profile; the same name → core.Conflict.
func (ps *profileStore) Create(ctx context.Context, p store.Profile) (store.Profile, error) {
	if err := requireName("name", p.Name); err != nil {
		return store.Profile{}, err
	}
	created, updated := createdUpdated(p.CreatedAt, p.UpdatedAt)
	var out store.Profile
	err := ps.s.inTx(ctx, func(tx pgx.Tx) error {
		dup, err := exists(ctx, tx, `SELECT 1 FROM profiles WHERE name = $1`, p.Name)
		if err != nil {
			return err
		}
		if dup {
			return core.Conflict("profile %q already exists", p.Name)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO profiles (name, description, desired, grp, query, priority, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
			p.Name, p.Description, nonNil(p.Desired), p.Group, p.Query, int64(p.Priority), created, updated); err != nil {
			return internal("create profile", err)
		}
		out, err = getProfile(ctx, tx, p.Name)
		return err
	})
	return out, err
}

// Get returns the profile, or core.NotFound `profile "x" not found`.
func (ps *profileStore) Get(ctx context.Context, name string) (store.Profile, error) {
	return getProfile(ctx, ps.s.pool, name)
}

// List returns profiles ordered by name, after the name after.
func (ps *profileStore) List(ctx context.Context, after string, limit int) ([]store.Profile, error) {
	return queryList(ctx, ps.s.pool, "list profiles", scanProfile,
		profileSelect+` WHERE name > $1 ORDER BY name LIMIT $2`, after, normLimit(limit))
}

// Update replaces Description, Desired, Group, Query and Priority.
func (ps *profileStore) Update(ctx context.Context, p store.Profile) (store.Profile, error) {
	return getOne(ps.s.pool.QueryRow(ctx, `UPDATE profiles SET description = $1, desired = $2, grp = $3, query = $4, priority = $5, updated_at = $6 WHERE name = $7
		RETURNING name, description, desired, grp, query, priority, created_at, updated_at`,
		p.Description, nonNil(p.Desired), p.Group, p.Query, int64(p.Priority), now(), p.Name), scanProfile, "profile", p.Name)
}

// Delete removes the profile; a missing one → core.NotFound.
func (ps *profileStore) Delete(ctx context.Context, name string) error {
	tag, err := ps.s.pool.Exec(ctx, `DELETE FROM profiles WHERE name = $1`, name)
	return affected(tag, err, "delete profile", "profile", name)
}

// Count returns how many profiles there are.
func (ps *profileStore) Count(ctx context.Context) (int, error) {
	var n int64
	if err := ps.s.pool.QueryRow(ctx, `SELECT count(*) FROM profiles`).Scan(&n); err != nil {
		return 0, internal("count profiles", err)
	}
	return int(n), nil
}

const appliedSelect = `SELECT thing, profiles, state, updated_at FROM profile_applied`

func scanApplied(row scanner) (store.ProfileApplied, error) {
	var (
		a       store.ProfileApplied
		names   string
		updated time.Time
	)
	if err := row.Scan(&a.Thing, &names, &a.State, &updated); err != nil {
		return store.ProfileApplied{}, err
	}
	if err := json.Unmarshal([]byte(names), &a.Profiles); err != nil {
		return store.ProfileApplied{}, err
	}
	a.UpdatedAt = updated.UTC()
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
	return ps.s.inTx(ctx, func(tx pgx.Tx) error {
		ok, err := exists(ctx, tx, `SELECT 1 FROM things WHERE name = $1`, a.Thing)
		if err != nil {
			return err
		}
		if !ok {
			return core.NotFound("thing", a.Thing)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO profile_applied (thing, profiles, state, updated_at) VALUES ($1, $2, $3, $4)
			ON CONFLICT (thing) DO UPDATE SET profiles = excluded.profiles, state = excluded.state, updated_at = excluded.updated_at`,
			a.Thing, string(names), nonNil(a.State), now()); err != nil {
			return internal("put profile state", err)
		}
		return nil
	})
}

// GetApplied returns a thing's applied row.
func (ps *profileStore) GetApplied(ctx context.Context, thing string) (store.ProfileApplied, error) {
	return getOne(ps.s.pool.QueryRow(ctx, appliedSelect+` WHERE thing = $1`, thing), scanApplied, "profile state", thing)
}

// ListApplied returns applied rows ordered by thing, after the thing after.
func (ps *profileStore) ListApplied(ctx context.Context, after string, limit int) ([]store.ProfileApplied, error) {
	return queryList(ctx, ps.s.pool, "list profile states", scanApplied,
		appliedSelect+` WHERE thing > $1 ORDER BY thing LIMIT $2`, after, normLimit(limit))
}

// DeleteApplied removes a thing's applied row; none is not an error.
func (ps *profileStore) DeleteApplied(ctx context.Context, thing string) error {
	if _, err := ps.s.pool.Exec(ctx, `DELETE FROM profile_applied WHERE thing = $1`, thing); err != nil {
		return internal("delete profile state", err)
	}
	return nil
}
