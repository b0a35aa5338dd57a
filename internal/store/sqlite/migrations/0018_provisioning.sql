-- 0018: provisioning (internal/provisioning, docs/provisioning.md):
-- enrollment groups, the registrations made through them, claim tokens.
--
-- spec is what a group gives each device, as internal/provisioning
-- encodes it (JSON). sealed_key is a symmetric-key group's key, sealed
-- with seal.key. A registration goes with its thing; claims keep only a
-- keyed hash of the token.

CREATE TABLE enrollments (
    name                 TEXT    NOT NULL PRIMARY KEY,
    attestation          TEXT    NOT NULL,
    sealed_key           TEXT    NOT NULL DEFAULT '',
    ca_cert              TEXT    NOT NULL DEFAULT '',
    ca_fingerprint       TEXT    NOT NULL DEFAULT '',
    ca_verified          INTEGER NOT NULL DEFAULT 0,
    verification_code    TEXT    NOT NULL DEFAULT '',
    verification_expires INTEGER,
    spec                 BLOB    NOT NULL,
    enabled              INTEGER NOT NULL DEFAULT 1,
    max_devices          INTEGER NOT NULL DEFAULT 0,
    expires_at           INTEGER,
    registered           INTEGER NOT NULL DEFAULT 0,
    created_at           INTEGER NOT NULL,
    updated_at           INTEGER NOT NULL
) STRICT;

CREATE TABLE registrations (
    enrollment      TEXT    NOT NULL REFERENCES enrollments (name) ON DELETE CASCADE,
    registration_id TEXT    NOT NULL,
    thing           TEXT    NOT NULL REFERENCES things (name) ON DELETE CASCADE,
    credential      TEXT    NOT NULL DEFAULT '',
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    PRIMARY KEY (enrollment, registration_id)
) STRICT;

CREATE TABLE claims (
    id             TEXT    NOT NULL PRIMARY KEY,
    token_hash     BLOB    NOT NULL UNIQUE,
    thing          TEXT    NOT NULL DEFAULT '',
    enrollment     TEXT    NOT NULL DEFAULT '',
    expires_at     INTEGER NOT NULL,
    redeemed_at    INTEGER,
    redeemed_thing TEXT    NOT NULL DEFAULT '',
    created_at     INTEGER NOT NULL
) STRICT;
