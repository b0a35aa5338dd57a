package postgres

import (
	"context"
	"encoding/json"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/store"
)

type jobStore struct{ s *Store }

const jobSelect = `SELECT id, description, status, continuous, spec, reason_code, comment, released, released_at, created_at, updated_at, completed_at FROM jobs`

func scanJob(row scanner) (store.Job, error) {
	var (
		j         store.Job
		completed *time.Time
	)
	if err := row.Scan(&j.ID, &j.Description, &j.Status, &j.Continuous, &j.Spec, &j.ReasonCode, &j.Comment, &j.Released, &j.ReleasedAt, &j.CreatedAt, &j.UpdatedAt, &completed); err != nil {
		return store.Job{}, err
	}
	j.ReleasedAt, j.CreatedAt, j.UpdatedAt = j.ReleasedAt.UTC(), j.CreatedAt.UTC(), j.UpdatedAt.UTC()
	j.CompletedAt = utcPtr(completed)
	return j, nil
}

const execColumns = `job, thing, status, status_details, queued_at, started_at, last_updated_at, timeout_at, version, execution_number, retries`

const execSelect = `SELECT ` + execColumns + ` FROM job_executions`

func scanExecution(row scanner) (store.JobExecution, error) {
	var (
		e                        store.JobExecution
		details                  *string
		queued, started, timeout *time.Time
	)
	if err := row.Scan(&e.JobID, &e.Thing, &e.Status, &details, &queued, &started, &e.LastUpdatedAt, &timeout, &e.VersionNumber, &e.ExecutionNumber, &e.Retries); err != nil {
		return store.JobExecution{}, err
	}
	if details != nil {
		if err := json.Unmarshal([]byte(*details), &e.StatusDetails); err != nil {
			return store.JobExecution{}, err
		}
	}
	e.QueuedAt, e.StartedAt, e.TimeoutAt = utcPtr(queued), utcPtr(started), utcPtr(timeout)
	e.LastUpdatedAt = e.LastUpdatedAt.UTC()
	return e, nil
}

func detailsText(m map[string]string) *string {
	if m == nil {
		return nil
	}
	b, _ := json.Marshal(m)
	s := string(b)
	return &s
}

func getExecution(ctx context.Context, q querier, id, thing string, lock bool) (store.JobExecution, error) {
	query := execSelect + ` WHERE job = $1 AND thing = $2`
	if lock {
		query += ` FOR UPDATE`
	}
	return getOne(q.QueryRow(ctx, query, id, thing), scanExecution, "job execution", id+"/"+thing)
}

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
	err := js.s.inTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `INSERT INTO jobs (id, description, status, continuous, spec, reason_code, comment, released, released_at, created_at, updated_at, completed_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT (id) DO NOTHING`,
			j.ID, j.Description, j.Status, j.Continuous, j.Spec, j.ReasonCode, j.Comment, j.Released, ms(j.ReleasedAt), j.CreatedAt, j.UpdatedAt, msPtr(j.CompletedAt))
		if err != nil {
			return internal("create job", err)
		}
		if tag.RowsAffected() == 0 {
			return core.Conflict("job %q already exists", j.ID)
		}
		added, err := addExecutions(ctx, tx, j.ID, things, j.CreatedAt)
		if err != nil {
			return err
		}
		n = len(added)
		out, err = getOne(tx.QueryRow(ctx, jobSelect+` WHERE id = $1`, j.ID), scanJob, "job", j.ID)
		return err
	})
	return out, n, err
}

// addExecutions inserts scheduled executions for every thing in one
// statement, in the order given; missing things and existing executions
// are skipped.
func addExecutions(ctx context.Context, tx pgx.Tx, id string, things []string, at time.Time) ([]string, error) {
	if things == nil {
		things = []string{}
	}
	return queryList(ctx, tx, "add job executions", func(r scanner) (string, error) {
		var t string
		return t, r.Scan(&t)
	}, `INSERT INTO job_executions (job, thing, status, last_updated_at, version, execution_number)
		SELECT $1, t.name, 'SCHEDULED', $2, 1, 1
		FROM unnest($3::text[]) WITH ORDINALITY AS u(name, ord) JOIN things t ON t.name = u.name
		ORDER BY u.ord
		ON CONFLICT (job, thing) DO NOTHING RETURNING thing`, id, ms(at), things)
}

func (js *jobStore) Get(ctx context.Context, id string) (store.Job, error) {
	return getOne(js.s.pool.QueryRow(ctx, jobSelect+` WHERE id = $1`, id), scanJob, "job", id)
}

func (js *jobStore) List(ctx context.Context, after string, limit int) ([]store.Job, error) {
	return queryList(ctx, js.s.pool, "list jobs", scanJob, jobSelect+` WHERE id > $1 ORDER BY id LIMIT $2`, after, normLimit(limit))
}

func (js *jobStore) Update(ctx context.Context, j store.Job) (store.Job, error) {
	return getOne(js.s.pool.QueryRow(ctx, `UPDATE jobs SET status = $1, reason_code = $2, comment = $3, completed_at = $4, updated_at = $5 WHERE id = $6
		RETURNING id, description, status, continuous, spec, reason_code, comment, released, released_at, created_at, updated_at, completed_at`,
		j.Status, j.ReasonCode, j.Comment, msPtr(j.CompletedAt), now(), j.ID), scanJob, "job", j.ID)
}

func (js *jobStore) Delete(ctx context.Context, id string) error {
	tag, err := js.s.pool.Exec(ctx, `DELETE FROM jobs WHERE id = $1`, id)
	return affected(tag, err, "delete job", "job", id)
}

func (js *jobStore) AddExecutions(ctx context.Context, id string, things []string) ([]string, error) {
	var added []string
	err := js.s.inTx(ctx, func(tx pgx.Tx) error {
		ok, err := exists(ctx, tx, `SELECT 1 FROM jobs WHERE id = $1 FOR SHARE`, id)
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
	err := js.s.inTx(ctx, func(tx pgx.Tx) error {
		// The job row is locked first: two nodes releasing the same job
		// take turns, so nothing is released twice.
		ok, err := exists(ctx, tx, `SELECT 1 FROM jobs WHERE id = $1 FOR UPDATE`, id)
		if err != nil {
			return err
		}
		if !ok {
			return core.NotFound("job", id)
		}
		out, err = queryList(ctx, tx, "release job executions", scanExecution,
			`UPDATE job_executions SET status = 'QUEUED', queued_at = $1, last_updated_at = $1, version = version + 1
			 WHERE seq IN (SELECT seq FROM job_executions WHERE job = $2 AND status = 'SCHEDULED' ORDER BY seq LIMIT $3)
			 RETURNING `+execColumns, ms(at), id, max(n, 0))
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE jobs SET released = released + $1, released_at = $2 WHERE id = $3`, len(out), ms(clock), id); err != nil {
			return internal("release job executions", err)
		}
		return nil
	})
	return out, err
}

func (js *jobStore) Execution(ctx context.Context, id, thing string) (store.JobExecution, error) {
	return getExecution(ctx, js.s.pool, id, thing, false)
}

func (js *jobStore) Executions(ctx context.Context, f store.JobExecutionFilter) ([]store.JobExecution, error) {
	var (
		a     args
		where []string
		order = "thing"
	)
	if f.JobID != "" {
		where = append(where, "job = "+a.add(f.JobID))
		if f.After != "" {
			where = append(where, "thing > "+a.add(f.After))
		}
	}
	if f.Thing != "" {
		where = append(where, "thing = "+a.add(f.Thing))
		if f.JobID == "" {
			order = "coalesce(queued_at, last_updated_at), seq"
		}
	}
	if len(f.Statuses) > 0 {
		where = append(where, "status = ANY("+a.add(f.Statuses)+"::text[])")
	}
	q := execSelect
	for i, w := range where {
		if i == 0 {
			q += " WHERE " + w
		} else {
			q += " AND " + w
		}
	}
	q += " ORDER BY " + order + " LIMIT " + a.add(normLimit(f.Limit))
	return queryList(ctx, js.s.pool, "list job executions", scanExecution, q, a...)
}

func (js *jobStore) UpdateExecution(ctx context.Context, e store.JobExecution, version int64) (store.JobExecution, error) {
	var out store.JobExecution
	upd := e.LastUpdatedAt
	if upd.IsZero() {
		upd = now()
	}
	err := js.s.inTx(ctx, func(tx pgx.Tx) error {
		cur, err := getExecution(ctx, tx, e.JobID, e.Thing, true)
		if err != nil {
			return err
		}
		if cur.VersionNumber != version {
			out = cur
			return core.Conflict("job execution %s/%s is at version %d, not %d", e.JobID, e.Thing, cur.VersionNumber, version)
		}
		out, err = getOne(tx.QueryRow(ctx, `UPDATE job_executions SET status = $1, status_details = $2, queued_at = $3, started_at = $4, timeout_at = $5, execution_number = $6, retries = $7, last_updated_at = $8, version = version + 1
			WHERE job = $9 AND thing = $10 RETURNING `+execColumns,
			e.Status, detailsText(e.StatusDetails), msPtr(e.QueuedAt), msPtr(e.StartedAt), msPtr(e.TimeoutAt), e.ExecutionNumber, e.Retries, ms(upd), e.JobID, e.Thing),
			scanExecution, "job execution", e.JobID+"/"+e.Thing)
		return err
	})
	return out, err
}

func (js *jobStore) TransitionAll(ctx context.Context, id string, from []string, to string, at time.Time) ([]string, error) {
	if len(from) == 0 {
		return []string{}, nil
	}
	return queryList(ctx, js.s.pool, "transition job executions", func(r scanner) (string, error) {
		var t string
		return t, r.Scan(&t)
	}, `UPDATE job_executions SET status = $1, last_updated_at = $2, version = version + 1, timeout_at = NULL
		WHERE job = $3 AND status = ANY($4::text[]) RETURNING thing`, to, ms(at), id, from)
}

func (js *jobStore) Counts(ctx context.Context, id string) (map[string]int, error) {
	type row struct {
		status string
		n      int
	}
	rows, err := queryList(ctx, js.s.pool, "count job executions", func(r scanner) (row, error) {
		var x row
		return x, r.Scan(&x.status, &x.n)
	}, `SELECT status, count(*) FROM job_executions WHERE job = $1 GROUP BY status`, id)
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
	return queryList(ctx, js.s.pool, "timed out job executions", scanExecution,
		execSelect+` WHERE status = 'IN_PROGRESS' AND timeout_at <= $1 ORDER BY timeout_at LIMIT $2`, ms(at), normLimit(limit))
}
