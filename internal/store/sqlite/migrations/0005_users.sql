-- 0005: console users and their sessions.
--
-- password_hash is a bcrypt hash. sessions keeps only the SHA-256 of the
-- session id the browser holds in its cookie; sessions go with their user.

CREATE TABLE users (
    name          TEXT    NOT NULL PRIMARY KEY,
    password_hash BLOB    NOT NULL,
    role          TEXT    NOT NULL,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    last_login_at INTEGER
) STRICT, WITHOUT ROWID;

CREATE TABLE sessions (
    id_hash    BLOB    NOT NULL PRIMARY KEY,
    user       TEXT    NOT NULL REFERENCES users (name) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

CREATE INDEX sessions_user ON sessions (user);
CREATE INDEX sessions_expires ON sessions (expires_at);
