// Package storemigrate copies an embedded installation (the SQLite
// databases of a data directory) into PostgreSQL: `mote admin
// migrate-store --from DATA_DIR --to postgres://...`.
//
// The registry store is copied table by table, exactly (times, command
// sequence numbers, tombstones of deleted shadows, seeded rules, console
// sessions, retained messages, persistent sessions and per-thing activity
// counters included), in one transaction with COPY; then every table is
// verified: the row count and a SHA-256 over its rows in key order,
// computed on both sides from the values as the store means them (times in
// milliseconds, booleans, bytes), must match. Telemetry is copied through
// the telemetry.Store interface, series by series in (ts, arrival) order,
// and verified the same way from Range pages on both sides; the last WAL
// sequence number is carried over so the ingest journal in the data
// directory continues where it was.
//
// The target must be empty (a fresh database, or one a server has only
// migrated); the server must be stopped while it runs.
package storemigrate

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"math"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/datadir"
	"github.com/moteiot/mote/internal/sqlitedb"
	storepostgres "github.com/moteiot/mote/internal/store/postgres"
	"github.com/moteiot/mote/internal/store/sqlite"
	"github.com/moteiot/mote/internal/telemetry"
	telemetrypostgres "github.com/moteiot/mote/internal/telemetry/postgres"
	telemetrysqlite "github.com/moteiot/mote/internal/telemetry/sqlite"
)

// Column kinds: how a value is stored in SQLite and PostgreSQL.
const (
	kText  = iota // TEXT → text
	kInt          // INTEGER → integer/bigint
	kBool         // 0/1 → boolean
	kMS           // Unix ms → timestamptz
	kBytes        // BLOB → bytea
)

type column struct {
	sqlite, pg string
	kind       int
}

type table struct {
	sqlite, pg string
	cols       []column
	key        string // ORDER BY of both sides (a unique key)
}

func c(name string, kind int) column { return column{name, name, kind} }

// tables lists the registry tables in an order that satisfies the
// foreign keys.
var tables = []table{
	{"thing_types", "thing_types", []column{c("name", kText), c("description", kText), c("created_at", kMS), c("updated_at", kMS), c("model", kText)}, "name"},
	{"groups", "groups", []column{c("name", kText), c("description", kText), c("created_at", kMS), c("updated_at", kMS), c("query", kText)}, "name"},
	{"policies", "policies", []column{c("name", kText), c("description", kText), c("document", kText), c("builtin", kBool), c("created_at", kMS), c("updated_at", kMS)}, "name"},
	{"type_policies", "type_policies", []column{c("type", kText), c("policy", kText), c("position", kInt)}, "type, policy"},
	{"things", "things", []column{c("name", kText), c("type", kText), c("enabled", kBool), c("connected", kBool), c("last_seen", kMS), c("created_at", kMS), c("updated_at", kMS), c("node", kText)}, "name"}, // node: migration 0022 / 0015 (cluster)
	{"thing_stats", "thing_stats", []column{c("thing", kText), c("publish_denied", kInt), c("invalid_telemetry", kInt), c("last_denied_topic", kText), c("last_denied_at", kMS), c("last_invalid_at", kMS), c("model_violations", kInt), c("last_model_violation", kText), c("last_model_violation_at", kMS)}, "thing"},
	{"thing_attributes", "thing_attributes", []column{c("thing", kText), c("key", kText), c("value", kText)}, "thing, key"},
	{"thing_tags", "thing_tags", []column{c("thing", kText), c("tag", kText)}, "thing, tag"},
	{"thing_groups", "thing_groups", []column{c("thing", kText), c("group_name", kText)}, "thing, group_name"},
	{"thing_policies", "thing_policies", []column{c("thing", kText), c("policy", kText), c("position", kInt)}, "thing, policy"},
	{"credentials", "credentials", []column{c("id", kText), c("thing", kText), c("type", kText), c("secret_hash", kBytes), c("fingerprint", kText), c("cert_pem", kText), c("not_after", kMS), c("revoked", kBool), c("revoked_at", kMS), c("created_at", kMS), c("sealed_key", kText)}, "id"},
	{"tokens", "tokens", []column{c("id", kText), c("name", kText), c("hash", kBytes), c("role", kText), c("created_at", kMS), c("expires_at", kMS), c("last_used_at", kMS), c("user_name", kText), c("groups", kText), c("rate_limit", kInt)}, "id"},
	{"shadows", "shadows", []column{c("thing", kText), c("name", kText), c("version", kInt), c("document", kText), c("updated_at", kMS)}, "thing, name"},
	{"rules", "rules", []column{c("name", kText), c("sql", kText), c("description", kText), c("enabled", kBool), c("actions", kText), c("error_action", kText), c("created_at", kMS), c("updated_at", kMS)}, "name"},
	{"seeded_rules", "seeded_rules", []column{c("name", kText), c("seeded_at", kMS)}, "name"},
	{"commands", "commands", []column{c("seq", kInt), c("id", kText), c("thing", kText), c("name", kText), c("payload", kText), c("status", kText), c("created_at", kMS), c("expires_at", kMS), c("delivered_at", kMS), c("completed_at", kMS), c("result_status", kText), c("result_output", kText)}, "seq"},
	{"users", "users", []column{c("name", kText), c("password_hash", kBytes), c("role", kText), c("created_at", kMS), c("updated_at", kMS), c("last_login_at", kMS), c("groups", kText)}, "name"},
	{"sessions", "console_sessions", []column{c("id_hash", kBytes), {"user", "user_name", kText}, c("created_at", kMS), c("expires_at", kMS)}, "id_hash"},
	{"retained", "retained", []column{c("topic", kText), c("data", kBytes), c("updated_at", kMS)}, "topic"},
	{"mqtt_sessions", "mqtt_sessions", []column{c("client_id", kText), c("data", kBytes), c("updated_at", kMS)}, "client_id"},
	{"mqtt_session_messages", "mqtt_session_messages", []column{c("client_id", kText), c("packet_id", kInt), c("data", kBytes)}, "client_id, packet_id"},
	// Artifact and file metadata; their bytes stay in the data directory's
	// blob store (datadir.Blobs), which this tool does not copy.
	{"artifacts", "artifacts", []column{c("name", kText), c("version", kText), c("content_type", kText), c("size", kInt), c("sha256", kText), c("signature", kText), c("signing_key", kText), c("blob_key", kText), c("created_at", kMS)}, "name, version"},
	{"files", "files", []column{c("thing", kText), c("name", kText), c("content_type", kText), c("complete", kBool), c("size", kInt), c("sha256", kText), c("blob_key", kText), c("upload_id", kText), c("received", kInt), c("total", kInt), c("parts", kInt), c("created_at", kMS), c("updated_at", kMS)}, "thing, name"},
	{"alarms", "alarms", []column{c("seq", kInt), c("id", kText), c("thing", kText), c("type", kText), c("severity", kText), c("status", kText), c("details", kText), c("count", kInt), c("created_at", kMS), c("last_at", kMS), c("acked_at", kMS), c("cleared_at", kMS)}, "seq"},
	{"analytics_rules", "analytics_rules", []column{c("name", kText), c("kind", kText), c("thing_type", kText), c("grp", kText), c("config", kText), c("enabled", kBool), c("created_at", kMS), c("updated_at", kMS)}, "name"},
	{"detector_states", "detector_states", []column{c("rule", kText), c("thing", kText), c("state", kBytes), c("updated_at", kMS)}, "rule, thing"},
	{"jobs", "jobs", []column{c("id", kText), c("description", kText), c("status", kText), c("continuous", kBool), c("spec", kBytes), c("reason_code", kText), c("comment", kText), c("released", kInt), c("released_at", kMS), c("created_at", kMS), c("updated_at", kMS), c("completed_at", kMS)}, "id"},
	{"job_executions", "job_executions", []column{c("seq", kInt), c("job", kText), c("thing", kText), c("status", kText), c("status_details", kText), c("queued_at", kMS), c("started_at", kMS), c("last_updated_at", kMS), c("timeout_at", kMS), c("version", kInt), c("execution_number", kInt), c("retries", kInt)}, "seq"},
	{"profiles", "profiles", []column{c("name", kText), c("description", kText), c("desired", kBytes), c("grp", kText), c("query", kText), c("priority", kInt), c("created_at", kMS), c("updated_at", kMS)}, "name"},
	{"profile_applied", "profile_applied", []column{c("thing", kText), c("profiles", kText), c("state", kBytes), c("updated_at", kMS)}, "thing"},
	{"dashboards", "dashboards", []column{c("name", kText), c("title", kText), c("widgets", kText), c("version", kInt), c("created_at", kMS), c("updated_at", kMS)}, "name"},
	{"stats_history", "stats_history", []column{{"at", "at", kMS}, c("interval_ms", kInt), c("messages", kInt), c("connected", kInt), c("active_alarms", kInt)}, "at"},
	// Provisioning (migration 0018 / 0011): enrollment groups after things
	// (registrations name both), claim tokens.
	{"enrollments", "enrollments", []column{c("name", kText), c("attestation", kText), c("sealed_key", kText), c("ca_cert", kText), c("ca_fingerprint", kText), c("ca_verified", kBool), c("verification_code", kText), c("verification_expires", kMS), c("spec", kBytes), c("enabled", kBool), c("max_devices", kInt), c("expires_at", kMS), c("registered", kInt), c("created_at", kMS), c("updated_at", kMS)}, "name"},
	{"registrations", "registrations", []column{c("enrollment", kText), c("registration_id", kText), c("thing", kText), c("credential", kText), c("created_at", kMS), c("updated_at", kMS)}, "enrollment, registration_id"},
	{"claims", "claims", []column{c("id", kText), c("token_hash", kBytes), c("thing", kText), c("enrollment", kText), c("expires_at", kMS), c("redeemed_at", kMS), c("redeemed_thing", kText), c("created_at", kMS)}, "id"},
	{"rule_windows", "rule_windows", []column{c("rule", kText), c("sql", kText), c("state", kBytes), c("saved_at", kMS)}, "rule"},
	{"audit_log", "audit_log", []column{c("id", kText), c("at", kMS), c("actor_kind", kText), c("actor_name", kText), c("actor_id", kText), c("action", kText), c("target_kind", kText), c("target_name", kText), c("status", kInt), c("source", kText), c("request_id", kText), c("before_doc", kText), c("after_doc", kText), c("omitted", kBool)}, "id"},
}

// TableReport is the verification of one table (or "telemetry").
type TableReport struct {
	Table    string
	Rows     int64
	Checksum string // hex SHA-256 of the rows, equal on both sides
}

// Report is what Copy copied and verified.
type Report struct {
	Tables  []TableReport
	LastSeq uint64 // telemetry's WAL position, carried over
	// Journals are the replay points of named ingest journals (cluster
	// nodes), carried over.
	Journals map[string]uint64
}

// Copy copies the installation in dataDir into the PostgreSQL database at
// url and verifies it; see the package documentation. progress, if not
// nil, gets a line per table.
func Copy(ctx context.Context, dataDir, url string, progress io.Writer) (Report, error) {
	if progress == nil {
		progress = io.Discard
	}
	var rep Report
	src, err := sqlite.Open(datadir.DB(dataDir))
	if err != nil {
		return rep, fmt.Errorf("open %s: %w", datadir.DB(dataDir), err)
	}
	defer src.Close()
	// A second, plain handle on the same file for the raw table reads.
	raw, err := openRaw(datadir.DB(dataDir))
	if err != nil {
		return rep, fmt.Errorf("open %s: %w", datadir.DB(dataDir), err)
	}
	defer raw.Close()
	dst, err := storepostgres.Open(ctx, url, storepostgres.Options{MaxConns: 4})
	if err != nil {
		return rep, err
	}
	defer dst.Close()
	tdst, err := telemetrypostgres.Open(ctx, url, telemetrypostgres.Options{MaxConns: 4})
	if err != nil {
		return rep, err
	}
	defer tdst.Close()
	if err := checkEmpty(ctx, dst.Pool()); err != nil {
		return rep, err
	}

	// The registry: every table in one transaction.
	tx, err := dst.Pool().Begin(ctx)
	if err != nil {
		return rep, fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	for _, t := range tables {
		n, err := copyTable(ctx, raw, tx, t)
		if err != nil {
			return rep, fmt.Errorf("copy %s: %w", t.sqlite, err)
		}
		fmt.Fprintf(progress, "copied %-22s %d rows\n", t.pg, n)
	}
	if _, err := tx.Exec(ctx, `SELECT setval(pg_get_serial_sequence('commands', 'seq'), coalesce(max(seq), 0) + 1, false) FROM commands`); err != nil {
		return rep, fmt.Errorf("commands sequence: %w", err)
	}
	if _, err := tx.Exec(ctx, `SELECT setval(pg_get_serial_sequence('alarms', 'seq'), coalesce(max(seq), 0) + 1, false) FROM alarms`); err != nil {
		return rep, fmt.Errorf("alarms sequence: %w", err)
	}
	if _, err := tx.Exec(ctx, `SELECT setval(pg_get_serial_sequence('job_executions', 'seq'), coalesce(max(seq), 0) + 1, false) FROM job_executions`); err != nil {
		return rep, fmt.Errorf("job_executions sequence: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return rep, fmt.Errorf("commit: %w", err)
	}
	for _, t := range tables {
		tr, err := verifyTable(ctx, raw, dst.Pool(), t)
		if err != nil {
			return rep, err
		}
		rep.Tables = append(rep.Tables, tr)
		fmt.Fprintf(progress, "verified %-22s %d rows sha256 %s\n", t.pg, tr.Rows, tr.Checksum[:16])
	}

	// Telemetry.
	tsrc, err := telemetrysqlite.Open(datadir.Telemetry(dataDir))
	if err != nil {
		return rep, fmt.Errorf("open %s: %w", datadir.Telemetry(dataDir), err)
	}
	defer tsrc.Close()
	things, err := telemetryThings(ctx, datadir.Telemetry(dataDir))
	if err != nil {
		return rep, err
	}
	tr, err := copyTelemetry(ctx, tsrc, tdst, things)
	if err != nil {
		return rep, err
	}
	fmt.Fprintf(progress, "copied telemetry %d points\n", tr.Rows)
	check, err := telemetrySum(ctx, tdst, things)
	if err != nil {
		return rep, err
	}
	if check != tr {
		return rep, fmt.Errorf("verify telemetry: %d points sha256 %s in SQLite, %d points sha256 %s in PostgreSQL",
			tr.Rows, tr.Checksum, check.Rows, check.Checksum)
	}
	rep.Tables = append(rep.Tables, tr)
	fmt.Fprintf(progress, "verified telemetry %d points sha256 %s\n", tr.Rows, tr.Checksum[:16])
	if rep.LastSeq, err = tsrc.LastSeq(ctx); err != nil {
		return rep, err
	}
	if rep.LastSeq > 0 {
		if err := tdst.Append(ctx, nil, rep.LastSeq); err != nil {
			return rep, fmt.Errorf("carry over the WAL position: %w", err)
		}
	}
	if rep.Journals, err = copyJournals(ctx, datadir.Telemetry(dataDir), url); err != nil {
		return rep, err
	}
	return rep, nil
}

// copyJournals carries over the replay points of named ingest journals
// (telemetry journals table: cluster nodes, issue 12) into
// telemetry_journals, and returns them.
func copyJournals(ctx context.Context, path, url string) (map[string]uint64, error) {
	raw, err := openRaw(path)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	defer raw.Close()
	rows, err := raw.QueryContext(ctx, `SELECT journal, last_seq FROM journals ORDER BY journal`)
	if err != nil {
		return nil, fmt.Errorf("read journals: %w", err)
	}
	out := map[string]uint64{}
	for rows.Next() {
		var name string
		var seq int64
		if err := rows.Scan(&name, &seq); err != nil {
			rows.Close()
			return nil, fmt.Errorf("read journals: %w", err)
		}
		out[name] = uint64(seq)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read journals: %w", err)
	}
	for name, seq := range out {
		if name == "" || seq == 0 {
			continue
		}
		s, err := telemetrypostgres.Open(ctx, url, telemetrypostgres.Options{MaxConns: 1, Journal: name})
		if err != nil {
			return nil, err
		}
		err = s.Append(ctx, nil, seq)
		_ = s.Close()
		if err != nil {
			return nil, fmt.Errorf("carry over journal %q: %w", name, err)
		}
	}
	return out, nil
}

// openRaw opens a SQLite database file for reading.
func openRaw(path string) (*sql.DB, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	return sql.Open("sqlite", sqlitedb.DSN(abs, "mode=ro", "_pragma=busy_timeout(10000)", "_pragma=query_only(1)"))
}

// checkEmpty refuses a target that holds data: copying into it would mix
// two installations (the built-in policies a started server created are
// data too).
func checkEmpty(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}) error {
	for _, t := range append(tables, table{pg: "telemetry_series"}) {
		var any bool
		if err := q.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM `+t.pg+`)`).Scan(&any); err != nil {
			return fmt.Errorf("check that %s is empty: %w", t.pg, err)
		}
		if any {
			return &core.Error{Kind: core.KindConflict, Msg: fmt.Sprintf(
				"the target database is not empty (table %s has rows); migrate-store copies into a new database only", t.pg)}
		}
	}
	return nil
}

func selectSQL(t table, pg bool) string {
	q := "SELECT "
	for i, col := range t.cols {
		if i > 0 {
			q += ", "
		}
		if pg {
			q += col.pg
		} else {
			q += `"` + col.sqlite + `"`
		}
	}
	name := t.sqlite
	if pg {
		name = t.pg
	}
	return q + " FROM " + name + " ORDER BY " + t.key
}

// fromSQLite converts a SQLite value to what pgx writes for kind.
func fromSQLite(v any, kind int) (any, error) {
	if v == nil {
		return nil, nil
	}
	switch kind {
	case kText:
		switch x := v.(type) {
		case string:
			return x, nil
		case []byte:
			return string(x), nil
		}
	case kBytes:
		switch x := v.(type) {
		case []byte:
			return x, nil
		case string:
			return []byte(x), nil
		}
	case kInt:
		if x, ok := v.(int64); ok {
			return x, nil
		}
	case kBool:
		if x, ok := v.(int64); ok {
			return x != 0, nil
		}
	case kMS:
		if x, ok := v.(int64); ok {
			return time.UnixMilli(x).UTC(), nil
		}
	}
	return nil, fmt.Errorf("unexpected %T for a column of kind %d", v, kind)
}

// copyTable copies one table with COPY.
func copyTable(ctx context.Context, raw *sql.DB, tx pgx.Tx, t table) (int64, error) {
	rows, err := raw.QueryContext(ctx, selectSQL(t, false))
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	var data [][]any
	for rows.Next() {
		vals := make([]any, len(t.cols))
		ptrs := make([]any, len(t.cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return 0, err
		}
		for i, col := range t.cols {
			if vals[i], err = fromSQLite(vals[i], col.kind); err != nil {
				return 0, fmt.Errorf("%s: %w", col.sqlite, err)
			}
		}
		data = append(data, vals)
	}
	if err := rows.Err(); err != nil {
		return 0, err
	}
	cols := make([]string, len(t.cols))
	for i, col := range t.cols {
		cols[i] = col.pg
	}
	return tx.CopyFrom(ctx, pgx.Identifier{t.pg}, cols, pgx.CopyFromRows(data))
}

// summer hashes rows of canonical values.
type summer struct {
	h    hash.Hash
	rows int64
	buf  []byte
}

func newSummer() *summer { return &summer{h: sha256.New()} }

// add adds one value: nil, an int64 (also a time in ms or a boolean as
// 0/1), or bytes, each tagged and length-prefixed so that no two rows hash
// alike by accident.
func (s *summer) add(v any) error {
	b := s.buf[:0]
	switch x := v.(type) {
	case nil:
		b = append(b, 0)
	case int64:
		b = append(b, 1)
		b = binary.BigEndian.AppendUint64(b, uint64(x))
	case []byte:
		b = append(b, 2)
		b = binary.BigEndian.AppendUint64(b, uint64(len(x)))
		b = append(b, x...)
	default:
		return fmt.Errorf("checksum: unexpected %T", v)
	}
	s.buf = b
	s.h.Write(b)
	return nil
}

func (s *summer) report(name string) TableReport {
	return TableReport{Table: name, Rows: s.rows, Checksum: hex.EncodeToString(s.h.Sum(nil))}
}

// canonical converts a value read from either side to what summer takes.
func canonical(v any, kind int) (any, error) {
	switch x := v.(type) {
	case nil:
		return nil, nil
	case time.Time:
		return x.UnixMilli(), nil
	case bool:
		if x {
			return int64(1), nil
		}
		return int64(0), nil
	case int64:
		if kind == kBool && x != 0 {
			return int64(1), nil
		}
		return x, nil
	case int32:
		return int64(x), nil
	case int16:
		return int64(x), nil
	case string:
		return []byte(x), nil
	case []byte:
		return x, nil
	}
	return nil, fmt.Errorf("unexpected %T", v)
}

// sumRows hashes every row of rows (values scanned as any).
func sumRows(t table, next func() bool, scan func(dest ...any) error, name string) (TableReport, error) {
	s := newSummer()
	vals := make([]any, len(t.cols))
	ptrs := make([]any, len(t.cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	for next() {
		if err := scan(ptrs...); err != nil {
			return TableReport{}, err
		}
		for i, col := range t.cols {
			v, err := canonical(vals[i], col.kind)
			if err != nil {
				return TableReport{}, fmt.Errorf("%s.%s: %w", name, col.pg, err)
			}
			if err := s.add(v); err != nil {
				return TableReport{}, err
			}
		}
		s.rows++
	}
	return s.report(name), nil
}

// verifyTable compares the count and checksum of a table on both sides.
func verifyTable(ctx context.Context, raw *sql.DB, pool interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}, t table) (TableReport, error) {
	srows, err := raw.QueryContext(ctx, selectSQL(t, false))
	if err != nil {
		return TableReport{}, fmt.Errorf("verify %s: %w", t.sqlite, err)
	}
	want, err := sumRows(t, srows.Next, srows.Scan, t.pg)
	srows.Close()
	if err == nil {
		err = srows.Err()
	}
	if err != nil {
		return TableReport{}, fmt.Errorf("verify %s: %w", t.sqlite, err)
	}
	prows, err := pool.Query(ctx, selectSQL(t, true))
	if err != nil {
		return TableReport{}, fmt.Errorf("verify %s: %w", t.pg, err)
	}
	got, err := sumRows(t, prows.Next, prows.Scan, t.pg)
	prows.Close()
	if err == nil {
		err = prows.Err()
	}
	if err != nil {
		return TableReport{}, fmt.Errorf("verify %s: %w", t.pg, err)
	}
	if got != want {
		return TableReport{}, fmt.Errorf("verify %s: %d rows sha256 %s in SQLite, %d rows sha256 %s in PostgreSQL",
			t.pg, want.Rows, want.Checksum, got.Rows, got.Checksum)
	}
	return got, nil
}

// telemetryThings lists the things that have telemetry series.
func telemetryThings(ctx context.Context, path string) ([]string, error) {
	db, err := openRaw(path)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	defer db.Close()
	rows, err := db.QueryContext(ctx, `SELECT DISTINCT thing FROM series ORDER BY thing`)
	if err != nil {
		return nil, fmt.Errorf("list telemetry things: %w", err)
	}
	defer rows.Close()
	var things []string
	for rows.Next() {
		var t string
		if err := rows.Scan(&t); err != nil {
			return nil, err
		}
		things = append(things, t)
	}
	return things, rows.Err()
}

// eachPoint calls fn with every point of things in Range order (thing,
// key, ts, arrival), a page at a time.
func eachPoint(ctx context.Context, s telemetry.Store, things []string, fn func([]telemetry.Point) error) error {
	for start := 0; start < len(things); start += telemetry.MaxQueryThings {
		q := telemetry.RangeQuery{Things: things[start:min(start+telemetry.MaxQueryThings, len(things))],
			From: 0, To: telemetry.MaxTS + 1, Limit: telemetry.MaxLimit}
		for {
			page, next, err := s.Range(ctx, q)
			if err != nil {
				return fmt.Errorf("read telemetry: %w", err)
			}
			if err := fn(page); err != nil {
				return err
			}
			if next == "" {
				break
			}
			q.Cursor = next
		}
	}
	return nil
}

// sumPoints adds points to a checksum.
func sumPoints(s *summer, page []telemetry.Point) {
	for _, p := range page {
		s.add([]byte(p.Thing))
		s.add([]byte(p.Key))
		s.add(p.TS)
		s.add(int64(p.Value.Kind()))
		switch p.Value.Kind() {
		case telemetry.KindString:
			s.add([]byte(p.Value.Text()))
		default:
			s.add(int64(math.Float64bits(p.Value.Float())))
			if p.Value.Bool() {
				s.add(int64(1))
			}
		}
		s.rows++
	}
}

// copyTelemetry appends every point of src to dst (Range order keeps each
// series in time and arrival order) and returns their checksum.
func copyTelemetry(ctx context.Context, src, dst telemetry.Store, things []string) (TableReport, error) {
	s := newSummer()
	err := eachPoint(ctx, src, things, func(page []telemetry.Point) error {
		sumPoints(s, page)
		if len(page) == 0 {
			return nil
		}
		return dst.Append(ctx, page, 0)
	})
	return s.report("telemetry"), err
}

// telemetrySum is the checksum of every point of things in s.
func telemetrySum(ctx context.Context, s telemetry.Store, things []string) (TableReport, error) {
	sum := newSummer()
	err := eachPoint(ctx, s, things, func(page []telemetry.Point) error { sumPoints(sum, page); return nil })
	return sum.report("telemetry"), err
}
