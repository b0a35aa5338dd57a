package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"strings"
	"time"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/store"
)

type alarmStore struct{ s *Store }

const alarmSelect = `SELECT id, thing, type, severity, status, details, count, created_at, last_at, acked_at, cleared_at FROM alarms`

func scanAlarm(row scanner) (store.Alarm, error) {
	var (
		a              store.Alarm
		details        sql.NullString
		created, last  int64
		acked, cleared sql.NullInt64
	)
	if err := row.Scan(&a.ID, &a.Thing, &a.Type, &a.Severity, &a.Status, &details, &a.Count, &created, &last, &acked, &cleared); err != nil {
		return store.Alarm{}, err
	}
	if details.Valid {
		a.Details = json.RawMessage(details.String)
	}
	a.CreatedAt, a.LastAt = fromMS(created), fromMS(last)
	a.AckedAt, a.ClearedAt = ptrMS(acked), ptrMS(cleared)
	return a, nil
}

func getAlarm(ctx context.Context, q querier, id string) (store.Alarm, error) {
	return getOne(q.QueryRowContext(ctx, alarmSelect+` WHERE id = ?`, id), scanAlarm, "alarm", id)
}

func queryAlarms(ctx context.Context, q querier, query string, args ...any) ([]store.Alarm, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, internal("list alarms", err)
	}
	defer rows.Close()
	list := []store.Alarm{}
	for rows.Next() {
		a, err := scanAlarm(rows)
		if err != nil {
			return nil, internal("list alarms", err)
		}
		list = append(list, a)
	}
	if err := rows.Err(); err != nil {
		return nil, internal("list alarms", err)
	}
	return list, nil
}

// Raise records an occurrence of an alarm; see store.AlarmStore.
func (as *alarmStore) Raise(ctx context.Context, a store.Alarm, maxOpen int) (store.Alarm, bool, error) {
	if err := checkRaise(a); err != nil {
		return store.Alarm{}, false, err
	}
	var (
		out     store.Alarm
		created bool
	)
	err := as.s.inTx(ctx, func(tx *sql.Tx) error {
		var err error
		out, created, err = raiseTx(ctx, tx, a, maxOpen)
		return err
	})
	return out, created, err
}

func checkRaise(a store.Alarm) error {
	for _, f := range [][2]string{{"id", a.ID}, {"type", a.Type}, {"thing", a.Thing}, {"severity", a.Severity}} {
		if err := requireName(f[0], f[1]); err != nil {
			return err
		}
	}
	return nil
}

// raiseTx is Raise inside tx; its own refusals write nothing.
func raiseTx(ctx context.Context, tx *sql.Tx, a store.Alarm, maxOpen int) (out store.Alarm, created bool, err error) {
	at := orNow(a.LastAt).UTC().Truncate(time.Millisecond)
	err = func() error {
		open, err := getOne(tx.QueryRowContext(ctx, alarmSelect+` WHERE thing = ? AND type = ? AND status <> 'cleared'`, a.Thing, a.Type), scanAlarm, "alarm", a.Type)
		switch {
		case err == nil:
			last := toMS(at)
			if last < toMS(open.LastAt) {
				last = toMS(open.LastAt)
			}
			if _, err := tx.ExecContext(ctx, `UPDATE alarms SET count = count + 1, last_at = ?, severity = ?, details = ? WHERE id = ?`,
				last, a.Severity, rawOrNull(a.Details), open.ID); err != nil {
				return internal("raise alarm", err)
			}
			out, err = getAlarm(ctx, tx, open.ID)
			return err
		case !core.IsNotFound(err):
			return err
		}
		ok, err := exists(ctx, tx, `SELECT 1 FROM things WHERE name = ?`, a.Thing)
		if err != nil {
			return err
		}
		if !ok {
			return core.NotFound("thing", a.Thing)
		}
		if maxOpen > 0 {
			var n int
			if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM alarms WHERE status <> 'cleared'`).Scan(&n); err != nil {
				return internal("raise alarm", err)
			}
			if n >= maxOpen {
				return core.Errorf(core.KindQuota, "%d alarms are open already (the limit)", n)
			}
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO alarms (id, thing, type, severity, status, details, count, created_at, last_at) VALUES (?, ?, ?, ?, 'active', ?, 1, ?, ?)`,
			a.ID, a.Thing, a.Type, a.Severity, rawOrNull(a.Details), toMS(at), toMS(at)); err != nil {
			return internal("raise alarm", err)
		}
		created = true
		out, err = getAlarm(ctx, tx, a.ID)
		return err
	}()
	return out, created, err
}

// Apply applies alarm changes in one transaction; see store.AlarmStore.
func (as *alarmStore) Apply(ctx context.Context, ops []store.AlarmOp, maxOpen int) ([]store.AlarmResult, error) {
	res := make([]store.AlarmResult, len(ops))
	if len(ops) == 0 {
		return res, nil
	}
	err := as.s.inTx(ctx, func(tx *sql.Tx) error {
		for i, op := range ops {
			r := &res[i]
			if op.Raise != nil {
				if r.Err = checkRaise(*op.Raise); r.Err != nil {
					continue
				}
				r.Alarm, r.Created, r.Err = raiseTx(ctx, tx, *op.Raise, maxOpen)
			} else {
				var open store.Alarm
				open, r.Err = getOne(tx.QueryRowContext(ctx, alarmSelect+` WHERE thing = ? AND type = ? AND status <> 'cleared'`, op.Thing, op.Type), scanAlarm, "alarm", op.Type)
				if r.Err != nil {
					continue
				}
				r.Alarm, r.Err = transitionTx(ctx, tx, open.ID, []string{store.AlarmActive, store.AlarmAcknowledged}, `status = 'cleared', cleared_at = ?`, op.At)
			}
			if r.Err != nil && core.KindOf(r.Err) == core.KindInternal {
				return r.Err // a store failure: the transaction is not to be trusted
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

// Get returns an alarm by id.
func (as *alarmStore) Get(ctx context.Context, id string) (store.Alarm, error) {
	return getAlarm(ctx, as.s.r, id)
}

// Open returns the open alarm of a type of a thing.
func (as *alarmStore) Open(ctx context.Context, thing, typ string) (store.Alarm, error) {
	return getOne(as.s.r.QueryRowContext(ctx, alarmSelect+` WHERE thing = ? AND type = ? AND status <> 'cleared'`, thing, typ), scanAlarm, "alarm", typ)
}

// List returns alarms newest first.
func (as *alarmStore) List(ctx context.Context, f store.AlarmFilter) ([]store.Alarm, error) {
	var (
		where = []string{"1 = 1"}
		args  []any
	)
	switch f.Status {
	case "":
	case "open":
		where = append(where, "status <> 'cleared'")
	default:
		where = append(where, "status = ?")
		args = append(args, f.Status)
	}
	if f.Thing != "" {
		where = append(where, "thing = ?")
		args = append(args, f.Thing)
	}
	if f.Severity != "" {
		where = append(where, "severity = ?")
		args = append(args, f.Severity)
	}
	if f.Type != "" {
		where = append(where, "type = ?")
		args = append(args, f.Type)
	}
	if f.Before != "" {
		where = append(where, "seq < coalesce((SELECT seq FROM alarms WHERE id = ?), 0)")
		args = append(args, f.Before)
	}
	args = append(args, normLimit(f.Limit))
	return queryAlarms(ctx, as.s.r, alarmSelect+` WHERE `+strings.Join(where, " AND ")+` ORDER BY seq DESC LIMIT ?`, args...)
}

func (as *alarmStore) transition(ctx context.Context, id string, from []string, set string, at time.Time) (store.Alarm, error) {
	var out store.Alarm
	err := as.s.inTx(ctx, func(tx *sql.Tx) error {
		var err error
		out, err = transitionTx(ctx, tx, id, from, set, at)
		return err
	})
	return out, err
}

func transitionTx(ctx context.Context, tx *sql.Tx, id string, from []string, set string, at time.Time) (store.Alarm, error) {
	a, err := getAlarm(ctx, tx, id)
	if err != nil {
		return a, err
	}
	ok := false
	for _, s := range from {
		ok = ok || s == a.Status
	}
	if !ok {
		return a, core.Conflict("alarm %q is %s", id, a.Status)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE alarms SET `+set+` WHERE id = ?`, toMS(orNow(at)), id); err != nil {
		return a, internal("update alarm", err)
	}
	return getAlarm(ctx, tx, id)
}

// Ack acknowledges an active alarm.
func (as *alarmStore) Ack(ctx context.Context, id string, at time.Time) (store.Alarm, error) {
	return as.transition(ctx, id, []string{store.AlarmActive}, `status = 'acknowledged', acked_at = ?`, at)
}

// Clear clears an open alarm.
func (as *alarmStore) Clear(ctx context.Context, id string, at time.Time) (store.Alarm, error) {
	return as.transition(ctx, id, []string{store.AlarmActive, store.AlarmAcknowledged}, `status = 'cleared', cleared_at = ?`, at)
}

// CountOpen returns how many alarms are open.
func (as *alarmStore) CountOpen(ctx context.Context) (int, error) {
	var n int
	if err := as.s.r.QueryRowContext(ctx, `SELECT count(*) FROM alarms WHERE status <> 'cleared'`).Scan(&n); err != nil {
		return 0, internal("count alarms", err)
	}
	return n, nil
}

type analyticsStore struct{ s *Store }

const analyticsRuleSelect = `SELECT name, kind, thing_type, grp, config, enabled, created_at, updated_at FROM analytics_rules`

func scanAnalyticsRule(row scanner) (store.AnalyticsRule, error) {
	var (
		r                store.AnalyticsRule
		typ, grp         sql.NullString
		config           string
		enabled          int64
		created, updated int64
	)
	if err := row.Scan(&r.Name, &r.Kind, &typ, &grp, &config, &enabled, &created, &updated); err != nil {
		return store.AnalyticsRule{}, err
	}
	r.ThingType, r.Group = typ.String, grp.String
	r.Config = json.RawMessage(config)
	r.Enabled = enabled != 0
	r.CreatedAt, r.UpdatedAt = fromMS(created), fromMS(updated)
	return r, nil
}

func getAnalyticsRule(ctx context.Context, q querier, name string) (store.AnalyticsRule, error) {
	return getOne(q.QueryRowContext(ctx, analyticsRuleSelect+` WHERE name = ?`, name), scanAnalyticsRule, "analytics rule", name)
}

func configText(b json.RawMessage) string {
	if len(b) == 0 {
		return "{}"
	}
	return string(b)
}

// CreateRule stores a new analytics rule; a duplicate name is a conflict.
func (an *analyticsStore) CreateRule(ctx context.Context, r store.AnalyticsRule) (store.AnalyticsRule, error) {
	if err := requireName("name", r.Name); err != nil {
		return store.AnalyticsRule{}, err
	}
	if err := requireName("kind", r.Kind); err != nil {
		return store.AnalyticsRule{}, err
	}
	created, updated := createdUpdated(r.CreatedAt, r.UpdatedAt)
	var out store.AnalyticsRule
	err := an.s.inTx(ctx, func(tx *sql.Tx) error {
		dup, err := exists(ctx, tx, `SELECT 1 FROM analytics_rules WHERE name = ?`, r.Name)
		if err != nil {
			return err
		}
		if dup {
			return core.Conflict("analytics rule %q already exists", r.Name)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO analytics_rules (name, kind, thing_type, grp, config, enabled, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
			r.Name, r.Kind, nullString(r.ThingType), nullString(r.Group), configText(r.Config), boolInt(r.Enabled), toMS(created), toMS(updated)); err != nil {
			return internal("create analytics rule", err)
		}
		out, err = getAnalyticsRule(ctx, tx, r.Name)
		return err
	})
	return out, err
}

// GetRule returns an analytics rule.
func (an *analyticsStore) GetRule(ctx context.Context, name string) (store.AnalyticsRule, error) {
	return getAnalyticsRule(ctx, an.s.r, name)
}

// ListRules returns analytics rules by name after the cursor.
func (an *analyticsStore) ListRules(ctx context.Context, after string, limit int) ([]store.AnalyticsRule, error) {
	rows, err := an.s.r.QueryContext(ctx, analyticsRuleSelect+` WHERE name > ? ORDER BY name LIMIT ?`, after, normLimit(limit))
	if err != nil {
		return nil, internal("list analytics rules", err)
	}
	defer rows.Close()
	list := []store.AnalyticsRule{}
	for rows.Next() {
		r, err := scanAnalyticsRule(rows)
		if err != nil {
			return nil, internal("list analytics rules", err)
		}
		list = append(list, r)
	}
	if err := rows.Err(); err != nil {
		return nil, internal("list analytics rules", err)
	}
	return list, nil
}

// UpdateRule replaces a rule's configuration.
func (an *analyticsStore) UpdateRule(ctx context.Context, r store.AnalyticsRule) (store.AnalyticsRule, error) {
	var out store.AnalyticsRule
	err := an.s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE analytics_rules SET kind = ?, thing_type = ?, grp = ?, config = ?, enabled = ?, updated_at = ? WHERE name = ?`,
			r.Kind, nullString(r.ThingType), nullString(r.Group), configText(r.Config), boolInt(r.Enabled), toMS(now()), r.Name)
		if err != nil {
			return internal("update analytics rule", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return core.NotFound("analytics rule", r.Name)
		}
		out, err = getAnalyticsRule(ctx, tx, r.Name)
		return err
	})
	return out, err
}

// DeleteRule deletes a rule and its states.
func (an *analyticsStore) DeleteRule(ctx context.Context, name string) error {
	return an.s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM analytics_rules WHERE name = ?`, name)
		if err != nil {
			return internal("delete analytics rule", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return core.NotFound("analytics rule", name)
		}
		return nil
	})
}

// PutStates stores or deletes detector states; those of a missing rule
// or thing are skipped.
func (an *analyticsStore) PutStates(ctx context.Context, batch []store.DetectorState) error {
	if len(batch) == 0 {
		return nil
	}
	return an.s.inTx(ctx, func(tx *sql.Tx) error {
		for _, st := range batch {
			var err error
			if st.State == nil {
				_, err = tx.ExecContext(ctx, `DELETE FROM detector_states WHERE rule = ? AND thing = ?`, st.Rule, st.Thing)
			} else {
				_, err = tx.ExecContext(ctx, `INSERT INTO detector_states (rule, thing, state, updated_at)
					SELECT ?1, ?2, ?3, ?4 WHERE EXISTS (SELECT 1 FROM analytics_rules WHERE name = ?1) AND EXISTS (SELECT 1 FROM things WHERE name = ?2)
					ON CONFLICT (rule, thing) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at`,
					st.Rule, st.Thing, st.State, toMS(orNow(st.UpdatedAt)))
			}
			if err != nil {
				return internal("put detector states", err)
			}
		}
		return nil
	})
}

// States returns every saved detector state.
func (an *analyticsStore) States(ctx context.Context) ([]store.DetectorState, error) {
	rows, err := an.s.r.QueryContext(ctx, `SELECT rule, thing, state, updated_at FROM detector_states ORDER BY rule, thing`)
	if err != nil {
		return nil, internal("list detector states", err)
	}
	defer rows.Close()
	list := []store.DetectorState{}
	for rows.Next() {
		var (
			st store.DetectorState
			at int64
		)
		if err := rows.Scan(&st.Rule, &st.Thing, &st.State, &at); err != nil {
			return nil, internal("list detector states", err)
		}
		st.UpdatedAt = fromMS(at)
		list = append(list, st)
	}
	if err := rows.Err(); err != nil {
		return nil, internal("list detector states", err)
	}
	return list, nil
}
