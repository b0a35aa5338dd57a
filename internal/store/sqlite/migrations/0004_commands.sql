-- 0004: queued commands (cloud-to-device).
--
-- One row per command sent to a thing. seq orders a thing's commands by
-- creation (delivery happens in that order, lists are newest first); id is
-- the public identifier. payload and result_output are JSON texts. Rows go
-- with their thing.

CREATE TABLE commands (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    id            TEXT    NOT NULL UNIQUE,
    thing         TEXT    NOT NULL REFERENCES things (name) ON DELETE CASCADE,
    name          TEXT    NOT NULL,
    payload       TEXT,
    status        TEXT    NOT NULL,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    delivered_at  INTEGER,
    completed_at  INTEGER,
    result_status TEXT,
    result_output TEXT
) STRICT;
CREATE INDEX commands_thing ON commands (thing, seq);
CREATE INDEX commands_queued ON commands (expires_at) WHERE status = 'queued';
