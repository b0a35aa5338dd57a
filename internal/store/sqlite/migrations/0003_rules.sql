-- 0003: rules of the rules engine.
--
-- actions is the JSON array of actions, error_action one JSON action or
-- NULL; the rules engine interprets them. seeded_rules remembers the
-- built-in rules created once (RuleStore.Seed), so a deleted one is not
-- created again.

CREATE TABLE rules (
    name         TEXT    NOT NULL PRIMARY KEY,
    sql          TEXT    NOT NULL,
    description  TEXT    NOT NULL DEFAULT '',
    enabled      INTEGER NOT NULL DEFAULT 1,
    actions      TEXT    NOT NULL DEFAULT '[]',
    error_action TEXT,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

CREATE TABLE seeded_rules (
    name      TEXT    NOT NULL PRIMARY KEY,
    seeded_at INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
