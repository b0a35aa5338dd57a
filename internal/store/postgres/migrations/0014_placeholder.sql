-- 0014: a placeholder so that this branch's 0015 applies: 0014 is assigned to
-- another branch of this round. DELETE THIS FILE AT MERGE (that branch brings
-- the real 0014).
SELECT 1;
