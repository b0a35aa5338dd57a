-- 0003: as SQLite migration 0010. Jobs (internal/jobs) and their
-- executions, one per thing; released/released_at are the rollout's
-- progress, kept with every release.
CREATE TABLE jobs (
    id           text COLLATE "C" NOT NULL PRIMARY KEY,
    description  text NOT NULL DEFAULT '',
    status       text NOT NULL,
    continuous   boolean NOT NULL DEFAULT false,
    spec         bytea NOT NULL,
    reason_code  text NOT NULL DEFAULT '',
    comment      text NOT NULL DEFAULT '',
    released     bigint NOT NULL DEFAULT 0,
    released_at  timestamptz NOT NULL,
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL,
    completed_at timestamptz
);

CREATE TABLE job_executions (
    seq              bigserial PRIMARY KEY,
    job              text COLLATE "C" NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    thing            text COLLATE "C" NOT NULL REFERENCES things (name) ON DELETE CASCADE,
    status           text NOT NULL,
    status_details   text,
    queued_at        timestamptz,
    started_at       timestamptz,
    last_updated_at  timestamptz NOT NULL,
    timeout_at       timestamptz,
    version          bigint NOT NULL,
    execution_number bigint NOT NULL,
    retries          integer NOT NULL DEFAULT 0,
    UNIQUE (job, thing)
);
CREATE INDEX job_executions_thing ON job_executions (thing, status);
CREATE INDEX job_executions_status ON job_executions (job, status, seq);
CREATE INDEX job_executions_timeout ON job_executions (timeout_at) WHERE status = 'IN_PROGRESS';
