package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/store"
)

// nameSet reads one column of names into a set.
func nameSet(ctx context.Context, tx pgx.Tx, query string) (map[string]bool, error) {
	names, err := queryList(ctx, tx, "read names", func(row scanner) (string, error) {
		var n string
		return n, row.Scan(&n)
	}, query)
	if err != nil {
		return nil, err
	}
	set := make(map[string]bool, len(names))
	for _, n := range names {
		set[n] = true
	}
	return set, nil
}

// CreateMany stores things and credentials in one transaction with COPY;
// see store.ThingStore.
func (ts *thingStore) CreateMany(ctx context.Context, things []store.Thing, creds []store.Credential) error {
	if len(things) == 0 && len(creds) == 0 {
		return nil
	}
	return ts.s.inTx(ctx, func(tx pgx.Tx) error {
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
		names := make([]string, len(things))
		seen := make(map[string]struct{}, len(things))
		for i, t := range things {
			if err := requireName("name", t.Name); err != nil {
				return err
			}
			if _, dup := seen[t.Name]; dup {
				return core.Conflict("thing %q already exists", t.Name)
			}
			seen[t.Name] = struct{}{}
			names[i] = t.Name
		}
		var taken string
		switch err := tx.QueryRow(ctx, `SELECT name FROM things WHERE name = ANY($1) ORDER BY name LIMIT 1`, names).Scan(&taken); {
		case err == nil:
			return core.Conflict("thing %q already exists", taken)
		case !errors.Is(err, pgx.ErrNoRows):
			return internal("create things", err)
		}
		at := now()
		var thingRows, attrRows, tagRows, groupRows, policyRows [][]any
		for _, t := range things {
			if t.Type != "" && !types[t.Type] {
				return core.Invalid("type", "thing type %q does not exist", t.Type)
			}
			thingRows = append(thingRows, []any{t.Name, nullString(t.Type), t.Enabled, false, nil, at, at})
			for k, v := range t.Attributes {
				attrRows = append(attrRows, []any{t.Name, k, v})
			}
			for _, tag := range store.Uniq(t.Tags) {
				tagRows = append(tagRows, []any{t.Name, tag})
			}
			for _, g := range store.Uniq(t.Groups) {
				if !groups[g] {
					return core.Invalid("groups", "group %q does not exist", g)
				}
				groupRows = append(groupRows, []any{t.Name, g})
			}
			for i, p := range store.Uniq(t.Policies) {
				if !policies[p] {
					return core.Invalid("policies", "policy %q does not exist", p)
				}
				policyRows = append(policyRows, []any{t.Name, p, i})
			}
		}
		var credRows [][]any
		for _, c := range creds {
			if err := requireName("id", c.ID); err != nil {
				return err
			}
			credRows = append(credRows, []any{c.ID, c.Thing, c.Type, nullBytes(c.SecretHash), nullString(c.Fingerprint), c.CertPEM,
				msPtr(c.NotAfter), false, (*time.Time)(nil), orNow(c.CreatedAt), c.SealedKey})
		}
		for _, cp := range []struct {
			table string
			cols  []string
			rows  [][]any
		}{
			{"things", []string{"name", "type", "enabled", "connected", "last_seen", "created_at", "updated_at"}, thingRows},
			{"thing_attributes", []string{"thing", "key", "value"}, attrRows},
			{"thing_tags", []string{"thing", "tag"}, tagRows},
			{"thing_groups", []string{"thing", "group_name"}, groupRows},
			{"thing_policies", []string{"thing", "policy", "position"}, policyRows},
			{"credentials", []string{"id", "thing", "type", "secret_hash", "fingerprint", "cert_pem", "not_after", "revoked", "revoked_at", "created_at", "sealed_key"}, credRows},
		} {
			if len(cp.rows) == 0 {
				continue
			}
			if _, err := tx.CopyFrom(ctx, pgx.Identifier{cp.table}, cp.cols, pgx.CopyFromRows(cp.rows)); err != nil {
				var pe *pgconn.PgError
				if errors.As(err, &pe) && pe.Code == "23505" {
					return core.Conflict("%s: %s", cp.table, pe.Detail)
				}
				return internal("create things", err)
			}
		}
		return nil
	})
}

// thingsPerRead is how many names GetMany reads per statement.
const thingsPerRead = 1000

// GetMany returns those of the named things that exist; see
// store.ThingStore.
func (ts *thingStore) GetMany(ctx context.Context, names []string) ([]store.Thing, error) {
	out := []store.Thing{}
	for len(names) > 0 {
		chunk := names[:min(len(names), thingsPerRead)]
		names = names[len(chunk):]
		got, err := queryList(ctx, ts.s.pool, "get things", scanThing, thingSelect+` WHERE t.name = ANY($1)`, chunk)
		if err != nil {
			return nil, err
		}
		out = append(out, got...)
	}
	return out, nil
}
