package sqlite

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"slices"
	"strings"

	"github.com/moteiot/mote/internal/telemetry"
)

// Multi-row INSERTs have 1<<k rows for k = 0..maxInsertLog.
const maxInsertLog = 8

const (
	maxInsertRows = 1 << maxInsertLog
	colsPerRow    = 6
)

// uniqueBase is where state.next_n starts: tie breakers from the counter
// are never below it, those counted per timestamp never reach it.
const uniqueBase = 1 << 32

// Values of points.kind.
const (
	kindNumber = 0
	kindTrue   = 1
	kindFalse  = 2
	kindString = 3
)

// maxIntReal bounds the numbers bound as integers: SQLite stores an
// integer in a REAL column compactly if it fits in 6 bytes.
const maxIntReal = 1 << 47

func insertSQL(rows int) string {
	var b strings.Builder
	b.WriteString(`INSERT OR ROLLBACK INTO points (series, ts, n, kind, num, str) VALUES `)
	for i := range rows {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`(?,?,?,?,?,?)`)
	}
	return b.String()
}

// row is one point on its way into the database.
type row struct {
	id, ts, n int64 // series id, the primary key
	v         telemetry.Value
	grp       int // the series' place among those of the Append
}

// undoEntry restores a series' writer state when a transaction fails.
type undoEntry struct {
	sr            *series
	lastTS, lastN int64
}

type seriesKey struct{ thing, key string }

// writeState is the scratch space of Append, reused from call to call.
type writeState struct {
	gen    uint64 // number of the current Append, for series.touched
	rows   []row  // in arrival order
	sorted []row  // in insertion order
	counts []int  // rows per series of the Append, by row.grp
	undo   []undoEntry
	fresh  map[seriesKey]*series // series created by the current Append
	args   []any
}

// Append implements telemetry.Store.
func (s *Store) Append(ctx context.Context, points []telemetry.Point, seq uint64) error {
	if err := telemetry.ValidatePoints(points); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return s.appendLocked(ctx, points, seq)
}

// AppendSpans implements telemetry.SpanAppender: under the write lock
// (SQLite has one writer), the points of the messages at or below the
// replay point are left out and the rest stored as one Append.
func (s *Store) AppendSpans(ctx context.Context, points []telemetry.Point, spans []telemetry.Span) error {
	if err := telemetry.ValidatePoints(points); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	last := s.lastSeq.Load()
	kept, seq, err := telemetry.Unstored(points, spans, last)
	if err != nil {
		return err
	}
	if seq <= last {
		seq = 0 // never back; the points of seq 0 are still stored
	}
	return s.appendLocked(ctx, kept, seq)
}

// appendLocked is Append with s.wmu held.
func (s *Store) appendLocked(ctx context.Context, points []telemetry.Point, seq uint64) error {
	if s.closed {
		return errClosed
	}
	if seq != 0 && seq <= s.lastSeq.Load() {
		return nil // stored before
	}
	if len(points) == 0 && seq == 0 {
		return nil
	}
	st := &s.w2
	st.gen++
	st.rows = st.rows[:0]
	st.counts = st.counts[:0]
	st.undo = st.undo[:0]
	if st.fresh == nil {
		st.fresh = make(map[seriesKey]*series)
	}
	clear(st.fresh)

	// The statements inside the transaction do not watch ctx (which costs
	// a goroutine per statement in the driver); ctx is checked between
	// them instead.
	ectx := context.WithoutCancel(ctx)
	if _, err := s.stmts.begin.ExecContext(ectx); err != nil {
		return fmt.Errorf("telemetry sqlite: begin: %w", err)
	}
	nextN, err := s.appendTx(ctx, ectx, points)
	if err == nil {
		newSeq := s.lastSeq.Load()
		if seq != 0 {
			newSeq = seq
		}
		stateSeq := newSeq
		if s.journal != "" {
			stateSeq = s.stateSeq // the unnamed journal's point stays
		}
		if _, err = s.stmts.setState.ExecContext(ectx, int64(stateSeq), nextN); err != nil {
			err = fmt.Errorf("telemetry sqlite: update state: %w", err)
		}
		if err == nil && s.journal != "" && seq != 0 {
			if _, err = s.wc.ExecContext(ectx, `UPDATE journals SET last_seq = ? WHERE journal = ?`, int64(seq), s.journal); err != nil {
				err = fmt.Errorf("telemetry sqlite: update journal %q: %w", s.journal, err)
			}
		}
	}
	if err == nil {
		if _, err = s.stmts.commit.ExecContext(ectx); err != nil {
			err = fmt.Errorf("telemetry sqlite: commit: %w", err)
		}
	}
	if err != nil {
		// The transaction may have ended already (an interrupted statement
		// can roll it back): an error of ROLLBACK is then expected.
		_, _ = s.stmts.rollback.ExecContext(ectx)
		for i := len(st.undo) - 1; i >= 0; i-- {
			u := st.undo[i]
			u.sr.lastTS, u.sr.lastN = u.lastTS, u.lastN
		}
		clear(st.rows)
		clear(st.sorted)
		return err
	}

	s.nextN = nextN
	if seq != 0 {
		s.lastSeq.Store(seq)
	}
	if len(st.fresh) > 0 {
		s.cache.mu.Lock()
		for _, sr := range st.fresh {
			s.cache.add(sr)
		}
		s.cache.mu.Unlock()
	}
	clear(st.rows) // drop the strings for the garbage collector
	clear(st.sorted)
	return nil
}

// appendTx does the work of Append inside its transaction and returns the
// new state.next_n.
func (s *Store) appendTx(ctx, ectx context.Context, points []telemetry.Point) (nextN int64, err error) {
	st := &s.w2
	nextN = s.nextN
	var (
		lastThing string
		keys      map[string]*series
	)
	for i := range points {
		p := &points[i]
		if i == 0 || p.Thing != lastThing {
			lastThing, keys = p.Thing, s.cache.byThing[p.Thing]
		}
		sr := keys[p.Key]
		if sr == nil {
			if sr, err = s.newSeries(ectx, p.Thing, p.Key); err != nil {
				return 0, err
			}
		}
		if sr.touched != st.gen { // the first point of sr in this Append
			if sr.lastTS == unloaded {
				if err := s.loadLast(ectx, sr); err != nil {
					return 0, err
				}
			}
			st.undo = append(st.undo, undoEntry{sr, sr.lastTS, sr.lastN})
			sr.touched = st.gen
			sr.grp = len(st.counts)
			st.counts = append(st.counts, 0)
		}
		st.counts[sr.grp]++
		var n int64
		switch {
		case p.TS > sr.lastTS: // the usual case: time goes forward
			sr.lastTS, sr.lastN = p.TS, 0
		case p.TS == sr.lastTS && sr.lastN+1 < uniqueBase:
			n = sr.lastN + 1
			sr.lastN = n
		default: // late data: a unique tie breaker
			n = nextN
			nextN++
			if p.TS == sr.lastTS {
				sr.lastN = n
			}
		}
		st.rows = append(st.rows, row{id: sr.id, ts: p.TS, n: n, v: p.Value, grp: sr.grp})
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}

	rows := s.order()
	for len(rows) > 0 {
		k := min(bits.Len(uint(len(rows)))-1, maxInsertLog)
		chunk := rows[:1<<k]
		rows = rows[1<<k:]
		if err := s.insert(ectx, k, chunk); err != nil {
			return 0, err
		}
		if err := ctx.Err(); err != nil {
			return 0, err
		}
	}
	return nextN, nil
}

// order returns the rows of the Append in the order to insert them: the
// rows of each series together and in key order (ts, n), so that
// consecutive rows go to the same leaf page of the B-tree. A counting sort
// by series (in the order the series first appear) costs O(n); only the
// rows of a series that got late points need a real sort.
func (s *Store) order() []row {
	st := &s.w2
	start := st.counts // becomes the start of each series' rows
	sum := 0
	for g, c := range start {
		start[g] = sum
		sum += c
	}
	st.sorted = slices.Grow(st.sorted[:0], len(st.rows))[:len(st.rows)]
	for _, r := range st.rows {
		st.sorted[start[r.grp]] = r
		start[r.grp]++
	}
	// start[g] is now the end of series g.
	from := 0
	for _, end := range start {
		run := st.sorted[from:end]
		for i := 1; i < len(run); i++ {
			if run[i].ts < run[i-1].ts || run[i].ts == run[i-1].ts && run[i].n < run[i-1].n {
				slices.SortFunc(run, func(a, b row) int {
					if c := cmp.Compare(a.ts, b.ts); c != 0 {
						return c
					}
					return cmp.Compare(a.n, b.n)
				})
				break
			}
		}
		from = end
	}
	return st.sorted
}

// insert runs the INSERT of 1<<k rows.
func (s *Store) insert(ctx context.Context, k int, rows []row) error {
	st := &s.w2
	if cap(st.args) < maxInsertRows*colsPerRow {
		st.args = make([]any, 0, maxInsertRows*colsPerRow)
	}
	a := st.args[:0]
	for i := range rows {
		r := &rows[i]
		var kind int64
		var num, str any
		switch r.v.Kind() {
		case telemetry.KindNumber:
			f := r.v.Float()
			// A whole number bound as an integer takes 1 to 6 bytes
			// instead of 8 (SQLite keeps it REAL).
			if f == math.Trunc(f) && math.Abs(f) < maxIntReal {
				num = int64(f)
			} else {
				num = f
			}
		case telemetry.KindBool:
			kind = kindFalse
			if r.v.Bool() {
				kind = kindTrue
			}
		case telemetry.KindString:
			kind = kindString
			str = r.v.Text()
		}
		a = append(a, r.id, r.ts, r.n, kind, num, str)
	}
	_, err := s.inserts[k].ExecContext(ctx, a...)
	clear(a)
	if err != nil {
		return fmt.Errorf("telemetry sqlite: insert points: %w", err)
	}
	return nil
}

// newSeries inserts a series (in the running transaction) and returns it;
// it enters the cache only when the transaction commits.
func (s *Store) newSeries(ctx context.Context, thing, key string) (*series, error) {
	st := &s.w2
	k := seriesKey{thing, key}
	if sr := st.fresh[k]; sr != nil {
		return sr, nil
	}
	res, err := s.stmts.insertSeries.ExecContext(ctx, thing, key)
	if err != nil {
		return nil, fmt.Errorf("telemetry sqlite: insert series: %w", err)
	}
	id, err := res.LastInsertId()
	if err != nil {
		return nil, fmt.Errorf("telemetry sqlite: insert series: %w", err)
	}
	sr := &series{id: id, thing: thing, key: key, lastTS: -1, lastN: -1}
	st.fresh[k] = sr
	return sr, nil
}

// loadLast reads the last timestamp of sr and the largest n at it.
func (s *Store) loadLast(ctx context.Context, sr *series) error {
	err := s.stmts.lastPoint.QueryRowContext(ctx, sr.id).Scan(&sr.lastTS, &sr.lastN)
	if errors.Is(err, sql.ErrNoRows) {
		sr.lastTS, sr.lastN = -1, -1
		return nil
	}
	if err != nil {
		sr.lastTS = unloaded
		return fmt.Errorf("telemetry sqlite: read last point: %w", err)
	}
	return nil
}
