package postgres

import (
	"cmp"
	"context"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/telemetry"
)

// seriesRef is what a query needs of a series.
type seriesRef struct {
	id         int64
	thing, key string
}

func compareRef(a, b seriesRef) int {
	if c := cmp.Compare(a.thing, b.thing); c != 0 {
		return c
	}
	return cmp.Compare(a.key, b.key)
}

// selectSeries returns the series of the given things and keys (all keys
// if keys is empty) ordered by (thing, key). It asks the database, not the
// cache: another node may have made series this one has not seen.
func (s *Store) selectSeries(ctx context.Context, things, keys []string) ([]seriesRef, error) {
	q := `SELECT id, thing, key FROM telemetry_series WHERE thing = ANY($1)`
	args := []any{things}
	if len(keys) > 0 {
		q += ` AND key = ANY($2)`
		args = append(args, byteKeys(keys))
	}
	rows, err := s.pool.Query(ctx, q+` ORDER BY thing, key`, args...)
	if err != nil {
		return nil, fmt.Errorf("telemetry postgres: select series: %w", err)
	}
	refs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (seriesRef, error) {
		var (
			r   seriesRef
			key []byte
		)
		err := row.Scan(&r.id, &r.thing, &key)
		r.key = string(key)
		return r, err
	})
	if err != nil {
		return nil, fmt.Errorf("telemetry postgres: select series: %w", err)
	}
	return refs, nil
}

// rangeSQL reads the points of one series after the position ($2, $3) and
// before $4, in key order. ts >= $2 is implied by the row comparison but
// lets the planner prune partitions.
const rangeSQL = `SELECT ts, n, kind, num, str FROM telemetry_points
WHERE series = $1 AND ts >= $2 AND (ts, n) > ($2, $3) AND ts < $4
ORDER BY ts, n LIMIT $5`

// Range implements telemetry.Store.
func (s *Store) Range(ctx context.Context, q telemetry.RangeQuery) ([]telemetry.Point, string, error) {
	if err := q.Validate(); err != nil {
		return nil, "", err
	}
	refs, err := s.selectSeries(ctx, q.Things, q.Keys)
	if err != nil {
		return nil, "", err
	}
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
		rows, err := s.pool.Query(ctx, rangeSQL, ref.id, afterTS, afterN, q.To, need)
		if err != nil {
			return nil, "", fmt.Errorf("telemetry postgres: range: %w", err)
		}
		for rows.Next() {
			var (
				ts, n int64
				kind  int16
				num   *float64
				str   []byte
			)
			if err := rows.Scan(&ts, &n, &kind, &num, &str); err != nil {
				rows.Close()
				return nil, "", fmt.Errorf("telemetry postgres: range: %w", err)
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
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, "", fmt.Errorf("telemetry postgres: range: %w", err)
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

// Latest implements telemetry.Store: one statement, one backwards index
// probe per series (the partitions are scanned newest first).
func (s *Store) Latest(ctx context.Context, things, keys []string) ([]telemetry.Point, error) {
	if err := telemetry.ValidateSelection(things, keys); err != nil {
		return nil, err
	}
	q := `SELECT s.thing, s.key, p.ts, p.kind, p.num, p.str FROM telemetry_series s
	CROSS JOIN LATERAL (SELECT ts, kind, num, str FROM telemetry_points
		WHERE series = s.id ORDER BY ts DESC, n DESC LIMIT 1) p
	WHERE s.thing = ANY($1)`
	args := []any{things}
	if len(keys) > 0 {
		q += ` AND s.key = ANY($2)`
		args = append(args, byteKeys(keys))
	}
	rows, err := s.pool.Query(ctx, q+` ORDER BY s.thing, s.key`, args...)
	if err != nil {
		return nil, fmt.Errorf("telemetry postgres: latest: %w", err)
	}
	defer rows.Close()
	out := []telemetry.Point{}
	for rows.Next() {
		var (
			p    telemetry.Point
			key  []byte
			kind int16
			num  *float64
			str  []byte
		)
		if err := rows.Scan(&p.Thing, &key, &p.TS, &kind, &num, &str); err != nil {
			return nil, fmt.Errorf("telemetry postgres: latest: %w", err)
		}
		p.Key = string(key)
		if p.Value, err = value(kind, num, str); err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("telemetry postgres: latest: %w", err)
	}
	return out, nil
}

// aggSQL returns the query of f over the series $1: $2 interval, $3 from,
// $4 to; rows of (series, bucket number, value).
func aggSQL(f telemetry.AggFunc) string {
	const where = `WHERE series = ANY($1) AND ts >= $3 AND ts < $4`
	switch f {
	case telemetry.AggCount:
		return `SELECT series, ts / $2 AS b, count(*)::double precision FROM telemetry_points ` + where + ` GROUP BY series, b`
	case telemetry.AggFirst:
		return `SELECT DISTINCT ON (series, b) series, ts / $2 AS b, num FROM telemetry_points ` + where +
			` AND num IS NOT NULL ORDER BY series, b, ts, n`
	case telemetry.AggLast:
		return `SELECT DISTINCT ON (series, b) series, ts / $2 AS b, num FROM telemetry_points ` + where +
			` AND num IS NOT NULL ORDER BY series, b, ts DESC, n DESC`
	}
	// min, max, avg, sum: SQL's own, over the numbers (num is NULL for the rest).
	return fmt.Sprintf(`SELECT series, ts / $2 AS b, %s(num) FROM telemetry_points %s AND num IS NOT NULL GROUP BY series, b`,
		string(f), where)
}

// Aggregate implements telemetry.Store.
func (s *Store) Aggregate(ctx context.Context, q telemetry.AggQuery) ([]telemetry.Bucket, error) {
	if err := q.Validate(); err != nil {
		return nil, err
	}
	iv := q.Interval.Milliseconds()
	from, to := max(q.From, 0), min(q.To, telemetry.MaxTS+1)
	out := []telemetry.Bucket{}
	if from >= to {
		return out, nil
	}
	refs, err := s.selectSeries(ctx, q.Things, q.Keys)
	if err != nil || len(refs) == 0 {
		return out, err
	}
	ids := make([]int64, len(refs))
	index := make(map[int64]int, len(refs))
	for i, r := range refs {
		ids[i] = r.id
		index[r.id] = i
	}
	rows, err := s.pool.Query(ctx, aggSQL(q.Func), ids, iv, from, to)
	if err != nil {
		return nil, fmt.Errorf("telemetry postgres: aggregate: %w", err)
	}
	defer rows.Close()
	type row struct {
		ref int
		b   int64
		v   float64
	}
	var got []row
	for rows.Next() {
		var (
			id, b int64
			v     *float64
		)
		if err := rows.Scan(&id, &b, &v); err != nil {
			return nil, fmt.Errorf("telemetry postgres: aggregate: %w", err)
		}
		if v != nil {
			got = append(got, row{index[id], b, *v})
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("telemetry postgres: aggregate: %w", err)
	}
	slices.SortFunc(got, func(a, b row) int {
		if c := cmp.Compare(a.ref, b.ref); c != 0 {
			return c
		}
		return cmp.Compare(a.b, b.b)
	})
	for _, g := range got {
		r := refs[g.ref]
		out = append(out, telemetry.Bucket{Thing: r.thing, Key: r.key, TS: g.b * iv, Value: g.v})
	}
	return out, nil
}

// Keys implements telemetry.Store: the keys of the thing's series that
// still have points.
func (s *Store) Keys(ctx context.Context, thing string) ([]string, error) {
	if err := core.ValidateName("thing", thing); err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, `SELECT key FROM telemetry_series s WHERE thing = $1
		AND EXISTS (SELECT 1 FROM telemetry_points p WHERE p.series = s.id) ORDER BY key`, thing)
	if err != nil {
		return nil, fmt.Errorf("telemetry postgres: keys: %w", err)
	}
	raw, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
	if err != nil {
		return nil, fmt.Errorf("telemetry postgres: keys: %w", err)
	}
	keys := make([]string, len(raw))
	for i, k := range raw {
		keys[i] = string(k)
	}
	return keys, nil
}

// byteKeys converts keys for a bytea parameter.
func byteKeys(keys []string) [][]byte {
	out := make([][]byte, len(keys))
	for i, k := range keys {
		out[i] = []byte(k)
	}
	return out
}
