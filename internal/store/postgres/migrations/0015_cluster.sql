-- The cluster node a connected thing is on (docs/cluster.md); '' for a
-- single node.
ALTER TABLE things ADD COLUMN node text NOT NULL DEFAULT '';
