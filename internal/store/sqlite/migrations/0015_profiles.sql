-- 0015: configuration profiles (internal/profiles). A profile is a
-- fragment of desired state (desired, a JSON object) with a target: a
-- group (grp) or a fleet query (query), exactly one set. profile_applied
-- records, per thing, what the profiles wrote into its desired shadow
-- (state, internal/profiles' JSON) and which profiles apply (profiles, a
-- JSON array), so that keys no profile sets any more can be removed and
-- keys no profile wrote are never touched.
CREATE TABLE profiles (
    name        TEXT    NOT NULL PRIMARY KEY,
    description TEXT    NOT NULL DEFAULT '',
    desired     BLOB    NOT NULL,
    grp         TEXT    NOT NULL DEFAULT '',
    query       TEXT    NOT NULL DEFAULT '',
    priority    INTEGER NOT NULL DEFAULT 0,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
) STRICT;

CREATE TABLE profile_applied (
    thing      TEXT    NOT NULL PRIMARY KEY REFERENCES things (name) ON DELETE CASCADE,
    profiles   TEXT    NOT NULL,
    state      BLOB    NOT NULL,
    updated_at INTEGER NOT NULL
) STRICT;
