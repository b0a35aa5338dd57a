-- 0013: as SQLite migration 0020. The audit log (internal/audit,
-- docs/audit.md): append-only, pruned by age; id is time-ordered.

CREATE TABLE audit_log (
    id          text        NOT NULL PRIMARY KEY,
    at          timestamptz NOT NULL,
    actor_kind  text        NOT NULL,
    actor_name  text        NOT NULL,
    actor_id    text        NOT NULL,
    action      text        NOT NULL,
    target_kind text        NOT NULL,
    target_name text        NOT NULL,
    status      integer     NOT NULL,
    source      text        NOT NULL,
    request_id  text        NOT NULL,
    before_doc  text,
    after_doc   text,
    omitted     boolean     NOT NULL DEFAULT false
);

CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX audit_log_actor ON audit_log (actor_name, id);
CREATE INDEX audit_log_target ON audit_log (target_kind, target_name, id);
CREATE INDEX audit_log_action ON audit_log (action, id);
