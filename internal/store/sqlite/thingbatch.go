package sqlite

import (
	"context"
	"database/sql"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/store"
)

// nameSet reads one column of names into a set.
func nameSet(ctx context.Context, tx *sql.Tx, query string) (map[string]bool, error) {
	rows, err := tx.QueryContext(ctx, query)
	if err != nil {
		return nil, internal("read names", err)
	}
	defer rows.Close()
	set := map[string]bool{}
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, internal("read names", err)
		}
		set[n] = true
	}
	return set, rows.Err()
}

// CreateMany stores things and credentials in one transaction with
// prepared statements; see store.ThingStore.
func (ts *thingStore) CreateMany(ctx context.Context, things []store.Thing, creds []store.Credential) error {
	if len(things) == 0 && len(creds) == 0 {
		return nil
	}
	return ts.s.inTx(ctx, func(tx *sql.Tx) error {
		types, err := nameSet(ctx, tx, `SELECT name FROM thing_types`)
		if err != nil {
			return err
		}
		groups, err := nameSet(ctx, tx, `SELECT name FROM groups`)
		if err != nil {
			return err
		}
		policies, err := nameSet(ctx, tx, `SELECT name FROM policies`)
		if err != nil {
			return err
		}
		prep := func(q string) (*sql.Stmt, error) {
			st, err := tx.PrepareContext(ctx, q)
			if err != nil {
				return nil, internal("prepare", err)
			}
			return st, nil
		}
		var stmts []*sql.Stmt
		defer func() {
			for _, st := range stmts {
				st.Close()
			}
		}()
		mk := func(q string) *sql.Stmt {
			st, e := prep(q)
			if e != nil && err == nil {
				err = e
			}
			if st != nil {
				stmts = append(stmts, st)
			}
			return st
		}
		insThing := mk(`INSERT INTO things (name, type, enabled, connected, last_seen, created_at, updated_at) VALUES (?, ?, ?, 0, NULL, ?, ?)`)
		insAttr := mk(`INSERT INTO thing_attributes (thing, key, value) VALUES (?, ?, ?)`)
		insTag := mk(`INSERT INTO thing_tags (thing, tag) VALUES (?, ?)`)
		insGroup := mk(`INSERT INTO thing_groups (thing, group_name) VALUES (?, ?)`)
		insPolicy := mk(`INSERT INTO thing_policies (thing, policy, position) VALUES (?, ?, ?)`)
		insCred := mk(`INSERT INTO credentials (id, thing, type, secret_hash, fingerprint, cert_pem, not_after, revoked, revoked_at, created_at, sealed_key)
			VALUES (?, ?, ?, ?, ?, ?, ?, 0, NULL, ?, ?)`)
		if err != nil {
			return err
		}
		at := toMS(now())
		for _, t := range things {
			if err := requireName("name", t.Name); err != nil {
				return err
			}
			if t.Type != "" && !types[t.Type] {
				return core.Invalid("type", "thing type %q does not exist", t.Type)
			}
			if _, err := insThing.ExecContext(ctx, t.Name, nullString(t.Type), t.Enabled, at, at); err != nil {
				if isUnique(err) { // the primary key: no lookup per thing
					return core.Conflict("thing %q already exists", t.Name)
				}
				return internal("create things", err)
			}
			for k, v := range t.Attributes {
				if _, err := insAttr.ExecContext(ctx, t.Name, k, v); err != nil {
					return internal("create things", err)
				}
			}
			for _, tag := range store.Uniq(t.Tags) {
				if _, err := insTag.ExecContext(ctx, t.Name, tag); err != nil {
					return internal("create things", err)
				}
			}
			for _, g := range store.Uniq(t.Groups) {
				if !groups[g] {
					return core.Invalid("groups", "group %q does not exist", g)
				}
				if _, err := insGroup.ExecContext(ctx, t.Name, g); err != nil {
					return internal("create things", err)
				}
			}
			for i, p := range store.Uniq(t.Policies) {
				if !policies[p] {
					return core.Invalid("policies", "policy %q does not exist", p)
				}
				if _, err := insPolicy.ExecContext(ctx, t.Name, p, i); err != nil {
					return internal("create things", err)
				}
			}
		}
		for _, c := range creds {
			if err := requireName("id", c.ID); err != nil {
				return err
			}
			if _, err := insCred.ExecContext(ctx, c.ID, c.Thing, c.Type, nullBytes(c.SecretHash), nullString(c.Fingerprint), c.CertPEM,
				nullMS(c.NotAfter), toMS(orNow(c.CreatedAt)), c.SealedKey); err != nil {
				if isUnique(err) {
					return core.Conflict("credential %q already exists", c.ID)
				}
				return internal("create credentials", err)
			}
		}
		return nil
	})
}
