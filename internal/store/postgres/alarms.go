package postgres

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/store"
)

type alarmStore struct{ s *Store }

const alarmColumns = `id, thing, type, severity, status, details, count, created_at, last_at, acked_at, cleared_at`

const alarmSelect = `SELECT ` + alarmColumns + ` FROM alarms`

func scanAlarm(row scanner) (store.Alarm, error) {
	var (
		a              store.Alarm
		details        *string
		created, last  time.Time
		acked, cleared *time.Time
	)
	if err := row.Scan(&a.ID, &a.Thing, &a.Type, &a.Severity, &a.Status, &details, &a.Count, &created, &last, &acked, &cleared); err != nil {
		return store.Alarm{}, err
	}
	if details != nil {
		a.Details = json.RawMessage(*details)
	}
	a.CreatedAt, a.LastAt = created.UTC(), last.UTC()
	a.AckedAt, a.ClearedAt = utcPtr(acked), utcPtr(cleared)
	return a, nil
}

func getAlarm(ctx context.Context, q querier, id string, lock bool) (store.Alarm, error) {
	query := alarmSelect + ` WHERE id = $1`
	if lock {
		query += ` FOR UPDATE`
	}
	return getOne(q.QueryRow(ctx, query, id), scanAlarm, "alarm", id)
}

// Raise records an occurrence of an alarm; see store.AlarmStore. The
// thing's row is locked (FOR UPDATE) while its open alarm is looked up,
// so two nodes raising the same alarm bump one row.
func (as *alarmStore) Raise(ctx context.Context, a store.Alarm, maxOpen int) (store.Alarm, bool, error) {
	if err := checkRaise(a); err != nil {
		return store.Alarm{}, false, err
	}
	var (
		out     store.Alarm
		created bool
	)
	err := as.s.inTx(ctx, func(tx pgx.Tx) error {
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
func raiseTx(ctx context.Context, tx pgx.Tx, a store.Alarm, maxOpen int) (out store.Alarm, created bool, err error) {
	at := orNow(a.LastAt)
	err = func() error {
		ok, err := exists(ctx, tx, `SELECT 1 FROM things WHERE name = $1 FOR UPDATE`, a.Thing)
		if err != nil {
			return err
		}
		if !ok {
			return core.NotFound("thing", a.Thing)
		}
		out, err = getOne(tx.QueryRow(ctx, `UPDATE alarms SET count = count + 1, last_at = greatest(last_at, $1), severity = $2, details = $3
			WHERE thing = $4 AND type = $5 AND status <> 'cleared' RETURNING `+alarmColumns,
			at, a.Severity, rawOrNull(a.Details), a.Thing, a.Type), scanAlarm, "alarm", a.Type)
		switch {
		case err == nil:
			return nil
		case !core.IsNotFound(err):
			return err
		}
		if maxOpen > 0 {
			var n int
			if err := tx.QueryRow(ctx, `SELECT count(*) FROM alarms WHERE status <> 'cleared'`).Scan(&n); err != nil {
				return internal("raise alarm", err)
			}
			if n >= maxOpen {
				return core.Errorf(core.KindQuota, "%d alarms are open already (the limit)", n)
			}
		}
		out, err = getOne(tx.QueryRow(ctx, `INSERT INTO alarms (id, thing, type, severity, status, details, count, created_at, last_at)
			VALUES ($1, $2, $3, $4, 'active', $5, 1, $6, $6) RETURNING `+alarmColumns,
			a.ID, a.Thing, a.Type, a.Severity, rawOrNull(a.Details), at), scanAlarm, "alarm", a.ID)
		created = err == nil
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
	err := as.s.inTx(ctx, func(tx pgx.Tx) error {
		for i, op := range ops {
			r := &res[i]
			if op.Raise != nil {
				if r.Err = checkRaise(*op.Raise); r.Err != nil {
					continue
				}
				r.Alarm, r.Created, r.Err = raiseTx(ctx, tx, *op.Raise, maxOpen)
			} else {
				var open store.Alarm
				open, r.Err = getOne(tx.QueryRow(ctx, alarmSelect+` WHERE thing = $1 AND type = $2 AND status <> 'cleared' FOR UPDATE`, op.Thing, op.Type), scanAlarm, "alarm", op.Type)
				if r.Err != nil {
					continue
				}
				r.Alarm, r.Err = transitionTx(ctx, tx, open.ID, []string{store.AlarmActive, store.AlarmAcknowledged}, `status = 'cleared', cleared_at = $1`, op.At)
			}
			if r.Err != nil && core.KindOf(r.Err) == core.KindInternal {
				return r.Err // a failed statement aborts a PostgreSQL transaction
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
	return getAlarm(ctx, as.s.pool, id, false)
}

// Open returns the open alarm of a type of a thing.
func (as *alarmStore) Open(ctx context.Context, thing, typ string) (store.Alarm, error) {
	return getOne(as.s.pool.QueryRow(ctx, alarmSelect+` WHERE thing = $1 AND type = $2 AND status <> 'cleared'`, thing, typ), scanAlarm, "alarm", typ)
}

// List returns alarms newest first.
func (as *alarmStore) List(ctx context.Context, f store.AlarmFilter) ([]store.Alarm, error) {
	var a args
	where := []string{"true"}
	switch f.Status {
	case "":
	case "open":
		where = append(where, "status <> 'cleared'")
	default:
		where = append(where, "status = "+a.add(f.Status))
	}
	if f.Thing != "" {
		where = append(where, "thing = "+a.add(f.Thing))
	}
	if f.Severity != "" {
		where = append(where, "severity = "+a.add(f.Severity))
	}
	if f.Type != "" {
		where = append(where, "type = "+a.add(f.Type))
	}
	if f.Before != "" {
		where = append(where, "seq < coalesce((SELECT seq FROM alarms WHERE id = "+a.add(f.Before)+"), 0)")
	}
	return queryList(ctx, as.s.pool, "list alarms", scanAlarm,
		alarmSelect+` WHERE `+strings.Join(where, " AND ")+` ORDER BY seq DESC LIMIT `+a.add(normLimit(f.Limit)), a...)
}

func (as *alarmStore) transition(ctx context.Context, id string, from []string, set string, at time.Time) (store.Alarm, error) {
	var out store.Alarm
	err := as.s.inTx(ctx, func(tx pgx.Tx) error {
		var err error
		out, err = transitionTx(ctx, tx, id, from, set, at)
		return err
	})
	return out, err
}

func transitionTx(ctx context.Context, tx pgx.Tx, id string, from []string, set string, at time.Time) (store.Alarm, error) {
	a, err := getAlarm(ctx, tx, id, true)
	if err != nil {
		return a, err
	}
	if !slices.Contains(from, a.Status) {
		return a, core.Conflict("alarm %q is %s", id, a.Status)
	}
	return getOne(tx.QueryRow(ctx, `UPDATE alarms SET `+set+` WHERE id = $2 RETURNING `+alarmColumns, orNow(at), id), scanAlarm, "alarm", id)
}

// Ack acknowledges an active alarm.
func (as *alarmStore) Ack(ctx context.Context, id string, at time.Time) (store.Alarm, error) {
	return as.transition(ctx, id, []string{store.AlarmActive}, `status = 'acknowledged', acked_at = $1`, at)
}

// Clear clears an open alarm.
func (as *alarmStore) Clear(ctx context.Context, id string, at time.Time) (store.Alarm, error) {
	return as.transition(ctx, id, []string{store.AlarmActive, store.AlarmAcknowledged}, `status = 'cleared', cleared_at = $1`, at)
}

// CountOpen returns how many alarms are open.
func (as *alarmStore) CountOpen(ctx context.Context) (int, error) {
	var n int
	if err := as.s.pool.QueryRow(ctx, `SELECT count(*) FROM alarms WHERE status <> 'cleared'`).Scan(&n); err != nil {
		return 0, internal("count alarms", err)
	}
	return n, nil
}

type analyticsStore struct{ s *Store }

const analyticsRuleColumns = `name, kind, thing_type, grp, config, enabled, created_at, updated_at`

func scanAnalyticsRule(row scanner) (store.AnalyticsRule, error) {
	var (
		r                store.AnalyticsRule
		typ, grp         *string
		config           string
		created, updated time.Time
	)
	if err := row.Scan(&r.Name, &r.Kind, &typ, &grp, &config, &r.Enabled, &created, &updated); err != nil {
		return store.AnalyticsRule{}, err
	}
	if typ != nil {
		r.ThingType = *typ
	}
	if grp != nil {
		r.Group = *grp
	}
	r.Config = json.RawMessage(config)
	r.CreatedAt, r.UpdatedAt = created.UTC(), updated.UTC()
	return r, nil
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
	out, err := getOne(an.s.pool.QueryRow(ctx, `INSERT INTO analytics_rules (`+analyticsRuleColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (name) DO NOTHING RETURNING `+analyticsRuleColumns,
		r.Name, r.Kind, nullString(r.ThingType), nullString(r.Group), configText(r.Config), r.Enabled, created, updated),
		scanAnalyticsRule, "analytics rule", r.Name)
	if core.IsNotFound(err) {
		return store.AnalyticsRule{}, core.Conflict("analytics rule %q already exists", r.Name)
	}
	return out, err
}

// GetRule returns an analytics rule.
func (an *analyticsStore) GetRule(ctx context.Context, name string) (store.AnalyticsRule, error) {
	return getOne(an.s.pool.QueryRow(ctx, `SELECT `+analyticsRuleColumns+` FROM analytics_rules WHERE name = $1`, name),
		scanAnalyticsRule, "analytics rule", name)
}

// ListRules returns analytics rules by name after the cursor.
func (an *analyticsStore) ListRules(ctx context.Context, after string, limit int) ([]store.AnalyticsRule, error) {
	return queryList(ctx, an.s.pool, "list analytics rules", scanAnalyticsRule,
		`SELECT `+analyticsRuleColumns+` FROM analytics_rules WHERE name > $1 ORDER BY name LIMIT $2`, after, normLimit(limit))
}

// UpdateRule replaces a rule's configuration.
func (an *analyticsStore) UpdateRule(ctx context.Context, r store.AnalyticsRule) (store.AnalyticsRule, error) {
	return getOne(an.s.pool.QueryRow(ctx, `UPDATE analytics_rules SET kind = $1, thing_type = $2, grp = $3, config = $4, enabled = $5, updated_at = $6
		WHERE name = $7 RETURNING `+analyticsRuleColumns,
		r.Kind, nullString(r.ThingType), nullString(r.Group), configText(r.Config), r.Enabled, now(), r.Name),
		scanAnalyticsRule, "analytics rule", r.Name)
}

// DeleteRule deletes a rule and its states.
func (an *analyticsStore) DeleteRule(ctx context.Context, name string) error {
	tag, err := an.s.pool.Exec(ctx, `DELETE FROM analytics_rules WHERE name = $1`, name)
	return affected(tag, err, "delete analytics rule", "analytics rule", name)
}

// PutStates stores or deletes detector states; those of a missing rule
// or thing are skipped.
func (an *analyticsStore) PutStates(ctx context.Context, batch []store.DetectorState) error {
	if len(batch) == 0 {
		return nil
	}
	return an.s.inTx(ctx, func(tx pgx.Tx) error {
		for _, st := range batch {
			var err error
			if st.State == nil {
				_, err = tx.Exec(ctx, `DELETE FROM detector_states WHERE rule = $1 AND thing = $2`, st.Rule, st.Thing)
			} else {
				_, err = tx.Exec(ctx, `INSERT INTO detector_states (rule, thing, state, updated_at)
					SELECT $1, $2, $3, $4 WHERE EXISTS (SELECT 1 FROM analytics_rules WHERE name = $1 FOR KEY SHARE)
					AND EXISTS (SELECT 1 FROM things WHERE name = $2 FOR KEY SHARE)
					ON CONFLICT (rule, thing) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at`,
					st.Rule, st.Thing, st.State, orNow(st.UpdatedAt))
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
	return queryList(ctx, an.s.pool, "list detector states", func(row scanner) (store.DetectorState, error) {
		var st store.DetectorState
		err := row.Scan(&st.Rule, &st.Thing, &st.State, &st.UpdatedAt)
		st.UpdatedAt = st.UpdatedAt.UTC()
		return st, err
	}, `SELECT rule, thing, state, updated_at FROM detector_states ORDER BY rule, thing`)
}
