-- 0002: as SQLite migration 0008. Per-thing counters of what the broker
-- refused or could not use (publishes denied by policy, telemetry that is
-- not a JSON object), written in batches with presence; and the indexes
-- of the things list sorted by last activity and by creation time.
CREATE TABLE thing_stats (
    thing             text COLLATE "C" NOT NULL PRIMARY KEY REFERENCES things (name) ON DELETE CASCADE,
    publish_denied    bigint NOT NULL DEFAULT 0,
    invalid_telemetry bigint NOT NULL DEFAULT 0,
    last_denied_topic text,
    last_denied_at    timestamptz,
    last_invalid_at   timestamptz
);

-- Never seen sorts as the epoch (SQLite: coalesce(last_seen, 0)); List
-- orders by exactly this expression so the index serves it.
CREATE INDEX things_last_seen ON things ((coalesce(last_seen, '1970-01-01 00:00:00+00'::timestamptz)), name);
CREATE INDEX things_created ON things (created_at, name);
