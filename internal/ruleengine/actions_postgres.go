package ruleengine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// The postgres action inserts the rule's output as a row:
//
//	{"type":"postgres","url":"postgres://mote:pass@db:5432/plant",
//	 "table":"readings","columns":{"thing":"device","temp":"temp","at":"ts"}}
//
// columns maps each column to a member of the SELECT's output; a missing
// or null member is NULL, a string is sent as is, other values as their
// JSON text, which PostgreSQL converts to the column's type (numbers,
// booleans, json/jsonb, timestamps as text). A destination inserts what
// is queued for it in one multi-row INSERT (up to Options.ActionBatch and
// MaxPostgresBatch rows),
// over a small pool of its own. A batch that fails otherwise (connection,
// missing table) is retried whole; after its retries every row of it goes
// to the error action. The URL's
// password is sealed at rest. A batch with a row the table refuses (a data
// or constraint error) is sent again row by row, so only that row fails.

// Limits of the postgres action.
const (
	MaxPostgresColumns = 100
	MaxPostgresBatch   = 500 // rows per INSERT
)

var pgIdent = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,62}$`)

func checkPostgres(c *compiledAction, bad badFunc) error {
	a := &c.Action
	u, err := url.Parse(a.URL)
	if a.URL == "" || err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") || u.Host == "" {
		return bad("url", "a postgres action needs a postgres://user:password@host:port/db URL")
	}
	parts := strings.Split(a.Table, ".")
	if a.Table == "" || len(parts) > 2 {
		return bad("table", "a postgres action needs a table: name or schema.name")
	}
	for _, p := range parts {
		if !pgIdent.MatchString(p) {
			return bad("table", "%q: a name is letters, digits and _ (not first a digit), up to 63", a.Table)
		}
	}
	if len(a.Columns) == 0 || len(a.Columns) > MaxPostgresColumns {
		return bad("columns", "a postgres action needs 1 to %d columns: {\"column\": \"output field\"}", MaxPostgresColumns)
	}
	for col, f := range a.Columns {
		if !pgIdent.MatchString(col) {
			return bad("columns", "column %q: a name is letters, digits and _ (not first a digit), up to 63", col)
		}
		if f == "" {
			return bad("columns", "column %q: needs the output field it takes", col)
		}
		c.cols = append(c.cols, col)
	}
	sort.Strings(c.cols)
	return nil
}

// postgresBatch is how many rows one INSERT of the action takes (at most
// 65,535 parameters per statement).
func postgresBatch(a *compiledAction) int {
	return max(1, min(MaxPostgresBatch, 65535/max(1, len(a.cols))))
}

type postgresSink struct {
	a     *compiledAction
	pool  *pgxpool.Pool
	table string // quoted
	cols  string // quoted, comma-separated
}

func newPostgresSink(ctx context.Context, a *compiledAction, d *destination) (sink, error) {
	cfg, err := pgxpool.ParseConfig(a.URL)
	if err != nil {
		return nil, fmt.Errorf("postgres %s: the URL does not parse", redactedURL(a.URL))
	}
	cfg.MaxConns = int32(max(1, min(d.e.opts.ActionConcurrency, 4)))
	cfg.MinConns = 0
	cfg.ConnConfig.RuntimeParams["application_name"] = "mote rule " + d.rule.rule.Name
	pool, err := pgxpool.NewWithConfig(ctx, cfg) // connects lazily
	if err != nil {
		return nil, fmt.Errorf("postgres %s: %w", redactedURL(a.URL), err)
	}
	quoted := make([]string, len(a.cols))
	for i, c := range a.cols {
		quoted[i] = pgx.Identifier{c}.Sanitize()
	}
	return &postgresSink{a: a, pool: pool,
		table: pgx.Identifier(strings.Split(a.Table, ".")).Sanitize(),
		cols:  strings.Join(quoted, ", ")}, nil
}

func (s *postgresSink) send(ctx context.Context, jobs []job) error {
	var sql strings.Builder
	sql.WriteString("INSERT INTO " + s.table + " (" + s.cols + ") VALUES ")
	args := make([]any, 0, len(jobs)*len(s.a.cols))
	for i, j := range jobs {
		var out map[string]json.RawMessage
		if err := json.Unmarshal(j.body, &out); err != nil {
			return fmt.Errorf("postgres: the output is not a JSON object")
		}
		if i > 0 {
			sql.WriteString(", ")
		}
		sql.WriteByte('(')
		for k, col := range s.a.cols {
			if k > 0 {
				sql.WriteString(", ")
			}
			args = append(args, pgValue(out[s.a.Columns[col]]))
			sql.WriteString("$" + strconv.Itoa(len(args)))
		}
		sql.WriteByte(')')
	}
	if _, err := s.pool.Exec(ctx, sql.String(), args...); err != nil {
		return fmt.Errorf("postgres insert into %s: %w", s.a.Table, pgError(err))
	}
	return nil
}

// pgValue is the parameter for one member of the output: nil for a
// missing or null one, text otherwise (PostgreSQL converts it).
func pgValue(raw json.RawMessage) any {
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	if raw[0] == '"' {
		var s string
		if json.Unmarshal(raw, &s) == nil {
			return s
		}
	}
	return string(raw)
}

// pgError keeps what an error says about the table and the connection,
// but not a data error's message, which may quote the payload.
func pgError(err error) error {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return err
	}
	switch {
	case strings.HasPrefix(pe.Code, "22"), strings.HasPrefix(pe.Code, "23"):
		msg := "SQLSTATE " + pe.Code
		if pe.ColumnName != "" {
			msg += " column " + pe.ColumnName
		}
		if pe.ConstraintName != "" {
			msg += " constraint " + pe.ConstraintName
		}
		return &rowError{"a value does not fit the table (" + msg + ")"}
	}
	return err
}

// rowError is a row the table refuses: the destination sends the rows of
// the batch one by one, so only that row fails.
type rowError struct{ msg string }

func (e *rowError) Error() string { return e.msg }

func (s *postgresSink) close() { s.pool.Close() }
