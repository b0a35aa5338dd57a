package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/store"
)

type thingStore struct{ s *Store }

// thingSelect reads a thing with its attributes, tags, groups and policies
// in one statement (so one consistent snapshot): the sets come back as JSON
// built by correlated subqueries, each an index lookup. Tags and groups are
// sorted, policies are in the order they were attached.
const thingSelect = `SELECT t.name, t.type, t.enabled, t.connected, t.last_seen, t.created_at, t.updated_at,
	(SELECT json_group_object(a.key, a.value) FROM thing_attributes a WHERE a.thing = t.name),
	(SELECT json_group_array(x.tag ORDER BY x.tag) FROM thing_tags x WHERE x.thing = t.name),
	(SELECT json_group_array(g.group_name ORDER BY g.group_name) FROM thing_groups g WHERE g.thing = t.name),
	(SELECT json_group_array(p.policy ORDER BY p.position) FROM thing_policies p WHERE p.thing = t.name),
	s.publish_denied, s.invalid_telemetry, s.last_denied_topic, s.last_denied_at, s.last_invalid_at,
	s.model_violations, s.last_model_violation, s.last_model_violation_at,
	t.node
FROM things t LEFT JOIN thing_stats s ON s.thing = t.name`

type scanner interface{ Scan(dest ...any) error }

func scanThing(row scanner) (store.Thing, error) {
	var (
		t                             store.Thing
		typ                           sql.NullString
		lastSeen                      sql.NullInt64
		created, updated              int64
		attrs, tags, groups, policies string
		denied, invalid               sql.NullInt64
		deniedTopic                   sql.NullString
		deniedAt, invalidAt           sql.NullInt64
		violations, violationAt       sql.NullInt64
		violation                     sql.NullString
	)
	if err := row.Scan(&t.Name, &typ, &t.Enabled, &t.Connected, &lastSeen, &created, &updated,
		&attrs, &tags, &groups, &policies, &denied, &invalid, &deniedTopic, &deniedAt, &invalidAt,
		&violations, &violation, &violationAt, &t.Node); err != nil {
		return store.Thing{}, err
	}
	t.Stats = store.ThingStats{
		PublishDenied:    denied.Int64,
		InvalidTelemetry: invalid.Int64,
		LastDeniedTopic:  deniedTopic.String,
		LastDeniedAt:     ptrMS(deniedAt),
		LastInvalidAt:    ptrMS(invalidAt),

		ModelViolations:      violations.Int64,
		LastModelViolation:   violation.String,
		LastModelViolationAt: ptrMS(violationAt),
	}
	t.Type = typ.String
	t.LastSeen = ptrMS(lastSeen)
	t.CreatedAt = fromMS(created)
	t.UpdatedAt = fromMS(updated)
	if err := json.Unmarshal([]byte(attrs), &t.Attributes); err != nil {
		return store.Thing{}, fmt.Errorf("attributes of %q: %w", t.Name, err)
	}
	if t.Attributes == nil {
		t.Attributes = map[string]string{}
	}
	var err error
	if t.Tags, err = jsonList(tags); err != nil {
		return store.Thing{}, fmt.Errorf("tags of %q: %w", t.Name, err)
	}
	if t.Groups, err = jsonList(groups); err != nil {
		return store.Thing{}, fmt.Errorf("groups of %q: %w", t.Name, err)
	}
	if t.Policies, err = jsonList(policies); err != nil {
		return store.Thing{}, fmt.Errorf("policies of %q: %w", t.Name, err)
	}
	return t, nil
}

// jsonList decodes a JSON array of strings, never returning nil.
func jsonList(s string) ([]string, error) {
	list := []string{}
	if s == "" || s == "[]" {
		return list, nil
	}
	err := json.Unmarshal([]byte(s), &list)
	if list == nil {
		list = []string{}
	}
	return list, err
}

// getThing reads one thing inside a write transaction.
func getThing(ctx context.Context, tx *sql.Tx, name string) (store.Thing, error) {
	return getOne(tx.QueryRowContext(ctx, thingSelect+` WHERE t.name = ?`, name), scanThing, "thing", name)
}

// Create stores a new thing with its attributes, tags, groups and policies.
//
//   - A thing of the same name → core.Conflict `thing "x" already exists`.
//   - A Type, group or policy that does not exist → core.Invalid with field
//     "type", "groups" or "policies" naming the missing one.
//   - A zero CreatedAt becomes now; a zero UpdatedAt becomes CreatedAt.
//   - Repeated tags, groups or policies are stored once (first position).
//
// It returns the thing as stored (times truncated to the millisecond, tags
// and groups sorted).
func (ts *thingStore) Create(ctx context.Context, t store.Thing) (store.Thing, error) {
	if err := requireName("name", t.Name); err != nil {
		return store.Thing{}, err
	}
	created, updated := createdUpdated(t.CreatedAt, t.UpdatedAt)
	var out store.Thing
	err := ts.s.inTx(ctx, func(tx *sql.Tx) error {
		dup, err := exists(ctx, tx, `SELECT 1 FROM things WHERE name = ?`, t.Name)
		if err != nil {
			return err
		}
		if dup {
			return core.Conflict("thing %q already exists", t.Name)
		}
		if err := checkType(ctx, tx, t.Type); err != nil {
			return err
		}
		if err := checkGroups(ctx, tx, t.Groups); err != nil {
			return err
		}
		if err := checkPolicies(ctx, tx, t.Policies); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO things (name, type, enabled, connected, last_seen, created_at, updated_at)
			VALUES (?, ?, ?, ?, ?, ?, ?)`,
			t.Name, nullString(t.Type), t.Enabled, t.Connected, nullMS(t.LastSeen), toMS(created), toMS(updated)); err != nil {
			return internal("create thing", err)
		}
		if err := setAttributes(ctx, tx, t.Name, t.Attributes, false); err != nil {
			return err
		}
		if err := setTags(ctx, tx, t.Name, t.Tags, false); err != nil {
			return err
		}
		if err := setGroups(ctx, tx, t.Name, t.Groups, false); err != nil {
			return err
		}
		if err := setThingPolicies(ctx, tx, t.Name, t.Policies, false); err != nil {
			return err
		}
		out, err = getThing(ctx, tx, t.Name)
		return err
	})
	return out, err
}

// Get returns the thing, or core.NotFound `thing "x" not found`.
func (ts *thingStore) Get(ctx context.Context, name string) (store.Thing, error) {
	t, err := scanThing(ts.s.getThing.QueryRowContext(ctx, name))
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return store.Thing{}, core.NotFound("thing", name)
	case err != nil:
		return store.Thing{}, internal("get thing", err)
	}
	return t, nil
}

// List returns the things that match every non-zero field of f, ordered by
// name, at most f.Limit of them (0 means 100; more than 1000 means 1000),
// starting after the name f.After. NamePrefix is a plain prefix: '%' and
// '_' have no special meaning. The whole page is read in one statement.
// thingWhere is the WHERE clause of f's filters (not its cursor).
func thingWhere(f store.ThingFilter) (where []string, args []any) {
	if f.NamePrefix != "" {
		where = append(where, `t.name >= ?`)
		args = append(args, f.NamePrefix)
		if end, ok := store.PrefixEnd(f.NamePrefix); ok {
			where = append(where, `t.name < ?`)
			args = append(args, end)
		}
	}
	if f.Type != "" {
		where = append(where, `t.type = ?`)
		args = append(args, f.Type)
	}
	if f.Group != "" {
		where = append(where, `t.name IN (SELECT thing FROM thing_groups WHERE group_name = ?)`)
		args = append(args, f.Group)
	}
	if f.Tag != "" {
		where = append(where, `t.name IN (SELECT thing FROM thing_tags WHERE tag = ?)`)
		args = append(args, f.Tag)
	}
	keys := make([]string, 0, len(f.Attributes))
	for k := range f.Attributes {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		where = append(where, `t.name IN (SELECT thing FROM thing_attributes WHERE key = ? AND value = ?)`)
		args = append(args, k, f.Attributes[k])
	}
	if f.Connected != nil {
		if *f.Connected {
			where = append(where, `t.connected = 1`)
		} else {
			where = append(where, `t.connected = 0`)
		}
	}
	return where, args
}

// thingSort returns the column ("" for the name) and direction of a sort.
func thingSort(sort string) (col string, desc bool, err error) {
	desc = strings.HasPrefix(sort, "-")
	switch strings.TrimPrefix(sort, "-") {
	case "", "name":
		return "", desc, nil
	case "lastSeen":
		return "coalesce(t.last_seen, 0)", desc, nil
	case "createdAt":
		return "t.created_at", desc, nil
	}
	return "", false, core.Invalid("sort", "sort must be one of %s", strings.Join(store.ThingSorts, ", "))
}

func (ts *thingStore) List(ctx context.Context, f store.ThingFilter) ([]store.Thing, error) {
	where, args := thingWhere(f)
	col, desc, err := thingSort(f.Sort)
	if err != nil {
		return nil, err
	}
	cmp, dir := ">", ""
	if desc {
		cmp, dir = "<", " DESC"
	}
	if f.After != "" {
		if col == "" {
			where = append(where, `t.name `+cmp+` ?`)
			args = append(args, f.After)
		} else {
			v, name, ok := strings.Cut(f.After, ":")
			ms, perr := strconv.ParseInt(v, 10, 64)
			if !ok || perr != nil {
				return nil, core.Invalid("cursor", "cursor %q is not one of this sort", f.After)
			}
			where = append(where, `(`+col+`, t.name) `+cmp+` (?, ?)`)
			args = append(args, ms, name)
		}
	}
	q := thingSelect
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	if col != "" {
		q += ` ORDER BY ` + col + dir + `, t.name` + dir + ` LIMIT ?`
	} else {
		q += ` ORDER BY t.name` + dir + ` LIMIT ?`
	}
	args = append(args, normLimit(f.Limit))

	rows, err := ts.s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, internal("list things", err)
	}
	defer rows.Close()
	list := []store.Thing{}
	for rows.Next() {
		t, err := scanThing(rows)
		if err != nil {
			return nil, internal("list things", err)
		}
		list = append(list, t)
	}
	if err := rows.Err(); err != nil {
		return nil, internal("list things", err)
	}
	return list, nil
}

// Update applies p to the thing and sets UpdatedAt to now.
//
//   - A missing thing → core.NotFound `thing "x" not found`.
//   - Type "" removes the type; a Type, group or policy that does not exist
//     → core.Invalid with field "type", "groups" or "policies", and nothing
//     changes.
//   - Non-nil Attributes, Tags, Groups, Policies replace the whole set (an
//     empty one clears it).
func (ts *thingStore) Update(ctx context.Context, name string, p store.ThingPatch) (store.Thing, error) {
	var out store.Thing
	err := ts.s.inTx(ctx, func(tx *sql.Tx) error {
		var (
			typ     sql.NullString
			enabled bool
		)
		err := tx.QueryRowContext(ctx, `SELECT type, enabled FROM things WHERE name = ?`, name).Scan(&typ, &enabled)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return core.NotFound("thing", name)
		case err != nil:
			return internal("update thing", err)
		}
		if p.Type != nil {
			if err := checkType(ctx, tx, *p.Type); err != nil {
				return err
			}
			typ = sql.NullString{String: *p.Type, Valid: *p.Type != ""}
		}
		if p.Enabled != nil {
			enabled = *p.Enabled
		}
		if p.Groups != nil {
			if err := checkGroups(ctx, tx, p.Groups); err != nil {
				return err
			}
		}
		if p.Policies != nil {
			if err := checkPolicies(ctx, tx, p.Policies); err != nil {
				return err
			}
		}
		if _, err := tx.ExecContext(ctx, `UPDATE things SET type = ?, enabled = ?, updated_at = ? WHERE name = ?`,
			typ, enabled, toMS(now()), name); err != nil {
			return internal("update thing", err)
		}
		if p.Attributes != nil {
			if err := setAttributes(ctx, tx, name, p.Attributes, true); err != nil {
				return err
			}
		}
		if p.Tags != nil {
			if err := setTags(ctx, tx, name, p.Tags, true); err != nil {
				return err
			}
		}
		if p.Groups != nil {
			if err := setGroups(ctx, tx, name, p.Groups, true); err != nil {
				return err
			}
		}
		if p.Policies != nil {
			if err := setThingPolicies(ctx, tx, name, p.Policies, true); err != nil {
				return err
			}
		}
		out, err = getThing(ctx, tx, name)
		return err
	})
	return out, err
}

// Delete removes the thing with its attributes, tags, memberships, policy
// attachments and credentials. A missing thing → core.NotFound.
func (ts *thingStore) Delete(ctx context.Context, name string) error {
	return ts.s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM things WHERE name = ?`, name)
		if err != nil {
			return internal("delete thing", err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return internal("delete thing", err)
		} else if n == 0 {
			return core.NotFound("thing", name)
		}
		return nil
	})
}

// RecordPresence applies the changes in order in one transaction: each
// sets connected and last_seen (At, or now if At is zero) of an existing
// thing, so a later entry for the same thing wins. Unknown things are
// ignored. UpdatedAt does not change: presence is not configuration.
func (ts *thingStore) RecordPresence(ctx context.Context, changes []store.Presence) error {
	if len(changes) == 0 {
		return nil
	}
	return ts.s.inTx(ctx, func(tx *sql.Tx) error {
		// A disconnect applies only to the node the thing is on (store.Presence).
		st, err := tx.PrepareContext(ctx, `UPDATE things SET last_seen = ?2,
			connected = CASE WHEN ?1 OR node = ?4 THEN ?1 ELSE connected END,
			node = CASE WHEN ?1 THEN ?4 WHEN node = ?4 THEN '' ELSE node END
			WHERE name = ?3`)
		if err != nil {
			return internal("record presence", err)
		}
		defer st.Close()
		var t0 int64
		for _, c := range changes {
			at := toMS(c.At)
			if c.At.IsZero() {
				if t0 == 0 {
					t0 = toMS(now())
				}
				at = t0
			}
			if _, err := st.ExecContext(ctx, c.Connected, at, c.Thing, c.Node); err != nil {
				return internal("record presence", err)
			}
		}
		return nil
	})
}

// ResetPresence marks every thing disconnected; LastSeen stays.
func (ts *thingStore) ResetPresence(ctx context.Context) error {
	if _, err := ts.s.w.ExecContext(ctx, `UPDATE things SET connected = 0 WHERE connected = 1`); err != nil {
		return internal("reset presence", err)
	}
	return nil
}

// ConnectedNodes returns the nodes things are connected on, by name.
func (ts *thingStore) ConnectedNodes(ctx context.Context) ([]string, error) {
	return ts.names(ctx, ts.s.r, "connected nodes", `SELECT DISTINCT node FROM things WHERE connected = 1 AND node <> '' ORDER BY node`)
}

// ResetNodePresence marks the things connected on node disconnected and
// returns them (one writer: each thing is returned once).
func (ts *thingStore) ResetNodePresence(ctx context.Context, node string) ([]string, error) {
	if node == "" {
		return []string{}, nil
	}
	return ts.names(ctx, ts.s.w, "reset node presence", `UPDATE things SET connected = 0, node = ''
		WHERE connected = 1 AND node = ? RETURNING name`, node)
}

// names runs a query returning one text column, sorted.
func (ts *thingStore) names(ctx context.Context, db *sql.DB, op, q string, args ...any) ([]string, error) {
	rows, err := db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, internal(op, err)
	}
	defer rows.Close()
	out := []string{}
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, internal(op, err)
		}
		out = append(out, n)
	}
	if err := rows.Err(); err != nil {
		return nil, internal(op, err)
	}
	sort.Strings(out)
	return out, nil
}

// RecordActivity adds a batch of activity: last_seen moves forward only,
// counters are added, the latest denied topic replaces the one before.
func (ts *thingStore) RecordActivity(ctx context.Context, batch []store.Activity) error {
	if len(batch) == 0 {
		return nil
	}
	return ts.s.inTx(ctx, func(tx *sql.Tx) error {
		for _, a := range batch {
			if !a.LastSeen.IsZero() {
				if _, err := tx.ExecContext(ctx, `UPDATE things SET last_seen = max(coalesce(last_seen, 0), ?) WHERE name = ?`,
					toMS(a.LastSeen), a.Thing); err != nil {
					return internal("record activity", err)
				}
			}
			if a.ModelViolations > 0 {
				var last any
				if a.LastModelViolation != "" {
					last = a.LastModelViolation
				}
				var lastAt any
				if !a.LastModelViolationAt.IsZero() {
					lastAt = toMS(a.LastModelViolationAt)
				}
				if _, err := tx.ExecContext(ctx, `INSERT INTO thing_stats (thing, model_violations, last_model_violation, last_model_violation_at)
					SELECT name, ?, ?, ? FROM things WHERE name = ?
					ON CONFLICT (thing) DO UPDATE SET
						model_violations = model_violations + excluded.model_violations,
						last_model_violation = coalesce(excluded.last_model_violation, last_model_violation),
						last_model_violation_at = coalesce(excluded.last_model_violation_at, last_model_violation_at)`,
					a.ModelViolations, last, lastAt, a.Thing); err != nil {
					return internal("record activity", err)
				}
			}
			if a.PublishDenied == 0 && a.InvalidTelemetry == 0 {
				continue
			}
			var topic any
			if a.LastDeniedTopic != "" {
				topic = a.LastDeniedTopic
			}
			at := func(t time.Time) any {
				if t.IsZero() {
					return nil
				}
				return toMS(t)
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO thing_stats (thing, publish_denied, invalid_telemetry, last_denied_topic, last_denied_at, last_invalid_at)
				SELECT name, ?, ?, ?, ?, ? FROM things WHERE name = ?
				ON CONFLICT (thing) DO UPDATE SET
					publish_denied = publish_denied + excluded.publish_denied,
					invalid_telemetry = invalid_telemetry + excluded.invalid_telemetry,
					last_denied_topic = coalesce(excluded.last_denied_topic, last_denied_topic),
					last_denied_at = coalesce(excluded.last_denied_at, last_denied_at),
					last_invalid_at = coalesce(excluded.last_invalid_at, last_invalid_at)`,
				a.PublishDenied, a.InvalidTelemetry, topic, at(a.LastDeniedAt), at(a.LastInvalidAt), a.Thing); err != nil {
				return internal("record activity", err)
			}
		}
		return nil
	})
}

// Total returns how many things match f's filters.
func (ts *thingStore) Total(ctx context.Context, f store.ThingFilter) (int, error) {
	where, args := thingWhere(f)
	q := `SELECT count(*) FROM things t`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	var n int
	if err := ts.s.r.QueryRowContext(ctx, q, args...).Scan(&n); err != nil {
		return 0, internal("count things", err)
	}
	return n, nil
}

// Counts returns the number of things, connected and disabled.
func (ts *thingStore) Counts(ctx context.Context) (store.ThingCounts, error) {
	var c store.ThingCounts
	err := ts.s.r.QueryRowContext(ctx, `SELECT count(*), coalesce(sum(connected), 0), coalesce(sum(1 - enabled), 0) FROM things`).
		Scan(&c.Total, &c.Connected, &c.Disabled)
	if err != nil {
		return store.ThingCounts{}, internal("count things", err)
	}
	return c, nil
}

// Count returns the number of things and of connected things.
func (ts *thingStore) Count(ctx context.Context) (total, connected int, err error) {
	err = ts.s.r.QueryRowContext(ctx,
		`SELECT (SELECT count(*) FROM things), (SELECT count(*) FROM things WHERE connected = 1)`).Scan(&total, &connected)
	if err != nil {
		return 0, 0, internal("count things", err)
	}
	return total, connected, nil
}

func checkType(ctx context.Context, tx *sql.Tx, typ string) error {
	if typ == "" {
		return nil
	}
	ok, err := exists(ctx, tx, `SELECT 1 FROM thing_types WHERE name = ?`, typ)
	if err != nil {
		return err
	}
	if !ok {
		return core.Invalid("type", "thing type %q does not exist", typ)
	}
	return nil
}

func checkGroups(ctx context.Context, tx *sql.Tx, groups []string) error {
	for _, g := range groups {
		ok, err := exists(ctx, tx, `SELECT 1 FROM groups WHERE name = ?`, g)
		if err != nil {
			return err
		}
		if !ok {
			return core.Invalid("groups", "group %q does not exist", g)
		}
	}
	return nil
}

func checkPolicies(ctx context.Context, tx *sql.Tx, policies []string) error {
	for _, p := range policies {
		ok, err := exists(ctx, tx, `SELECT 1 FROM policies WHERE name = ?`, p)
		if err != nil {
			return err
		}
		if !ok {
			return core.Invalid("policies", "policy %q does not exist", p)
		}
	}
	return nil
}

// setAttributes stores the thing's attributes, first deleting the old ones
// if replace.
func setAttributes(ctx context.Context, tx *sql.Tx, thing string, attrs map[string]string, replace bool) error {
	if replace {
		if _, err := tx.ExecContext(ctx, `DELETE FROM thing_attributes WHERE thing = ?`, thing); err != nil {
			return internal("set attributes", err)
		}
	}
	for k, v := range attrs {
		if _, err := tx.ExecContext(ctx, `INSERT INTO thing_attributes (thing, key, value) VALUES (?, ?, ?)`, thing, k, v); err != nil {
			return internal("set attributes", err)
		}
	}
	return nil
}

func setTags(ctx context.Context, tx *sql.Tx, thing string, tags []string, replace bool) error {
	return setList(ctx, tx, "tags", `DELETE FROM thing_tags WHERE thing = ?`,
		`INSERT INTO thing_tags (thing, tag) VALUES (?, ?)`, thing, tags, replace, false)
}

func setGroups(ctx context.Context, tx *sql.Tx, thing string, groups []string, replace bool) error {
	return setList(ctx, tx, "groups", `DELETE FROM thing_groups WHERE thing = ?`,
		`INSERT INTO thing_groups (thing, group_name) VALUES (?, ?)`, thing, groups, replace, false)
}

func setThingPolicies(ctx context.Context, tx *sql.Tx, thing string, policies []string, replace bool) error {
	return setList(ctx, tx, "policies", `DELETE FROM thing_policies WHERE thing = ?`,
		`INSERT INTO thing_policies (thing, policy, position) VALUES (?, ?, ?)`, thing, policies, replace, true)
}

// setList stores a set of names of owner with the insert statement ins
// (owner, name[, position]), first running del if replace.
func setList(ctx context.Context, tx *sql.Tx, what, del, ins, owner string, list []string, replace, position bool) error {
	if replace {
		if _, err := tx.ExecContext(ctx, del, owner); err != nil {
			return internal("set "+what, err)
		}
	}
	for i, v := range store.Uniq(list) {
		args := []any{owner, v}
		if position {
			args = append(args, i)
		}
		if _, err := tx.ExecContext(ctx, ins, args...); err != nil {
			return internal("set "+what, err)
		}
	}
	return nil
}
