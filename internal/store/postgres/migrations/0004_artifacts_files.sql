-- 0006: as SQLite migration 0013. Firmware artifacts and files uploaded
-- by devices; the bytes are in the blob store under blob_key.
CREATE TABLE artifacts (
    name         text COLLATE "C" NOT NULL,
    version      text COLLATE "C" NOT NULL,
    content_type text        NOT NULL,
    size         bigint      NOT NULL,
    sha256       text        NOT NULL,
    signature    text,
    signing_key  text,
    blob_key     text        NOT NULL,
    created_at   timestamptz NOT NULL,
    PRIMARY KEY (name, version)
);
CREATE INDEX artifacts_latest ON artifacts (name, created_at);

CREATE TABLE files (
    thing        text COLLATE "C" NOT NULL REFERENCES things (name) ON DELETE CASCADE,
    name         text COLLATE "C" NOT NULL,
    content_type text        NOT NULL,
    complete     boolean     NOT NULL,
    size         bigint      NOT NULL,
    sha256       text,
    blob_key     text,
    upload_id    text,
    received     bigint      NOT NULL,
    total        bigint      NOT NULL,
    parts        integer     NOT NULL,
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL,
    PRIMARY KEY (thing, name)
);
