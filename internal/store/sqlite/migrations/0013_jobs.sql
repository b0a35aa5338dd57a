-- 0010: jobs (internal/jobs) and their executions, one per thing.
--
-- spec is the job's configuration as internal/jobs encodes it (JSON).
-- released and released_at are the rollout's progress, kept with every
-- release so that a restart neither re-releases nor loses the rate.
-- Executions go with their job and with their thing; seq orders a job's
-- executions by creation (the rollout releases them in that order).

CREATE TABLE jobs (
    id           TEXT    NOT NULL PRIMARY KEY,
    description  TEXT    NOT NULL DEFAULT '',
    status       TEXT    NOT NULL,
    continuous   INTEGER NOT NULL DEFAULT 0,
    spec         BLOB    NOT NULL,
    reason_code  TEXT    NOT NULL DEFAULT '',
    comment      TEXT    NOT NULL DEFAULT '',
    released     INTEGER NOT NULL DEFAULT 0,
    released_at  INTEGER NOT NULL,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    completed_at INTEGER
) STRICT;

CREATE TABLE job_executions (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    job              TEXT    NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    thing            TEXT    NOT NULL REFERENCES things (name) ON DELETE CASCADE,
    status           TEXT    NOT NULL,
    status_details   TEXT,
    queued_at        INTEGER,
    started_at       INTEGER,
    last_updated_at  INTEGER NOT NULL,
    timeout_at       INTEGER,
    version          INTEGER NOT NULL,
    execution_number INTEGER NOT NULL,
    retries          INTEGER NOT NULL DEFAULT 0,
    UNIQUE (job, thing)
) STRICT;
CREATE INDEX job_executions_thing ON job_executions (thing, status);
CREATE INDEX job_executions_status ON job_executions (job, status, seq);
CREATE INDEX job_executions_timeout ON job_executions (timeout_at) WHERE status = 'IN_PROGRESS';
