-- 0012: alarms, analytics rules and their detectors' state.
--
-- IF NOT EXISTS: a test re-applies the migrations after 0009 to a database
-- that has them (TestMigratePolicyDenySubscribe).
--
-- alarms: one row per alarm; seq orders them by creation (lists are
-- newest first), id is the public identifier. At most one open (active or
-- acknowledged) alarm per (thing, type): a partial unique index. details
-- is a JSON text. Rows go with their thing.
CREATE TABLE IF NOT EXISTS alarms (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    id         TEXT    NOT NULL UNIQUE,
    thing      TEXT    NOT NULL REFERENCES things (name) ON DELETE CASCADE,
    type       TEXT    NOT NULL,
    severity   TEXT    NOT NULL,
    status     TEXT    NOT NULL,
    details    TEXT,
    count      INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    last_at    INTEGER NOT NULL,
    acked_at   INTEGER,
    cleared_at INTEGER
) STRICT;
CREATE UNIQUE INDEX IF NOT EXISTS alarms_open ON alarms (thing, type) WHERE status <> 'cleared';
CREATE INDEX IF NOT EXISTS alarms_thing ON alarms (thing, seq);
CREATE INDEX IF NOT EXISTS alarms_status ON alarms (status, seq);

-- analytics_rules: detector configurations (config is a JSON text the
-- analytics package interprets), for a thing type, a group, or every thing.
CREATE TABLE IF NOT EXISTS analytics_rules (
    name       TEXT    NOT NULL PRIMARY KEY,
    kind       TEXT    NOT NULL,
    thing_type TEXT,
    grp        TEXT,
    config     TEXT    NOT NULL,
    enabled    INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) STRICT;

-- detector_states: each (rule, thing) detector's state, saved
-- periodically and read at start.
CREATE TABLE IF NOT EXISTS detector_states (
    rule       TEXT    NOT NULL REFERENCES analytics_rules (name) ON DELETE CASCADE,
    thing      TEXT    NOT NULL REFERENCES things (name) ON DELETE CASCADE,
    state      BLOB    NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (rule, thing)
) STRICT;
CREATE INDEX IF NOT EXISTS detector_states_thing ON detector_states (thing);
