-- 0011: as SQLite migration 0018. Enrollment groups, the registrations
-- made through them, claim tokens (only a keyed hash of the token).
CREATE TABLE enrollments (
    name                 text COLLATE "C" NOT NULL PRIMARY KEY,
    attestation          text NOT NULL,
    sealed_key           text NOT NULL DEFAULT '',
    ca_cert              text NOT NULL DEFAULT '',
    ca_fingerprint       text NOT NULL DEFAULT '',
    ca_verified          boolean NOT NULL DEFAULT false,
    verification_code    text NOT NULL DEFAULT '',
    verification_expires timestamptz,
    spec                 bytea NOT NULL,
    enabled              boolean NOT NULL DEFAULT true,
    max_devices          bigint NOT NULL DEFAULT 0,
    expires_at           timestamptz,
    registered           bigint NOT NULL DEFAULT 0,
    created_at           timestamptz NOT NULL,
    updated_at           timestamptz NOT NULL
);

CREATE TABLE registrations (
    enrollment      text COLLATE "C" NOT NULL REFERENCES enrollments (name) ON DELETE CASCADE,
    registration_id text COLLATE "C" NOT NULL,
    thing           text COLLATE "C" NOT NULL REFERENCES things (name) ON DELETE CASCADE,
    credential      text NOT NULL DEFAULT '',
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    PRIMARY KEY (enrollment, registration_id)
);

CREATE TABLE claims (
    id             text COLLATE "C" NOT NULL PRIMARY KEY,
    token_hash     bytea NOT NULL UNIQUE,
    thing          text NOT NULL DEFAULT '',
    enrollment     text NOT NULL DEFAULT '',
    expires_at     timestamptz NOT NULL,
    redeemed_at    timestamptz,
    redeemed_thing text NOT NULL DEFAULT '',
    created_at     timestamptz NOT NULL
);
