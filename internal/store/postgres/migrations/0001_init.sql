-- 0001: the whole schema of the store, as of SQLite migration 0007.
--
-- Names and other keys use the "C" collation whatever the database's
-- locale, so ORDER BY and the name-prefix ranges of List are byte-wise,
-- as in the SQLite backend. Times are timestamptz (the store truncates to
-- the millisecond). JSON documents are text: they are kept byte for byte.

CREATE TABLE thing_types (
    name        text COLLATE "C" NOT NULL PRIMARY KEY,
    description text        NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL
);

CREATE TABLE groups (
    name        text COLLATE "C" NOT NULL PRIMARY KEY,
    description text        NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL
);

CREATE TABLE policies (
    name        text COLLATE "C" NOT NULL PRIMARY KEY,
    description text        NOT NULL DEFAULT '',
    document    text        NOT NULL DEFAULT '',  -- JSON of policy.Document
    builtin     boolean     NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL
);

CREATE TABLE type_policies (
    type     text COLLATE "C" NOT NULL REFERENCES thing_types (name) ON DELETE CASCADE,
    policy   text COLLATE "C" NOT NULL REFERENCES policies (name) ON DELETE CASCADE,
    position integer NOT NULL,  -- order of attachment
    PRIMARY KEY (type, policy)
);
CREATE INDEX type_policies_policy ON type_policies (policy);

CREATE TABLE things (
    name       text COLLATE "C" NOT NULL PRIMARY KEY,
    type       text COLLATE "C" REFERENCES thing_types (name),
    enabled    boolean     NOT NULL DEFAULT true,
    connected  boolean     NOT NULL DEFAULT false,
    last_seen  timestamptz,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE INDEX things_type ON things (type);
CREATE INDEX things_connected ON things (name) WHERE connected;

CREATE TABLE thing_attributes (
    thing text COLLATE "C" NOT NULL REFERENCES things (name) ON DELETE CASCADE,
    key   text COLLATE "C" NOT NULL,
    value text COLLATE "C" NOT NULL,
    PRIMARY KEY (thing, key)
);
CREATE INDEX thing_attributes_key_value ON thing_attributes (key, value);

CREATE TABLE thing_tags (
    thing text COLLATE "C" NOT NULL REFERENCES things (name) ON DELETE CASCADE,
    tag   text COLLATE "C" NOT NULL,
    PRIMARY KEY (thing, tag)
);
CREATE INDEX thing_tags_tag ON thing_tags (tag);

CREATE TABLE thing_groups (
    thing      text COLLATE "C" NOT NULL REFERENCES things (name) ON DELETE CASCADE,
    group_name text COLLATE "C" NOT NULL REFERENCES groups (name) ON DELETE CASCADE,
    PRIMARY KEY (thing, group_name)
);
CREATE INDEX thing_groups_group ON thing_groups (group_name);

CREATE TABLE thing_policies (
    thing    text COLLATE "C" NOT NULL REFERENCES things (name) ON DELETE CASCADE,
    policy   text COLLATE "C" NOT NULL REFERENCES policies (name) ON DELETE CASCADE,
    position integer NOT NULL,  -- order of attachment
    PRIMARY KEY (thing, policy)
);
CREATE INDEX thing_policies_policy ON thing_policies (policy);

CREATE TABLE credentials (
    id          text COLLATE "C" NOT NULL PRIMARY KEY,
    thing       text COLLATE "C" NOT NULL REFERENCES things (name) ON DELETE CASCADE,
    type        text        NOT NULL,
    secret_hash bytea       UNIQUE,  -- NULL unless a secret
    fingerprint text        UNIQUE,  -- NULL unless a certificate
    cert_pem    text        NOT NULL DEFAULT '',
    not_after   timestamptz,
    revoked     boolean     NOT NULL DEFAULT false,
    revoked_at  timestamptz,
    created_at  timestamptz NOT NULL
);
CREATE INDEX credentials_thing ON credentials (thing, created_at, id);

CREATE TABLE tokens (
    id           text COLLATE "C" NOT NULL PRIMARY KEY,
    name         text        NOT NULL DEFAULT '',
    hash         bytea       UNIQUE,  -- NULL if empty
    role         text        NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL,
    expires_at   timestamptz,
    last_used_at timestamptz
);
CREATE INDEX tokens_created ON tokens (created_at, id);

-- Device shadows: document NULL marks a tombstone whose version a
-- re-created shadow continues from.
CREATE TABLE shadows (
    thing      text COLLATE "C" NOT NULL REFERENCES things (name) ON DELETE CASCADE,
    name       text COLLATE "C" NOT NULL,
    version    bigint      NOT NULL,
    document   text,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (thing, name)
);

-- Rules; seeded_rules remembers the built-in rules created once.
CREATE TABLE rules (
    name         text COLLATE "C" NOT NULL PRIMARY KEY,
    sql          text        NOT NULL,
    description  text        NOT NULL DEFAULT '',
    enabled      boolean     NOT NULL DEFAULT true,
    actions      text        NOT NULL DEFAULT '[]',
    error_action text,
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL
);

CREATE TABLE seeded_rules (
    name      text COLLATE "C" NOT NULL PRIMARY KEY,
    seeded_at timestamptz NOT NULL
);

-- Commands: seq orders a thing's commands by creation.
CREATE TABLE commands (
    seq           bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,  -- BY DEFAULT: migrate-store copies seq
    id            text COLLATE "C" NOT NULL UNIQUE,
    thing         text COLLATE "C" NOT NULL REFERENCES things (name) ON DELETE CASCADE,
    name          text        NOT NULL,
    payload       text,
    status        text        NOT NULL,
    created_at    timestamptz NOT NULL,
    expires_at    timestamptz NOT NULL,
    delivered_at  timestamptz,
    completed_at  timestamptz,
    result_status text,
    result_output text
);
CREATE INDEX commands_thing ON commands (thing, seq);
CREATE INDEX commands_queued ON commands (expires_at) WHERE status = 'queued';

-- Console users and their sessions (only the SHA-256 of the session id).
CREATE TABLE users (
    name          text COLLATE "C" NOT NULL PRIMARY KEY,
    password_hash bytea       NOT NULL,
    role          text        NOT NULL,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    last_login_at timestamptz
);

CREATE TABLE console_sessions (
    id_hash    bytea       NOT NULL PRIMARY KEY,
    user_name  text COLLATE "C" NOT NULL REFERENCES users (name) ON DELETE CASCADE,
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE INDEX console_sessions_user ON console_sessions (user_name);
CREATE INDEX console_sessions_expires ON console_sessions (expires_at);

-- The broker's retained messages and persistent MQTT sessions (data is
-- the broker's encoding, opaque here).
CREATE TABLE retained (
    topic      text COLLATE "C" NOT NULL PRIMARY KEY,
    data       bytea       NOT NULL,
    updated_at timestamptz NOT NULL
);

CREATE TABLE mqtt_sessions (
    client_id  text COLLATE "C" NOT NULL PRIMARY KEY,
    data       bytea       NOT NULL,
    updated_at timestamptz NOT NULL
);

CREATE TABLE mqtt_session_messages (
    client_id text COLLATE "C" NOT NULL,
    packet_id integer NOT NULL,
    data      bytea   NOT NULL,
    PRIMARY KEY (client_id, packet_id)
);
