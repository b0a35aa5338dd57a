-- 0001: the telemetry schema. See the package documentation for why it is
-- shaped this way.

-- One row per time series. Loaded into memory at open; points refer to a
-- series by its small integer id, so the thing name and the key are not
-- repeated in every point.
CREATE TABLE series (
    id    INTEGER NOT NULL PRIMARY KEY,
    thing TEXT    NOT NULL,
    key   TEXT    NOT NULL,
    UNIQUE (thing, key)
) STRICT;

-- The points, clustered by series and time: one B-tree, no rowid.
--   n     tells apart points of one series with the same ts (see the package doc)
--   kind  0 number (in num), 1 true, 2 false, 3 string (in str)
--   num   the number, NULL for every other kind, so that SQL aggregates over
--         num see exactly the numbers
CREATE TABLE points (
    series INTEGER NOT NULL,
    ts     INTEGER NOT NULL,
    n      INTEGER NOT NULL,
    kind   INTEGER NOT NULL,
    num    REAL,
    str    TEXT,
    PRIMARY KEY (series, ts, n)
) STRICT, WITHOUT ROWID;

-- One row: the WAL sequence number of the last message stored, and the next
-- tie breaker n for points that arrive out of time order.
CREATE TABLE state (
    id       INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    last_seq INTEGER NOT NULL,
    next_n   INTEGER NOT NULL
) STRICT;

INSERT INTO state (id, last_seq, next_n) VALUES (1, 0, 4294967296);
