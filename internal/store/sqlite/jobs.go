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

type jobStore struct{ s *Store }

const jobSelect = `SELECT id, description, status, continuous, spec, reason_code, comment, released, released_at, created_at, updated_at, completed_at FROM jobs`

func scanJob(row scanner) (store.Job, error) {
	var (
		j                       store.Job
		cont                    int64
		relAt, created, updated int64
		completed               sql.NullInt64
	)
	if err := row.Scan(&j.ID, &j.Description, &j.Status, &cont, &j.Spec, &j.ReasonCode, &j.Comment, &j.Released, &relAt, &created, &updated, &completed); err != nil {
		return store.Job{}, err
	}
	j.Continuous = cont != 0
	j.ReleasedAt, j.CreatedAt, j.UpdatedAt = fromMS(relAt), fromMS(created), fromMS(updated)
	j.CompletedAt = ptrMS(completed)
	return j, nil
}

const execSelect = `SELECT job, thing, status, status_details, queued_at, started_at, last_updated_at, timeout_at, version, execution_number, retries FROM job_executions`

func scanExecution(row scanner) (store.JobExecution, error) {
	var (
		e                        store.JobExecution
		details                  sql.NullString
		queued, started, timeout sql.NullInt64
		updated                  int64
	)
	if err := row.Scan(&e.JobID, &e.Thing, &e.Status, &details, &queued, &started, &updated, &timeout, &e.VersionNumber, &e.ExecutionNumber, &e.Retries); err != nil {
		return store.JobExecution{}, err
	}
	if details.Valid {
		if err := json.Unmarshal([]byte(details.String), &e.StatusDetails); err != nil {
			return store.JobExecution{}, err
		}
	}
	e.QueuedAt, e.StartedAt, e.TimeoutAt = ptrMS(queued), ptrMS(started), ptrMS(timeout)
	e.LastUpdatedAt = fromMS(updated)
	return e, nil
}

func detailsText(m map[string]string) any {
	if m == nil {
		return nil
	}
	b, _ := json.Marshal(m)
	return string(b)
}

func queryList[T any](ctx context.Context, q querier, op string, scan func(scanner) (T, error), query string, args ...any) ([]T, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, internal(op, err)
	}
	defer rows.Close()
	list := []T{}
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, internal(op, err)
		}
		list = append(list, v)
	}
	if err := rows.Err(); err != nil {
		return nil, internal(op, err)
	}
	return list, nil
}

func getExecution(ctx context.Context, q querier, id, thing string) (store.JobExecution, error) {
	return getOne(q.QueryRowContext(ctx, execSelect+` WHERE job = ? AND thing = ?`, id, thing), scanExecution, "job execution", id+"/"+thing)
}

// Create stores a job and a scheduled execution per existing thing.
func (js *jobStore) Create(ctx context.Context, j store.Job, things []string) (store.Job, int, error) {
	if err := requireName("jobId", j.ID); err != nil {
		return store.Job{}, 0, err
	}
	j.CreatedAt, j.UpdatedAt = createdUpdated(j.CreatedAt, j.UpdatedAt)
	if j.ReleasedAt.IsZero() {
		j.ReleasedAt = j.CreatedAt
	}
	var (
		out store.Job
		n   int
	)
	err := js.s.inTx(ctx, func(tx *sql.Tx) error {
		dup, err := exists(ctx, tx, `SELECT 1 FROM jobs WHERE id = ?`, j.ID)
		if err != nil {
			return err
		}
		if dup {
			return core.Conflict("job %q already exists", j.ID)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO jobs (id, description, status, continuous, spec, reason_code, comment, released, released_at, created_at, updated_at, completed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			j.ID, j.Description, j.Status, boolInt(j.Continuous), j.Spec, j.ReasonCode, j.Comment, j.Released, toMS(j.ReleasedAt), toMS(j.CreatedAt), toMS(j.UpdatedAt), nullMS(j.CompletedAt)); err != nil {
			return internal("create job", err)
		}
		added, err := addExecutions(ctx, tx, j.ID, things, j.CreatedAt)
		if err != nil {
			return err
		}
		n = len(added)
		out, err = getOne(tx.QueryRowContext(ctx, jobSelect+` WHERE id = ?`, j.ID), scanJob, "job", j.ID)
		return err
	})
	return out, n, err
}

// addExecutions inserts scheduled executions for every thing in one
// statement (the names as a JSON array), in the order given: missing
// things and existing executions are skipped.
func addExecutions(ctx context.Context, tx *sql.Tx, id string, things []string, at time.Time) ([]string, error) {
	if len(things) == 0 {
		return []string{}, nil
	}
	names, err := json.Marshal(things)
	if err != nil {
		return nil, internal("add job executions", err)
	}
	return queryList(ctx, tx, "add job executions", func(r scanner) (string, error) {
		var t string
		return t, r.Scan(&t)
	}, `INSERT INTO job_executions (job, thing, status, last_updated_at, version, execution_number)
		SELECT ?, t.name, 'SCHEDULED', ?, 1, 1 FROM json_each(?) AS j JOIN things AS t ON t.name = j.value
		WHERE true ORDER BY j.key
		ON CONFLICT (job, thing) DO NOTHING RETURNING thing`, id, toMS(at), string(names))
}

func (js *jobStore) Get(ctx context.Context, id string) (store.Job, error) {
	return getOne(js.s.r.QueryRowContext(ctx, jobSelect+` WHERE id = ?`, id), scanJob, "job", id)
}

func (js *jobStore) List(ctx context.Context, after string, limit int) ([]store.Job, error) {
	return queryList(ctx, js.s.r, "list jobs", scanJob, jobSelect+` WHERE id > ? ORDER BY id LIMIT ?`, after, normLimit(limit))
}

func (js *jobStore) Update(ctx context.Context, j store.Job) (store.Job, error) {
	var out store.Job
	err := js.s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE jobs SET status = ?, reason_code = ?, comment = ?, completed_at = ?, updated_at = ? WHERE id = ?`,
			j.Status, j.ReasonCode, j.Comment, nullMS(j.CompletedAt), toMS(now()), j.ID)
		if err != nil {
			return internal("update job", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return core.NotFound("job", j.ID)
		}
		out, err = getOne(tx.QueryRowContext(ctx, jobSelect+` WHERE id = ?`, j.ID), scanJob, "job", j.ID)
		return err
	})
	return out, err
}

func (js *jobStore) Delete(ctx context.Context, id string) error {
	return js.s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM jobs WHERE id = ?`, id)
		if err != nil {
			return internal("delete job", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return core.NotFound("job", id)
		}
		return nil
	})
}

func (js *jobStore) AddExecutions(ctx context.Context, id string, things []string) ([]string, error) {
	var added []string
	err := js.s.inTx(ctx, func(tx *sql.Tx) error {
		ok, err := exists(ctx, tx, `SELECT 1 FROM jobs WHERE id = ?`, id)
		if err != nil {
			return err
		}
		if !ok {
			return core.NotFound("job", id)
		}
		added, err = addExecutions(ctx, tx, id, things, now())
		return err
	})
	return added, err
}

func (js *jobStore) Release(ctx context.Context, id string, n int, at, clock time.Time) ([]store.JobExecution, error) {
	var out []store.JobExecution
	err := js.s.inTx(ctx, func(tx *sql.Tx) error {
		var err error
		out, err = queryList(ctx, tx, "release job executions", scanExecution,
			`UPDATE job_executions SET status = 'QUEUED', queued_at = ?1, last_updated_at = ?1, version = version + 1
			 WHERE seq IN (SELECT seq FROM job_executions WHERE job = ?2 AND status = 'SCHEDULED' ORDER BY seq LIMIT ?3)
			 RETURNING job, thing, status, status_details, queued_at, started_at, last_updated_at, timeout_at, version, execution_number, retries`,
			toMS(at), id, max(n, 0))
		if err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `UPDATE jobs SET released = released + ?, released_at = ? WHERE id = ?`, len(out), toMS(clock), id)
		if err != nil {
			return internal("release job executions", err)
		}
		if k, _ := res.RowsAffected(); k == 0 {
			return core.NotFound("job", id)
		}
		return nil
	})
	return out, err
}

func (js *jobStore) Execution(ctx context.Context, id, thing string) (store.JobExecution, error) {
	return getExecution(ctx, js.s.r, id, thing)
}

func (js *jobStore) Executions(ctx context.Context, f store.JobExecutionFilter) ([]store.JobExecution, error) {
	var (
		where []string
		args  []any
		order = "thing"
	)
	if f.JobID != "" {
		where = append(where, "job = ?")
		args = append(args, f.JobID)
		if f.After != "" {
			where = append(where, "thing > ?")
			args = append(args, f.After)
		}
	}
	if f.Thing != "" {
		where = append(where, "thing = ?")
		args = append(args, f.Thing)
		if f.JobID == "" {
			order = "coalesce(queued_at, last_updated_at), seq"
		}
	}
	if len(f.Statuses) > 0 {
		where = append(where, "status IN (?"+strings.Repeat(", ?", len(f.Statuses)-1)+")")
		for _, s := range f.Statuses {
			args = append(args, s)
		}
	}
	q := execSelect
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, " AND ")
	}
	args = append(args, normLimit(f.Limit))
	return queryList(ctx, js.s.r, "list job executions", scanExecution, q+` ORDER BY `+order+` LIMIT ?`, args...)
}

func (js *jobStore) UpdateExecution(ctx context.Context, e store.JobExecution, version int64) (store.JobExecution, error) {
	var out store.JobExecution
	upd := e.LastUpdatedAt
	if upd.IsZero() {
		upd = now()
	}
	err := js.s.inTx(ctx, func(tx *sql.Tx) error {
		cur, err := getExecution(ctx, tx, e.JobID, e.Thing)
		if err != nil {
			return err
		}
		if cur.VersionNumber != version {
			out = cur
			return core.Conflict("job execution %s/%s is at version %d, not %d", e.JobID, e.Thing, cur.VersionNumber, version)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE job_executions SET status = ?, status_details = ?, queued_at = ?, started_at = ?, timeout_at = ?, execution_number = ?, retries = ?, last_updated_at = ?, version = version + 1 WHERE job = ? AND thing = ?`,
			e.Status, detailsText(e.StatusDetails), nullMS(e.QueuedAt), nullMS(e.StartedAt), nullMS(e.TimeoutAt), e.ExecutionNumber, e.Retries, toMS(upd), e.JobID, e.Thing); err != nil {
			return internal("update job execution", err)
		}
		out, err = getExecution(ctx, tx, e.JobID, e.Thing)
		return err
	})
	return out, err
}

func (js *jobStore) TransitionAll(ctx context.Context, id string, from []string, to string, at time.Time) ([]string, error) {
	if len(from) == 0 {
		return []string{}, nil
	}
	var things []string
	err := js.s.inTx(ctx, func(tx *sql.Tx) error {
		args := []any{to, toMS(at), id}
		for _, s := range from {
			args = append(args, s)
		}
		var err error
		things, err = queryList(ctx, tx, "transition job executions", func(r scanner) (string, error) {
			var t string
			return t, r.Scan(&t)
		}, `UPDATE job_executions SET status = ?, last_updated_at = ?, version = version + 1, timeout_at = NULL
			WHERE job = ? AND status IN (?`+strings.Repeat(", ?", len(from)-1)+`) RETURNING thing`, args...)
		return err
	})
	return things, err
}

func (js *jobStore) Counts(ctx context.Context, id string) (map[string]int, error) {
	type row struct {
		status string
		n      int
	}
	rows, err := queryList(ctx, js.s.r, "count job executions", func(r scanner) (row, error) {
		var x row
		return x, r.Scan(&x.status, &x.n)
	}, `SELECT status, count(*) FROM job_executions WHERE job = ? GROUP BY status`, id)
	if err != nil {
		return nil, err
	}
	m := map[string]int{}
	for _, r := range rows {
		m[r.status] = r.n
	}
	return m, nil
}

func (js *jobStore) TimedOut(ctx context.Context, at time.Time, limit int) ([]store.JobExecution, error) {
	return queryList(ctx, js.s.r, "timed out job executions", scanExecution,
		execSelect+` WHERE status = 'IN_PROGRESS' AND timeout_at <= ? ORDER BY timeout_at LIMIT ?`, toMS(at), normLimit(limit))
}
