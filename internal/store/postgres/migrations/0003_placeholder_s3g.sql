-- 0003: a placeholder so that this branch's 0005 applies (versions run
-- without gaps). Delete at merge: other branches bring the real 0003.
SELECT 1;
