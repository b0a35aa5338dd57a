-- 0015: as SQLite migration 0022. The open windows of windowed rules.
CREATE TABLE rule_windows (
    rule     text COLLATE "C" PRIMARY KEY REFERENCES rules (name) ON DELETE CASCADE,
    sql      text NOT NULL,
    state    bytea NOT NULL,
    saved_at timestamptz NOT NULL
);
