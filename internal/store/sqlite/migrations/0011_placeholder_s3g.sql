-- 0011: a placeholder so that this branch's 0012 applies (versions run
-- without gaps). Delete at merge: other branches bring the real 0011.
SELECT 1;
