-- 0008: a placeholder so that this branch's 0009 applies (versions run
-- without gaps). Delete at merge: another branch brings the real 0008.
SELECT 1;
