// Package sqlite is the embedded telemetry.Store: time series in a SQLite
// database file of their own (data-dir/telemetry.db), apart from the
// registry's, so that telemetry writes never wait for registry writes or
// the other way round. It uses the pure-Go driver modernc.org/sqlite.
//
// # Schema
//
//	series(id INTEGER PRIMARY KEY, thing, key, UNIQUE(thing, key))
//	points(series, ts, n, kind, num, str, PRIMARY KEY(series, ts, n)) WITHOUT ROWID
//	state(last_seq, next_n)  -- one row
//
// A point is one row of one B-tree, clustered by (series, ts): a range
// query, the latest value, an aggregate and a retention delete of one
// series are each a single contiguous index range, and a write touches only
// the tail of each series it extends. The series table maps (thing, key) to
// a small integer so points do not repeat names; it is held in memory
// (Open loads it) and consulted without a query on every append and query.
//
// The columns are chosen for SQLite's record format, where the integers 0
// and 1 take no bytes and a REAL column stores integral values as
// integers: kind is 0 for a number (in num), 1 for true, 2 for false and 3
// for a string (in str); num is NULL for everything but numbers, so
// min/max/avg/sum over num see exactly the numbers and count(*) counts
// every value. A point with a whole number such as 21 takes about 20 bytes
// on disk (15 of them its record), one with a fraction about 28.
//
// n tells apart points of one series with the same millisecond, which a
// primary key of (series, ts) alone would merge or refuse. It is 0 for a
// point later than every other of its series (nearly all of them: the
// writer remembers each series' last timestamp), one more than the
// previous for another point with that last timestamp, and for a point
// older than the series' last one — late or backfilled data — a number from
// a store-wide counter (state.next_n, from 2³² on) that never repeats. So
// n is unique without a lookup, costs no bytes in the usual case, and
// orders points of one millisecond by arrival. Replays do not duplicate
// points because an Append with an old WAL sequence number is skipped as a
// whole (state.last_seq is written in the same transaction as the points).
//
// # Writes
//
// All writes go through one connection, serialised in Go. An Append is one
// transaction (BEGIN IMMEDIATE … COMMIT) holding multi-row INSERTs of up to
// 256 rows each, prepared once per size (256, 128, …, 1: a batch of 1,000
// points is 3×256 + 128 + 64 + 32 + 8), and the update of state. What the
// profile of BenchmarkAppend (bench_test.go) showed and what follows:
//
//   - The INSERTs are INSERT OR ROLLBACK: a failing row ends the whole
//     transaction (Append fails as a whole anyway), so SQLite keeps no
//     statement journal, which a plain multi-row INSERT writes to a
//     temporary file (and temp_store=MEMORY keeps any in memory).
//   - The rows of each series are inserted together and in key order (ts,
//     n), so consecutive rows land in the same leaf page: 15–20% faster
//     than arrival order. A counting sort by series does it in linear time
//     (a comparison sort of the batch took 11% of the ingest path).
//   - A commit rewrites the last page of every series it extends, so the
//     cost of a transaction grows with the series it touches more than with
//     its points: large batches (the Writer's) are much cheaper per point.
//     The same pages are rewritten commit after commit, so the SQLite WAL
//     is checkpointed every 64 MiB (wal_autocheckpoint=16000) instead of
//     every 4 MiB: a checkpoint copies each page once however often it
//     changed.
//
// The database is in WAL mode with synchronous=FULL: a committed Append is
// on disk, so LastSeq is exactly the point up to which Mote's write-ahead
// log may be checkpointed. synchronous=NORMAL would lose the last commits
// on power loss — defensible with the WAL in front, which replays them,
// but only if the WAL checkpoint then waited for SQLite's own checkpoint.
// With a few large commits a second the one fsync per commit that FULL
// adds is not measurable (BenchmarkAppend runs both), so it is not worth
// that coupling.
//
// The points of every series are in one B-tree, so retention deletes row
// by row (DeleteBefore works in short transactions that appends can
// interleave with); its cost is about that of writing the points.
//
// Reads use a pool of query-only connections and never wait for a write.
//
// Only one Store may have a database file open at a time: the series cache
// and the tie breaker state live in its memory.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/moteiot/mote/internal/sqlitedb"
	"github.com/moteiot/mote/internal/telemetry"
)

var (
	_ telemetry.Store        = (*Store)(nil)
	_ telemetry.SpanAppender = (*Store)(nil)
)

// synchronous is the synchronous pragma of the write connection; the
// benchmark compares FULL with NORMAL.
var synchronous = "FULL"

// readConns is the size of the read pool.
const readConns = 4

// Store is a telemetry.Store in one SQLite database file. It is safe for
// concurrent use.
type Store struct {
	path string
	w    *sql.DB   // one connection, held by wc
	wc   *sql.Conn // the write connection
	r    *sql.DB   // query-only connections

	// Guarded by wmu: everything the write connection does.
	wmu     sync.Mutex
	closed  bool
	nextN   int64 // state.next_n
	w2      writeState
	inserts [maxInsertLog + 1]*sql.Stmt // inserts[k]: INSERT of 1<<k rows
	stmts   writeStmts

	lastSeq atomic.Uint64 // state.last_seq, or the journal's row (journal != "")

	// journal names the ingest journal whose replay point this store keeps
	// (OpenJournal); stateSeq is then state.last_seq, written back as read.
	journal  string
	stateSeq uint64

	cache seriesCache

	// read statements
	rangeStmt, latestStmt *sql.Stmt
	aggStmts              map[telemetry.AggFunc]*sql.Stmt

	closeOnce sync.Once
	closeErr  error
}

type writeStmts struct {
	begin, commit, rollback *sql.Stmt
	insertSeries            *sql.Stmt
	lastPoint               *sql.Stmt
	setState                *sql.Stmt
	deletePoints            *sql.Stmt
	deleteSeries            *sql.Stmt
}

// Open opens the telemetry database at path, creating it if it does not
// exist, and brings its schema up to date. It refuses a database whose
// schema is newer than this binary knows (ErrSchemaTooNew).
func Open(path string) (*Store, error) { return OpenJournal(path, "") }

// OpenJournal is Open for the named ingest journal: Append and LastSeq
// keep that journal's replay point (its row in journals, created at 0)
// instead of the unnamed one. Names are 1–64 bytes; "" is Open.
func OpenJournal(path, journal string) (*Store, error) {
	if path == "" {
		return nil, errors.New("telemetry sqlite: empty database path")
	}
	if len(journal) > 64 {
		return nil, errors.New("telemetry sqlite: journal name longer than 64 bytes")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("telemetry sqlite: %w", err)
	}
	s := &Store{path: abs, journal: journal}
	ok := false
	defer func() {
		if !ok {
			s.closeAll()
		}
	}()
	ctx := context.Background()

	s.w, err = sql.Open("sqlite", sqlitedb.DSN(abs,
		"_pragma=busy_timeout(10000)",
		"_pragma=journal_mode(WAL)",
		"_pragma=synchronous("+synchronous+")",
		"_pragma=temp_store(MEMORY)",
		"_pragma=cache_size(-65536)",           // 64 MiB: the tails of many series
		"_pragma=journal_size_limit(67108864)", // truncate the SQLite WAL back to 64 MiB after checkpoints
		"_txlock=immediate",                    // migrations: take the write lock at BEGIN
	))
	if err != nil {
		return nil, fmt.Errorf("telemetry sqlite: open %s: %w", abs, err)
	}
	s.w.SetMaxOpenConns(1)
	s.w.SetMaxIdleConns(1)
	s.w.SetConnMaxLifetime(0)
	s.w.SetConnMaxIdleTime(0)
	if err := s.w.PingContext(ctx); err != nil {
		return nil, fmt.Errorf("telemetry sqlite: open %s: %w", abs, err)
	}
	if err := schema.Apply(ctx, s.w, abs); err != nil {
		return nil, err
	}
	if s.wc, err = s.w.Conn(ctx); err != nil {
		return nil, fmt.Errorf("telemetry sqlite: open %s: %w", abs, err)
	}

	s.r, err = sql.Open("sqlite", sqlitedb.DSN(abs,
		"_pragma=busy_timeout(10000)",
		"_pragma=query_only(1)",
		"_pragma=temp_store(MEMORY)",
		"_pragma=cache_size(-16384)",
	))
	if err != nil {
		return nil, fmt.Errorf("telemetry sqlite: open %s: %w", abs, err)
	}
	s.r.SetMaxOpenConns(readConns)
	s.r.SetMaxIdleConns(readConns)
	s.r.SetConnMaxLifetime(0)
	s.r.SetConnMaxIdleTime(0)

	if err := s.prepare(ctx); err != nil {
		return nil, err
	}
	if err := s.load(ctx); err != nil {
		return nil, err
	}
	ok = true
	return s, nil
}

func (s *Store) prepare(ctx context.Context) error {
	w := func(dst **sql.Stmt, query string) error {
		st, err := s.wc.PrepareContext(ctx, query)
		if err != nil {
			return fmt.Errorf("telemetry sqlite: prepare %q: %w", query, err)
		}
		*dst = st
		return nil
	}
	r := func(dst **sql.Stmt, query string) error {
		st, err := s.r.PrepareContext(ctx, query)
		if err != nil {
			return fmt.Errorf("telemetry sqlite: prepare %q: %w", query, err)
		}
		*dst = st
		return nil
	}
	for _, p := range []struct {
		dst   **sql.Stmt
		query string
	}{
		{&s.stmts.begin, `BEGIN IMMEDIATE`},
		{&s.stmts.commit, `COMMIT`},
		{&s.stmts.rollback, `ROLLBACK`},
		{&s.stmts.insertSeries, `INSERT INTO series (thing, key) VALUES (?, ?)`},
		{&s.stmts.lastPoint, `SELECT ts, n FROM points WHERE series = ? ORDER BY ts DESC, n DESC LIMIT 1`},
		{&s.stmts.setState, `UPDATE state SET last_seq = ?, next_n = ? WHERE id = 1`},
		{&s.stmts.deletePoints, deletePointsSQL},
		{&s.stmts.deleteSeries, `DELETE FROM series WHERE id = ?1 AND NOT EXISTS (SELECT 1 FROM points WHERE series = ?1)`},
	} {
		if err := w(p.dst, p.query); err != nil {
			return err
		}
	}
	for k := range s.inserts {
		if err := w(&s.inserts[k], insertSQL(1<<k)); err != nil {
			return err
		}
	}
	if err := r(&s.rangeStmt, rangeSQL); err != nil {
		return err
	}
	if err := r(&s.latestStmt, latestSQL); err != nil {
		return err
	}
	s.aggStmts = make(map[telemetry.AggFunc]*sql.Stmt, len(telemetry.AggFuncs))
	for _, f := range telemetry.AggFuncs {
		var st *sql.Stmt
		if err := r(&st, aggSQL(f)); err != nil {
			return err
		}
		s.aggStmts[f] = st
	}
	return nil
}

// load reads the state and the series into memory.
func (s *Store) load(ctx context.Context) error {
	var last uint64
	if err := s.wc.QueryRowContext(ctx, `SELECT last_seq, next_n FROM state WHERE id = 1`).Scan(&last, &s.nextN); err != nil {
		return fmt.Errorf("telemetry sqlite: %s: read state: %w", s.path, err)
	}
	s.lastSeq.Store(last)
	if s.journal != "" {
		s.stateSeq = last
		if _, err := s.wc.ExecContext(ctx, `INSERT INTO journals (journal, last_seq) VALUES (?, 0) ON CONFLICT (journal) DO NOTHING`, s.journal); err != nil {
			return fmt.Errorf("telemetry sqlite: %s: journal %q: %w", s.path, s.journal, err)
		}
		if err := s.wc.QueryRowContext(ctx, `SELECT last_seq FROM journals WHERE journal = ?`, s.journal).Scan(&last); err != nil {
			return fmt.Errorf("telemetry sqlite: %s: journal %q: %w", s.path, s.journal, err)
		}
		s.lastSeq.Store(last)
	}
	rows, err := s.wc.QueryContext(ctx, `SELECT id, thing, key FROM series`)
	if err != nil {
		return fmt.Errorf("telemetry sqlite: %s: read series: %w", s.path, err)
	}
	defer rows.Close()
	s.cache.init()
	for rows.Next() {
		sr := &series{lastTS: unloaded}
		if err := rows.Scan(&sr.id, &sr.thing, &sr.key); err != nil {
			return fmt.Errorf("telemetry sqlite: %s: read series: %w", s.path, err)
		}
		s.cache.add(sr)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("telemetry sqlite: %s: read series: %w", s.path, err)
	}
	return nil
}

// Journal returns the name of the journal whose replay point this store
// keeps ("" for the unnamed one).
func (s *Store) Journal() string { return s.journal }

// Path returns the absolute path of the database file.
func (s *Store) Path() string { return s.path }

// LastSeq returns the WAL sequence number recorded by the last Append.
func (s *Store) LastSeq(ctx context.Context) (uint64, error) {
	return s.lastSeq.Load(), nil
}

// Close waits for a running write, checkpoints the SQLite WAL into the
// database file and closes the connections.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.wmu.Lock()
		s.closed = true
		s.wmu.Unlock()
		s.closeErr = s.closeAll()
	})
	return s.closeErr
}

var errClosed = errors.New("telemetry sqlite: store is closed")

func (s *Store) closeAll() error {
	var errs []error
	closeStmt := func(st *sql.Stmt) {
		if st != nil {
			errs = append(errs, st.Close())
		}
	}
	for _, st := range []*sql.Stmt{s.stmts.begin, s.stmts.commit, s.stmts.rollback, s.stmts.insertSeries, s.stmts.lastPoint,
		s.stmts.setState, s.stmts.deletePoints, s.stmts.deleteSeries, s.rangeStmt, s.latestStmt} {
		closeStmt(st)
	}
	for _, st := range s.inserts {
		closeStmt(st)
	}
	for _, st := range s.aggStmts {
		closeStmt(st)
	}
	if s.r != nil {
		errs = append(errs, s.r.Close())
	}
	if s.wc != nil {
		errs = append(errs, s.checkpoint())
		errs = append(errs, s.wc.Close())
	}
	if s.w != nil {
		errs = append(errs, s.w.Close())
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("telemetry sqlite: close: %w", err)
	}
	return nil
}

// checkpoint moves the SQLite WAL into the database file and truncates it,
// giving up after a second if another process reads the database.
func (s *Store) checkpoint() error {
	ctx := context.Background()
	if _, err := s.wc.ExecContext(ctx, `PRAGMA busy_timeout = 1000`); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	var busy, logFrames, checkpointed int
	if err := s.wc.QueryRowContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`).Scan(&busy, &logFrames, &checkpointed); err != nil && !isBusy(err) {
		return fmt.Errorf("checkpoint: %w", err)
	}
	return nil
}

// isBusy reports whether err is SQLITE_BUSY or SQLITE_LOCKED.
func isBusy(err error) bool {
	var e *sqlite.Error
	if errors.As(err, &e) {
		return e.Code()&0xff == sqlite3.SQLITE_BUSY || e.Code()&0xff == sqlite3.SQLITE_LOCKED
	}
	return false
}
