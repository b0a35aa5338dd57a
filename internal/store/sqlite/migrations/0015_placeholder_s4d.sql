-- 0015: a placeholder so that this branch's 0016 applies (versions run
-- without gaps). Delete at merge: another branch brings the real 0015.
SELECT 1;
