-- 0022: the open windows of windowed rules (GROUP BY ..., TUMBLING or
-- SLIDING), saved every --rule-window-save-interval and at shutdown, read
-- at start; the state is package rules' encoding, sql the statement it
-- belongs to.
CREATE TABLE IF NOT EXISTS rule_windows (
    rule     TEXT    NOT NULL PRIMARY KEY REFERENCES rules (name) ON DELETE CASCADE,
    sql      TEXT    NOT NULL,
    state    BLOB    NOT NULL,
    saved_at INTEGER NOT NULL
) STRICT;
