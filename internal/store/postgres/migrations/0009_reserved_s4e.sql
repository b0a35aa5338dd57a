-- RESERVED on branch s4/e only: migration numbers are assigned per branch and
-- the loader needs versions without gaps. Delete this file at merge; the real
-- 0009 comes from another branch.
SELECT 1;
