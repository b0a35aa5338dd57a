-- 0020: the audit log (internal/audit, docs/audit.md). Append-only: rows
-- are inserted in batches by the recorder and deleted only by age
-- (retention). id is time-ordered, so "newest first" is ORDER BY id DESC.
-- before_doc and after_doc are redacted JSON documents or NULL.

CREATE TABLE audit_log (
    id          TEXT    NOT NULL PRIMARY KEY,
    at          INTEGER NOT NULL,
    actor_kind  TEXT    NOT NULL,
    actor_name  TEXT    NOT NULL,
    actor_id    TEXT    NOT NULL,
    action      TEXT    NOT NULL,
    target_kind TEXT    NOT NULL,
    target_name TEXT    NOT NULL,
    status      INTEGER NOT NULL,
    source      TEXT    NOT NULL,
    request_id  TEXT    NOT NULL,
    before_doc  TEXT,
    after_doc   TEXT,
    omitted     INTEGER NOT NULL DEFAULT 0
) STRICT, WITHOUT ROWID;

CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX audit_log_actor ON audit_log (actor_name, id);
CREATE INDEX audit_log_target ON audit_log (target_kind, target_name, id);
CREATE INDEX audit_log_action ON audit_log (action, id);
