-- 0008: per-thing counters of what the broker refused or could not use
-- (publishes denied by policy, telemetry that is not a JSON object),
-- written in batches with presence; and an index for the things list
-- sorted by last activity.
CREATE TABLE thing_stats (
	thing             TEXT    NOT NULL PRIMARY KEY REFERENCES things (name) ON DELETE CASCADE,
	publish_denied    INTEGER NOT NULL DEFAULT 0,
	invalid_telemetry INTEGER NOT NULL DEFAULT 0,
	last_denied_topic TEXT,
	last_denied_at    INTEGER,
	last_invalid_at   INTEGER
) STRICT, WITHOUT ROWID;

CREATE INDEX things_last_seen ON things (last_seen, name);
CREATE INDEX things_created ON things (created_at, name);
