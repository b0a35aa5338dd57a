-- 0002: device shadows.
--
-- One row per shadow of a thing; name '' is the classic (unnamed) shadow.
-- document is the JSON of the whole shadow document; NULL marks a deleted
-- shadow (a tombstone) whose version a re-created shadow continues from.
-- Rows go with their thing.

CREATE TABLE shadows (
    thing      TEXT    NOT NULL REFERENCES things (name) ON DELETE CASCADE,
    name       TEXT    NOT NULL,
    version    INTEGER NOT NULL,
    document   TEXT,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (thing, name)
) STRICT;
