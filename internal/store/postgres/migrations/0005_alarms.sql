-- 0005: as SQLite migration 0012. Alarms (at most one open per thing and
-- type), analytics rules and their detectors' state.
CREATE TABLE alarms (
    seq        bigserial PRIMARY KEY,
    id         text COLLATE "C" NOT NULL UNIQUE,
    thing      text COLLATE "C" NOT NULL REFERENCES things (name) ON DELETE CASCADE,
    type       text COLLATE "C" NOT NULL,
    severity   text NOT NULL,
    status     text NOT NULL,
    details    text,
    count      bigint NOT NULL,
    created_at timestamptz NOT NULL,
    last_at    timestamptz NOT NULL,
    acked_at   timestamptz,
    cleared_at timestamptz
);
CREATE UNIQUE INDEX alarms_open ON alarms (thing, type) WHERE status <> 'cleared';
CREATE INDEX alarms_thing ON alarms (thing, seq);
CREATE INDEX alarms_status ON alarms (status, seq);

CREATE TABLE analytics_rules (
    name       text COLLATE "C" NOT NULL PRIMARY KEY,
    kind       text NOT NULL,
    thing_type text,
    grp        text,
    config     text NOT NULL,
    enabled    boolean NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);

CREATE TABLE detector_states (
    rule       text COLLATE "C" NOT NULL REFERENCES analytics_rules (name) ON DELETE CASCADE,
    thing      text COLLATE "C" NOT NULL REFERENCES things (name) ON DELETE CASCADE,
    state      bytea NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (rule, thing)
);
CREATE INDEX detector_states_thing ON detector_states (thing);
