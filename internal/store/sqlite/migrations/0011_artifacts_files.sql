-- 0013: firmware artifacts and files uploaded by devices. The bytes are
-- in the blob store (internal/blob) under blob_key; these rows are their
-- metadata. Files go with their thing; their blobs are deleted by the
-- files service.
-- IF NOT EXISTS: TestMigratePolicyDenySubscribe re-runs the migrations
-- after 0009 on a database that has them.

CREATE TABLE IF NOT EXISTS artifacts (
    name         TEXT    NOT NULL,
    version      TEXT    NOT NULL,
    content_type TEXT    NOT NULL,
    size         INTEGER NOT NULL,
    sha256       TEXT    NOT NULL,
    signature    TEXT,
    signing_key  TEXT,
    blob_key     TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (name, version)
) STRICT;
CREATE INDEX IF NOT EXISTS artifacts_latest ON artifacts (name, created_at);

CREATE TABLE IF NOT EXISTS files (
    thing        TEXT    NOT NULL REFERENCES things (name) ON DELETE CASCADE,
    name         TEXT    NOT NULL,
    content_type TEXT    NOT NULL,
    complete     INTEGER NOT NULL,
    size         INTEGER NOT NULL,
    sha256       TEXT,
    blob_key     TEXT,
    upload_id    TEXT,
    received     INTEGER NOT NULL,
    total        INTEGER NOT NULL,
    parts        INTEGER NOT NULL,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    PRIMARY KEY (thing, name)
) STRICT;
