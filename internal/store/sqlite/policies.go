package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"strings"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/store"
)

type policyStore struct{ s *Store }

const policySelect = `SELECT name, description, document, builtin, created_at, updated_at FROM policies`

func scanPolicy(row scanner) (store.Policy, error) {
	var (
		p                store.Policy
		doc              string
		created, updated int64
	)
	if err := row.Scan(&p.Name, &p.Description, &doc, &p.Builtin, &created, &updated); err != nil {
		return store.Policy{}, err
	}
	p.Document = []byte(doc)
	p.CreatedAt = fromMS(created)
	p.UpdatedAt = fromMS(updated)
	return p, nil
}

func getPolicy(ctx context.Context, q querier, name string) (store.Policy, error) {
	return getOne(q.QueryRowContext(ctx, policySelect+` WHERE name = ?`, name), scanPolicy, "policy", name)
}

// Create stores a new policy. The Document is kept byte for byte (it is
// not parsed).
//
//   - A policy of the same name → core.Conflict `policy "x" already exists`.
//   - A zero CreatedAt becomes now; a zero UpdatedAt becomes CreatedAt.
func (ps *policyStore) Create(ctx context.Context, p store.Policy) (store.Policy, error) {
	if err := requireName("name", p.Name); err != nil {
		return store.Policy{}, err
	}
	created, updated := createdUpdated(p.CreatedAt, p.UpdatedAt)
	var out store.Policy
	err := ps.s.inTx(ctx, func(tx *sql.Tx) error {
		dup, err := exists(ctx, tx, `SELECT 1 FROM policies WHERE name = ?`, p.Name)
		if err != nil {
			return err
		}
		if dup {
			return core.Conflict("policy %q already exists", p.Name)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO policies (name, description, document, builtin, created_at, updated_at)
			VALUES (?, ?, ?, ?, ?, ?)`,
			p.Name, p.Description, string(p.Document), p.Builtin, toMS(created), toMS(updated)); err != nil {
			return internal("create policy", err)
		}
		out, err = getPolicy(ctx, tx, p.Name)
		return err
	})
	return out, err
}

// Get returns the policy, or core.NotFound `policy "x" not found`.
func (ps *policyStore) Get(ctx context.Context, name string) (store.Policy, error) {
	return getPolicy(ctx, ps.s.r, name)
}

// List returns policies ordered by name, with names greater than after, at
// most limit of them (0 means 100; more than 1000 means 1000).
func (ps *policyStore) List(ctx context.Context, after string, limit int) ([]store.Policy, error) {
	rows, err := ps.s.r.QueryContext(ctx, policySelect+` WHERE name > ? ORDER BY name LIMIT ?`, after, normLimit(limit))
	if err != nil {
		return nil, internal("list policies", err)
	}
	defer rows.Close()
	list := []store.Policy{}
	for rows.Next() {
		p, err := scanPolicy(rows)
		if err != nil {
			return nil, internal("list policies", err)
		}
		list = append(list, p)
	}
	if err := rows.Err(); err != nil {
		return nil, internal("list policies", err)
	}
	return list, nil
}

// Update replaces the Description and Document of the policy p.Name and
// sets UpdatedAt to now; Builtin does not change. A missing policy →
// core.NotFound `policy "x" not found`.
func (ps *policyStore) Update(ctx context.Context, p store.Policy) (store.Policy, error) {
	var out store.Policy
	err := ps.s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE policies SET description = ?, document = ?, updated_at = ? WHERE name = ?`,
			p.Description, string(p.Document), toMS(now()), p.Name)
		if err != nil {
			return internal("update policy", err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return internal("update policy", err)
		} else if n == 0 {
			return core.NotFound("policy", p.Name)
		}
		out, err = getPolicy(ctx, tx, p.Name)
		return err
	})
	return out, err
}

// Delete removes the policy and detaches it from every thing and type.
//
//   - A missing policy → core.NotFound `policy "x" not found`.
//   - A built-in policy → core.Conflict `policy "x" is built in and cannot
//     be deleted`, and nothing changes.
func (ps *policyStore) Delete(ctx context.Context, name string) error {
	return ps.s.inTx(ctx, func(tx *sql.Tx) error {
		var builtin bool
		err := tx.QueryRowContext(ctx, `SELECT builtin FROM policies WHERE name = ?`, name).Scan(&builtin)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return core.NotFound("policy", name)
		case err != nil:
			return internal("delete policy", err)
		}
		if builtin {
			return core.Conflict("policy %q is built in and cannot be deleted", name)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM policies WHERE name = ?`, name); err != nil {
			return internal("delete policy", err)
		}
		return nil
	})
}

// getManyChunk bounds the number of parameters of one GetMany query.
const getManyChunk = 500

// GetMany returns the policies among names that exist, in the order of
// names, skipping missing ones; a name given twice is returned once (at
// its first position). It never returns nil.
func (ps *policyStore) GetMany(ctx context.Context, names []string) ([]store.Policy, error) {
	names = store.Uniq(names)
	found := make(map[string]store.Policy, len(names))
	for start := 0; start < len(names); start += getManyChunk {
		chunk := names[start:min(start+getManyChunk, len(names))]
		args := make([]any, len(chunk))
		for i, n := range chunk {
			args[i] = n
		}
		q := policySelect + ` WHERE name IN (?` + strings.Repeat(`, ?`, len(chunk)-1) + `)`
		if err := func() error {
			rows, err := ps.s.r.QueryContext(ctx, q, args...)
			if err != nil {
				return internal("get policies", err)
			}
			defer rows.Close()
			for rows.Next() {
				p, err := scanPolicy(rows)
				if err != nil {
					return internal("get policies", err)
				}
				found[p.Name] = p
			}
			if err := rows.Err(); err != nil {
				return internal("get policies", err)
			}
			return nil
		}(); err != nil {
			return nil, err
		}
	}
	list := make([]store.Policy, 0, len(found))
	for _, n := range names {
		if p, ok := found[n]; ok {
			list = append(list, p)
		}
	}
	return list, nil
}
