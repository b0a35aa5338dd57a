-- 0004: as SQLite migration 0011. A group with a query is dynamic: its
-- members are the things that match it (computed by the fleet index, never
-- stored in thing_groups). '' is a static group.
ALTER TABLE groups ADD COLUMN query text NOT NULL DEFAULT '';
