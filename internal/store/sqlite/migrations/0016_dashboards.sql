-- 0016: console dashboards (their widgets as one JSON document, checked by
-- package dashboards) and the overview's history, one point per
-- --stats-history-interval, pruned beyond a day.
CREATE TABLE IF NOT EXISTS dashboards (
    name       TEXT    NOT NULL PRIMARY KEY,
    title      TEXT    NOT NULL,
    widgets    TEXT    NOT NULL,
    version    INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) STRICT;

CREATE TABLE IF NOT EXISTS stats_history (
    at            INTEGER NOT NULL PRIMARY KEY,
    interval_ms   INTEGER NOT NULL,
    messages      INTEGER NOT NULL,
    connected     INTEGER NOT NULL,
    active_alarms INTEGER NOT NULL
) STRICT;
