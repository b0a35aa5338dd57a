-- 0011: dynamic groups. A group with a query (the fleet query language,
-- docs/fleet-query.md) is dynamic: its members are the things that match
-- it, computed by the fleet index, never stored in thing_groups. '' is a
-- static group.
ALTER TABLE groups ADD COLUMN query TEXT NOT NULL DEFAULT '';
