-- 0009: as SQLite migration 0016. Console dashboards and the overview's
-- history.
CREATE TABLE dashboards (
    name       text COLLATE "C" PRIMARY KEY,
    title      text NOT NULL,
    widgets    text NOT NULL,
    version    bigint NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);

CREATE TABLE stats_history (
    at            timestamptz PRIMARY KEY,
    interval_ms   bigint NOT NULL,
    messages      bigint NOT NULL,
    connected     integer NOT NULL,
    active_alarms integer NOT NULL
);
