-- 0001: the telemetry schema on PostgreSQL. See the package documentation.

-- One row per time series (thing, key). Points refer to a series by its
-- id, so names are not repeated in every point. Rows are never deleted:
-- a series whose points all expired is left out of Keys by a check for
-- points, so an id cached by any node stays valid.
CREATE TABLE telemetry_series (
    id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    thing text COLLATE "C" NOT NULL,
    key   bytea NOT NULL,  -- bytes: a JSON member name may hold U+0000, which text cannot
    UNIQUE (thing, key)
);

-- n orders points of one series with the same ts by arrival, and is the
-- tie breaker of Range cursors. (A partitioned table cannot have an
-- identity column before PostgreSQL 17, hence the sequence.)
CREATE SEQUENCE telemetry_points_n AS bigint;

-- The points, partitioned by range of ts (Unix ms): one partition per UTC
-- day, named telemetry_points_YYYYMMDD, created ahead by the writer;
-- retention drops whole partitions. Points of a day the writer did not
-- make a partition for (far past or future timestamps, beyond the number
-- of partitions one append may create) land in the default partition.
--
-- With the TimescaleDB extension this table would be a hypertable
-- (create_hypertable('telemetry_points', by_range('ts', 86400000))) and
-- retention drop_chunks; it is not installed here, so these are plain
-- declarative partitions.
--
--   kind  0 number (in num), 1 true, 2 false, 3 string (in str)
--   num   the number, NULL for every other kind, so aggregates over num
--         see exactly the numbers
--   str   the string's bytes (bytea: a JSON string may hold U+0000, which
--         text cannot)
CREATE TABLE telemetry_points (
    series bigint           NOT NULL,
    ts     bigint           NOT NULL,
    n      bigint           NOT NULL DEFAULT nextval('telemetry_points_n'),
    kind   smallint         NOT NULL,
    num    double precision,
    str    bytea
) PARTITION BY RANGE (ts);

CREATE TABLE telemetry_points_default PARTITION OF telemetry_points DEFAULT;

-- Every query reads one series over a time range, in (ts, n) order: a
-- B-tree on (series, ts, n) in each partition serves Range, Latest
-- (backwards), Aggregate and Keys. Time alone is handled by partition
-- pruning, so no BRIN index on ts (see the package documentation).
CREATE INDEX telemetry_points_series_ts ON telemetry_points (series, ts, n);

-- One row: the WAL sequence number of the last message stored.
CREATE TABLE telemetry_state (
    id       integer NOT NULL PRIMARY KEY CHECK (id = 1),
    last_seq bigint  NOT NULL
);
INSERT INTO telemetry_state (id, last_seq) VALUES (1, 0);
