package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/telemetry"
)

// rangeSQL reads the points of one series after the position (?2, ?3)
// and before ?4, in key order: one index range.
const rangeSQL = `SELECT ts, n, kind, num, str FROM points
WHERE series = ?1 AND (ts, n) > (?2, ?3) AND ts < ?4
ORDER BY ts, n LIMIT ?5`

// latestSQL reads the last point of one series.
const latestSQL = `SELECT ts, kind, num, str FROM points WHERE series = ? ORDER BY ts DESC, n DESC LIMIT 1`

// aggSQL returns the query of f over one series: ?1 series, ?2 interval,
// ?3 from, ?4 to; rows of (bucket number, value) in bucket order.
func aggSQL(f telemetry.AggFunc) string {
	switch f {
	case telemetry.AggCount:
		return `SELECT ts / ?2 AS b, count(*) FROM points
WHERE series = ?1 AND ts >= ?3 AND ts < ?4 GROUP BY b ORDER BY b`
	case telemetry.AggFirst, telemetry.AggLast:
		// The buckets that have numbers, then per bucket one seek to its
		// first or last number: exact also among points with the same
		// millisecond (ordered by n).
		order := "ts, n"
		if f == telemetry.AggLast {
			order = "ts DESC, n DESC"
		}
		return `SELECT b, (SELECT num FROM points
		WHERE series = ?1 AND ts >= max(b * ?2, ?3) AND ts < min(b * ?2 + ?2, ?4) AND num IS NOT NULL
		ORDER BY ` + order + ` LIMIT 1)
FROM (SELECT DISTINCT ts / ?2 AS b FROM points WHERE series = ?1 AND ts >= ?3 AND ts < ?4 AND num IS NOT NULL)
ORDER BY b`
	}
	// min, max, avg, sum: SQL's own, over the numbers (num is NULL for the rest).
	return fmt.Sprintf(`SELECT ts / ?2 AS b, %s(num) FROM points
WHERE series = ?1 AND ts >= ?3 AND ts < ?4 AND num IS NOT NULL GROUP BY b ORDER BY b`, string(f))
}

// value reads the value columns of a point.
func value(kind int64, num sql.NullFloat64, str sql.NullString) (telemetry.Value, error) {
	switch kind {
	case kindNumber:
		if num.Valid {
			return telemetry.Number(num.Float64), nil
		}
	case kindTrue:
		return telemetry.Bool(true), nil
	case kindFalse:
		return telemetry.Bool(false), nil
	case kindString:
		if str.Valid {
			return telemetry.String(str.String), nil
		}
	}
	return telemetry.Value{}, fmt.Errorf("telemetry sqlite: corrupt point (kind %d)", kind)
}

// Range implements telemetry.Store.
func (s *Store) Range(ctx context.Context, q telemetry.RangeQuery) ([]telemetry.Point, string, error) {
	if err := q.Validate(); err != nil {
		return nil, "", err
	}
	refs := s.cache.selectSeries(q.Things, q.Keys)
	var (
		cur   telemetry.Cursor
		start int
	)
	if q.Cursor != "" {
		cur, _ = telemetry.DecodeCursor(q.Cursor) // Validate checked it
		start, _ = slices.BinarySearchFunc(refs, seriesRef{thing: cur.Thing, key: cur.Key}, compareRef)
	}
	out := make([]telemetry.Point, 0, min(q.Limit+1, 1024))
	var lastN int64 // n of out[q.Limit-1]
	for _, ref := range refs[start:] {
		afterTS, afterN := q.From, int64(-1) // ts >= From
		if q.Cursor != "" && ref.thing == cur.Thing && ref.key == cur.Key &&
			(cur.TS > afterTS || cur.TS == afterTS && cur.Tie > afterN) {
			afterTS, afterN = cur.TS, cur.Tie
		}
		// One more than the page holds, to know whether there is a next page.
		need := q.Limit + 1 - len(out)
		rows, err := s.rangeStmt.QueryContext(ctx, ref.id, afterTS, afterN, q.To, need)
		if err != nil {
			return nil, "", fmt.Errorf("telemetry sqlite: range: %w", err)
		}
		for rows.Next() {
			var (
				ts, n, kind int64
				num         sql.NullFloat64
				str         sql.NullString
			)
			if err := rows.Scan(&ts, &n, &kind, &num, &str); err != nil {
				rows.Close()
				return nil, "", fmt.Errorf("telemetry sqlite: range: %w", err)
			}
			v, err := value(kind, num, str)
			if err != nil {
				rows.Close()
				return nil, "", err
			}
			if len(out) == q.Limit-1 {
				lastN = n
			}
			out = append(out, telemetry.Point{Thing: ref.thing, Key: ref.key, TS: ts, Value: v})
		}
		if err := rows.Close(); err != nil {
			return nil, "", fmt.Errorf("telemetry sqlite: range: %w", err)
		}
		if err := rows.Err(); err != nil {
			return nil, "", fmt.Errorf("telemetry sqlite: range: %w", err)
		}
		if len(out) > q.Limit {
			break
		}
	}
	if len(out) <= q.Limit {
		return out, "", nil
	}
	last := out[q.Limit-1]
	next := telemetry.Cursor{Thing: last.Thing, Key: last.Key, TS: last.TS, Tie: lastN}.Encode()
	return out[:q.Limit], next, nil
}

// Latest implements telemetry.Store.
func (s *Store) Latest(ctx context.Context, things, keys []string) ([]telemetry.Point, error) {
	if err := telemetry.ValidateSelection(things, keys); err != nil {
		return nil, err
	}
	refs := s.cache.selectSeries(things, keys)
	out := make([]telemetry.Point, 0, len(refs))
	for _, ref := range refs {
		var (
			ts, kind int64
			num      sql.NullFloat64
			str      sql.NullString
		)
		err := s.latestStmt.QueryRowContext(ctx, ref.id).Scan(&ts, &kind, &num, &str)
		if errors.Is(err, sql.ErrNoRows) {
			continue // deleted by retention meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("telemetry sqlite: latest: %w", err)
		}
		v, err := value(kind, num, str)
		if err != nil {
			return nil, err
		}
		out = append(out, telemetry.Point{Thing: ref.thing, Key: ref.key, TS: ts, Value: v})
	}
	return out, nil
}

// Aggregate implements telemetry.Store.
func (s *Store) Aggregate(ctx context.Context, q telemetry.AggQuery) ([]telemetry.Bucket, error) {
	if err := q.Validate(); err != nil {
		return nil, err
	}
	iv := q.Interval.Milliseconds()
	// Points have 0 <= ts <= MaxTS; clamping keeps b * iv in range.
	from, to := max(q.From, 0), min(q.To, telemetry.MaxTS+1)
	if from >= to {
		return []telemetry.Bucket{}, nil
	}
	stmt := s.aggStmts[q.Func]
	var out []telemetry.Bucket
	for _, ref := range s.cache.selectSeries(q.Things, q.Keys) {
		rows, err := stmt.QueryContext(ctx, ref.id, iv, from, to)
		if err != nil {
			return nil, fmt.Errorf("telemetry sqlite: aggregate: %w", err)
		}
		for rows.Next() {
			var (
				b int64
				v sql.NullFloat64
			)
			if err := rows.Scan(&b, &v); err != nil {
				rows.Close()
				return nil, fmt.Errorf("telemetry sqlite: aggregate: %w", err)
			}
			if !v.Valid {
				continue
			}
			out = append(out, telemetry.Bucket{Thing: ref.thing, Key: ref.key, TS: b * iv, Value: v.Float64})
		}
		if err := rows.Close(); err != nil {
			return nil, fmt.Errorf("telemetry sqlite: aggregate: %w", err)
		}
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("telemetry sqlite: aggregate: %w", err)
		}
	}
	if out == nil {
		out = []telemetry.Bucket{}
	}
	return out, nil
}

// Keys implements telemetry.Store.
func (s *Store) Keys(ctx context.Context, thing string) ([]string, error) {
	if err := core.ValidateName("thing", thing); err != nil {
		return nil, err
	}
	return s.cache.keys(thing), nil
}

// Retention deletes in transactions of at most deleteSeriesPerTx series
// and about deletePointsPerTx points, so that appends can go on in
// between; one DELETE removes about deleteStep points. Variables for the
// tests.
var (
	deleteSeriesPerTx       = 256
	deletePointsPerTx int64 = 20000
	deleteStep        int64 = 10000
)

// deletePointsSQL deletes the points of series ?1 older than ?2, about ?3
// of them at most (more only if many share the timestamp where it stops).
const deletePointsSQL = `DELETE FROM points WHERE series = ?1 AND ts < ?2 AND ts <= coalesce(
	(SELECT ts FROM points WHERE series = ?1 AND ts < ?2 ORDER BY ts LIMIT 1 OFFSET ?3 - 1), ?2)`

// DeleteBefore implements telemetry.Store. It works through the series in
// many short transactions; if it fails, what it deleted so far stays
// deleted.
func (s *Store) DeleteBefore(ctx context.Context, t int64) (int64, error) {
	list := s.cache.all()
	var (
		total int64
		carry bool
	)
	for len(list) > 0 {
		n, err := s.deleteSome(ctx, &list, &carry, t)
		total += n
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// deleteSome runs one retention transaction over the first series of
// *list and removes those it finished from *list. *carry tells whether
// the first series was begun in an earlier transaction (and so may have
// lost points already).
func (s *Store) deleteSome(ctx context.Context, list *[]*series, carry *bool, t int64) (deleted int64, err error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.closed {
		return 0, errClosed
	}
	ectx := context.WithoutCancel(ctx)
	if _, err := s.stmts.begin.ExecContext(ectx); err != nil {
		return 0, fmt.Errorf("telemetry sqlite: begin: %w", err)
	}
	var gone []*series
	todo, started := *list, *carry
	err = func() error {
		for i := 0; len(todo) > 0 && i < deleteSeriesPerTx && deleted < deletePointsPerTx; i++ {
			sr := todo[0]
			if s.cache.byThing[sr.thing][sr.key] != sr {
				todo, started = todo[1:], false // removed meanwhile
				continue
			}
			res, err := s.stmts.deletePoints.ExecContext(ectx, sr.id, t, deleteStep)
			if err != nil {
				return fmt.Errorf("telemetry sqlite: delete points: %w", err)
			}
			n, _ := res.RowsAffected()
			deleted += n
			if n >= deleteStep {
				started = true
				continue // maybe more of this series
			}
			todo = todo[1:]
			if n == 0 && !started {
				continue
			}
			started = false
			// Remove the series if that was its last point.
			res, err = s.stmts.deleteSeries.ExecContext(ectx, sr.id)
			if err != nil {
				return fmt.Errorf("telemetry sqlite: delete series: %w", err)
			}
			if m, _ := res.RowsAffected(); m == 1 {
				gone = append(gone, sr)
			}
		}
		if _, err := s.stmts.commit.ExecContext(ectx); err != nil {
			return fmt.Errorf("telemetry sqlite: commit: %w", err)
		}
		return nil
	}()
	if err != nil {
		_, _ = s.stmts.rollback.ExecContext(ectx)
		return 0, err
	}
	*list, *carry = todo, started
	if len(gone) > 0 {
		s.cache.mu.Lock()
		for _, sr := range gone {
			s.cache.remove(sr)
		}
		s.cache.mu.Unlock()
	}
	return deleted, nil
}
