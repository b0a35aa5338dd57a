package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/store"
)

type policyStore struct{ s *Store }

const policySelect = `SELECT name, description, document, builtin, created_at, updated_at FROM policies`

func scanPolicy(row scanner) (store.Policy, error) {
	var (
		p                store.Policy
		doc              string
		created, updated time.Time
	)
	if err := row.Scan(&p.Name, &p.Description, &doc, &p.Builtin, &created, &updated); err != nil {
		return store.Policy{}, err
	}
	p.Document = []byte(doc)
	p.CreatedAt, p.UpdatedAt = created.UTC(), updated.UTC()
	return p, nil
}

func getPolicy(ctx context.Context, q querier, name string) (store.Policy, error) {
	return getOne(q.QueryRow(ctx, policySelect+` WHERE name = $1`, name), scanPolicy, "policy", name)
}

// Create stores a new policy, its Document byte for byte.
func (ps *policyStore) Create(ctx context.Context, p store.Policy) (store.Policy, error) {
	if err := requireName("name", p.Name); err != nil {
		return store.Policy{}, err
	}
	created, updated := createdUpdated(p.CreatedAt, p.UpdatedAt)
	var out store.Policy
	err := ps.s.inTx(ctx, func(tx pgx.Tx) error {
		dup, err := exists(ctx, tx, `SELECT 1 FROM policies WHERE name = $1`, p.Name)
		if err != nil {
			return err
		}
		if dup {
			return core.Conflict("policy %q already exists", p.Name)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO policies (name, description, document, builtin, created_at, updated_at)
			VALUES ($1, $2, $3, $4, $5, $6)`,
			p.Name, p.Description, string(p.Document), p.Builtin, created, updated); err != nil {
			return internal("create policy", err)
		}
		out, err = getPolicy(ctx, tx, p.Name)
		return err
	})
	return out, err
}

// Get returns the policy, or core.NotFound `policy "x" not found`.
func (ps *policyStore) Get(ctx context.Context, name string) (store.Policy, error) {
	return getPolicy(ctx, ps.s.pool, name)
}

// List returns policies ordered by name, after the name after.
func (ps *policyStore) List(ctx context.Context, after string, limit int) ([]store.Policy, error) {
	return queryList(ctx, ps.s.pool, "list policies", scanPolicy,
		policySelect+` WHERE name > $1 ORDER BY name LIMIT $2`, after, normLimit(limit))
}

// Update replaces the Description and Document and sets UpdatedAt to now.
func (ps *policyStore) Update(ctx context.Context, p store.Policy) (store.Policy, error) {
	return getOne(ps.s.pool.QueryRow(ctx, `UPDATE policies SET description = $1, document = $2, updated_at = $3 WHERE name = $4
		RETURNING name, description, document, builtin, created_at, updated_at`,
		p.Description, string(p.Document), now(), p.Name), scanPolicy, "policy", p.Name)
}

// Delete removes the policy and detaches it everywhere; a built-in policy
// is a conflict.
func (ps *policyStore) Delete(ctx context.Context, name string) error {
	return ps.s.inTx(ctx, func(tx pgx.Tx) error {
		var builtin bool
		err := tx.QueryRow(ctx, `SELECT builtin FROM policies WHERE name = $1 FOR UPDATE`, name).Scan(&builtin)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			return core.NotFound("policy", name)
		case err != nil:
			return internal("delete policy", err)
		}
		if builtin {
			return core.Conflict("policy %q is built in and cannot be deleted", name)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM policies WHERE name = $1`, name); err != nil {
			return internal("delete policy", err)
		}
		return nil
	})
}

// GetMany returns the policies among names that exist, in the order of
// names, each once. It never returns nil.
func (ps *policyStore) GetMany(ctx context.Context, names []string) ([]store.Policy, error) {
	names = store.Uniq(names)
	if len(names) == 0 {
		return []store.Policy{}, nil
	}
	return queryList(ctx, ps.s.pool, "get policies", scanPolicy,
		`SELECT p.name, p.description, p.document, p.builtin, p.created_at, p.updated_at
		FROM unnest($1::text[]) WITH ORDINALITY AS u(n, i) JOIN policies p ON p.name = u.n ORDER BY u.i`, names)
}
