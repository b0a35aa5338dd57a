package sqlite

import (
	"context"
	"database/sql"
	"strings"

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

// thingsPerRead is how many names GetMany reads per statement.
const thingsPerRead = 500

// GetMany returns those of the named things that exist; see
// store.ThingStore.
func (ts *thingStore) GetMany(ctx context.Context, names []string) ([]store.Thing, error) {
	out := []store.Thing{}
	args := make([]any, 0, min(len(names), thingsPerRead))
	for len(names) > 0 {
		chunk := names[:min(len(names), thingsPerRead)]
		names = names[len(chunk):]
		args = args[:0]
		for _, n := range chunk {
			args = append(args, n)
		}
		rows, err := ts.s.r.QueryContext(ctx, thingSelect+` WHERE t.name IN (`+placeholders(len(chunk))+`)`, args...)
		if err != nil {
			return nil, internal("get things", err)
		}
		for rows.Next() {
			t, err := scanThing(rows)
			if err != nil {
				rows.Close()
				return nil, internal("get things", err)
			}
			out = append(out, t)
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, internal("get things", err)
		}
	}
	return out, nil
}

// placeholders is "?,?,...,?" with n marks.
func placeholders(n int) string {
	if n <= 0 {
		return ""
	}
	return strings.Repeat("?,", n-1) + "?"
}

// bulkRows is how many rows one multi-row INSERT of CreateMany carries: a
// statement per row cost more than the row itself (binding, the driver's
// locks), and 100 rows of the widest table (credentials, 9 columns) stay
// far below SQLite's limit of 32766 parameters.
const bulkRows = 100

// bulkInsert inserts rows into one table bulkRows at a time through a
// prepared multi-row INSERT; Flush inserts the rest.
type bulkInsert struct {
	ctx  context.Context
	tx   *sql.Tx
	head string // INSERT INTO t (a, b) VALUES
	row  string // (?, ?)
	cols int
	full *sql.Stmt
	args []any
}

func newBulkInsert(ctx context.Context, tx *sql.Tx, head, row string, cols int) (*bulkInsert, error) {
	b := &bulkInsert{ctx: ctx, tx: tx, head: head, row: row, cols: cols, args: make([]any, 0, cols*bulkRows)}
	st, err := tx.PrepareContext(ctx, b.query(bulkRows))
	if err != nil {
		return nil, internal("prepare", err)
	}
	b.full = st
	return b, nil
}

func (b *bulkInsert) query(rows int) string {
	var sb strings.Builder
	sb.Grow(len(b.head) + rows*(len(b.row)+1))
	sb.WriteString(b.head)
	for i := range rows {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(b.row)
	}
	return sb.String()
}

// Add queues one row (cols values); a full batch is inserted.
func (b *bulkInsert) Add(vals ...any) error {
	b.args = append(b.args, vals...)
	if len(b.args) < b.cols*bulkRows {
		return nil
	}
	_, err := b.full.ExecContext(b.ctx, b.args...)
	b.args = b.args[:0]
	return err
}

// Flush inserts the queued rows.
func (b *bulkInsert) Flush() error {
	if len(b.args) == 0 {
		return nil
	}
	_, err := b.tx.ExecContext(b.ctx, b.query(len(b.args)/b.cols), b.args...)
	b.args = b.args[:0]
	return err
}

func (b *bulkInsert) Close() {
	if b.full != nil {
		b.full.Close()
	}
}

// CreateMany stores things and credentials in one transaction: every
// thing is checked first (its name, type, groups and policies, and no
// name twice in the batch), then each table is filled with prepared
// multi-row INSERTs; see store.ThingStore.
func (ts *thingStore) CreateMany(ctx context.Context, things []store.Thing, creds []store.Credential) error {
	if len(things) == 0 && len(creds) == 0 {
		return nil
	}
	// A multi-row INSERT keeps a statement journal (to undo itself
	// alone), in a temporary file unless temp_store is MEMORY when the
	// transaction begins: a fifth of the import's CPU went to writing it.
	if _, err := ts.s.w.ExecContext(ctx, `PRAGMA temp_store = MEMORY`); err != nil {
		return internal("temp store", err)
	}
	defer func() { _, _ = ts.s.w.ExecContext(context.WithoutCancel(ctx), `PRAGMA temp_store = DEFAULT`) }()
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
		seen := make(map[string]struct{}, len(things))
		for _, t := range things {
			if err := requireName("name", t.Name); err != nil {
				return err
			}
			if _, dup := seen[t.Name]; dup {
				return core.Conflict("thing %q already exists", t.Name)
			}
			seen[t.Name] = struct{}{}
			if t.Type != "" && !types[t.Type] {
				return core.Invalid("type", "thing type %q does not exist", t.Type)
			}
			for _, g := range t.Groups {
				if !groups[g] {
					return core.Invalid("groups", "group %q does not exist", g)
				}
			}
			for _, p := range t.Policies {
				if !policies[p] {
					return core.Invalid("policies", "policy %q does not exist", p)
				}
			}
		}
		for _, c := range creds {
			if err := requireName("id", c.ID); err != nil {
				return err
			}
		}

		var open []*bulkInsert
		defer func() {
			for _, b := range open {
				b.Close()
			}
		}()
		bulk := func(head, row string, cols int) (*bulkInsert, error) {
			b, err := newBulkInsert(ctx, tx, head, row, cols)
			if err == nil {
				open = append(open, b)
			}
			return b, err
		}

		// Things first: the other tables refer to them.
		at := toMS(now())
		ins, err := bulk(`INSERT INTO things (name, type, enabled, connected, last_seen, created_at, updated_at) VALUES `, `(?,?,?,0,NULL,?,?)`, 5)
		if err != nil {
			return err
		}
		var chunk []string // names of the batch in flight, to name a taken one
		taken := func(err error) error {
			if !isUnique(err) {
				return internal("create things", err)
			}
			// The statement was undone; find the name that is taken.
			for _, n := range chunk {
				if _, e := getThing(ctx, tx, n); e == nil {
					return core.Conflict("thing %q already exists", n)
				}
			}
			return core.Conflict("a thing of the batch already exists")
		}
		chunk = make([]string, 0, bulkRows)
		for _, t := range things {
			chunk = append(chunk, t.Name)
			if err := ins.Add(t.Name, nullString(t.Type), t.Enabled, at, at); err != nil {
				return taken(err)
			}
			if len(chunk) == bulkRows {
				chunk = chunk[:0]
			}
		}
		if err := ins.Flush(); err != nil {
			return taken(err)
		}

		attrs, err := bulk(`INSERT INTO thing_attributes (thing, key, value) VALUES `, `(?,?,?)`, 3)
		if err != nil {
			return err
		}
		for _, t := range things {
			for k, v := range t.Attributes {
				if err := attrs.Add(t.Name, k, v); err != nil {
					return internal("create things", err)
				}
			}
		}
		if err := attrs.Flush(); err != nil {
			return internal("create things", err)
		}
		for _, set := range []struct {
			head string
			list func(store.Thing) []string
		}{
			{`INSERT INTO thing_tags (thing, tag) VALUES `, func(t store.Thing) []string { return t.Tags }},
			{`INSERT INTO thing_groups (thing, group_name) VALUES `, func(t store.Thing) []string { return t.Groups }},
		} {
			var b *bulkInsert
			for _, t := range things {
				l := set.list(t)
				if len(l) == 0 {
					continue
				}
				if b == nil {
					if b, err = bulk(set.head, `(?,?)`, 2); err != nil {
						return err
					}
				}
				for _, v := range store.Uniq(l) {
					if err := b.Add(t.Name, v); err != nil {
						return internal("create things", err)
					}
				}
			}
			if b != nil {
				if err := b.Flush(); err != nil {
					return internal("create things", err)
				}
			}
		}
		var pols *bulkInsert
		for _, t := range things {
			if len(t.Policies) == 0 {
				continue
			}
			if pols == nil {
				if pols, err = bulk(`INSERT INTO thing_policies (thing, policy, position) VALUES `, `(?,?,?)`, 3); err != nil {
					return err
				}
			}
			for i, p := range store.Uniq(t.Policies) {
				if err := pols.Add(t.Name, p, i); err != nil {
					return internal("create things", err)
				}
			}
		}
		if pols != nil {
			if err := pols.Flush(); err != nil {
				return internal("create things", err)
			}
		}

		cred, err := bulk(`INSERT INTO credentials (id, thing, type, secret_hash, fingerprint, cert_pem, not_after, revoked, revoked_at, created_at, sealed_key) VALUES `,
			`(?,?,?,?,?,?,?,0,NULL,?,?)`, 9)
		if err != nil {
			return err
		}
		ids := make([]string, 0, bulkRows)
		credTaken := func(err error) error {
			if !isUnique(err) {
				return internal("create credentials", err)
			}
			for _, id := range ids {
				var one int
				if e := tx.QueryRowContext(ctx, `SELECT 1 FROM credentials WHERE id = ?`, id).Scan(&one); e == nil {
					return core.Conflict("credential %q already exists", id)
				}
			}
			return core.Conflict("a credential of the batch already exists")
		}
		for _, c := range creds {
			ids = append(ids, c.ID)
			if err := cred.Add(c.ID, c.Thing, c.Type, nullBytes(c.SecretHash), nullString(c.Fingerprint), c.CertPEM,
				nullMS(c.NotAfter), toMS(orNow(c.CreatedAt)), c.SealedKey); err != nil {
				return credTaken(err)
			}
			if len(ids) == bulkRows {
				ids = ids[:0]
			}
		}
		if err := cred.Flush(); err != nil {
			return credTaken(err)
		}
		return nil
	})
}
