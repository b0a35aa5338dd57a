// Package postgres is the PostgreSQL telemetry.Store, for several Mote
// nodes sharing one database (issue 12). It passes the same conformance
// suite as the embedded SQLite store (telemetry/telemetrytest).
//
// # Schema
//
//	telemetry_series(id, thing, key)           -- UNIQUE (thing, key)
//	telemetry_points(series, ts, n, kind, num, str) PARTITION BY RANGE (ts)
//	telemetry_state(last_seq)                  -- one row
//	telemetry_journals(journal, last_seq)      -- one row per named journal
//
// Points are partitioned by time, one partition per UTC day
// (telemetry_points_YYYYMMDD), with a B-tree on (series, ts, n) in each.
// A query names its series, so it is one index range per partition it
// touches, and partition pruning skips the days outside its time range.
// BRIN on ts was considered and left out: it only helps scans by time
// across all series, which pruning already narrows to whole days, and it
// would be one more index to maintain per row. Measured (bench_test.go,
// 2 shared cores, fsync off, three runs each): appending 1,000-point batches
// ran at 48k–170k points/s with or without it — the spread is the load of
// the machine, not the index — and deleting the older half of a
// 200,000-point day partition (the retention boundary) took 45–60 ms
// either way, because the planner rightly scans the partition for half
// its rows. Nothing to gain. Values are stored as in the
// SQLite backend (kind, num NULL unless a number, str).
//
// n is taken from a sequence as rows are written: it orders points of one
// series with the same millisecond by arrival and is the cursor's tie
// breaker.
//
// # Writes
//
// An Append is one transaction: the points go in with COPY (pgx CopyFrom)
// and, for a seq from the write-ahead log, telemetry_state.last_seq is
// checked under a row lock and advanced in the same transaction, so an
// Append whose seq is not above it stores nothing (exactly once, as
// telemetry.Store requires). The series rows and the partitions of the
// days a batch touches are made before, in short transactions of their own
// (both are harmless if the Append then fails): missing partitions for the
// days of the batch — at most maxNewPartitions per Append, the rest go to
// the default partition — and always the next day's, so that a partition
// exists ahead of the data. Partition DDL from several nodes is
// serialized by an advisory lock.
//
// # Retention
//
// DeleteBefore drops every day partition that ends at or before the
// cut-off whole (counting its rows first), then deletes the older rows of
// the boundary day and of the default partition.
//
// # Several nodes
//
// The state row is shared. In a cluster every node's durable ingest is its
// own sequence (its JetStream subject), so a store opened with
// Options.Journal keeps its replay point in its own row of
// telemetry_journals: one node's stored sequence never makes another
// node's messages look stored.
package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"hash/fnv"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/moteiot/mote/internal/pgdb"
	"github.com/moteiot/mote/internal/telemetry"
)

var (
	_ telemetry.Store        = (*Store)(nil)
	_ telemetry.SpanAppender = (*Store)(nil)
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

var schema = pgdb.Schema{FS: migrationFiles, Dir: "migrations", Table: "telemetry_migrations", Label: "telemetry postgres"}

// SchemaVersion is the schema version this binary brings a database to.
func SchemaVersion() int { return schema.Version() }

// ErrSchemaTooNew is returned by Open for a database written by a newer
// Mote whose schema this binary does not know.
var ErrSchemaTooNew = pgdb.ErrSchemaTooNew

const (
	day = int64(24 * time.Hour / time.Millisecond)

	// maxNewPartitions bounds the partitions one Append creates: a batch
	// of backfilled points spread over years goes to the default
	// partition instead of creating thousands of tables.
	maxNewPartitions = 8

	partitionPrefix = "telemetry_points_"
	dayLayout       = "20060102"
)

// Value kinds as stored.
const (
	kindNumber = 0
	kindTrue   = 1
	kindFalse  = 2
	kindString = 3
)

// Options tune Open. The zero value is ready to use.
type Options struct {
	// MaxConns bounds the connection pool; 0 means pgx's default.
	MaxConns int32
	// Journal names the ingest journal whose replay point Append and
	// LastSeq keep (a cluster node's id, 1–64 bytes); "" keeps the one of
	// the unnamed journal (telemetry_state).
	Journal string
}

// Store is a telemetry.Store on a PostgreSQL database. It is safe for
// concurrent use, also by several processes on the same database.
type Store struct {
	pool *pgxpool.Pool

	// The replay point's queries: telemetry_state, or the row of
	// Options.Journal in telemetry_journals.
	journal            string
	lastSeqSQL, setSQL string

	// Migrated is how many migrations Open applied.
	Migrated int

	// series caches the ids of telemetry_series (rows never go away).
	smu    sync.RWMutex
	series map[seriesKey]int64

	// days holds the day numbers (ts / day) known to have a partition, or
	// known to be served by the default partition (false).
	dmu  sync.Mutex
	days map[int64]bool

	closeOnce sync.Once
}

type seriesKey struct{ thing, key string }

// Open connects to url, brings the telemetry schema up to date (under an
// advisory lock, see pgdb.Schema.Migrate) and creates the partitions of
// today and tomorrow.
func Open(ctx context.Context, url string, opts Options) (*Store, error) {
	pool, err := pgdb.OpenPool(ctx, url, opts.MaxConns)
	if err != nil {
		return nil, fmt.Errorf("telemetry postgres: %w", err)
	}
	n, err := schema.Migrate(ctx, pool)
	if err != nil {
		pool.Close()
		return nil, err
	}
	s := &Store{pool: pool, Migrated: n, series: map[seriesKey]int64{}, days: map[int64]bool{}, journal: opts.Journal}
	if err := s.initJournal(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	if err := s.loadDays(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	today := time.Now().UnixMilli() / day
	if err := s.ensureDays(ctx, []int64{today, today + 1}); err != nil {
		pool.Close()
		return nil, err
	}
	return s, nil
}

// initJournal picks the replay point's row, creating the journal's row
// (at 0) the first time it is opened.
func (s *Store) initJournal(ctx context.Context) error {
	if s.journal == "" {
		// The journal name (empty) is still a parameter, so that the
		// same calls read and write either kind of row.
		s.lastSeqSQL = `SELECT last_seq FROM telemetry_state WHERE id = 1 AND $1::text = ''`
		s.setSQL = `UPDATE telemetry_state SET last_seq = $1 WHERE id = 1 AND $2::text = ''`
		return nil
	}
	if len(s.journal) > 64 {
		return fmt.Errorf("telemetry postgres: journal name longer than 64 bytes")
	}
	s.lastSeqSQL = `SELECT last_seq FROM telemetry_journals WHERE journal = $1`
	s.setSQL = `UPDATE telemetry_journals SET last_seq = $1 WHERE journal = $2`
	if _, err := s.pool.Exec(ctx, `INSERT INTO telemetry_journals (journal, last_seq) VALUES ($1, 0) ON CONFLICT (journal) DO NOTHING`, s.journal); err != nil {
		return fmt.Errorf("telemetry postgres: journal %q: %w", s.journal, err)
	}
	return nil
}

// Journal returns the name of the journal whose replay point this store
// keeps ("" for the unnamed one).
func (s *Store) Journal() string { return s.journal }

// Pool returns the connection pool.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Close closes the pool. Calls after the first do nothing.
func (s *Store) Close() error {
	s.closeOnce.Do(s.pool.Close)
	return nil
}

// LastSeq returns the largest seq Append has recorded.
func (s *Store) LastSeq(ctx context.Context) (uint64, error) {
	var last int64
	if err := s.pool.QueryRow(ctx, s.lastSeqSQL, s.journal).Scan(&last); err != nil {
		return 0, fmt.Errorf("telemetry postgres: last seq: %w", err)
	}
	return uint64(last), nil
}

// partitionName is the partition of day d (days since the epoch).
func partitionName(d int64) string {
	return partitionPrefix + time.UnixMilli(d*day).UTC().Format(dayLayout)
}

// partitionDay parses a partition name; ok is false for another table.
func partitionDay(name string) (int64, bool) {
	rest, ok := strings.CutPrefix(name, partitionPrefix)
	if !ok {
		return 0, false
	}
	t, err := time.Parse(dayLayout, rest)
	if err != nil {
		return 0, false
	}
	return t.UnixMilli() / day, true
}

// partitions lists the day partitions in the database, by day.
func (s *Store) partitions(ctx context.Context) (map[int64]string, error) {
	rows, err := s.pool.Query(ctx, `SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
		WHERE i.inhparent = 'telemetry_points'::regclass`)
	if err != nil {
		return nil, fmt.Errorf("telemetry postgres: list partitions: %w", err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("telemetry postgres: list partitions: %w", err)
	}
	out := make(map[int64]string, len(names))
	for _, n := range names {
		if d, ok := partitionDay(n); ok {
			out[d] = n
		}
	}
	return out, nil
}

func (s *Store) loadDays(ctx context.Context) error {
	parts, err := s.partitions(ctx)
	if err != nil {
		return err
	}
	s.dmu.Lock()
	for d := range parts {
		s.days[d] = true
	}
	s.dmu.Unlock()
	return nil
}

// partitionLock is the advisory lock key of partition DDL.
var partitionLock = func() int64 {
	h := fnv.New64a()
	h.Write([]byte("mote telemetry partitions"))
	return int64(h.Sum64())
}()

// ensureDays creates the partitions of the given days that are not known
// yet, at most maxNewPartitions of them (earliest first); the others are
// served by the default partition for now.
func (s *Store) ensureDays(ctx context.Context, days []int64) error {
	s.dmu.Lock()
	var todo []int64
	for _, d := range days {
		if _, known := s.days[d]; !known && !containsDay(todo, d) {
			todo = append(todo, d)
		}
	}
	s.dmu.Unlock()
	if len(todo) == 0 {
		return nil
	}
	sort.Slice(todo, func(i, j int) bool { return todo[i] < todo[j] })
	if len(todo) > maxNewPartitions {
		todo = todo[:maxNewPartitions]
	}
	for _, d := range todo {
		created, err := s.createPartition(ctx, d)
		if err != nil {
			return err
		}
		s.dmu.Lock()
		s.days[d] = created
		s.dmu.Unlock()
	}
	return nil
}

func containsDay(list []int64, d int64) bool {
	for _, x := range list {
		if x == d {
			return true
		}
	}
	return false
}

// createPartition creates the partition of day d. It reports false when
// the default partition already holds points of that day (PostgreSQL then
// refuses the partition with a check violation): that day stays in the
// default partition.
func (s *Store) createPartition(ctx context.Context, d int64) (bool, error) {
	from, to := d*day, (d+1)*day
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, partitionLock); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s PARTITION OF telemetry_points FOR VALUES FROM (%d) TO (%d)`,
			partitionName(d), from, to))
		return err
	})
	if pgdb.Code(err) == "23514" {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("telemetry postgres: create partition %s: %w", partitionName(d), err)
	}
	return true, nil
}

// seriesIDs returns the ids of the series of points (creating missing
// series), in the order of points.
func (s *Store) seriesIDs(ctx context.Context, points []telemetry.Point) ([]int64, error) {
	ids := make([]int64, len(points))
	var (
		missThings []string
		missKeys   [][]byte
	)
	seen := map[seriesKey]bool{}
	s.smu.RLock()
	for i, p := range points {
		k := seriesKey{p.Thing, p.Key}
		if id, ok := s.series[k]; ok {
			ids[i] = id
		} else if !seen[k] {
			seen[k] = true
			missThings = append(missThings, p.Thing)
			missKeys = append(missKeys, []byte(p.Key))
		}
	}
	s.smu.RUnlock()
	if len(missThings) == 0 {
		return ids, nil
	}
	if _, err := s.pool.Exec(ctx, `INSERT INTO telemetry_series (thing, key)
		SELECT * FROM unnest($1::text[], $2::bytea[]) ON CONFLICT (thing, key) DO NOTHING`, missThings, missKeys); err != nil {
		return nil, fmt.Errorf("telemetry postgres: create series: %w", err)
	}
	rows, err := s.pool.Query(ctx, `SELECT s.id, s.thing, s.key FROM telemetry_series s
		JOIN unnest($1::text[], $2::bytea[]) AS u(thing, key) ON s.thing = u.thing AND s.key = u.key`, missThings, missKeys)
	if err != nil {
		return nil, fmt.Errorf("telemetry postgres: read series: %w", err)
	}
	defer rows.Close()
	s.smu.Lock()
	for rows.Next() {
		var (
			id  int64
			k   seriesKey
			key []byte
		)
		if err := rows.Scan(&id, &k.thing, &key); err != nil {
			s.smu.Unlock()
			return nil, fmt.Errorf("telemetry postgres: read series: %w", err)
		}
		k.key = string(key)
		s.series[k] = id
	}
	for i, p := range points {
		if ids[i] == 0 {
			ids[i] = s.series[seriesKey{p.Thing, p.Key}]
		}
	}
	s.smu.Unlock()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("telemetry postgres: read series: %w", err)
	}
	for i, id := range ids {
		if id == 0 {
			return nil, fmt.Errorf("telemetry postgres: series (%q, %q) missing after insert", points[i].Thing, points[i].Key)
		}
	}
	return ids, nil
}

// Append implements telemetry.Store; see the package documentation.
func (s *Store) Append(ctx context.Context, points []telemetry.Point, seq uint64) error {
	return s.AppendSpans(ctx, points, []telemetry.Span{{End: len(points), Seq: seq}})
}

// AppendSpans implements telemetry.SpanAppender: under the row lock of the
// journal's replay point, the points of the messages at or below it are
// left out and the rest stored, in one transaction.
func (s *Store) AppendSpans(ctx context.Context, points []telemetry.Point, spans []telemetry.Span) error {
	if err := telemetry.ValidatePoints(points); err != nil {
		return err
	}
	if _, seq, err := telemetry.Unstored(points, spans, 0); err != nil {
		return err
	} else if len(points) == 0 && seq == 0 {
		return nil
	}
	var ids []int64
	if len(points) > 0 {
		var err error
		if ids, err = s.seriesIDs(ctx, points); err != nil {
			return err
		}
		days := []int64{time.Now().UnixMilli()/day + 1} // ahead: tomorrow
		for _, p := range points {
			if d := p.TS / day; !containsDay(days, d) && len(days) < 64 {
				days = append(days, d)
			}
		}
		if err := s.ensureDays(ctx, days); err != nil {
			return err
		}
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var last int64
		_, seq, _ := telemetry.Unstored(points, spans, 0)
		if seq > 0 {
			if err := tx.QueryRow(ctx, s.lastSeqSQL+` FOR UPDATE`, s.journal).Scan(&last); err != nil {
				return fmt.Errorf("read last seq: %w", err)
			}
		}
		points, ids := points, ids
		if last > 0 {
			points, ids = unstored(points, ids, spans, uint64(last))
		}
		if len(points) == 0 && seq <= uint64(last) {
			return errStored
		}
		if len(points) > 0 {
			n, err := tx.CopyFrom(ctx, pgx.Identifier{"telemetry_points"}, []string{"series", "ts", "kind", "num", "str"},
				&pointSource{points: points, ids: ids, i: -1})
			if err != nil {
				return fmt.Errorf("copy points: %w", err)
			}
			if n != int64(len(points)) {
				return fmt.Errorf("copy points: stored %d of %d", n, len(points))
			}
		}
		if seq > uint64(last) {
			if _, err := tx.Exec(ctx, s.setSQL, int64(seq), s.journal); err != nil {
				return fmt.Errorf("record seq: %w", err)
			}
		}
		return nil
	})
	if errors.Is(err, errStored) {
		return nil // stored before: exactly once
	}
	if err != nil {
		return fmt.Errorf("telemetry postgres: append: %w", err)
	}
	return nil
}

// unstored returns the points of spans above last with their series ids.
func unstored(points []telemetry.Point, ids []int64, spans []telemetry.Span, last uint64) ([]telemetry.Point, []int64) {
	var (
		kp    []telemetry.Point
		ki    []int64
		start int
	)
	for _, sp := range spans {
		if sp.Seq == 0 || sp.Seq > last {
			kp = append(kp, points[start:sp.End]...)
			ki = append(ki, ids[start:sp.End]...)
		}
		start = sp.End
	}
	return kp, ki
}

// errStored ends the transaction of an Append whose seq is already stored.
var errStored = errors.New("already stored")

// pointSource feeds points to CopyFrom.
type pointSource struct {
	points []telemetry.Point
	ids    []int64
	i      int
}

func (ps *pointSource) Next() bool { ps.i++; return ps.i < len(ps.points) }
func (ps *pointSource) Err() error { return nil }

func (ps *pointSource) Values() ([]any, error) {
	p := &ps.points[ps.i]
	var (
		kind int16
		num  *float64
		str  []byte
	)
	switch p.Value.Kind() {
	case telemetry.KindNumber:
		f := p.Value.Float()
		kind, num = kindNumber, &f
	case telemetry.KindBool:
		kind = kindFalse
		if p.Value.Bool() {
			kind = kindTrue
		}
	case telemetry.KindString:
		kind, str = kindString, []byte(p.Value.Text())
	}
	return []any{ps.ids[ps.i], p.TS, kind, num, str}, nil
}

// value reads the value columns of a point.
func value(kind int16, num *float64, str []byte) (telemetry.Value, error) {
	switch kind {
	case kindNumber:
		if num != nil {
			return telemetry.Number(*num), nil
		}
	case kindTrue:
		return telemetry.Bool(true), nil
	case kindFalse:
		return telemetry.Bool(false), nil
	case kindString:
		if str != nil {
			return telemetry.String(string(str)), nil
		}
	}
	return telemetry.Value{}, fmt.Errorf("telemetry postgres: corrupt point (kind %d)", kind)
}

// DeleteBefore implements telemetry.Store: whole day partitions that end
// at or before t are dropped, then the older points of the boundary day
// and the default partition are deleted. If it fails, what it removed so
// far stays removed.
func (s *Store) DeleteBefore(ctx context.Context, t int64) (int64, error) {
	parts, err := s.partitions(ctx)
	if err != nil {
		return 0, err
	}
	var total int64
	for d, name := range parts {
		if (d+1)*day > t {
			continue
		}
		var n int64
		err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, partitionLock); err != nil {
				return err
			}
			// Another node's retention may have dropped it meanwhile.
			var there bool
			if err := tx.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, name).Scan(&there); err != nil || !there {
				return err
			}
			if err := tx.QueryRow(ctx, `SELECT count(*) FROM `+pgx.Identifier{name}.Sanitize()).Scan(&n); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `DROP TABLE `+pgx.Identifier{name}.Sanitize())
			return err
		})
		if err != nil {
			return total, fmt.Errorf("telemetry postgres: drop partition %s: %w", name, err)
		}
		total += n
		s.dmu.Lock()
		delete(s.days, d)
		s.dmu.Unlock()
	}
	tag, err := s.pool.Exec(ctx, `DELETE FROM telemetry_points WHERE ts < $1`, t)
	if err != nil {
		return total, fmt.Errorf("telemetry postgres: delete points: %w", err)
	}
	return total + tag.RowsAffected(), nil
}

// ClaimJournal takes a session advisory lock keyed by the journal's name
// on a connection of its own, held until release is called (or the
// process dies and PostgreSQL closes the session): which survivor adopts
// a lost node's ingest backlog (ingest/jsjournal Adopter, docs/cluster.md).
// ok is false, at once, when another session holds it. The lock only picks
// one adopter; exactly once rests on AppendSpans.
func (s *Store) ClaimJournal(ctx context.Context, journal string) (release func(), ok bool, err error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, false, fmt.Errorf("telemetry postgres: claim %q: %w", journal, err)
	}
	key := journalClaimKey(journal)
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, key).Scan(&ok); err != nil {
		conn.Release()
		return nil, false, fmt.Errorf("telemetry postgres: claim %q: %w", journal, err)
	}
	if !ok {
		conn.Release()
		return nil, false, nil
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if _, err := conn.Exec(ctx, `SELECT pg_advisory_unlock($1)`, key); err != nil {
				// The session may still hold the lock: do not hand it
				// back to the pool with it.
				_ = conn.Conn().Close(ctx)
			}
			conn.Release()
		})
	}, true, nil
}

func journalClaimKey(journal string) int64 {
	h := fnv.New64a()
	h.Write([]byte("mote ingest journal claim\x00" + journal))
	return int64(h.Sum64())
}
