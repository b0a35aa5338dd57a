-- 0001: the initial schema.
--
-- Times are Unix milliseconds (INTEGER). Booleans are 0/1 INTEGERs.
-- Names compare with the BINARY collation, so ORDER BY name and the
-- name-prefix ranges used by List are byte-wise.

CREATE TABLE thing_types (
    name        TEXT    NOT NULL PRIMARY KEY,
    description TEXT    NOT NULL DEFAULT '',
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

CREATE TABLE groups (
    name        TEXT    NOT NULL PRIMARY KEY,
    description TEXT    NOT NULL DEFAULT '',
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

CREATE TABLE policies (
    name        TEXT    NOT NULL PRIMARY KEY,
    description TEXT    NOT NULL DEFAULT '',
    document    TEXT    NOT NULL DEFAULT '',  -- JSON of policy.Document
    builtin     INTEGER NOT NULL DEFAULT 0,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

CREATE TABLE type_policies (
    type     TEXT    NOT NULL REFERENCES thing_types (name) ON DELETE CASCADE,
    policy   TEXT    NOT NULL REFERENCES policies (name) ON DELETE CASCADE,
    position INTEGER NOT NULL,  -- order of attachment
    PRIMARY KEY (type, policy)
) STRICT, WITHOUT ROWID;
CREATE INDEX type_policies_policy ON type_policies (policy);

CREATE TABLE things (
    name       TEXT    NOT NULL PRIMARY KEY,
    type       TEXT    REFERENCES thing_types (name),
    enabled    INTEGER NOT NULL DEFAULT 1,
    connected  INTEGER NOT NULL DEFAULT 0,
    last_seen  INTEGER,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) STRICT;
CREATE INDEX things_type ON things (type);
CREATE INDEX things_connected ON things (name) WHERE connected = 1;

CREATE TABLE thing_attributes (
    thing TEXT NOT NULL REFERENCES things (name) ON DELETE CASCADE,
    key   TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (thing, key)
) STRICT, WITHOUT ROWID;
CREATE INDEX thing_attributes_key_value ON thing_attributes (key, value);

CREATE TABLE thing_tags (
    thing TEXT NOT NULL REFERENCES things (name) ON DELETE CASCADE,
    tag   TEXT NOT NULL,
    PRIMARY KEY (thing, tag)
) STRICT, WITHOUT ROWID;
CREATE INDEX thing_tags_tag ON thing_tags (tag);

CREATE TABLE thing_groups (
    thing      TEXT NOT NULL REFERENCES things (name) ON DELETE CASCADE,
    group_name TEXT NOT NULL REFERENCES groups (name) ON DELETE CASCADE,
    PRIMARY KEY (thing, group_name)
) STRICT, WITHOUT ROWID;
CREATE INDEX thing_groups_group ON thing_groups (group_name);

CREATE TABLE thing_policies (
    thing    TEXT    NOT NULL REFERENCES things (name) ON DELETE CASCADE,
    policy   TEXT    NOT NULL REFERENCES policies (name) ON DELETE CASCADE,
    position INTEGER NOT NULL,  -- order of attachment
    PRIMARY KEY (thing, policy)
) STRICT, WITHOUT ROWID;
CREATE INDEX thing_policies_policy ON thing_policies (policy);

CREATE TABLE credentials (
    id          TEXT    NOT NULL PRIMARY KEY,
    thing       TEXT    NOT NULL REFERENCES things (name) ON DELETE CASCADE,
    type        TEXT    NOT NULL,
    secret_hash BLOB    UNIQUE,   -- NULL unless a secret
    fingerprint TEXT    UNIQUE,   -- NULL unless a certificate
    cert_pem    TEXT    NOT NULL DEFAULT '',
    not_after   INTEGER,
    revoked     INTEGER NOT NULL DEFAULT 0,
    revoked_at  INTEGER,
    created_at  INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
CREATE INDEX credentials_thing ON credentials (thing, created_at, id);

CREATE TABLE tokens (
    id           TEXT    NOT NULL PRIMARY KEY,
    name         TEXT    NOT NULL DEFAULT '',
    hash         BLOB    UNIQUE,  -- NULL if empty
    role         TEXT    NOT NULL DEFAULT '',
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER,
    last_used_at INTEGER
) STRICT, WITHOUT ROWID;
CREATE INDEX tokens_created ON tokens (created_at, id);
