-- 0008: as SQLite migration 0015. Configuration profiles
-- (internal/profiles) and, per thing, what they applied.
CREATE TABLE profiles (
    name        text COLLATE "C" NOT NULL PRIMARY KEY,
    description text NOT NULL DEFAULT '',
    desired     bytea NOT NULL,
    grp         text NOT NULL DEFAULT '',
    query       text NOT NULL DEFAULT '',
    priority    bigint NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL
);

CREATE TABLE profile_applied (
    thing      text COLLATE "C" NOT NULL PRIMARY KEY REFERENCES things (name) ON DELETE CASCADE,
    profiles   text NOT NULL,
    state      bytea NOT NULL,
    updated_at timestamptz NOT NULL
);
