package postgres

import (
	"context"
	"errors"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/store"
)

type thingStore struct{ s *Store }

// thingSelect reads a thing with its attributes, tags, groups, policies
// and stats in one statement (one snapshot): the sets come from correlated
// subqueries, each an index lookup. Tags and groups are sorted, policies
// are in the order they were attached.
const thingSelect = `SELECT t.name, coalesce(t.type, ''), t.enabled, t.connected, t.last_seen, t.created_at, t.updated_at,
	(SELECT coalesce(jsonb_object_agg(a.key, a.value), '{}') FROM thing_attributes a WHERE a.thing = t.name),
	(SELECT coalesce(array_agg(x.tag ORDER BY x.tag), '{}') FROM thing_tags x WHERE x.thing = t.name),
	(SELECT coalesce(array_agg(g.group_name ORDER BY g.group_name), '{}') FROM thing_groups g WHERE g.thing = t.name),
	(SELECT coalesce(array_agg(p.policy ORDER BY p.position), '{}') FROM thing_policies p WHERE p.thing = t.name),
	coalesce(s.publish_denied, 0), coalesce(s.invalid_telemetry, 0), coalesce(s.last_denied_topic, ''), s.last_denied_at, s.last_invalid_at,
	coalesce(s.model_violations, 0), coalesce(s.last_model_violation, ''), s.last_model_violation_at,
	t.node
FROM things t LEFT JOIN thing_stats s ON s.thing = t.name`

// lastSeenKey is the lastSeen sort key: a thing never seen sorts as the
// epoch (SQLite: coalesce(last_seen, 0)). The index things_last_seen
// (migration 0002) is on exactly this expression.
const lastSeenKey = `coalesce(t.last_seen, '1970-01-01 00:00:00+00'::timestamptz)`

func scanThing(row scanner) (store.Thing, error) {
	var (
		t                   store.Thing
		lastSeen            *time.Time
		created, updated    time.Time
		deniedAt, invalidAt *time.Time
		violationAt         *time.Time
	)
	if err := row.Scan(&t.Name, &t.Type, &t.Enabled, &t.Connected, &lastSeen, &created, &updated,
		&t.Attributes, &t.Tags, &t.Groups, &t.Policies,
		&t.Stats.PublishDenied, &t.Stats.InvalidTelemetry, &t.Stats.LastDeniedTopic, &deniedAt, &invalidAt,
		&t.Stats.ModelViolations, &t.Stats.LastModelViolation, &violationAt, &t.Node); err != nil {
		return store.Thing{}, err
	}
	t.Stats.LastModelViolationAt = utcPtr(violationAt)
	t.Stats.LastDeniedAt = utcPtr(deniedAt)
	t.Stats.LastInvalidAt = utcPtr(invalidAt)
	t.LastSeen = utcPtr(lastSeen)
	t.CreatedAt = created.UTC()
	t.UpdatedAt = updated.UTC()
	if t.Attributes == nil {
		t.Attributes = map[string]string{}
	}
	for _, l := range []*[]string{&t.Tags, &t.Groups, &t.Policies} {
		if *l == nil {
			*l = []string{}
		}
	}
	return t, nil
}

func getThing(ctx context.Context, q querier, name string) (store.Thing, error) {
	return getOne(q.QueryRow(ctx, thingSelect+` WHERE t.name = $1`, name), scanThing, "thing", name)
}

// Create stores a new thing; see the SQLite backend for the contract.
func (ts *thingStore) Create(ctx context.Context, t store.Thing) (store.Thing, error) {
	if err := requireName("name", t.Name); err != nil {
		return store.Thing{}, err
	}
	created, updated := createdUpdated(t.CreatedAt, t.UpdatedAt)
	var out store.Thing
	err := ts.s.inTx(ctx, func(tx pgx.Tx) error {
		dup, err := exists(ctx, tx, `SELECT 1 FROM things WHERE name = $1`, t.Name)
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
		if _, err := tx.Exec(ctx, `INSERT INTO things (name, type, enabled, connected, last_seen, created_at, updated_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7)`,
			t.Name, nullString(t.Type), t.Enabled, t.Connected, msPtr(t.LastSeen), created, updated); err != nil {
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
	return getThing(ctx, ts.s.pool, name)
}

// thingWhere returns the WHERE conditions of f's filters (not its cursor),
// adding their parameters to a.
func thingWhere(f store.ThingFilter, a *args) (where []string) {
	if f.NamePrefix != "" {
		where = append(where, `t.name >= `+a.add(f.NamePrefix))
		if end, ok := store.PrefixEnd(f.NamePrefix); ok {
			where = append(where, `t.name < `+a.add(end))
		}
	}
	if f.Type != "" {
		where = append(where, `t.type = `+a.add(f.Type))
	}
	if f.Group != "" {
		where = append(where, `t.name IN (SELECT thing FROM thing_groups WHERE group_name = `+a.add(f.Group)+`)`)
	}
	if f.Tag != "" {
		where = append(where, `t.name IN (SELECT thing FROM thing_tags WHERE tag = `+a.add(f.Tag)+`)`)
	}
	keys := make([]string, 0, len(f.Attributes))
	for k := range f.Attributes {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		where = append(where, `t.name IN (SELECT thing FROM thing_attributes WHERE key = `+a.add(k)+` AND value = `+a.add(f.Attributes[k])+`)`)
	}
	if f.Connected != nil {
		where = append(where, `t.connected = `+a.add(*f.Connected))
	}
	return where
}

// thingSort returns the sort key ("" for the name) and direction of a
// sort; an unknown sort → core.Invalid with field "sort", as in SQLite.
func thingSort(sort string) (col string, desc bool, err error) {
	desc = strings.HasPrefix(sort, "-")
	switch strings.TrimPrefix(sort, "-") {
	case "", "name":
		return "", desc, nil
	case "lastSeen":
		return lastSeenKey, desc, nil
	case "createdAt":
		return "t.created_at", desc, nil
	}
	return "", false, core.Invalid("sort", "sort must be one of %s", strings.Join(store.ThingSorts, ", "))
}

// List returns the things that match every non-zero field of f, ordered by
// f.Sort (name byte-wise by default; ties of the other sorts by name in
// the same direction), one page from the cursor f.After (store.ThingCursor
// of the last thing of the page before); see the SQLite backend.
func (ts *thingStore) List(ctx context.Context, f store.ThingFilter) ([]store.Thing, error) {
	q, a, err := listThingsQuery(f)
	if err != nil {
		return nil, err
	}
	return queryList(ctx, ts.s.pool, "list things", scanThing, q, a...)
}

// listThingsQuery is List's statement and its parameters.
func listThingsQuery(f store.ThingFilter) (string, args, error) {
	var a args
	where := thingWhere(f, &a)
	col, desc, err := thingSort(f.Sort)
	if err != nil {
		return "", nil, err
	}
	cmp, dir := ">", ""
	if desc {
		cmp, dir = "<", " DESC"
	}
	if f.After != "" {
		if col == "" {
			where = append(where, `t.name `+cmp+` `+a.add(f.After))
		} else {
			v, name, ok := strings.Cut(f.After, ":")
			msec, perr := strconv.ParseInt(v, 10, 64)
			if !ok || perr != nil {
				return "", nil, core.Invalid("cursor", "cursor %q is not one of this sort", f.After)
			}
			where = append(where, `(`+col+`, t.name) `+cmp+` (`+a.add(time.UnixMilli(msec).UTC())+`, `+a.add(name)+`)`)
		}
	}
	q := thingSelect
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	if col != "" {
		q += ` ORDER BY ` + col + dir + `, t.name` + dir
	} else {
		q += ` ORDER BY t.name` + dir
	}
	q += ` LIMIT ` + a.add(normLimit(f.Limit))
	return q, a, nil
}

// Update applies p to the thing and sets UpdatedAt to now; see the SQLite
// backend.
func (ts *thingStore) Update(ctx context.Context, name string, p store.ThingPatch) (store.Thing, error) {
	var out store.Thing
	err := ts.s.inTx(ctx, func(tx pgx.Tx) error {
		var (
			typ     *string
			enabled bool
		)
		err := tx.QueryRow(ctx, `SELECT type, enabled FROM things WHERE name = $1 FOR UPDATE`, name).Scan(&typ, &enabled)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			return core.NotFound("thing", name)
		case err != nil:
			return internal("update thing", err)
		}
		if p.Type != nil {
			if err := checkType(ctx, tx, *p.Type); err != nil {
				return err
			}
			typ = nullString(*p.Type)
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
		if _, err := tx.Exec(ctx, `UPDATE things SET type = $1, enabled = $2, updated_at = $3 WHERE name = $4`,
			typ, enabled, now(), name); err != nil {
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

// Delete removes the thing and everything that belongs to it (cascades).
// A missing thing → core.NotFound.
func (ts *thingStore) Delete(ctx context.Context, name string) error {
	tag, err := ts.s.pool.Exec(ctx, `DELETE FROM things WHERE name = $1`, name)
	return affected(tag, err, "delete thing", "thing", name)
}

// RecordPresence applies the changes in one statement: the last entry of
// each thing wins (At, or now if zero); unknown things are ignored and
// UpdatedAt does not change.
func (ts *thingStore) RecordPresence(ctx context.Context, changes []store.Presence) error {
	if len(changes) == 0 {
		return nil
	}
	last := make(map[string]int, len(changes))
	for i, c := range changes {
		last[c.Thing] = i
	}
	var (
		names     = make([]string, 0, len(last))
		connected = make([]bool, 0, len(last))
		at        = make([]time.Time, 0, len(last))
		nodes     = make([]string, 0, len(last))
		t0        time.Time
	)
	for i, c := range changes {
		if last[c.Thing] != i {
			continue
		}
		when := c.At
		if when.IsZero() {
			if t0.IsZero() {
				t0 = now()
			}
			when = t0
		}
		names = append(names, c.Thing)
		connected = append(connected, c.Connected)
		at = append(at, ms(when))
		nodes = append(nodes, c.Node)
	}
	if _, err := ts.s.pool.Exec(ctx, `UPDATE things t SET last_seen = c.at,
		connected = CASE WHEN c.connected OR t.node = c.node THEN c.connected ELSE t.connected END,
		node = CASE WHEN c.connected THEN c.node WHEN t.node = c.node THEN '' ELSE t.node END
		FROM unnest($1::text[], $2::boolean[], $3::timestamptz[], $4::text[]) AS c(name, connected, at, node)
		WHERE t.name = c.name`, names, connected, at, nodes); err != nil {
		return internal("record presence", err)
	}
	return nil
}

// ResetPresence marks every thing disconnected; LastSeen stays.
func (ts *thingStore) ResetPresence(ctx context.Context) error {
	if _, err := ts.s.pool.Exec(ctx, `UPDATE things SET connected = false WHERE connected`); err != nil {
		return internal("reset presence", err)
	}
	return nil
}

// ConnectedNodes returns the nodes things are connected on, by name.
func (ts *thingStore) ConnectedNodes(ctx context.Context) ([]string, error) {
	rows, err := ts.s.pool.Query(ctx, `SELECT DISTINCT node FROM things WHERE connected AND node <> '' ORDER BY node`)
	if err != nil {
		return nil, internal("connected nodes", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, internal("connected nodes", err)
	}
	return out, nil
}

// ResetNodePresence marks the things connected on node disconnected and
// returns them. The row locks of the UPDATE make concurrent callers see
// each thing once.
func (ts *thingStore) ResetNodePresence(ctx context.Context, node string) ([]string, error) {
	rows, err := ts.s.pool.Query(ctx, `UPDATE things SET connected = false, node = ''
		WHERE connected AND node = $1 AND node <> '' RETURNING name`, node)
	if err != nil {
		return nil, internal("reset node presence", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, internal("reset node presence", err)
	}
	sort.Strings(out)
	return out, nil
}

// RecordActivity adds a batch of activity in one transaction, with the
// result of applying it entry by entry as the SQLite backend does:
// last_seen moves forward only; the counters of an entry that has any are
// added, and its denied topic and times replace the ones before (a later
// entry wins). Unknown things are ignored. The batch is folded per thing
// first, so it is two statements whatever its size.
func (ts *thingStore) RecordActivity(ctx context.Context, batch []store.Activity) error {
	if len(batch) == 0 {
		return nil
	}
	type folded struct {
		seen                time.Time
		denied, invalid     int64
		topic               *string
		deniedAt, invalidAt *time.Time
		hasCounts           bool
	}
	byThing := make(map[string]*folded, len(batch))
	for _, a := range batch {
		f := byThing[a.Thing]
		if f == nil {
			f = &folded{}
			byThing[a.Thing] = f
		}
		if !a.LastSeen.IsZero() && (f.seen.IsZero() || a.LastSeen.After(f.seen)) {
			f.seen = a.LastSeen
		}
		if a.PublishDenied == 0 && a.InvalidTelemetry == 0 {
			continue
		}
		f.hasCounts = true
		f.denied += a.PublishDenied
		f.invalid += a.InvalidTelemetry
		if a.LastDeniedTopic != "" {
			f.topic = &a.LastDeniedTopic
		}
		if !a.LastDeniedAt.IsZero() {
			t := ms(a.LastDeniedAt)
			f.deniedAt = &t
		}
		if !a.LastInvalidAt.IsZero() {
			t := ms(a.LastInvalidAt)
			f.invalidAt = &t
		}
	}
	// In name order, so that two nodes lock the rows they share in the
	// same order.
	names := make([]string, 0, len(byThing))
	for n := range byThing {
		names = append(names, n)
	}
	sort.Strings(names)
	var (
		seenNames  []string
		seenAt     []time.Time
		statNames  []string
		denied     []int64
		invalid    []int64
		topics     []*string
		deniedAts  []*time.Time
		invalidAts []*time.Time
	)
	for _, n := range names {
		f := byThing[n]
		if !f.seen.IsZero() {
			seenNames = append(seenNames, n)
			seenAt = append(seenAt, ms(f.seen))
		}
		if f.hasCounts {
			statNames = append(statNames, n)
			denied = append(denied, f.denied)
			invalid = append(invalid, f.invalid)
			topics = append(topics, f.topic)
			deniedAts = append(deniedAts, f.deniedAt)
			invalidAts = append(invalidAts, f.invalidAt)
		}
	}
	return ts.s.inTx(ctx, func(tx pgx.Tx) error {
		if len(seenNames) > 0 {
			if _, err := tx.Exec(ctx, `UPDATE things t SET last_seen = a.at
				FROM unnest($1::text[], $2::timestamptz[]) AS a(name, at)
				WHERE t.name = a.name AND (t.last_seen IS NULL OR t.last_seen < a.at)`, seenNames, seenAt); err != nil {
				return internal("record activity: last seen", err)
			}
		}
		if len(statNames) > 0 {
			// FOR KEY SHARE: a thing deleted meanwhile is skipped instead
			// of failing the batch on the foreign key.
			if _, err := tx.Exec(ctx, `INSERT INTO thing_stats AS s (thing, publish_denied, invalid_telemetry, last_denied_topic, last_denied_at, last_invalid_at)
				SELECT t.name, a.denied, a.invalid, a.topic, a.denied_at, a.invalid_at
				FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::text[], $5::timestamptz[], $6::timestamptz[])
					AS a(name, denied, invalid, topic, denied_at, invalid_at)
				JOIN things t ON t.name = a.name
				ORDER BY t.name
				FOR KEY SHARE OF t
				ON CONFLICT (thing) DO UPDATE SET
					publish_denied = s.publish_denied + excluded.publish_denied,
					invalid_telemetry = s.invalid_telemetry + excluded.invalid_telemetry,
					last_denied_topic = coalesce(excluded.last_denied_topic, s.last_denied_topic),
					last_denied_at = coalesce(excluded.last_denied_at, s.last_denied_at),
					last_invalid_at = coalesce(excluded.last_invalid_at, s.last_invalid_at)`,
				statNames, denied, invalid, topics, deniedAts, invalidAts); err != nil {
				return internal("record activity: stats", err)
			}
		}
		return recordModelViolations(ctx, tx, batch)
	})
}

// recordModelViolations adds the model violations of a batch (one
// statement per entry that has any, in thing order), as SQLite does.
func recordModelViolations(ctx context.Context, tx pgx.Tx, batch []store.Activity) error {
	var vs []store.Activity
	for _, a := range batch {
		if a.ModelViolations > 0 {
			vs = append(vs, a)
		}
	}
	sort.SliceStable(vs, func(i, j int) bool { return vs[i].Thing < vs[j].Thing })
	for _, a := range vs {
		var last *string
		if a.LastModelViolation != "" {
			last = &a.LastModelViolation
		}
		var lastAt *time.Time
		if !a.LastModelViolationAt.IsZero() {
			t := ms(a.LastModelViolationAt)
			lastAt = &t
		}
		if _, err := tx.Exec(ctx, `INSERT INTO thing_stats AS s (thing, model_violations, last_model_violation, last_model_violation_at)
			SELECT t.name, $2, $3, $4 FROM things t WHERE t.name = $1 FOR KEY SHARE OF t
			ON CONFLICT (thing) DO UPDATE SET
				model_violations = s.model_violations + excluded.model_violations,
				last_model_violation = coalesce(excluded.last_model_violation, s.last_model_violation),
				last_model_violation_at = coalesce(excluded.last_model_violation_at, s.last_model_violation_at)`,
			a.Thing, a.ModelViolations, last, lastAt); err != nil {
			return internal("record activity: model violations", err)
		}
	}
	return nil
}

// Total returns how many things match f's filters (its cursor, sort and
// limit aside).
func (ts *thingStore) Total(ctx context.Context, f store.ThingFilter) (int, error) {
	var a args
	where := thingWhere(f, &a)
	q := `SELECT count(*) FROM things t`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	var n int
	if err := ts.s.pool.QueryRow(ctx, q, a...).Scan(&n); err != nil {
		return 0, internal("count things", err)
	}
	return n, nil
}

// Counts returns the number of things, connected and disabled.
func (ts *thingStore) Counts(ctx context.Context) (store.ThingCounts, error) {
	var c store.ThingCounts
	err := ts.s.pool.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE connected), count(*) FILTER (WHERE NOT enabled) FROM things`).
		Scan(&c.Total, &c.Connected, &c.Disabled)
	if err != nil {
		return store.ThingCounts{}, internal("count things", err)
	}
	return c, nil
}

// Count returns the number of things and of connected things.
func (ts *thingStore) Count(ctx context.Context) (total, connected int, err error) {
	err = ts.s.pool.QueryRow(ctx,
		`SELECT count(*), count(*) FILTER (WHERE connected) FROM things`).Scan(&total, &connected)
	if err != nil {
		return 0, 0, internal("count things", err)
	}
	return total, connected, nil
}

func checkType(ctx context.Context, tx pgx.Tx, typ string) error {
	if typ == "" {
		return nil
	}
	ok, err := exists(ctx, tx, `SELECT 1 FROM thing_types WHERE name = $1`, typ)
	if err != nil {
		return err
	}
	if !ok {
		return core.Invalid("type", "thing type %q does not exist", typ)
	}
	return nil
}

// checkMissing returns the first of names (in order) that has no row in
// table, or "".
func checkMissing(ctx context.Context, tx pgx.Tx, table string, names []string) (string, error) {
	if len(names) == 0 {
		return "", nil
	}
	var missing *string
	err := tx.QueryRow(ctx, `SELECT n FROM unnest($1::text[]) WITH ORDINALITY AS u(n, i)
		WHERE NOT EXISTS (SELECT 1 FROM `+table+` WHERE name = u.n) ORDER BY i LIMIT 1`, names).Scan(&missing)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return "", nil
	case err != nil:
		return "", internal("check "+table, err)
	}
	return *missing, nil
}

func checkGroups(ctx context.Context, tx pgx.Tx, groups []string) error {
	missing, err := checkMissing(ctx, tx, "groups", groups)
	if err != nil {
		return err
	}
	if missing != "" {
		return core.Invalid("groups", "group %q does not exist", missing)
	}
	return nil
}

func checkPolicies(ctx context.Context, tx pgx.Tx, policies []string) error {
	missing, err := checkMissing(ctx, tx, "policies", policies)
	if err != nil {
		return err
	}
	if missing != "" {
		return core.Invalid("policies", "policy %q does not exist", missing)
	}
	return nil
}

// setAttributes stores the thing's attributes, first deleting the old ones
// if replace.
func setAttributes(ctx context.Context, tx pgx.Tx, thing string, attrs map[string]string, replace bool) error {
	if replace {
		if _, err := tx.Exec(ctx, `DELETE FROM thing_attributes WHERE thing = $1`, thing); err != nil {
			return internal("set attributes", err)
		}
	}
	if len(attrs) == 0 {
		return nil
	}
	keys := make([]string, 0, len(attrs))
	values := make([]string, 0, len(attrs))
	for k, v := range attrs {
		keys = append(keys, k)
		values = append(values, v)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO thing_attributes (thing, key, value)
		SELECT $1, k, v FROM unnest($2::text[], $3::text[]) AS a(k, v)`, thing, keys, values); err != nil {
		return internal("set attributes", err)
	}
	return nil
}

func setTags(ctx context.Context, tx pgx.Tx, thing string, tags []string, replace bool) error {
	return setList(ctx, tx, "tags", "thing_tags", "thing", "tag", false, thing, tags, replace)
}

func setGroups(ctx context.Context, tx pgx.Tx, thing string, groups []string, replace bool) error {
	return setList(ctx, tx, "groups", "thing_groups", "thing", "group_name", false, thing, groups, replace)
}

func setThingPolicies(ctx context.Context, tx pgx.Tx, thing string, policies []string, replace bool) error {
	return setList(ctx, tx, "policies", "thing_policies", "thing", "policy", true, thing, policies, replace)
}

// setList stores the set list of owner in table (ownerCol, col[,
// position]), first deleting the old set if replace. Repeats are stored
// once, at their first position.
func setList(ctx context.Context, tx pgx.Tx, what, table, ownerCol, col string, position bool, owner string, list []string, replace bool) error {
	if replace {
		if _, err := tx.Exec(ctx, `DELETE FROM `+table+` WHERE `+ownerCol+` = $1`, owner); err != nil {
			return internal("set "+what, err)
		}
	}
	list = store.Uniq(list)
	if len(list) == 0 {
		return nil
	}
	q := `INSERT INTO ` + table + ` (` + ownerCol + `, ` + col + `) SELECT $1, n FROM unnest($2::text[]) AS u(n)`
	if position {
		q = `INSERT INTO ` + table + ` (` + ownerCol + `, ` + col + `, position)
			SELECT $1, n, i - 1 FROM unnest($2::text[]) WITH ORDINALITY AS u(n, i)`
	}
	if _, err := tx.Exec(ctx, q, owner, list); err != nil {
		return internal("set "+what, err)
	}
	return nil
}
